"""The repetitions knob and the memorization-aware methods on the cached quick memorization model.

Measured on the cached quick memorization world (``make_world(quick=True, memorization=True)``,
``MEMORIZATION_TINY``; figures filled in below from the run that built it).
"""

import numpy as np
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
        quick_world.forget_records
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
