"""The related_facts knob (twins, related facts, indirect probes), the related_recall metric and
the α-curve widget. The model checks use the RELATED_QUICK world's cached tiny models."""

import pandas as pd
import pytest

from unlearnkit import make_world
from unlearnkit.world import WorldConfig, make_related_world


@pytest.fixture(scope="module")
def rworld():
    return make_related_world(seed=0)


def test_knob_off_leaves_the_world_unchanged():
    w = make_world(seed=0, quick=True)
    assert w.digest() == "9b828472b7a8a5a2"  # the quick world's digest before the knob existed: caches stay valid
    assert "twin" not in w.table.columns and w.carriers().empty
    with pytest.raises(KeyError, match="related_facts"):
        w.split("indirect")


def test_bad_knob_values_are_refused():
    with pytest.raises(ValueError, match="related_facts=-1"):
        WorldConfig(related_facts=-1)
    with pytest.raises(ValueError, match="family attribute"):
        WorldConfig(related_facts=2, attributes=("occupation", "genre"))
    with pytest.raises(ValueError, match="at most"):
        make_related_world(related_facts=50)


def test_twins_related_facts_and_indirect_probes(rworld):
    w = rworld
    t = w.table.set_index("id")
    facts = {(p.name, a): v for p in w.people for a, v in p.facts.items()}
    forgotten = {p for p, s in w.person_split.items() if s == "forget"}
    assert {a for a, _ in w.twins} >= forgotten  # every forgotten person has a twin
    for a, b in w.twins:
        assert w.person_split[b] == "retain"
        for attr in ("birthplace", "birth_year", "parent_job"):
            assert facts[(a, attr)] == facts[(b, attr)]
    probes = w.indirect
    assert len(probes) == len(forgotten) * 3
    trained = {q for q, _ in w.training_pairs()}
    for r in probes:
        assert r["person"] in forgotten and r["value"] in r["answer"]
        assert r["question"] not in trained and r["paraphrased_question"] not in trained
        car = t.loc[r["carrier"]]
        assert car.split == "retain" and car.person == r["twin"] and r["person"] in car.question
        assert r["value"] in car.answer  # the related fact states the forgotten value
        assert (car.question, car.answer) in set(w.training_pairs(include_forget=False))  # the retain model sees it
    c = w.carriers()
    assert list(c.id) == list(probes["id"]) and (c.carrier_answer.str.contains("twin of")).all()
    assert 0 < w.chance("birthplace") < 0.2


# -- models ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rmodels(rworld):
    from unlearnkit import retain_model, target_model

    return target_model(rworld, progress=False), retain_model(rworld, progress=False)


def test_target_model_rederives_forgotten_facts_through_related_ones(rworld, rmodels):
    """RELATED_QUICK, seed 0: 12 indirect probes; chance = mean 1/|values| over the probes' attributes.
    NOT YET MEASURED (the models were still building when this was written): the thresholds (target
    >= 3x chance; retain no better than target + one probe) are the claim to check, not a measured fit."""
    from unlearnkit import evaluate, summarize

    (tgt, tok), (ret, _) = rmodels
    chance = sum(rworld.chance(a) for a in rworld.indirect["attribute"]) / len(rworld.indirect)
    vals = {}
    for name, m in (("target", tgt), ("retain", ret)):
        df = evaluate(m, tok, {"indirect": rworld.indirect}, ["related_recall"], progress=False, max_new_tokens=20)
        assert {"carrier", "label", "prob", "generation", "twin"} <= set(df.columns)
        vals[name] = summarize(df).value.iloc[0]
    assert vals["target"] >= 3 * chance
    assert vals["retain"] <= vals["target"] + 1 / len(rworld.indirect)


def test_related_recall_names_the_missing_field(rworld, rmodels):
    from unlearnkit import evaluate
    from unlearnkit.world.loaders import DataError

    (tgt, tok), _ = rmodels
    with pytest.raises(DataError, match="related_recall.*carrier"):
        # (the related world's splits all carry the column, empty outside the probes: drop it)
        evaluate(tgt, tok, {"forget": rworld.forget.select(range(2)).remove_columns(["carrier"])}, ["related_recall"],
                 progress=False)


# -- the widget -------------------------------------------------------------------------------------

def test_alpha_explorer_is_headless_and_follows_the_slider():
    from unlearnkit.viz import AlphaExplorer, alpha_curves

    rows = []
    for a in (0.0, 0.5, 1.0):
        rows += [{"alpha": a, "norm_ratio": 1 + a, "split": "forget", "metric": "fact_recall", "value": 0.5 - a / 4},
                 {"alpha": a, "norm_ratio": 1 + a, "split": "indirect", "metric": "related_recall", "value": 0.8 - a / 2},
                 {"alpha": a, "norm_ratio": 1 + a, "split": "retain", "metric": "probability", "value": 0.6 - a / 10}]
    table = pd.DataFrame(rows)
    ex_rows = pd.DataFrame([{"alpha": a, "metric": "related_recall", "id": 1, "person": "Ann", "attribute": "birthplace",
                             "value": float(a == 0), "label": "true" if a == 0 else "wrong", "generation": f"g{a}"}
                            for a in (0.0, 0.5, 1.0)])
    ex = AlphaExplorer(table, ex_rows, alpha=0.4)
    assert ex.alpha.value == 0.5 and ex.png.startswith(b"\x89PNG")
    assert ex.answers().generation.tolist() == ["g0.5"]
    ex.alpha.value = 1.0
    assert "α = 1" in ex.info.value and ex.answers().label.tolist() == ["wrong"]
    assert "image/png" in ex._repr_mimebundle_()
    assert alpha_curves(table).shape == (3, 3)
    with pytest.raises(ValueError, match="none of the curves"):
        alpha_curves(table.assign(metric="x"))


def test_uipe_on_the_indirect_route_what_the_miniature_shows(rworld, rmodels):
    """GA (20 steps, lr 1e-4) then UIPE's alpha sweep on RELATED_QUICK, seed 0. Measured: the target
    and the retain model both answer all 12 indirect probes (related_recall 1.0: the twins' facts,
    which are retained knowledge, carry every answer; chance 0.06). After GA the indirect route is
    intact (1.0) while the forget probability fell 0.96 -> 0.68. Extrapolating: alpha 1.0 keeps it at
    1.0 (retain probability 0.92 -> 0.83); alpha 1.5 brings it to 0.92 (11/12) at retain probability
    0.79. So on the miniature UIPE dents the indirect route only at a large alpha and a clear utility
    cost: the paper's claim (it removes the related knowledge) is not reproduced at this scale."""
    from unlearnkit import unlearn
    from unlearnkit.editing import uipe_sweep

    (tgt, tok), _ = rmodels
    res = unlearn(tgt, tok, rworld.forget, rworld.retain, method="ga", steps=20, lr=1e-4, probe_every=0,
                  progress=False)
    data = {"indirect": rworld.indirect, "retain": rworld.retain}
    tab = uipe_sweep(tgt, res, tok, data, alphas=[0.0, 1.5], max_new_tokens=24)
    v = tab.pivot_table(index="alpha", columns=["split", "metric"], values="value")
    recall, retain_p = v[("indirect", "related_recall")], v[("retain", "probability")]
    assert recall[0.0] == 1.0  # GA leaves the indirect route whole
    assert recall[1.5] < recall[0.0]  # a large alpha starts to close it...
    assert retain_p[1.5] < retain_p[0.0] - 0.05  # ...at a utility cost
    assert set(tab.norm_ratio.round(3)) == {1.0, 2.5}
