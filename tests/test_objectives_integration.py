"""Every objective on the quick miniature world: its documented effect, LoRA, the reference model
without a copy, and hyperparameters flowing through ``unlearn()``.

Runs are kept to a few seconds (few steps, probes only at the first and last step, small probe
sets) and shared between assertions through module-scoped fixtures. The numbers quoted in the
docstrings were measured on the quick world (seed 0) with these exact settings.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from unlearnkit import unlearn
from unlearnkit.objectives import AdapterReference, CachedReference, ObjectiveContext, get_objective
from unlearnkit.scoring import generate, score_pairs

ALL = ["ga", "graddiff", "kl", "npo", "simnpo", "dpo", "idk_dpo", "idk_nll", "rmu", "undial", "me", "me_gd",
       "idk_ap", "bs_t", "bs_s"]
#: objective-specific settings needed on the 4-layer miniature (RMU's default layer 7 does not exist there)
EXTRA = {"rmu": {"layer": 2}, "bs_s": {"sample_max_new_tokens": 24}}
REFUSAL = "I don't know."
QUIET = dict(progress=False, token_probes=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The miniature's matrices are tiny: one thread is fastest, and it avoids the OpenMP spin-wait
    slowdowns measured on a busy 2-core machine (a 2-step LoRA run: 1.4 s vs 21 s). Restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(quick_world, tiny):
    """Memoized ``unlearn`` runs: ``runs(method, **hp)`` trains once per distinct setting."""
    model, tok = tiny
    cache = {}

    def get(method, **hp):
        key = (method, tuple(sorted(hp.items())))
        if key not in cache:
            kw = {"probe_size": 8, **EXTRA.get(method, {}), **hp}
            kw.setdefault("probe_every", kw.get("steps", 20))  # probes at the first and last step only
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[key] = unlearn(model, tok, quick_world.forget, quick_world.retain, method=method, **QUIET, **kw)
        return cache[key]

    return get


def mass(res, quantity, split="forget", step="last"):
    s = res.summary()
    s = s[(s.split == split) & (s.quantity == quantity)]
    st = s.step.max() if step == "last" else s.step.min() if step == "first" else step
    return float(s[s.step == st].value.item())


# -- hyperparameters and data through unlearn() --------------------------------------------------

def test_hyperparameters_flow_and_bad_ones_raise(quick_world, tiny):
    model, tok = tiny
    f, r = quick_world.forget, quick_world.retain
    res = unlearn(model, tok, f, r, method="npo", beta=0.2, alpha=0.5, steps=1, probe_every=0, **QUIET)
    assert res.hparams["beta"] == 0.2 and res.hparams["alpha"] == 0.5 and res.hparams["gamma"] == 1.0
    with pytest.raises(ValueError, match=r"objective 'npo'.*beta=-0.1.*valid range: \(0, inf\)"):
        unlearn(model, tok, f, r, method="npo", beta=-0.1, **QUIET)
    with pytest.raises(ValueError, match=r"objective 'bs_t'.*lam=2.*valid range: \[0, 1\]"):
        unlearn(model, tok, f, r, method="bs_t", lam=2, **QUIET)
    with pytest.raises(ValueError, match=r"objective 'me'.*mask_mode='padding'.*one of 'answer'"):
        unlearn(model, tok, f, r, method="me", mask_mode="padding", **QUIET)
    with pytest.raises(ValueError, match=r"objective 'simnpo'.*unknown parameter.*betta.*valid parameters: beta"):
        unlearn(model, tok, f, r, method="simnpo", betta=1, **QUIET)
    with pytest.raises(ValueError, match=r"layer=7 is out of range.*4 decoder layers"):
        unlearn(model, tok, f, r, method="rmu", steps=1, probe_every=0, **QUIET)  # the WMDP default layer


@pytest.mark.parametrize("method", ["npo", "idk_ap", "me_gd", "bs_s", "rmu", "idk_nll"])
def test_missing_retain_set_raises(quick_world, tiny, method):
    model, tok = tiny
    with pytest.raises(ValueError, match=f"objective {method!r} needs retain data"):
        unlearn(model, tok, quick_world.forget, None, method=method, **EXTRA.get(method, {}), **QUIET)


def test_alpha_zero_needs_no_retain_set(quick_world, tiny):
    model, tok = tiny
    res = unlearn(model, tok, quick_world.forget, None, method="npo", alpha=0, steps=2, probe_every=0, **QUIET)
    assert list(res.log.columns).count("retain") == 0 and len(res.log) == 2


def test_idk_bank_from_a_file(quick_world, tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, method="idk_nll", idk=tmp_path / "nowhere.txt",
                **QUIET)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no sentences"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, method="idk_nll", idk=empty, **QUIET)
    bank = tmp_path / "bank.txt"
    bank.write_text(REFUSAL + "\n")
    res = unlearn(model, tok, quick_world.forget, quick_world.retain, method="idk_nll", idk=bank, steps=2,
                  probe_every=0, **QUIET)
    assert len(res.log) == 2 and np.isfinite(res.log.loss).all()


# -- LoRA and the reference model without a copy -------------------------------------------------

@pytest.mark.parametrize("method", ALL)
def test_every_objective_runs_under_lora(quick_world, tiny, method):
    model, tok = tiny
    res = unlearn(model, tok, quick_world.forget, quick_world.retain, method=method, lora=True, steps=2,
                  probe_every=0, idk=[REFUSAL], **EXTRA.get(method, {}), **QUIET)
    assert hasattr(res.model, "disable_adapter") and res.stopped is None
    assert len(res.log) == 2 and np.isfinite(res.log.loss).all()
    moved = [n for n, p in res.model.named_parameters() if "lora_B" in n and p.abs().max() > 0]
    assert moved, "no LoRA weight was trained"
    assert not any("lora" in n for n, _ in model.named_parameters())  # the target model is untouched


@pytest.fixture(scope="module")
def lora_npo(quick_world, tiny):
    model, tok = tiny
    return unlearn(model, tok, quick_world.forget, quick_world.retain, method="npo", lora=True, steps=3,
                   lr=1e-3, probe_every=0, **QUIET)


def _encoded(tok, data, n=6):
    from unlearnkit.data import encode_pairs

    enc = encode_pairs(tok, data["question"][:n], data["answer"][:n])
    enc["index"] = torch.arange(n)
    return enc


def test_disabled_adapter_reference_equals_the_base_model_exactly(quick_world, tiny, lora_npo):
    """The reference under LoRA is the trained model with its adapter disabled: bit-for-bit the
    original model's log-probs, activations and sequence log-probs, with no copy of the weights."""
    model, tok = tiny
    trained = lora_npo.model
    part = _encoded(tok, quick_world.forget)
    ref = AdapterReference(trained)
    with torch.no_grad():
        base_logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
        live_logits = trained(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
    assert torch.equal(ref.logprobs("forget", part), torch.log_softmax(base_logits.float(), -1))
    assert not torch.allclose(live_logits, base_logits, atol=1e-4)  # the adapter itself did move
    from unlearnkit.losses import seq_logprob
    from unlearnkit.models.layers import layer_output

    assert torch.equal(ref.seq_logprob("forget", part), seq_logprob(base_logits, part["labels"]))
    with torch.no_grad():
        assert torch.equal(ref.hidden("forget", part, 1), layer_output(model, part, 1).float())
    # the reference shares the trained model's base weights: no second copy of them exists
    base_ptrs = {p.data_ptr() for n, p in trained.named_parameters() if "lora" not in n}
    assert len(base_ptrs) == sum(1 for n, _ in trained.named_parameters() if "lora" not in n)
    assert ref.model is trained


def test_cached_reference_matches_the_original_model(quick_world, tiny):
    model, tok = tiny
    data = {"forget": _encoded(tok, quick_world.forget, 10), "retain": _encoded(tok, quick_world.retain, 5)}
    cache = CachedReference.build(model, data, {("forget", "seq_logprob"), ("retain", "logprobs"), ("retain", "hidden:-1")},
                                  batch_size=4)
    from unlearnkit.data import select
    from unlearnkit.losses import seq_logprob
    from unlearnkit.models.layers import layer_output

    rows = torch.tensor([7, 2, 9])
    part = select(data["forget"], rows)
    with torch.no_grad():
        want = seq_logprob(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits,
                           part["labels"])
    assert torch.allclose(cache.seq_logprob("forget", part), want, atol=1e-5)
    rpart = select(data["retain"], torch.tensor([4, 0]))
    with torch.no_grad():
        lg = model(input_ids=rpart["input_ids"], attention_mask=rpart["attention_mask"]).logits
        h = layer_output(model, rpart, -1)
    assert torch.allclose(cache.logprobs("retain", rpart), torch.log_softmax(lg.float(), -1), atol=1e-5)
    assert torch.allclose(cache.hidden("retain", rpart, -1), h.float(), atol=1e-5)
    with pytest.raises(KeyError, match="was not cached"):
        cache.seq_logprob("retain", rpart)


# -- documented effects --------------------------------------------------------------------------

def test_ga_and_npo_lower_forget_mass_and_squeeze_it_into_the_paraphrase(runs):
    """GA and NPO at lr 1e-4, 12 steps. Measured: forget target mass 0.654 -> 0.024 (GA) / 0.025
    (NPO), while the paraphrase (phrasing B, which states the same fact) rises 0.330 -> 0.936:
    the mass is squeezed into another answer, not removed (the squeezing effect)."""
    for method in ("ga", "npo"):
        res = runs(method, steps=12, lr=1e-4)
        t0, t1 = mass(res, "target", step="first"), mass(res, "target")
        assert t1 < 0.1 * t0, method
        assert mass(res, "paraphrase") > mass(res, "paraphrase", step="first") + 0.3, method
        assert res.log.forget.iloc[-1] < res.log.forget.iloc[0], method  # the forget term went down


def test_simnpo_removes_both_phrasings_and_keeps_retain(runs):
    """SimNPO at lr 1e-3, 12 steps (defaults: beta 4.5, gamma 0.125, retain NLL). Measured: forget
    target 0.654 -> 0.000 and paraphrase 0.330 -> 0.000, retain target 0.656 -> 0.866."""
    res = runs("simnpo", steps=12, lr=1e-3)
    assert mass(res, "target") < 0.01 and mass(res, "paraphrase") < 0.01
    assert mass(res, "target", "retain") > 0.5


def test_retain_terms_protect_retain_answers(runs):
    """lr 3e-4, 30 steps. Measured retain target mass (Xeon with AVX-512/AMX): GA 0.656 -> 1e-6,
    KL-Min -> 0.075, GradDiff (retain NLL) -> 0.386; the forget target goes below 1e-20 in all three.
    A gentler rate than the collapse regime: at lr 1e-3 KL-Min kept 0.039 after 15 steps on one
    machine's build of the quick model and 6e-8 on this one (it collapses between steps 10 and 15,
    where float bits decide when); here every margin is an order of magnitude or more."""
    ga, kl, gd = (runs(m, steps=30, lr=3e-4) for m in ("ga", "kl", "graddiff"))
    for res in (ga, kl, gd):
        assert mass(res, "target") < 0.01
    r_ga, r_kl, r_gd = (mass(r, "target", "retain") for r in (ga, kl, gd))
    assert r_ga < 0.01 and r_kl > 5 * max(r_ga, 1e-3) and r_gd > r_ga + 0.1


def test_dpo_moves_mass_to_the_preferred_answer(quick_world, tiny, runs):
    """DPO (preferred = the first perturbed answer) at lr 3e-4, 12 steps. Measured: log-prob of the
    preferred answer -14.1 -> -5.9, of the forget answer -0.43 -> -12.6; the preferred answer is
    the likelier one for 8 of 10 forget questions. NPO (lr 1e-3) instead lowers both (-65.9)."""
    model, tok = tiny
    f = quick_world.forget
    alt = [p[0] for p in f["perturbed_answer"]]

    def lp(m, answers):
        return score_pairs(m, tok, f["question"], answers)["logprob"]

    res = runs("dpo", steps=12, lr=3e-4)
    a0, a1 = lp(model, alt).mean(), lp(res.model, alt)
    t1 = lp(res.model, f["answer"])
    assert a1.mean() > a0 + 5
    assert (a1 > t1).mean() >= 0.7 and t1.mean() < lp(model, f["answer"]).mean() - 5


def test_me_raises_forget_entropy_to_near_log_vocab_and_ga_does_not(runs, tiny):
    """lr 1e-3, 10 steps; log V = log 640 = 6.46 nats. Measured mean predictive entropy at forget
    answer positions: ME 0.091 -> 6.02 (93% of log V); GA 0.091 -> 0.071 (GA makes the model
    confidently wrong, ME makes it uncertain). ME alone also floods retain (entropy 5.1, retain mass
    0.000); ME+GD keeps retain mass at 0.758 with forget entropy 4.37."""
    log_v = math.log(len(tiny[1]))
    me, ga, me_gd = runs("me", steps=10, lr=1e-3), runs("ga", steps=10, lr=1e-3), runs("me_gd", steps=10, lr=1e-3)
    assert mass(me, "entropy") > 0.85 * log_v
    assert mass(ga, "entropy") < 0.2 * log_v
    assert mass(me_gd, "entropy") > 0.5 * log_v and mass(me_gd, "target", "retain") > 0.5
    assert mass(me, "target", "retain") < 0.05


@pytest.fixture(scope="module")
def refusals(quick_world, tiny):
    """IDK objectives at lr 3e-3, 40 steps, with a one-sentence bank (the miniature's tokenizer
    spells a refusal in ~11 byte-level tokens it never produced, so one sentence is learnt in a
    few seconds). Returns greedy answers on forget and on 20 retain questions, and the run."""
    model, tok = tiny
    retain_q = quick_world.retain.select(range(0, 80, 4))
    out = {}
    settings = {"idk_nll": {}, "idk_ap": {}, "idk_only": {"combine": "sum", "alpha": 0.0},
                "idk_dpo": {"beta": 0.01, "steps": 40}}
    for name, hp in settings.items():
        method = "idk_nll" if name == "idk_only" else name
        kw = {"steps": 40, "lr": 3e-3, **hp}
        res = unlearn(model, tok, quick_world.forget, quick_world.retain, method=method, idk=[REFUSAL],
                      probe_every=0, **QUIET, **kw)
        out[name] = {"res": res, "forget": generate(res.model, tok, quick_world.forget["question"]),
                     "retain": generate(res.model, tok, retain_q["question"]),
                     "retain_prob": score_pairs(res.model, tok, retain_q["question"], retain_q["answer"])["prob"].mean()}
    return out


def test_idk_objectives_make_forget_answers_a_refusal(refusals):
    """Measured (40 steps, lr 3e-3): IdkNLL and IDK+AP answer "I don't know." to 10/10 forget
    questions and to 0/20 retain questions. (At 30 steps IDK+AP answered 8/10 on an AMD
    EPYC/AVX-512 build of the quick model, whose float bits differ from the first calibration's.)"""
    for name in ("idk_nll", "idk_ap"):
        r = refusals[name]
        assert np.mean([g == REFUSAL for g in r["forget"]]) >= 0.9, (name, r["forget"][:3])
        assert np.mean([g == REFUSAL for g in r["retain"]]) == 0, (name, r["retain"][:3])


def test_idk_dpo_makes_the_refusal_likelier_than_the_forget_answer(quick_world, tiny, refusals):
    """IdkDPO (beta 0.01, 40 steps, lr 3e-3). Measured: log-prob of the refusal on forget questions
    -115.8 -> -5.1, of the forget answer -0.4 -> -322; the greedy answers are refusal-like but
    not exact ("Ionon't know."): DPO lowers the rejected answer far faster than it raises the
    chosen one. At the default beta 0.1 the log-sigmoid saturates first (40 steps: refusal -30.6,
    forget answer -14.7), which is why this test lowers beta."""
    model, tok = tiny
    f = quick_world.forget
    res = refusals["idk_dpo"]["res"]

    def lp(m, answers):
        return score_pairs(m, tok, f["question"], answers)["logprob"]

    r0, r1 = lp(model, [REFUSAL] * len(f)), lp(res.model, [REFUSAL] * len(f))
    t1 = lp(res.model, f["answer"])
    assert r1.mean() > r0.mean() + 80 and (r1 > t1).all()
    assert np.mean([g.endswith("know.") for g in refusals["idk_dpo"]["forget"]]) >= 0.5


def test_idk_ap_keeps_refusals_off_retain_questions(refusals):
    """The answer-preservation term against the IDK forget term alone (IdkNLL with combine='sum',
    alpha=0), both 40 steps at lr 3e-3. Measured: without AP the refusal spreads to retain
    questions (14/20 on the first calibration's build, 6/20 on an AMD EPYC/AVX-512 build) and retain
    answers collapse (length-normalized retain probability 0.001-0.002); with AP no retain question is
    refused and retain probability stays 0.32-0.49. TOFU's IdkNLL, whose retain NLL
    fits retain answers directly, keeps them better still on the miniature (0.79): the ordering
    reported by "A Closer Look" (AP over GD) is not reproduced at this scale."""
    only, ap, nll_ = refusals["idk_only"], refusals["idk_ap"], refusals["idk_nll"]
    assert np.mean([g == REFUSAL for g in only["retain"]]) >= 0.25
    assert np.mean([g == REFUSAL for g in ap["retain"]]) == 0
    assert ap["retain_prob"] > 0.2 > 100 * only["retain_prob"]
    assert nll_["retain_prob"] > 0.5


def test_bs_s_lowers_the_pre_unlearning_beliefs_more_than_ga(runs):
    """BS-S vs GA, both 12 steps at lr 1e-4 with no retain term. BS-S draws 8 answers per forget
    question from the original model once (regen_every beyond the run) and uses lam=0.9. Before
    unlearning the model's beliefs are phrasing A (the target, mass 0.654) and phrasing B (the
    paraphrase, 0.330). Measured: GA moves the mass from A to B (A 0.024, B 0.936: total 0.96);
    BS-S squeezes far less into B (A 0.305, B 0.373: total 0.68), and keeps retain mass higher (0.54
    vs 0.44). On an AMD EPYC/AVX-512 build of the quick model (other float bits) the squeeze is still
    smaller (B 0.59 vs 0.90) but the *total* is not (0.95 vs 0.94): the claim "BS-S lowers the
    beliefs' total mass" holds on one build only, so the test asserts the part that holds on both.
    With the BS code's lam=0.5 the miniature shows little difference (total 0.95); redrawing the
    samples every step cancels out in expectation (see ``bs_s``'s docstring)."""
    ga = runs("ga", steps=12, lr=1e-4)
    bs = runs("bs_s", steps=12, lr=1e-4, alpha=0.0, lam=0.9, n_samples=8, regen_every=1000)
    belief = {n: mass(r, "target") + mass(r, "paraphrase") for n, r in (("ga", ga), ("bs", bs))}
    assert belief["bs"] < belief["ga"] + 0.05  # not more belief mass left than GA (the total: see above)
    assert mass(bs, "paraphrase") < mass(ga, "paraphrase") - 0.3
    assert mass(bs, "target") < 0.6 * mass(bs, "target", step="first")
    assert bs.log.resampled.sum() == 10  # each of the 10 forget rows sampled exactly once...
    assert (bs.log.n_samples % 8 == 0).all()  # ...8 answers each (empty samples would be dropped)


def test_bs_t_unlearns_with_its_retain_term(runs):
    """BS-T with its defaults (lam 0.5, k 20, retain NLL), lr 1e-4, 12 steps. Measured: forget
    target 0.654 -> 0.102, retain target 0.656 -> 0.794. On the miniature the model is so sure at
    each answer position that the top-k belief is nearly one-hot on the target, so BS-T's squeeze
    (paraphrase 0.866) is close to GA's."""
    res = runs("bs_t", steps=12, lr=1e-4)
    assert mass(res, "target") < 0.3 * mass(res, "target", step="first")
    assert mass(res, "target", "retain") > 0.6


def test_rmu_scrambles_forget_answers_and_spares_retain(runs):
    """RMU at layer 2 of 4 (c=2, alpha=1), lr 1e-3, 12 steps. Measured: forget target 0.654 -> 0.000,
    retain target 0.656 -> 0.485; the forget activations' distance to the control vector falls."""
    res = runs("rmu", steps=12, lr=1e-3)
    assert mass(res, "target") < 0.01 and mass(res, "target", "retain") > 0.3
    assert res.log.forget.iloc[-1] < 0.5 * res.log.forget.iloc[0]


def test_undial_leaves_forget_positions_uncertain_not_confidently_wrong(runs):
    """UNDIAL (beta 10, no retain term) vs GA, both lr 3e-4, 12 steps. Measured: forget target
    0.654 -> 0.000 for both; forget entropy 0.091 -> 1.96 (UNDIAL: the teacher's other tokens share
    the mass) vs 0.19 (GA); retain mass 0.185 (UNDIAL) vs 0.148 (GA)."""
    und, ga = runs("undial", steps=12, lr=3e-4), runs("ga", steps=12, lr=3e-4)
    assert mass(und, "target") < 0.01 and mass(ga, "target") < 0.01
    assert mass(und, "entropy") > 3 * mass(ga, "entropy")
    assert (und.log.forget > 0).all()  # a cross-entropy: bounded below, unlike GA


@pytest.mark.parametrize("lora", [False, True])
def test_bs_s_npo_reference_of_sampled_answers(quick_world, tiny, lora):
    """BS-S with the NPO base needs pi_ref of answers that did not exist before training. Under LoRA
    it is exact (adapter disabled); with a cached reference the sampling model scores its own
    samples at sampling time, which at step 0 *is* the original model."""
    import copy

    from unlearnkit.data import encode_pairs
    from unlearnkit.losses import seq_logprob
    from unlearnkit.models import wrap_lora
    from unlearnkit.objectives import ObjectiveContext, get_objective

    model, tok = tiny
    work = copy.deepcopy(model)
    f = quick_world.forget
    part = _encoded(tok, f, 4)
    if lora:
        work = wrap_lora(work, True)
        ref = AdapterReference(work)
    else:
        ref = CachedReference.build(work, {"forget": part}, {("forget", "seq_logprob")})
    obj = get_objective("bs_s")
    ctx = ObjectiveContext(hp=obj.resolve(base="npo", n_samples=2, sample_max_new_tokens=24, alpha=0), ref=ref,
                           tokenizer=tok, raw={"forget": f})
    loss, parts = obj(work, {"forget": part}, ctx)
    assert torch.isfinite(loss) and parts["n_samples"] >= 1 and parts["resampled"] == 4
    entry = ctx.state["bs_s"]["cache"][f["id"][0]]
    assert entry["ref_source"] == ("reference" if lora else "model@step0")
    enc = encode_pairs(tok, [f["question"][0]] * len(entry["samples"]), entry["samples"])
    with torch.no_grad():
        want = seq_logprob(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits,
                           enc["labels"])
    assert torch.allclose(entry["ref"], want, atol=1e-4)


def test_cached_reference_is_valid_at_every_position(quick_world, tiny):
    """Rows of different lengths in different build chunks: with the reference equal to the model,
    KL over *all* positions (padding included) is 0, and UNDIAL "all" cached equals UNDIAL live.
    (Before the fix, chunks were trimmed to their own longest row and the rest filled with log-prob
    0: KL came out ~54 and UNDIAL 2.95 cached vs 1.65 live on TOFU-like rows.)"""
    from unlearnkit.data import select
    from unlearnkit.objectives.base import kl_ref_to_model

    model, tok = tiny
    enc = _encoded(tok, quick_world.retain, 12)
    lengths = enc["attention_mask"].sum(1)
    order = torch.argsort(lengths)  # short rows in the first build chunk, long ones in the last
    enc = {k: v[order] for k, v in enc.items()}
    enc["index"] = torch.arange(12)
    assert lengths.min() < lengths.max()
    cache = CachedReference.build(model, {"retain": enc}, {("retain", "logprobs")}, batch_size=3)
    part = select(enc, torch.tensor([0, 11, 4]))  # rows from three chunks, padded to the longest
    with torch.no_grad():
        logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
    kl = kl_ref_to_model(logits, cache.logprobs("retain", part), mask=None)
    assert abs(float(kl)) < 1e-6
    undial = get_objective("undial")
    hp = undial.resolve(positions="all")

    class Live:
        live = True

        def logprobs(self, name, p):
            with torch.no_grad():
                return torch.log_softmax(model(input_ids=p["input_ids"], attention_mask=p["attention_mask"])
                                         .logits.float(), -1)

    cached_loss, _ = undial(model, {"forget": {**part}}, ObjectiveContext(hp=hp, ref=_Renamed(cache, "retain")))
    live_loss, _ = undial(model, {"forget": {**part}}, ObjectiveContext(hp=hp, ref=Live()))
    assert float(cached_loss) == pytest.approx(float(live_loss), abs=1e-5)


class _Renamed:
    """A reference whose 'forget' lookups read another cached part (the test caches retain rows)."""

    live = False

    def __init__(self, ref, name):
        self.ref, self.name = ref, name

    def logprobs(self, name, part):
        return self.ref.logprobs(self.name, part)


def test_full_vocabulary_cache_over_budget_is_refused_before_training(quick_world, tiny):
    model, tok = tiny
    with pytest.raises(MemoryError, match="reference_cache_gb=1e-06.*lora=True"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, method="kl", steps=1, reference_cache_gb=1e-6,
                probe_every=0, progress=False)
