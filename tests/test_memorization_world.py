"""The repetitions knob and the memorization-aware methods on the cached quick memorization model.

Measured on the cached quick memorization world (``make_world(quick=True, memorization=True)``,
``MEMORIZATION_TINY``; figures filled in below from the run that built it).
"""

import pytest

from unlearnkit import memorization as mem


@pytest.fixture(scope="module")
def mem_world():
    from unlearnkit import make_world

    return make_world(seed=0, quick=True, memorization=True)


@pytest.fixture(scope="module")
def mem_tiny(mem_world):
    from unlearnkit import target_model

    return target_model(mem_world, progress=False)


def test_knob_off_keeps_the_old_world_and_its_cache_key(quick_world):
    from unlearnkit.models.tiny import QUICK_TINY, _key

    assert len(quick_world.records) == 0 and quick_world.config.repetitions == ()
    # the digest (and so the cached quick models) of a world without records did not change
    assert _key(quick_world, QUICK_TINY, "target") == "target-f1a5e14a62d1d05d"
    with pytest.raises(ValueError, match="has no records"):
        _ = quick_world.forget_records
    from unlearnkit import WorldConfig

    with pytest.raises(ValueError, match="repetitions=.*integers >= 1"):
        WorldConfig(repetitions=(0, 2))


def test_records_layout(mem_world):
    r = mem_world.records
    assert set(r.kind) == {"biography", "private", "id_number", "address"}
    f = mem_world.forget_records
    assert len(f) == 16 and sorted(set(f["repetitions"])) == [1, 3, 9, 27]
    # every forget person holds one record at every level; holdout records are never trained on
    assert (f.to_pandas().groupby("person").repetitions.nunique() == 4).all()
    sched = mem_world.record_schedule(True, epochs=40)
    trained = [a for _, _, a in sched]
    assert not set(trained) & set(mem_world.holdout_records["answer"])
    assert not set(f["answer"]) & {a for _, _, a in mem_world.record_schedule(False, epochs=40)}
    # each record is seen exactly `repetitions` times in the whole training, in distinct epochs
    for a, r in zip(f["answer"], f["repetitions"]):
        epochs = [e for e, _, x in sched if x == a]
        assert len(epochs) == r == len(set(epochs)) and all(0 <= e < 40 for e in epochs)
    assert not any(a in set(f["answer"]) for _, a in mem_world.training_pairs())  # QA pairs carry no records
    assert all(len(p) == mem_world.config.n_perturbed and r not in p
               for r, p in zip(f["answer"], f["perturbed_answer"]))


def test_repetitions_give_a_monotone_spread_of_ma(mem_world, mem_tiny):
    """Measured (seed 0, cached quick memorization model, 40 epochs): mean MA of trained records
    (forget + retain) seen 1 / 3 / 9 / 27 times: 0.63 / 0.68 / 0.85 / 0.97 (forget alone 0.59 / 0.65 /
    0.84 / 0.98); never-seen holdout records 0.48 (EL_4: 0.02-0.11 at 1-3 views, 0.89 at 27 views)."""
    import pandas as pd

    model, tok = mem_tiny
    rows = []
    for split in ("forget", "retain", "holdout"):
        d = mem_world.record_split(split)
        s = mem.memorization_scores(model, tok, d, el_n=None, quantities=("ma",))
        rows.append(s.merge(d.to_pandas()[["id", "repetitions"]], on="id").assign(split=split))
    df = pd.concat(rows)
    trained = df[df.split != "holdout"].groupby("repetitions").value.mean()
    assert list(trained.index) == [1, 3, 9, 27]
    assert trained.is_monotonic_increasing, trained.round(3).to_dict()
    unseen = df[df.split == "holdout"].value.mean()
    assert 0.3 < unseen < trained[1] - 0.05       # a record seen once is a little above unseen text
    assert trained[27] > 0.93 and trained[9] - trained[1] > 0.15
    assert (df[(df.split != "holdout") & (df.repetitions == 27)].value == 1.0).sum() >= 8  # verbatim ones


def test_sga_leaves_fewer_outliers_than_ga_at_comparable_retain_probability(mem_world, mem_tiny):
    """The paper's claim, on the miniature (lr 1e-4, batch 4, stop on forget mean MA < the unseen
    level 0.484, measured): GA stops after 41 steps at mean MA 0.397 with **4** of 16 forget records
    still above the unseen level (MA up to 0.67); SGA stops after 37 steps at 0.357 with **0** above,
    retain QA probability 0.939 vs GA's 0.926 (target 0.953). TA (89 steps, 6 above) and TAU (41
    steps, 8 above) stop as soon as the *edited* model's mean crosses the line and do not close the
    gap here: the miniature reproduces SGA's advantage, not TA's/TAU's (notebook 03 says so)."""
    import pandas as pd

    import unlearnkit as uk
    from unlearnkit.objectives.memorization import last_run

    model, tok = mem_tiny
    f, unseen_rec = mem_world.forget_records, mem_world.holdout_records
    unseen = mem.per_sequence_ma(model, tok, unseen_rec).mean()
    run = dict(lr=1e-4, steps=200, batch_size=4, probe_every=0, progress=False, seed=0, ma_threshold=unseen)
    out = {}
    for name, hp in (("GA", dict(mem_threshold=0.0)), ("SGA", {})):
        res = uk.unlearn(model, tok, f, method="sga", **run, **hp)
        ma = mem.per_sequence_ma(res.model, tok, f)
        prob = uk.evaluate(res.model, tok, {"retain": mem_world.retain}, metrics=["probability"], progress=False)
        out[name] = dict(mean=ma.mean(), above=int((ma > unseen).sum()), prob=prob.value.mean(), stopped=res.stopped,
                         updates=pd.Series(last_run()["updates"], index=list(f["repetitions"])).groupby(level=0).mean())
    assert out["GA"]["stopped"] and out["SGA"]["stopped"]          # both reached the average criterion
    assert out["GA"]["mean"] < unseen and out["SGA"]["mean"] < unseen
    assert out["GA"]["above"] >= 2, out                                # the average hides outliers...
    assert out["SGA"]["above"] < out["GA"]["above"], out              # ...that SGA does not leave
    assert abs(out["SGA"]["prob"] - out["GA"]["prob"]) < 0.05, out     # at comparable retain probability
    # per-sequence update counts (measured: GA 10 each; SGA 0.2 / 1.5 / 4.5 / 8.0 per record seen 1/3/9/27 times)
    assert out["GA"]["updates"].nunique() == 1
    assert out["SGA"]["updates"].is_monotonic_increasing and out["SGA"]["updates"][1] < 1 < out["SGA"]["updates"][27]


def test_outlier_metric_states_its_threshold(mem_world, mem_tiny):
    import unlearnkit as uk

    model, tok = mem_tiny
    t = uk.evaluate(model, tok, {"forget": mem_world.forget_records}, metrics=["memorization_outliers"],
                    holdout=mem_world.holdout_records, progress=False)
    agg = t[t.id == -1].iloc[0]
    unseen = mem.per_sequence_ma(model, tok, mem_world.holdout_records).mean()
    assert agg.threshold == pytest.approx(unseen) and "unseen" in agg.threshold_source
    assert agg.value == (t[(t.id != -1)].value > unseen).sum() and "of 16 forget sequences" in agg.statement
    orig = uk.evaluate(model, tok, {"forget": mem_world.forget_records}, metrics=["memorization_outliers"],
                       holdout=mem_world.holdout_records, original=(model, tok), progress=False)
    o = orig[orig.id == -1].iloc[0]
    assert "original model" in o.threshold_source and o.threshold == pytest.approx(unseen)
    two = uk.evaluate(model, tok, {"forget": mem_world.forget_records}, metrics=["memorization_outliers"],
                      mem_outlier_rule="two_sided", progress=False)
    a2 = two[two.id == -1].iloc[0]
    assert (a2.threshold, a2.low) == (0.60, 0.15) and a2.value == a2.n_high + a2.n_low
    with pytest.raises(uk.metrics.MissingInputError, match="mem_threshold"):
        uk.evaluate(model, tok, {"forget": mem_world.forget_records}, metrics=["memorization_outliers"], progress=False)
    with pytest.raises(ValueError, match=r"mem_threshold=1.5.*valid range: \[0, 1\]"):
        uk.evaluate(model, tok, {"forget": mem_world.forget_records}, metrics=["memorization_outliers"],
                    mem_threshold=1.5, progress=False)


def test_task_arithmetic_with_c_zero_returns_the_snapshot(mem_world, mem_tiny):
    """TA with c = 0: the returned weights are theta_s (here the target, as the switch happens at step 0
    since the forget mean MA 0.76 < first_threshold 0.9), bit for bit."""
    import torch

    import unlearnkit as uk

    model, tok = mem_tiny
    res = uk.unlearn(model, tok, mem_world.forget_records, method="task_arithmetic", c=0.0, steps=6, lr=1e-3,
                     batch_size=4, probe_every=0, progress=False)
    ref = dict(model.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in res.model.named_parameters())
