"""The unlearning loop: effect of GA, the original model untouched, seeds, errors, divergence."""

import copy
import warnings

import numpy as np
import pytest
import torch

from unlearnkit import list_objectives, unlearn


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ga_run(quick_world, tiny):
    model, tok = tiny
    before = _state(model)
    res = unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", progress=False)
    return before, res


def test_ga_lowers_forget_probability_far_more_than_retain(ga_run):
    """Default GA (20 steps, lr 1e-4, batch 8) on the quick world. Measured: forget target mass
    0.65 -> ~0.001 (>100x), retain target mass 0.66 -> ~0.32 (~2x). Meanwhile the paraphrase
    gains mass on the forget questions (the squeezing effect)."""
    _, res = ga_run
    s = res.summary()
    first, last = s.step.min(), s.step.max()

    def mass(split, q, step):
        return s[(s.split == split) & (s.quantity == q) & (s.step == step)].value.item()

    f0, f1 = mass("forget", "target", first), mass("forget", "target", last)
    r0, r1 = mass("retain", "target", first), mass("retain", "target", last)
    assert f0 / f1 >= 10
    assert r0 / r1 < (f0 / f1) / 10
    para = s[(s.split == "forget") & (s.quantity == "paraphrase")].set_index("step").value
    assert para.max() > para.loc[first] + 0.2  # mass squeezed into the paraphrase at some step


def test_original_model_unchanged(ga_run, tiny):
    before, res = ga_run
    model = tiny[0]
    after = model.state_dict()
    assert set(before) == set(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.model is not model
    assert any(not torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), before.values()))


def test_lora_run_leaves_original_untouched(quick_world, tiny):
    model, tok = tiny
    before = _state(model)
    res = unlearn(model, tok, quick_world.forget, method="ga", lora=True, steps=3, probe_every=0, progress=False)
    assert hasattr(res.model, "disable_adapter")
    assert not any("lora" in n for n, _ in model.named_modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_numbers(quick_world, tiny):
    model, tok = tiny
    kw = dict(method="graddiff", steps=4, probe_size=3, progress=False, seed=7)
    a = unlearn(model, tok, quick_world.forget, quick_world.retain, **kw)
    b = unlearn(model, tok, quick_world.forget, quick_world.retain, **kw)
    assert a.log.loss.tolist() == b.log.loss.tolist()
    assert a.probes.value.tolist() == b.probes.value.tolist()
    assert set(a.probes.split) == {"forget", "retain"}
    c = unlearn(model, tok, quick_world.forget, quick_world.retain, retain_probes=False, **kw)
    assert set(c.probes.split) == {"forget"} and c.log.loss.tolist() == a.log.loss.tolist()
    f = a.probes[a.probes.split == "forget"].reset_index(drop=True)
    assert f.value.tolist() == c.probes.reset_index(drop=True).value.tolist()


def test_errors_name_the_problem(quick_world, tiny):
    model, tok = tiny
    with pytest.raises(KeyError, match=r"unknown objective .gradient_ascentx.*valid choices: .*\bga\b.*graddiff"):
        unlearn(model, tok, quick_world.forget, method="gradient_ascentx")
    with pytest.raises(ValueError, match="needs retain data"):
        unlearn(model, tok, quick_world.forget, method="graddiff")
    with pytest.raises(ValueError, match=r"lr=-1.*valid range"):
        unlearn(model, tok, quick_world.forget, method="ga", lr=-1)
    with pytest.raises(ValueError, match=r"objective 'graddiff'.*alpha=-2.*valid range: \[0, inf\)"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, method="graddiff", alpha=-2)
    with pytest.raises(ValueError, match="unknown parameter.*betta"):
        unlearn(model, tok, quick_world.forget, method="ga", betta=1)
    assert "ga" in list_objectives() and "graddiff" in list_objectives()


def test_divergence_stops_cleanly(quick_world, tiny):
    model, tok = tiny
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = unlearn(model, tok, quick_world.forget, method="ga", lr=1e4, max_grad_norm=0, steps=50,
                      probe_every=0, progress=False)
    assert res.stopped is not None and ("loss became" in res.stopped or "gradient" in res.stopped)
    assert len(res.log) < 50
    assert any("stopped early" in str(x.message) for x in w)


def test_save_is_atomic_and_never_overwrites(ga_run, tmp_path):
    _, res = ga_run
    out = res.save(tmp_path / "run")
    assert (out / "config.json").exists() and (out / "probes.csv").exists() and (out / "run.json").exists()
    with pytest.raises(FileExistsError):
        res.save(tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folders left behind
    from unlearnkit import load_model

    m, _ = load_model(out)
    assert torch.equal(next(iter(m.state_dict().values())), next(iter(res.model.state_dict().values())))


def test_deepcopy_not_needed_by_caller(quick_world, tiny):
    """unlearn() works on a model the caller keeps using afterwards (its own copy semantics)."""
    model, tok = tiny
    mine = copy.deepcopy(model)
    unlearn(mine, tok, quick_world.forget, method="ga", steps=1, probe_every=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), model.state_dict().values()))


def test_keep_best_holds_the_best_probed_step(quick_world, tiny):
    """keep='best' returns the weights of the probed step with the largest retain-minus-forget
    target mass (measured on the quick world, GA lr 3e-4, 4 probe rows: step 5 of 0..20, gap 0.34 vs
    0.015 before and 0.017 at the end), and those
    weights reproduce that step's probes."""
    from unlearnkit.probes import keep_score, probe

    model, tok = tiny
    res = unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", steps=20, lr=3e-4, probe_every=5,
                  probe_size=4, keep="best", token_probes=False, progress=False)
    gaps = {s: keep_score(res.probes, s)["gap"] for s in sorted(set(res.probes.step))}
    assert res.kept_step == max(gaps, key=gaps.get)
    assert 0 < res.kept_step < 20 and len(res.log) == 20  # trained on, then went back
    again = probe(res.model, tok, quick_world.forget.select(range(4)), split="forget", step=res.kept_step)
    rec = res.probes[(res.probes.step == res.kept_step) & (res.probes.split == "forget")]
    want = rec[rec.quantity == "target"].value.to_numpy()
    assert np.allclose(again[again.quantity == "target"].value.to_numpy(), want, rtol=1e-4)
    assert f"kept step {res.kept_step}" in repr(res)


def test_keep_first_forgotten_stops_there(quick_world, tiny):
    from unlearnkit.probes import keep_score

    model, tok = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a planned stop is not a divergence
        res = unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", steps=40, lr=1e-4,
                      probe_every=2, probe_size=4, keep="first_forgotten", forget_threshold=0.3, token_probes=False,
                      progress=False)
    steps = sorted(set(res.probes.step))
    mass = [keep_score(res.probes, s)["forget_target"] for s in steps]
    assert res.kept_step == steps[-1] == len(res.log) < 40
    assert mass[-1] <= 0.3 < mass[-2]
    assert "forget_threshold=0.3" in res.stopped
    with pytest.warns(UserWarning, match="never fell"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", steps=2, probe_every=1, probe_size=2,
                keep="first_forgotten", forget_threshold=0.0, token_probes=False, progress=False)


def test_keep_policy_errors_name_the_parameter(quick_world, tiny):
    model, tok = tiny
    kw = dict(method="ga", steps=1, progress=False)
    with pytest.raises(ValueError, match="probe_every"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, keep="best", probe_every=0, **kw)
    with pytest.raises(ValueError, match="retain probes"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, keep="best", retain_probes=False, **kw)
    with pytest.raises(ValueError, match="keep"):
        unlearn(model, tok, quick_world.forget, quick_world.retain, keep="median", **kw)


def test_inplace_trains_the_given_object_with_the_same_numbers(quick_world, tiny):
    """inplace=True skips the deep copy (one copy of the weights less for big models): the object
    passed is the one trained, and the run is the same as on a copy."""
    model, tok = tiny
    kw = dict(method="ga", steps=3, probe_every=0, progress=False, seed=3)
    ref = unlearn(model, tok, quick_world.forget, **kw)
    mine = copy.deepcopy(model)
    res = unlearn(mine, tok, quick_world.forget, inplace=True, **kw)
    assert res.model is mine and res.log.loss.tolist() == ref.log.loss.tolist()
    mine = copy.deepcopy(model)
    res = unlearn(mine, tok, quick_world.forget, inplace=True, lora=True, **kw)
    assert res.model.get_base_model() is mine and any("lora" in n for n, _ in mine.named_modules())
