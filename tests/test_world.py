"""The miniature world and the TOFU-format loaders."""

import json

import pytest

from unlearnkit import load_tofu, make_world
from unlearnkit.world import DataError, WorldConfig, qa_dataset


def test_same_seed_same_world_byte_for_byte():
    a, b = make_world(seed=3, quick=True), make_world(seed=3, quick=True)
    assert a.table.to_json() == b.table.to_json()
    assert a.digest() == b.digest()
    assert make_world(seed=4, quick=True).digest() != a.digest()


def test_splits_have_tofu_fields_and_ground_truth(quick_world):
    w = quick_world
    for name in ("forget", "retain", "holdout", "world_facts"):
        ds = w.split(name)
        assert len(ds) > 0
        for col in ("question", "answer", "paraphrased_answer", "perturbed_answer", "person", "attribute", "value"):
            assert col in ds.column_names
    row = w.forget[0]
    assert row["value"] in row["answer"] and row["value"] in row["paraphrased_answer"]
    assert row["answer"] != row["paraphrased_answer"]
    assert len(row["perturbed_answer"]) >= 3
    assert all(row["value"] not in p.replace(row["person"], "") for p in row["perturbed_answer"])
    # forget people are 10% of people and appear nowhere else
    people = {s: set(w.split(s)["person"]) for s in ("forget", "retain", "holdout")}
    assert len(people["forget"]) == round(0.1 * w.config.n_people)
    assert not people["forget"] & people["retain"] and not people["holdout"] & people["retain"]


def test_training_pairs_exclude_forget_for_retain_model(quick_world):
    full = quick_world.training_pairs(include_forget=True)
    ret = quick_world.training_pairs(include_forget=False)
    forget_q = set(quick_world.forget["question"])
    assert any(q in forget_q for q, _ in full)
    assert not any(q in forget_q for q, _ in ret)
    holdout_q = set(quick_world.holdout["question"])
    assert not any(q in holdout_q for q, _ in full)


def test_bad_config_named():
    with pytest.raises(ValueError, match="forget_fraction"):
        WorldConfig(forget_fraction=1.5)
    with pytest.raises(ValueError, match="unknown attribute"):
        WorldConfig(attributes=("birthplace", "shoe_size"))


def test_load_tofu_real_files(tofu_dir):
    ds = load_tofu(tofu_dir, "forget01_perturbed")
    assert len(ds) == 400 and len(ds[0]["perturbed_answer"]) == 5
    one = load_tofu(tofu_dir / "forget01_perturbed.json", task_id="1")
    assert len(one) == 40
    wf = load_tofu(tofu_dir, "world_facts_perturbed")
    assert "original_answer" in wf.column_names


def test_load_tofu_formats(tmp_path):
    rows = [{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    for f in ("a.json", "b.jsonl", "c.parquet"):
        ds = load_tofu(tmp_path / f)
        assert ds["answer"] == ["A1.", "A2."]


def test_bad_data_names_file_row_and_field(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "Q?", "answer": "A."}\n{"question": "Q2?"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, row 1: missing field 'answer'"):
        load_tofu(f)
    f.write_text('{"question": "Q?", "answer": "  "}\n')
    with pytest.raises(DataError, match=r"row 0: field 'answer' is empty"):
        load_tofu(f)
    f.write_text('{"answer": "A"}\n')
    with pytest.raises(DataError, match="missing field 'question'"):
        load_tofu(f)
    with pytest.raises(DataError, match="available splits"):
        load_tofu(tmp_path, "forget99")
    with pytest.raises(FileNotFoundError, match="no TOFU data"):
        load_tofu(tmp_path / "nope.json")
    with pytest.raises(DataError, match="empty"):
        qa_dataset(["Q?"], [""])


def test_refusal_people_knob():
    from unlearnkit import make_world
    from unlearnkit.idk import load_idk

    w0, w8 = make_world(seed=0, quick=True), make_world(seed=0, quick=True, refusal_people=8)
    assert w0.refusal_rows == [] and w8.table.equals(w0.table)  # splits unchanged
    assert w0.digest() != w8.digest()  # so the knob-on world gets its own model cache
    assert make_world(seed=0, quick=True, refusal_people=0).digest() == w0.digest()
    names = {p.name for p in w0.people}
    bank = set(load_idk())
    assert len(w8.refusal_rows) == 8 * len(w8.config.attributes) * 2
    assert all(a in bank for _, a in w8.refusal_rows)
    assert not any(n in q for q, _ in w8.refusal_rows for n in names)
    assert len(w8.training_pairs()) == len(w0.training_pairs()) + len(w8.refusal_rows)
    import pytest

    with pytest.raises(ValueError, match="refusal_people=-1"):
        make_world(seed=0, quick=True, refusal_people=-1)


def test_tofu_sized_world_has_nested_tofu_splits():
    """The named TOFU-sized world (no model built): 200 people, forget01 / 05 / 10 = 2 / 10 / 20
    people, nested, each disjoint from its retainNN complement, from holdout and from world facts."""
    from unlearnkit.world import TOFU_SIZED, WORLDS

    w = make_world(seed=0, name="tofu_sized")
    assert WORLDS["tofu_sized"] == TOFU_SIZED and w.config.n_people == 200
    n_attr = len(w.config.attributes)
    people = {lv: set(w.split(lv)["person"]) for lv in ("forget01", "forget05", "forget10")}
    assert [len(people[lv]) for lv in ("forget01", "forget05", "forget10")] == [2, 10, 20]
    assert people["forget01"] < people["forget05"] < people["forget10"] == set(w.forget["person"])
    assert [len(w.split(lv)) for lv in ("forget01", "forget05", "forget10")] == [2 * n_attr, 10 * n_attr, 20 * n_attr]
    holdout, retain = set(w.holdout["person"]), set(w.retain["person"])
    assert len(holdout) == 20 and len(retain) == 160 and not holdout & (retain | people["forget10"])
    for f, r in (("forget01", "retain99"), ("forget05", "retain95"), ("forget10", "retain90")):
        kept = set(w.split(r)["person"])
        assert not kept & people[f] and not kept & holdout
        assert kept | people[f] == retain | people["forget10"]  # every trained person is in one of the two
        assert len(w.split(f)) + len(w.split(r)) == len(w.forget) + len(w.retain)
    assert not set(w.split("forget10")["question"]) & set(w.world_facts["question"])
    # the same seed gives the same world; a world without levels has no such split
    assert make_world(seed=0, name="tofu_sized").digest() == w.digest()
    with pytest.raises(KeyError, match="forgetNN / retainNN splits need"):
        make_world(seed=0, quick=True).split("forget05")
    with pytest.raises(ValueError, match="unknown world 'tofu'"):
        make_world(name="tofu")
    with pytest.raises(ValueError, match="forget_levels=.*increasing fractions"):
        WorldConfig(forget_levels=(0.05, 0.01))
    with pytest.raises(ValueError, match="forget_levels=.*increasing fractions"):
        WorldConfig(forget_fraction=0.1, forget_levels=(0.2,))
    # the knob off leaves the config dict (and so every existing world's digest) as it was
    assert "forget_levels" not in WorldConfig().to_dict() and "forget_levels" in TOFU_SIZED.to_dict()
