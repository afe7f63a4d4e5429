"""Split roles: what a split is for decides truth-ratio aggregation, option normalisation and
model utility, whatever the split is called."""

import argparse

import numpy as np
import pytest

from unlearnkit import evaluate, summarize
from unlearnkit.metrics import ROLES, infer_role, split_roles


def test_roles_from_tofu_file_names():
    assert [infer_role(n) for n in ("forget", "forget01", "forget10_perturbed", "retain_perturbed", "retain90",
                                    "real_authors_perturbed", "world_facts_perturbed", "holdout05", "data")] == \
        ["forget", "forget", "forget", "retain", "retain", "real_authors", "world_facts", "holdout", None]
    assert split_roles({"a": 1, "b": 2}, {"a": "forget"}) == {"a": "forget", "b": None}
    with pytest.raises(ValueError, match="is not a role; valid roles: forget, retain, real_authors"):
        split_roles({"a": 1}, {"a": "forgotten"})
    with pytest.raises(ValueError, match=r"not in the data; splits: \['a'\]"):
        split_roles({"a": 1}, {"z": "forget"})
    assert ROLES == ("forget", "retain", "real_authors", "world_facts", "holdout")


def _summary(df):
    s = summarize(df)
    return {(r.role, r.metric): r.value for r in s.assign(role=s.split.map(df.groupby("split").role.first()))
            .itertuples()}


def test_same_roles_same_numbers_whatever_the_names(quick_world, tiny):
    """The world's splits under their role names, under TOFU's file names, and under arbitrary names
    with explicit roles give identical truth ratios (forget: closer_to_1), normalised probabilities
    (world facts) and model utility."""
    model, tok = tiny
    f, r, w = (quick_world.forget.select(range(6)), quick_world.retain.select(range(6)),
               quick_world.world_facts.select(range(6)))
    metrics = ["probability", "truth_ratio", "model_utility"]
    kw = dict(progress=False, max_new_tokens=8)
    by_role = evaluate(model, tok, {"forget": f, "retain": r, "world_facts": w}, metrics, **kw)
    tofu_names = evaluate(model, tok, {"forget01": f, "retain_perturbed": r, "world_facts_perturbed": w}, metrics, **kw)
    explicit = evaluate(model, tok, {"a": f, "b": r, "c": w}, metrics, roles={"a": "forget", "b": "retain",
                                                                            "c": "world_facts"}, **kw)
    base = _summary(by_role)
    # (model utility's row spans several splits: no single role)
    assert set(tofu_names.role) == set(explicit.role) == {"forget", "retain", "world_facts", ""}
    for other in (tofu_names, explicit):
        got = _summary(other)
        assert got.keys() == base.keys()
        for k, v in base.items():
            assert got[k] == pytest.approx(v, abs=1e-9), k
    # and the roles matter: named "a", "b", "c" without roles, the forget truth ratio is aggregated
    # as true_better and world facts are not normalised
    plain = _summary(evaluate(model, tok, {"a": f, "b": r, "c": w}, metrics, **kw).assign(role=lambda d: d.split))
    assert plain[("a", "truth_ratio")] != pytest.approx(base[("forget", "truth_ratio")])
    assert plain[("c", "probability")] != pytest.approx(base[("world_facts", "probability")])


def test_tofu_evaluation_set_gives_a_nine_component_model_utility(tofu_dir, tiny):
    """The CLI's --tofu data is TOFU's evaluation set: forget N, retain_perturbed, real_authors and
    world_facts, so model utility has TOFU's 9 components (3 splits x probability, ROUGE, truth
    ratio). Scored here on 4 rows of each file to stay fast."""
    from unlearnkit import cli

    args = argparse.Namespace(tofu=str(tofu_dir), forget_split="forget01_perturbed", holdout_split=None,
                              quick=False, world_seed=0)
    world, data = cli._data(args)
    assert world is None
    assert set(data) == {"forget01_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"}
    small = {k: v.select(range(4)) for k, v in data.items()}
    model, tok = tiny
    df = evaluate(model, tok, small, ["model_utility"], progress=False, max_new_tokens=4)
    comps = df.loc[df.metric == "model_utility", "components"].iloc[0]
    assert len(comps) == 9 and all(np.isfinite(list(comps.values())))
    assert not any(k.startswith("forget") for k in comps)


def test_truth_ratio_aggregation_is_a_named_option(quick_world, tiny):
    """TOFU's closer_to_1 on forget by default; A Closer Look's and OpenUnlearning's prob_mean on request,
    each equal to its formula on the same raw ratios."""
    from unlearnkit.metrics import aggregate_truth_ratio

    model, tok = tiny
    data = {"forget": quick_world.forget.select(range(5)), "retain": quick_world.retain.select(range(5))}
    default = evaluate(model, tok, data, ["truth_ratio"], progress=False)
    raw = {s: default[default.split == s].value.to_numpy() for s in data}
    s = summarize(default).set_index("split").value
    assert s["forget"] == pytest.approx(np.mean(np.minimum(raw["forget"], 1 / raw["forget"])))
    assert s["retain"] == pytest.approx(np.mean(np.maximum(0, 1 - raw["retain"])))
    other = summarize(evaluate(model, tok, data, ["truth_ratio"], progress=False, truth_ratio_forget="cl_forget",
                               truth_ratio_other="prob_mean")).set_index("split").value
    assert other["forget"] == pytest.approx(1 - s["forget"])
    assert other["retain"] == pytest.approx(np.mean(1 / (1 + raw["retain"])))
    assert aggregate_truth_ratio("retain", raw["retain"], variant="prob_mean") == pytest.approx(other["retain"])
    with pytest.raises(ValueError, match="truth_ratio_forget"):
        evaluate(model, tok, data, ["truth_ratio"], progress=False, truth_ratio_forget="mean")
