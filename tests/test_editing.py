"""AlphaEdit core, the unlearning token and UniErase (unlearnkit.editing).

Toy-layer tests check the math against hand computations; model tests use a tiny random
Llama / GPT-2 built here, and the quick world (with ``refusal_people=8``) for UniErase end to end.
"""

import copy

import pytest
import torch

from unlearnkit.editing import (
    EditRequest,
    EditState,
    alphaedit_delta,
    apply_alphaedit,
    auto_layers,
    changed_parameters,
    find_projection,
    guess_subject,
    key_second_moment,
    make_requests,
    preserved_stats,
    projector,
    subjects_for,
    train_unlearning_token,
)

# -- toy layer: projector and closed form -------------------------------------------------------


def _toy(d0=16, d1=8, n_pres=200, pres_dim=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d0, d0, generator=g, dtype=torch.float64))[0]
    B = basis[:, :pres_dim]  # preserved keys live in a 10-dim subspace
    K0 = B @ torch.randn(pres_dim, n_pres, generator=g, dtype=torch.float64)
    C = K0 @ K0.T / n_pres
    return g, basis, B, K0, C


def test_projector_symmetric_idempotent_rank():
    g, basis, B, K0, C = _toy()
    pj = projector(C, threshold=1e-8)
    P = pj.P.double()
    assert torch.allclose(P, P.T, atol=1e-6)
    assert torch.allclose(P @ P, P, atol=1e-5)
    assert pj.rank == 6 == round(float(torch.trace(P)))  # 16 - 10 preserved directions
    assert torch.allclose(P @ K0, torch.zeros_like(K0), atol=1e-5)
    # rank-fraction and energy rules
    assert projector(C, rank_fraction=0.25).rank == 4
    assert projector(C, rank_fraction=1.0).rank == 16
    e = projector(C, energy=0.05)
    assert e.energy <= 0.05 + 1e-9 and e.rank >= 6
    assert torch.allclose(projector(C, rank_fraction=1.0).P.double(), torch.eye(16, dtype=torch.float64), atol=1e-6)


def test_projector_bad_thresholds():
    *_, C = _toy()
    with pytest.raises(ValueError, match="threshold=0.5 leaves the projector P with rank 0"):
        projector(C + torch.eye(16, dtype=torch.float64), threshold=0.5)
    with pytest.raises(ValueError, match="rank 0"):
        projector(C + torch.eye(16, dtype=torch.float64), energy=0.01)
    with pytest.raises(ValueError, match="exactly one"):
        projector(C, threshold=1e-3, energy=0.1)
    with pytest.raises(ValueError, match=r"energy=1.5 must lie in \(0, 1\]"):
        projector(C, energy=1.5)


def test_null_space_property_and_targets_on_toy_layer():
    """For keys in the preserved span, Delta W k = 0 (tolerance 1e-6 relative, float64); the new
    keys map to W k1 + r (tolerance 1e-3 relative with a tiny ridge term)."""
    g, basis, B, K0, C = _toy()
    P = projector(C, threshold=1e-8).P
    K1 = torch.randn(16, 3, generator=g, dtype=torch.float64)
    R = torch.randn(8, 3, generator=g, dtype=torch.float64)
    dW = alphaedit_delta(K1, R, P.double(), l2=1e-8)
    assert dW.shape == (8, 16)
    rel = (dW @ K0).norm() / (dW.norm() * K0.norm())
    assert rel < 1e-6
    assert torch.allclose(dW @ K1, R, rtol=1e-3, atol=1e-3)


def test_identity_projector_equals_memit_least_squares():
    """With P = I the update is the ridge solution R K1^T (K1 K1^T + C_prev + l2 I)^-1, computed by hand."""
    g = torch.Generator().manual_seed(1)
    K1 = torch.randn(12, 4, generator=g, dtype=torch.float64)
    R = torch.randn(5, 4, generator=g, dtype=torch.float64)
    Kp = torch.randn(12, 7, generator=g, dtype=torch.float64)
    Cp, l2 = Kp @ Kp.T, 0.3
    P = projector(torch.eye(12, dtype=torch.float64), rank_fraction=1.0).P
    dW = alphaedit_delta(K1, R, P, Cp, l2)
    hand = R @ K1.T @ torch.linalg.inv(K1 @ K1.T + Cp + l2 * torch.eye(12, dtype=torch.float64))
    assert torch.allclose(dW, hand, atol=1e-5)
    assert torch.allclose(alphaedit_delta(K1, R, None, Cp, l2), hand, atol=1e-10)


# -- tiny random models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tiny):
    return tiny


def test_find_projection_llama_and_errors(tiny):
    model, _ = tiny
    name, mod = find_projection(model, 1)
    assert name == "mlp.down_proj"
    with pytest.raises(ValueError, match=r"layer=7 is out of range.*\[-4, 3\]"):
        find_projection(model, 7)
    with pytest.raises(TypeError, match=r"modules are: .*mlp.up_proj"):
        find_projection(model, 1, module="mlp.nonexistent")


def test_gpt2_projection_and_missing_module():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32))
    name, mod = find_projection(m, 0)
    assert name == "mlp.c_proj" and type(mod).__name__ == "Conv1D"
    from unlearnkit.editing import projection_weight

    assert projection_weight(mod).shape == (32, 128)  # (d1 out, d0 in)
    for blk in m.transformer.h:
        del blk.mlp.c_proj
    with pytest.raises(TypeError, match=r"no MLP output projection.*modules are: .*mlp.c_fc"):
        find_projection(m, 0)


def test_subject_errors_and_heuristic(tiny):
    _, tok = tiny
    with pytest.raises(ValueError, match=r"request 0: subject 'Nobody' does not occur"):
        make_requests(tok, ["Question: Where was Ana born?\nAnswer:"], ["Nobody"], " x")
    assert guess_subject("Where was Basil Mahfouz Al-Kuwaiti born?") == "Basil Mahfouz Al-Kuwaiti"
    assert guess_subject("what is this?") is None
    import pandas as pd

    with pytest.raises(ValueError, match="subject='field' forbids guessing"):
        subjects_for(pd.DataFrame({"question": ["Who is Ana Lu?"], "answer": ["x"]}), mode="field")
    assert subjects_for(pd.DataFrame({"question": ["Who is Ana Lu?"], "answer": ["x"]})) == ["Ana Lu"]


#: the miniature's edit settings (see unlearnkit.editing.unierase.MINIATURE_EDIT_DEFAULTS for why)
MINI = {"fact_token": "last", "l2": 0.1, "clamp_norm_factor": 2.0}


def test_alphaedit_on_tiny_model_null_space_and_sequential(tiny, quick_world):
    """Edit a copy of the quick target model so that three forget questions answer ' Stonevale...',
    one request per round (explicit state): the update annihilates the preserved span (relative
    norm < 1e-3, float32 weights) and earlier rounds' edits survive later ones."""
    model, tok = tiny
    m = copy.deepcopy(model)
    w = quick_world
    from unlearnkit.editing import corpus_texts

    corpus = corpus_texts(w.retain, w.world_facts)
    stats = preserved_stats(m, tok, corpus, [1, 2])
    state = EditState.create(m, stats, energy=0.05)
    assert all(state.projectors[li].rank >= 1 for li in (1, 2))
    f = w.forget
    target = tok(" Stonevale", add_special_tokens=False)["input_ids"]
    W_before = {li: find_projection(m, li)[1].weight.detach().clone() for li in (1, 2)}
    state.cache_original(m, tok, w.retain["question"][:6], w.retain["answer"][:6])
    for r in range(3):
        reqs = make_requests(tok, [f"Question: {f['question'][r]}\nAnswer:"], [f["person"][r]], target)
        out = apply_alphaedit(m, tok, reqs, state, v_steps=15, n_prefixes=1, seed=0, **MINI)
        assert out.target_prob.iloc[0] > 0.5, out
    assert len(state.rounds) == 3
    assert state.C_prev[1].shape == (384, 384)
    # null-space property on the real layer: the update annihilates the preserved span
    C, n = key_second_moment(model, tok, corpus, [1])
    for li in (1,):
        dW = (find_projection(m, li)[1].weight.detach() - W_before[li]).double()
        P = state.projectors[li].P.double()
        pres = torch.eye(P.shape[0], dtype=torch.float64) - P
        assert (dW @ pres).norm() / dW.norm() < 1e-3
    # earlier rounds still hold after later ones
    from unlearnkit.scoring import generate

    answers = generate(m, tok, list(f["question"][:3]), max_new_tokens=4)
    assert sum(a.startswith("Stonevale") for a in answers) >= 2, answers
    loc = state.locality(m, tok)
    assert loc.same_greedy.mean() >= 0.8


def test_edit_params_validated_before_work(tiny):
    model, tok = tiny
    state = EditState.create(model, None, layers=[1])
    with pytest.raises(ValueError, match="v_lr"):
        apply_alphaedit(model, tok, [EditRequest("Question: Who?\nAnswer:", "Who", (5,))], state, v_lr=-1)


# -- the unlearning token -----------------------------------------------------------------------


def test_unl_token_changes_only_new_rows(tiny, quick_world):
    model, tok = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m2, tok2, tid, log = train_unlearning_token(model, tok, list(quick_world.forget["question"]), epochs=3,
                                                epochs2=1, noise_layers=(1,), noise_epochs=1)
    assert len(tok2) == len(tok) + 1 and tid == len(tok)
    assert "<unl>" not in tok.get_vocab()  # the caller's tokenizer is untouched
    for n, p in model.named_parameters():  # the caller's model too
        assert torch.equal(p, before[n])
    for n, p in m2.named_parameters():
        q = before[n]
        if p.shape == q.shape:
            assert torch.equal(p, q), n
        else:
            assert torch.equal(p[: q.shape[0]], q), n  # old rows bit-identical
    ch = changed_parameters(model, m2)
    assert ch["n_changed"] == m2.get_input_embeddings().weight.shape[1]  # one new row
    assert log.loss.iloc[-1] < log.loss.iloc[0]


def test_auto_layers():
    assert auto_layers(4) == [1, 2]
    assert auto_layers(32) == [4, 5, 6, 7, 8]


# -- UniErase end to end on the quick world with a forgetting space ------------------------------


@pytest.fixture(scope="module")
def refusal_world():
    from unlearnkit import make_world, target_model

    w = make_world(seed=0, quick=True, refusal_people=8)
    return w, target_model(w, progress=False)


@pytest.fixture(scope="module")
def ue_result(refusal_world):
    from unlearnkit.editing import unierase

    w, (model, tok) = refusal_world
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = unierase(model, tok, w.forget, w.retain, preserved=[w.world_facts], rounds=3)
    for n, p in model.named_parameters():  # the caller's model is untouched
        assert torch.equal(p, before[n]), n
    return res


def test_unierase_forgets_with_token_then_refusal(refusal_world, ue_result):
    """Quick world (refusal_people=8, 3 rounds), measured: <unl> first on 10/10 forget questions,
    0/10 forget answers state their value, retain ROUGE kept; a clean refusal after <unl> in only
    1-2/10 (kit's is_refusal): the miniature does not reproduce the paper's >= 90% refusals (see
    unlearnkit.editing.unierase's docstring), so the refusal rate is asserted only as > 0."""
    from unlearnkit import evaluate
    from unlearnkit.editing import refusal_check
    from unlearnkit.metrics import is_refusal

    w, (model, tok) = refusal_world
    res = ue_result
    chk = refusal_check(res.model, res.tokenizer, w.forget["question"], res.token_id, judge=is_refusal)
    assert chk.first_is_token.mean() >= 0.9, chk
    stated = [v.lower() in t.lower() for v, t in zip(w.forget["value"], chk.text)]
    assert sum(stated) <= 0.1 * len(stated), chk.text.tolist()
    assert (chk.first_is_token & chk.refusal).mean() > 0, chk.text.tolist()
    before = evaluate(model, tok, {"retain": w.retain}, metrics=["rouge"], progress=False).value.mean()
    after = evaluate(res.model, res.tokenizer, {"retain": w.retain}, metrics=["rouge"], progress=False).value.mean()
    assert after >= 0.9 * before, (before, after)


def test_unierase_sequential_rounds_and_changed_fraction(refusal_world, ue_result):
    w, (model, tok) = refusal_world
    res = ue_result
    r = res.rounds.set_index("round")
    assert list(r.index) == [0, 1, 2, 3]
    assert r.loc[0, "forget_refusal_all"] == 0.0
    # every round keeps working: the rows edited so far refuse, and the share grows round by round
    assert (r.loc[[1, 2, 3], "forget_token_edited"] >= 0.9).all(), r
    assert r.forget_token_all.is_monotonic_increasing and r.loc[3, "forget_token_all"] >= 0.9
    assert (r.loc[[1, 2, 3], "locality_same_greedy"] >= 0.75).all(), r
    assert len(res.state.rounds) == 3 and set(res.edits["round"]) == {1, 2, 3}
    # the reported fraction equals a count of the weights that differ
    n_diff = 0
    orig = dict(model.named_parameters())
    for name, p in res.model.named_parameters():
        q = orig[name]
        if p.shape == q.shape:
            n_diff += int((p != q).sum())
        else:
            n_diff += int((p[: q.shape[0]] != q).sum()) + (p.shape[0] - q.shape[0]) * p.shape[1]
    total = sum(p.numel() for p in res.model.parameters())
    assert res.manifest["n_changed"] == n_diff
    assert res.manifest["fraction_changed"] == pytest.approx(n_diff / total)
    assert res.manifest["edited_layers"] == [1, 2]
    assert set(res.probes.step) == {0, 1, 2, 3}


def test_unierase_bad_inputs(refusal_world):
    from unlearnkit.editing import unierase

    w, (model, tok) = refusal_world
    with pytest.raises(ValueError, match=r"layer=9 is out of range"):
        unierase(model, tok, w.forget, w.retain, layers=[9])
    with pytest.raises(ValueError, match="rank 0"):
        unierase(model, tok, w.forget, w.retain, null_space="threshold:1e-30", unl_epochs=1, unl_epochs2=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        unierase(model, tok, w.forget, w.retain, bogus=1)
    with pytest.raises(ValueError, match="v_lr"):
        unierase(model, tok, w.forget, w.retain, v_lr=0)
    bad = w.forget.map(lambda r: {"person": "Nobody Here"})
    with pytest.raises(ValueError, match="subject 'Nobody Here' does not occur"):
        unierase(model, tok, bad, w.retain)


def test_rounds_explorer_headless(ue_result):
    from unlearnkit import viz

    ex = viz.RoundsExplorer(ue_result)
    assert ex.round.value == 3 and ex.png[:4] == b"\x89PNG"
    ex.round.value = 1
    assert "answer at round 1" in ex.table.columns and len(ex.table) > 0
    lines = ex.figure.axes[0].get_lines()
    assert len(lines) >= 3 and list(lines[0].get_xdata()) == [0, 1, 2, 3]
