"""Unit tests of every objective on hand-computable cases: a fake bigram "model" whose logits at a
position are a learnable row of a small table indexed by the input token there, so every log-prob
is ``log_softmax(W[x_t])[x_{t+1}]`` and loss values and gradient signs can be written by hand."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.losses import position_mask
from unlearnkit.models.layers import decoder_layers, layer_output
from unlearnkit.objectives import ObjectiveContext, get_objective, list_objectives, render_markdown
from unlearnkit.objectives.base import retain_requirements
from unlearnkit.objectives.beliefs import soft_targets
from unlearnkit.objectives.distill import undial_targets
from unlearnkit.objectives.entropy import uniform_kl

REPO = Path(__file__).resolve().parents[1]
V = 4
ALL = ["ga", "graddiff", "kl", "npo", "simnpo", "dpo", "idk_dpo", "idk_nll", "rmu", "undial", "me", "me_gd",
       "idk_ap", "bs_t", "bs_s"]


class Bigram(torch.nn.Module):
    """logits[b, t] = W[input_ids[b, t]]: hand-computable log-probs, gradients on W."""

    def __init__(self, W):
        super().__init__()
        self.W = torch.nn.Parameter(torch.as_tensor(W, dtype=torch.float32).clone())

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        return SimpleNamespace(logits=self.W[input_ids])


def part(ids, n_prompt, index=0, pad=None):
    """One row: ``ids`` with the first ``n_prompt`` tokens masked out of the labels; ``pad`` extra
    padding positions (token 0, attention 0, label -100)."""
    ids = list(ids)
    labels = [-100] * n_prompt + ids[n_prompt:]
    attn = [1] * len(ids)
    if pad:
        ids, labels, attn = ids + [0] * pad, labels + [-100] * pad, attn + [0] * pad
    t = lambda x: torch.tensor([x])  # noqa: E731
    return {"input_ids": t(ids), "attention_mask": t(attn), "labels": t(labels), "index": torch.tensor([index])}


class FakeRef:
    """A reference returning fixed quantities: seq log-probs by part name, or another Bigram's."""

    live = True

    def __init__(self, seq=None, model=None):
        self.seq, self.model = seq or {}, model

    def seq_logprob(self, name, p):
        if name in self.seq:
            return torch.tensor([self.seq[name]])
        with torch.no_grad():
            lg = self.model(p["input_ids"]).logits
            lp = torch.log_softmax(lg[:, :-1], -1).gather(-1, p["labels"][:, 1:].clamp_min(0).unsqueeze(-1)).squeeze(-1)
            return (lp * (p["labels"][:, 1:] != -100)).sum(-1)

    def logprobs(self, name, p):
        with torch.no_grad():
            return torch.log_softmax(self.model(p["input_ids"]).logits, -1)


def run(name, model, batch, ref=None, **hp):
    obj = get_objective(name)
    ctx = ObjectiveContext(hp=obj.resolve(**hp), ref=ref)
    loss, parts = obj(model, batch, ctx)
    model.zero_grad()
    loss.backward()
    return loss.item(), parts, model.W.grad.clone()


def lsm(row):
    """log-softmax of a python list."""
    m = max(row)
    z = math.log(sum(math.exp(v - m) for v in row)) + m
    return [v - z for v in row]


# W rows: the logits after seeing token 0..3. Sequence 0 1 2 3 with prompt "0 1": answer tokens 2, 3
# are predicted by rows 1 and 2.
W0 = [[0.0, 1.0, 0.0, 0.0], [0.2, 0.1, 2.0, -1.0], [0.0, 0.5, -0.5, 1.5], [1.0, 0.0, 0.0, 0.0]]
F_IDS, F_PROMPT = [0, 1, 2, 3], 2
LP_F = lsm(W0[1])[2] + lsm(W0[2])[3]  # log pi(y_f | x_f), summed over the 2 answer tokens


def fbatch(**extra):
    return {"forget": part(F_IDS, F_PROMPT), **extra}


# -- registry ------------------------------------------------------------------------------------

def test_every_objective_is_registered_with_documented_params():
    assert set(ALL) <= set(list_objectives())
    for name in ALL:
        obj = get_objective(name)
        for word in ("Shapes", "Masked", "Reduction", "Source"):
            assert word in obj.doc, f"{name}: docstring lacks {word!r}"
        for k, p in obj.params.items():
            assert p.doc, f"{name}.{k} undocumented"
            obj.resolve(**{k: p.default})  # every default lies in its own range


@pytest.mark.parametrize("name,param,bad", [("npo", "beta", -0.1), ("npo", "beta", 0.0), ("simnpo", "beta", -1),
                                            ("npo", "alpha", -1), ("bs_t", "lam", 1.5), ("bs_t", "top_k", 0),
                                            ("me", "mask_mode", "everything"), ("undial", "beta", -2),
                                            ("bs_s", "regen_every", 0), ("idk_ap", "beta", 0)])
def test_bad_hyperparameters_name_objective_parameter_and_range(name, param, bad):
    with pytest.raises(ValueError) as e:
        get_objective(name).resolve(**{param: bad})
    msg = str(e.value)
    assert f"objective {name!r}" in msg and param in msg and "valid range" in msg


def test_no_objective_parameter_shadows_a_loop_parameter():
    """``unlearn(**hparams)`` routes a name to the loop when the loop has it, so an objective
    parameter of the same name could never be set (BS-S's sample length was once ``max_new_tokens``)."""
    from unlearnkit.train import LOOP_PARAMS

    for name in list_objectives():
        clash = set(get_objective(name).params) & set(LOOP_PARAMS)
        assert not clash, f"objective {name!r} parameters {sorted(clash)} are also loop parameters"


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown parameter.*betta.*valid parameters: beta"):
        get_objective("npo").resolve(betta=0.1)


def test_requirements_follow_hyperparameters():
    npo = get_objective("npo")
    assert npo.requirements(npo.resolve()).parts == ("forget", "retain")
    assert npo.requirements(npo.resolve(alpha=0)).parts == ("forget",)
    assert ("forget", "seq_logprob") in npo.requirements(npo.resolve(alpha=0)).ref
    kl = get_objective("kl")
    assert ("retain", "logprobs") in kl.requirements(kl.resolve()).ref
    assert get_objective("bs_s").requirements(get_objective("bs_s").resolve()).generation
    bst = get_objective("bs_t")
    assert not bst.requirements(bst.resolve()).ref and bst.requirements(bst.resolve(base="npo")).ref
    rmu = get_objective("rmu")
    assert rmu.requirements(rmu.resolve(layer=2)).ref == frozenset({("retain", "hidden:2")})
    assert set(get_objective("idk_ap").requirements(get_objective("idk_ap").resolve()).parts) == \
        {"forget_idk", "retain", "retain_idk"}
    assert retain_requirements({"alpha": 0}).parts == ("forget",)


def test_reference_page_is_current():
    """docs/objectives.md must equal what the registry generates (python -m unlearnkit.docs)."""
    committed = (REPO / "docs" / "objectives.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), "docs/objectives.md is stale: run python -m unlearnkit.docs"
    from unlearnkit.objectives import reference_table

    t = reference_table()
    assert list(t.name)[:len(ALL)] == ALL
    row = t.set_index("name")
    assert row.loc["bs_s", "sampled_beliefs"] == "yes" and row.loc["idk_ap", "idk"] == "yes"
    assert row.loc["ga", "retain"] == "no" and row.loc["npo", "retain"].startswith("yes (not with alpha=0)")


def test_idk_bank_is_ours_and_large_enough():
    from unlearnkit.idk import load_idk

    bank = load_idk()
    assert 55 <= len(bank) <= 80 and len(set(bank)) == len(bank)
    tofu = REPO.parent / "shared" / "data" / "tofu" / "idontknow.jsonl"
    if tofu.exists():
        theirs = {line.strip().strip('"') for line in tofu.read_text().splitlines()}
        assert len(set(bank) & theirs) <= 1  # one generic sentence at most, nothing copied


# -- gradient ascent family ----------------------------------------------------------------------

def test_ga_value_and_gradient_sign():
    m = Bigram(W0)
    loss, parts, g = run("ga", m, fbatch())
    assert loss == pytest.approx(LP_F / 2, abs=1e-6)  # -NLL, token mean over 2 answer tokens
    assert g[1, 2] > 0 and g[2, 3] > 0  # descent lowers the forget tokens' logits...
    assert g[1, 0] < 0  # ...and raises the others: the mass goes somewhere (squeezing)


def test_graddiff_and_kl_retain_terms():
    m = Bigram(W0)
    r = part([3, 0, 1], 1)  # retain answer "0 1" predicted by rows 3 and 0
    lp_r = lsm(W0[3])[0] + lsm(W0[0])[1]
    loss, parts, g = run("graddiff", m, fbatch(retain=r), gamma=2.0, alpha=0.5)
    assert loss == pytest.approx(2 * LP_F / 2 + 0.5 * (-lp_r / 2), abs=1e-6)
    assert parts["retain"] == pytest.approx(-lp_r / 2, abs=1e-6)
    assert g[3, 0] < 0  # the retain answer is pushed up
    # KL-Min: reference = the same weights -> KL term is 0 and its gradient too
    ref = FakeRef(model=Bigram(W0))
    loss, parts, g = run("kl", m, fbatch(retain=r), ref=ref)
    assert parts["retain"] == pytest.approx(0.0, abs=1e-6) and loss == pytest.approx(LP_F / 2, abs=1e-6)
    # a reference that differs: KL > 0, averaged over the 3 attended positions, or 'answer' / 'all'
    W1 = [row[:] for row in W0]
    W1[3] = [0.0, 0.0, 0.0, 0.0]
    ref1 = FakeRef(model=Bigram(W1))
    p, q = torch.softmax(torch.tensor(W1[3]), -1), torch.log_softmax(torch.tensor(W0[3]), -1)
    kl3 = float((p * (p.log() - q)).sum())
    _, parts, _ = run("kl", m, fbatch(retain=r), ref=ref1)
    assert parts["retain"] == pytest.approx(kl3 / 3, abs=1e-6)
    _, parts, _ = run("kl", m, fbatch(retain=r), ref=ref1, kl_positions="answer")  # positions 0, 1 (rows 3, 0)
    assert parts["retain"] == pytest.approx(kl3 / 2, abs=1e-6)


# -- preference family ---------------------------------------------------------------------------

def test_npo_value_gradient_and_ga_limit():
    m = Bigram(W0)
    beta, ref_lp = 0.1, LP_F + 0.7
    loss, parts, g = run("npo", m, fbatch(), ref=FakeRef({"forget": ref_lp}), beta=beta, alpha=0)
    r = LP_F - ref_lp
    assert loss == pytest.approx(-(2 / beta) * math.log(1 / (1 + math.exp(beta * r))), abs=1e-5)
    assert parts["logratio"] == pytest.approx(r, abs=1e-6)
    assert g[1, 2] > 0 and g[2, 3] > 0
    # at logratio 0 the NPO gradient is exactly GA's on the *summed* log-prob (weight 2*sigmoid(0) = 1)
    _, _, g_npo = run("npo", m, fbatch(), ref=FakeRef({"forget": LP_F}), alpha=0)
    _, _, g_ga = run("ga", m, fbatch())
    assert torch.allclose(g_npo, 2 * g_ga, atol=1e-6)  # GA is a token mean over 2 tokens
    # far below the reference, the gradient fades: weight 2*sigmoid(beta*r)
    _, _, g_far = run("npo", m, fbatch(), ref=FakeRef({"forget": LP_F + 50}), alpha=0, beta=1.0)
    w = 2 / (1 + math.exp(50))
    assert torch.allclose(g_far, w * 2 * g_ga, atol=1e-8)


def test_simnpo_value_and_gradient():
    m = Bigram(W0)
    beta, delta = 2.5, 0.3
    loss, parts, g = run("simnpo", m, fbatch(), beta=beta, delta=delta, alpha=0, gamma=1.0)
    mean_nll = -LP_F / 2
    assert parts["mean_nll"] == pytest.approx(mean_nll, abs=1e-6)
    assert loss == pytest.approx(-(2 / beta) * math.log(1 / (1 + math.exp(-beta * (mean_nll - delta)))), abs=1e-5)
    assert g[1, 2] > 0
    # default gamma 0.125 scales the forget term (OpenUnlearning)
    loss2, _, _ = run("simnpo", m, fbatch(), beta=beta, delta=delta, alpha=0)
    assert loss2 == pytest.approx(0.125 * loss, rel=1e-6)


@pytest.mark.parametrize("name,win", [("dpo", "forget_alt"), ("idk_dpo", "forget_idk")])
def test_dpo_prefers_the_win_answer(name, win):
    m = Bigram(W0)
    w = part([0, 1, 0, 0], 2)  # win answer "0 0": rows 1 and 0
    lp_w = lsm(W0[1])[0] + lsm(W0[0])[0]
    ref = FakeRef({"forget": LP_F - 0.2, win: lp_w + 0.4})
    loss, parts, g = run(name, m, fbatch(**{win: w}), ref=ref, alpha=0)
    margin = (lp_w - (lp_w + 0.4)) - (LP_F - (LP_F - 0.2))
    assert parts["margin"] == pytest.approx(margin, abs=1e-6)
    assert loss == pytest.approx(-(2 / 0.1) * math.log(1 / (1 + math.exp(-0.1 * margin))), abs=1e-5)
    assert g[1, 0] < 0 and g[0, 0] < 0  # win tokens pushed up
    assert g[2, 3] > 0  # lose token pushed down (row 2 only predicts the forget answer)


# -- refusal family ------------------------------------------------------------------------------

def test_idk_nll_concat_and_sum():
    m = Bigram(W0)
    fi = part([0, 1, 3, 3, 3], 2)  # refusal "3 3 3": rows 1, 3, 3 (3 tokens)
    r = part([3, 0, 1], 1)  # retain answer "0 1": rows 3, 0 (2 tokens)
    s_f = -(lsm(W0[1])[3] + 2 * lsm(W0[3])[3])
    s_r = -(lsm(W0[3])[0] + lsm(W0[0])[1])
    loss, parts, g = run("idk_nll", m, {"forget_idk": fi, "retain": r})
    assert loss == pytest.approx((s_f + s_r) / 5, abs=1e-6)  # one token mean over both
    assert g[1, 3] < 0  # the refusal is pushed up
    loss, _, _ = run("idk_nll", m, {"forget_idk": fi, "retain": r}, combine="sum", gamma=1.0, alpha=2.0)
    assert loss == pytest.approx(s_f / 3 + 2 * s_r / 2, abs=1e-6)


def test_idk_ap_value_and_gradient():
    m = Bigram(W0)
    fi = part([0, 1, 3, 3], 2)  # forget question -> refusal "3 3"
    r = part([2, 0, 1], 1)  # retain answer "0 1": rows 2, 0
    ri = part([2, 3, 3], 1)  # same retain question -> refusal "3 3": rows 2, 3
    l_idk = -(lsm(W0[1])[3] + lsm(W0[3])[3]) / 2
    margin = (lsm(W0[2])[0] + lsm(W0[0])[1]) - (lsm(W0[2])[3] + lsm(W0[3])[3])
    beta = 0.1
    l_ap = -(1 / beta) * math.log(1 / (1 + math.exp(-beta * margin)))
    loss, parts, g = run("idk_ap", m, {"forget_idk": fi, "retain": r, "retain_idk": ri})
    assert parts["ap_margin"] == pytest.approx(margin, abs=1e-6)
    assert parts["retain"] == pytest.approx(l_ap, abs=1e-5)
    assert loss == pytest.approx(l_idk + l_ap, abs=1e-5)
    assert g[2, 0] < 0  # the retain question's true answer is pushed up...
    assert g[2, 3] > 0  # ...and the refusal to it down


# -- representation ------------------------------------------------------------------------------

class TinyStack(torch.nn.Module):
    """Embedding -> 2 linear "decoder layers" -> head; RMU hooks layers[l]."""

    def __init__(self, d=3):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(V, d)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(d, d), torch.nn.Linear(d, d)])
        self.head = torch.nn.Linear(d, V)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        h = self.emb(input_ids)
        for layer in self.layers:
            h = layer(h)
        return SimpleNamespace(logits=self.head(h))


def test_rmu_value_vector_and_frozen_params():
    m = TinyStack()
    f = part([0, 1, 2, 3], 2)
    r = part([3, 2, 1], 1)
    h_ref = layer_output(m, r, 0).detach() + 0.5

    class Ref:
        def hidden(self, name, p, layer):
            assert (name, layer) == ("retain", 0)
            return h_ref

    obj = get_objective("rmu")
    ctx = ObjectiveContext(hp=obj.resolve(layer=0, steering_coeff=3.0, trainable=r"layers\.0\."), ref=Ref())
    loss, parts = obj(m, {"forget": f, "retain": r}, ctx)
    u = torch.rand(3, generator=torch.Generator().manual_seed(0))
    cu = 3.0 * u / u.norm()
    assert torch.allclose(ctx.state["rmu"]["control"], cu)
    h_f = layer_output(m, f, 0)
    l_f = ((h_f[0, 2:] - cu) ** 2).mean()  # answer tokens only (positions 2, 3)
    assert parts["forget"] == pytest.approx(float(l_f.detach()), abs=1e-6)
    assert parts["retain"] == pytest.approx(0.25, abs=1e-6)  # (0.5)^2 on every dim and token
    assert loss.item() == pytest.approx(float(l_f.detach()) + 0.25, abs=1e-5)
    loss.backward()
    assert m.layers[0].weight.grad is not None
    assert not m.layers[1].weight.requires_grad and not m.emb.weight.requires_grad  # outside 'trainable'
    with pytest.raises(ValueError, match="layer=5 is out of range.*2 decoder layers"):
        obj(m, {"forget": f}, ObjectiveContext(hp=obj.resolve(layer=5, alpha=0)))
    assert decoder_layers(m) is m.layers


def test_rmu_relative_coefficient_scales_with_activation_norm():
    m = TinyStack()
    f = part([0, 1, 2, 3], 2)
    obj = get_objective("rmu")
    ctx = ObjectiveContext(hp=obj.resolve(layer=-1, steering_coeff=2.0, coeff_mode="relative", alpha=0))
    obj(m, {"forget": f}, ctx)
    norm = layer_output(m, f, 1)[0, 2:].norm(dim=-1).mean()
    assert ctx.state["rmu"]["c"] == pytest.approx(2.0 * float(norm), rel=1e-5)
    assert ctx.state["rmu"]["control"].norm().item() == pytest.approx(2.0 * float(norm), rel=1e-5)


# -- distillation --------------------------------------------------------------------------------

def test_undial_targets_and_fixed_point():
    ref_lp = torch.log_softmax(torch.tensor([[[1.0, 2.0, 0.0, 0.0]]]), -1)
    q = undial_targets(ref_lp, torch.tensor([[1]]), beta=2.0)
    expect = torch.softmax(torch.tensor([1.0, 0.0, 0.0, 0.0]), -1)  # token 1's logit lowered by 2
    assert torch.allclose(q[0, 0], expect, atol=1e-6)
    # the model already equal to q at the answer positions: loss = entropy(q), gradient 0 there
    ref = Bigram(W0)
    f = part(F_IDS, F_PROMPT)
    beta = 1.5
    W = torch.tensor(W0)
    W[1, 2] -= beta  # rows 1 and 2 predict the answer tokens 2 and 3
    W[2, 3] -= beta
    m = Bigram(W)
    loss, _, g = run("undial", m, {"forget": f}, ref=FakeRef(model=ref), beta=beta)
    ent = sum(-(p * p.log()).sum().item() for p in torch.softmax(W[[1, 2]], -1))
    assert loss == pytest.approx(ent / 2, abs=1e-5)
    assert g.abs().max() < 1e-6
    # from the reference itself, descent lowers the true token's logit
    _, _, g = run("undial", Bigram(W0), {"forget": f}, ref=FakeRef(model=ref), beta=beta)
    assert g[1, 2] > 0 and g[2, 3] > 0


# -- entropy -------------------------------------------------------------------------------------

def test_uniform_kl_and_me_value():
    assert uniform_kl(torch.zeros(2, V)).abs().max() < 1e-6  # uniform: 0
    m = Bigram(W0)
    loss, _, g = run("me", m, fbatch())
    kls = [-math.log(V) - sum(lsm(W0[r])) / V for r in (1, 2)]
    assert loss == pytest.approx(sum(kls) / 2, abs=1e-6)
    # descent lowers the largest logit of each answer row and raises the smallest
    assert g[1, 2] > 0 and g[1, 3] < 0 and g[2, 3] > 0 and g[2, 2] < 0
    assert g[0].abs().max() == 0 and g[3].abs().max() == 0  # question positions are masked


def test_me_mask_modes_include_question_and_padding():
    m = Bigram(W0)
    f = part(F_IDS, F_PROMPT, pad=2)  # positions 0..4 predict tokens 1, 2, 3, pad, pad
    kl = lambda r: -math.log(V) - sum(lsm(W0[r])) / V  # noqa: E731
    loss_a, _, _ = run("me", m, {"forget": f})
    loss_t, _, _ = run("me", m, {"forget": f}, mask_mode="attended")
    loss_f, _, _ = run("me", m, {"forget": f}, mask_mode="full_sequence_incl_padding")
    assert loss_a == pytest.approx((kl(1) + kl(2)) / 2, abs=1e-6)
    assert loss_t == pytest.approx((kl(0) + kl(1) + kl(2)) / 3, abs=1e-6)
    assert loss_f == pytest.approx((kl(0) + kl(1) + kl(2) + kl(3) + kl(0)) / 5, abs=1e-6)  # rows of 3, pad=0
    obj = get_objective("me")
    ctx = ObjectiveContext(hp=obj.resolve(mask_mode="full_sequence_incl_padding", pad_to_length=10),
                           tokenizer=SimpleNamespace(pad_token_id=0))
    loss10, _ = obj(m, {"forget": f}, ctx)
    assert loss10.item() == pytest.approx((kl(0) + kl(1) + kl(2) + kl(3) + 5 * kl(0)) / 9, abs=1e-6)


def test_me_gd_weights():
    m = Bigram(W0)
    r = part([3, 0, 1], 1)
    me, _, _ = run("me", m, fbatch())
    _, parts_r, _ = run("graddiff", m, fbatch(retain=r))
    loss, parts, _ = run("me_gd", m, fbatch(retain=r))
    assert loss == pytest.approx(0.1 * me + parts_r["retain"], abs=1e-6)


def test_position_mask_modes():
    f = part(F_IDS, F_PROMPT, pad=1)
    for mode, n in (("answer", 2), ("attended", 3), ("all", 4)):
        assert int(position_mask(f, mode)[0].sum()) == n


# -- beliefs -------------------------------------------------------------------------------------

def test_bs_t_soft_target_and_value():
    z = torch.tensor([[[0.0, 2.0, 1.0, -1.0]]])
    t = soft_targets(z, torch.tensor([[2]]), lam=0.4, top_k=2)
    top = torch.softmax(torch.tensor([2.0, 1.0]), -1)
    expect = torch.tensor([0.0, 0.4 * top[0], 0.4 * top[1] + 0.6, 0.0])
    assert torch.allclose(t[0, 0], expect, atol=1e-6) and t.sum().item() == pytest.approx(1.0)
    m = Bigram(W0)
    lam, k = 0.5, 2
    loss, _, _ = run("bs_t", m, fbatch(), lam=lam, top_k=k, alpha=0)
    ces = []
    for row, y in ((1, 2), (2, 3)):
        lp = lsm(W0[row])
        top = sorted(range(V), key=lambda v: -W0[row][v])[:k]
        b = torch.softmax(torch.tensor([W0[row][v] for v in top]), -1)
        tv = [0.0] * V
        for j, v in enumerate(top):
            tv[v] += lam * float(b[j])
        tv[y] += 1 - lam
        ces.append(-sum(tv[v] * lp[v] for v in range(V)))
    assert loss == pytest.approx(-sum(ces) / 2, abs=1e-6)


def test_bs_t_reduces_to_ga_and_pushes_beliefs_down():
    m = Bigram(W0)
    loss0, _, g0 = run("bs_t", m, fbatch(), lam=0.0, alpha=0)
    loss_ga, _, g_ga = run("ga", m, fbatch())
    assert loss0 == pytest.approx(loss_ga, abs=1e-6) and torch.allclose(g0, g_ga, atol=1e-6)
    # row 2 predicts token 3 (target); its strongest competitor is token 1. GA raises the competitor
    # (negative gradient: the squeezing); BS-T with a small belief set pushes it down instead.
    _, _, g = run("bs_t", m, fbatch(), lam=0.9, top_k=2, alpha=0)
    assert g_ga[2, 1] < 0 < g[2, 1]
    assert g[2, 3] > 0  # the target itself still goes down


def test_bs_t_npo_base_matches_formula():
    m = Bigram(W0)
    W1 = torch.tensor(W0) + torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0], [0.3, 0.0, 0.0, 0.0],
                                          [0.0, 0.0, 0.0, 0.0]])
    ref = FakeRef(model=Bigram(W1))
    lam, k, beta = 0.5, 3, 0.2
    loss, _, _ = run("bs_t", m, fbatch(), ref=ref, lam=lam, top_k=k, base="npo", beta=beta, alpha=0)
    f = part(F_IDS, F_PROMPT)
    lg = m.W.detach()[f["input_ids"]][:, :-1]
    tgt = f["labels"][:, 1:].clamp_min(0)
    mask = f["labels"][:, 1:] != -100
    t = soft_targets(lg, tgt, lam, k)
    s = ((t * torch.log_softmax(lg, -1)).sum(-1) * mask).sum()
    s_ref = ((t * torch.log_softmax(W1[f["input_ids"]][:, :-1], -1)).sum(-1) * mask).sum()
    assert loss == pytest.approx(float(-(2 / beta) * F.logsigmoid(-beta * (s - s_ref))), abs=1e-5)


def test_bs_s_cache_refresh_and_mixture(tiny, monkeypatch):
    """BS-S samples once per example id, reuses the samples until they are regen_every steps old,
    and mixes (1-lam) L(D_u) + lam L(D^_u). Sampling is replaced by a counter (no model needed)."""
    from datasets import Dataset

    from unlearnkit import scoring
    from unlearnkit.data import encode_pairs

    _, tok = tiny
    calls = []

    def fake_generate(model, tokenizer, questions, **kw):
        calls.append((list(questions), kw["seed"]))
        assert kw["do_sample"]
        return [f"sample {len(calls)} for {q}" for q in questions for _ in range(kw["num_return_sequences"])]

    monkeypatch.setattr(scoring, "generate", fake_generate)
    raw = Dataset.from_dict({"id": [10, 11], "question": ["q a?", "q b?"], "answer": ["a.", "b."]})
    enc = encode_pairs(tok, raw["question"], raw["answer"])
    enc["index"] = torch.arange(2)
    Vt = len(tok)
    m = Bigram(torch.randn(Vt, Vt, generator=torch.Generator().manual_seed(0)))
    obj = get_objective("bs_s")
    ctx = ObjectiveContext(hp=obj.resolve(regen_every=3, n_samples=2, lam=0.25, alpha=0), tokenizer=tok,
                           raw={"forget": raw})
    batch = {"forget": enc}
    for step in range(7):
        ctx.step = step
        loss, parts = obj(m, batch, ctx)
    assert [c[1] for c in calls] == [0, 3, 6]  # sampled at steps 0, 3, 6 (seed = step with sample_seed 0)
    assert set(ctx.state["bs_s"]["cache"]) == {10, 11} and parts["n_samples"] == 4
    samples = ctx.state["bs_s"]["cache"][10]["samples"]
    assert samples == ["sample 3 for q a?", "sample 3 for q a?"]
    # the loss is the documented mixture of two GA terms
    from unlearnkit.losses import nll

    s_enc = encode_pairs(tok, ["q a?"] * 2 + ["q b?"] * 2, samples + ctx.state["bs_s"]["cache"][11]["samples"])
    l_u = -nll(m(enc["input_ids"]).logits, enc["labels"])
    l_s = -nll(m(s_enc["input_ids"]).logits, s_enc["labels"])
    assert loss.item() == pytest.approx(float(0.75 * l_u + 0.25 * l_s), abs=1e-5)
