"""The pure tables behind the widgets, on hand-built probe tables with hand-computed answers."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from unlearnkit.viz import tables

DATA = [{"id": 7, "question": "Where was Ann born?", "answer": "Ann was born in Oslo.",
         "paraphrased_answer": "Oslo is the birthplace of Ann.",
         "perturbed_answer": ["Ann was born in Rome.", "Ann was born in Lima."]}]


def probes(step_values: dict) -> pd.DataFrame:
    """{step: (target, paraphrase, perturbed, belief, initial_belief, belief_text)} -> tidy probe rows."""
    rows = []
    for step, (t, p, pert, b, ib, text) in step_values.items():
        for q, v in (("target", t), ("paraphrase", p), ("perturbed", pert), ("belief", b), ("initial_belief", ib),
                     ("entropy", 0.5)):
            rows.append({"step": step, "split": "forget", "id": 7, "quantity": q, "value": v, "prob_norm": np.nan,
                         "text": text if q == "belief" else None})
    return pd.DataFrame(rows)


def by_kind(df):
    return df.set_index("kind")


def test_greedy_equal_to_paraphrase_is_counted_once():
    p = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                4: (0.05, 0.8, 0.02, 0.8, 0.05, " Oslo is the birthplace of Ann. ")})
    d = by_kind(tables.answer_distribution(p, DATA, 7, 4))
    assert list(d.index) == list(tables.KINDS)
    assert d.loc["initial_belief", "same_as"] == "target" and not d.loc["initial_belief", "counted"]
    assert d.loc["belief", "same_as"] == "paraphrase" and not d.loc["belief", "counted"]
    # everything else = 1 - (target + paraphrase + perturbed), each distinct answer once
    assert d.loc["other", "after"] == pytest.approx(1 - (0.05 + 0.8 + 0.02))
    assert d.loc["other", "before"] == pytest.approx(1 - (0.6 + 0.3 + 0.01))
    # the greedy answer's "before" is the paraphrase's mass at step 0 (it is the paraphrase)
    assert d.loc["belief", "before"] == pytest.approx(0.3)
    assert d.loc["belief", "after"] == pytest.approx(0.8)


def test_distinct_greedy_answer_is_subtracted_and_not_scored_before():
    p = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                2: (0.1, 0.2, 0.0, 0.4, 0.1, "Ann Ann Ann")})
    d = by_kind(tables.answer_distribution(p, DATA, 7, 2))
    assert d.loc["belief", "counted"] and pd.isna(d.loc["belief", "same_as"])
    assert math.isnan(d.loc["belief", "before"])
    assert d.loc["other", "after"] == pytest.approx(1 - (0.1 + 0.2 + 0.0 + 0.4))
    assert d.loc["belief", "text"] == "Ann Ann Ann"


def test_greedy_equal_to_a_perturbed_answer_and_clipping():
    p = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                3: (0.3, 0.5, 0.5, 0.45, 0.3, "Ann was born in Rome.")})
    d = by_kind(tables.answer_distribution(p, DATA, 7, 3))
    assert d.loc["belief", "same_as"] == "perturbed"
    assert d.loc["other", "after"] == 0.0  # 1 - 1.3 clipped


def test_unknown_step_or_question_says_what_exists():
    p = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "x")})
    with pytest.raises(KeyError, match="recorded steps: \\[0\\]"):
        tables.answer_distribution(p, DATA, 7, 5)
    with pytest.raises(KeyError, match="not in the data"):
        tables.answer_distribution(p, DATA, 8, 0)


def test_mean_distribution_counts_duplicates_zero_and_sums_to_one():
    p = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                4: (0.05, 0.8, 0.02, 0.8, 0.05, "Oslo is the birthplace of Ann.")})
    m = tables.mean_answer_distribution(p, DATA).set_index("kind")
    assert m.attrs["step"] == 4
    assert m.loc["belief", "after"] == 0.0 and m.loc["initial_belief", "after"] == 0.0
    assert m["after"].sum() == pytest.approx(1.0)
    assert m.loc["paraphrase", "after"] == pytest.approx(0.8)


def test_probe_steps_and_nearest():
    p = probes({0: (1, 0, 0, 1, 1, "a"), 3: (1, 0, 0, 1, 1, "a"), 6: (1, 0, 0, 1, 1, "a")})
    assert tables.probe_steps(p) == [0, 3, 6]
    assert tables.nearest_step([0, 3, 6], 4) == 3
    assert tables.nearest_step([0, 3, 6], 100) == 6
    with pytest.raises(ValueError, match="probe_every"):
        tables.nearest_step([], 1)


def test_token_entropy_matches_the_definition():
    assert tables.token_entropy_value(["a", "a", "b", "c"]) == pytest.approx(0.75)
    assert tables.token_entropy_value(["a"]) == 0.0
    assert tables.token_entropy_value(["a"] * 10) == 0.0
    assert tables.token_entropy_value(list("abcd")) == pytest.approx(1.0)  # (the dead fallback copy is gone)


def test_tag_tokens_on_the_real_tokenizer(tiny):
    _, tok = tiny
    target = "Ann was born in Oslo."
    tags = tables.tag_tokens(tok, target, {"paraphrase": ["Oslo is the birthplace of Ann."],
                                           "belief": ["Ann was born in Rome."],
                                           "perturbed": ["Ann was born in Lima."]}, positions=8)
    t_ids = tables.answer_token_ids(tok, target)
    p_ids = tables.answer_token_ids(tok, "Oslo is the birthplace of Ann.")
    b_ids = tables.answer_token_ids(tok, "Ann was born in Rome.")
    assert tags[0][t_ids[0]] == "target" and tags[0][p_ids[0]] == "paraphrase"
    # where the belief leaves the target (the city), its token is tagged belief
    k = next(i for i, (a, b) in enumerate(zip(t_ids, b_ids)) if a != b)
    assert tags[k][b_ids[k]] == "belief"
    assert all(t_ids[i] in tags[i] for i in range(len(tags)))


def test_moving_positions():
    rows = []
    for step, probs in ((0, (0.6, 0.99, 0.5)), (2, (0.1, 0.99, 0.9))):
        for pos, p in enumerate(probs):
            rows.append({"step": step, "split": "forget", "id": 1, "kind": "topk", "position": pos, "rank": 0,
                         "token_id": pos, "token": str(pos), "prob": p, "entropy": np.nan, "is_target": True})
    res = SimpleNamespace(token_probes=pd.DataFrame(rows))
    assert tables.moving_positions(res, 1) == [0, 2]
    assert tables.moving_positions(res, 1, max_positions=1) == [0]


def test_tradeoff_table():
    s = pd.DataFrame([{"model": "a", "split": "forget", "metric": "forget_quality", "value": 1e-3},
                      {"model": "a", "split": "retain", "metric": "model_utility", "value": 0.5},
                      {"model": "b", "split": "forget", "metric": "forget_quality", "value": 0.2},
                      {"model": "b", "split": "retain", "metric": "model_utility", "value": 0.3},
                      {"model": "c", "split": "retain", "metric": "model_utility", "value": 0.3}])
    t = tables.tradeoff_table(s)
    assert list(t.model) == ["a", "b"] and list(t.forget_quality) == [1e-3, 0.2]
    with pytest.raises(ValueError, match="needs both"):
        tables.tradeoff_table(s[s.metric == "model_utility"])


def test_mass_table_one_row_per_objective():
    a = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                4: (0.05, 0.8, 0.02, 0.8, 0.05, "Oslo is the birthplace of Ann.")})
    b = probes({0: (0.6, 0.3, 0.01, 0.6, 0.6, "Ann was born in Oslo."),
                2: (0.5, 0.3, 0.01, 0.5, 0.5, "Ann was born in Oslo.")})
    t = tables.mass_table({"A": SimpleNamespace(probes=a), "B": SimpleNamespace(probes=b)}, DATA)
    assert list(t.index) == ["A", "B"] and list(t.columns) == ["target", "paraphrase", "perturbed", "other"]
    assert t.loc["A", "paraphrase"] == pytest.approx(0.8) and t.loc["B", "target"] == pytest.approx(0.5)
    assert t.loc["B", "other"] == pytest.approx(1 - 0.81)


def _robust_table():
    """A hand-made long evaluate() table of two models with the robustness suite and rouge."""
    rows = []
    for model, base in (("retain", 0.0), ("GA", 0.2)):
        for i in range(4):
            rows.append({"model": model, "split": "forget", "metric": "rouge", "id": i, "value": base + 0.1 * i})
        for i in (1, 3):  # relearning scores only the held-back rows
            rows.append({"model": model, "split": "forget", "metric": "relearning", "id": i, "value": base + 0.5,
                         "prob_before": base})
        for i in range(4):
            rows.append({"model": model, "split": "forget", "metric": "quantization", "id": i, "value": base,
                         "prob_before": base})
            rows.append({"model": model, "split": "forget", "metric": "paraphrase_probe", "id": i, "value": 0.9})
        rows.append({"model": model, "split": "retain", "metric": "relearning", "id": 0, "value": 1.0,
                     "prob_before": 1.0})
    return pd.DataFrame(rows)


def test_attack_table_before_after_on_the_same_rows():
    t = tables.attack_table(_robust_table()).set_index(["model", "attack"])
    rel = "relearning (a few steps on other rows)"
    assert t.loc[("GA", rel), "before"] == pytest.approx(0.2) and t.loc[("GA", rel), "after"] == pytest.approx(0.7)
    assert t.loc[("GA", rel), "change"] == pytest.approx(0.5)
    # the probes' "before" is rouge of the plain question on the same rows: GA 0.2 + 0.1 * mean(0..3)
    para = t.loc[("GA", "paraphrased question")]
    assert para.before == pytest.approx(0.35) and para.after == pytest.approx(0.9) and para.measure == "ROUGE-L recall"
    assert ("GA", "answer prefix given") not in t.index  # not in the table: no row
    assert set(t.index.get_level_values("model")) == {"retain", "GA"}  # the retain split's row is not mixed in


# -- equal forgetting ----------------------------------------------------------------------------------

def _run(path):
    """{step: (target, paraphrase)} -> an object with .probes, as UnlearnResult has."""
    return SimpleNamespace(probes=probes({s: (t, p, 0.0, 0.0, 0.0, "x") for s, (t, p) in path.items()}))


def test_equal_forgetting_interpolates_between_probed_steps():
    fast = _run({0: (1.0, 0.0), 2: (0.6, 0.4), 4: (0.2, 0.8)})
    slow = _run({0: (1.0, 0.0), 2: (0.9, 0.2), 4: (0.8, 0.3)})
    t = tables.at_equal_forgetting({"GA": fast, "slow": slow}, levels=[0.4, 0.85])
    ga = t[t.method == "GA"].set_index("level")
    # target 0.6 at step 2 and 0.2 at step 4: 0.4 is half way, at step 3, paraphrase 0.6
    assert ga.loc[0.4, "step"] == pytest.approx(3.0) and ga.loc[0.4, "paraphrase"] == pytest.approx(0.6)
    assert ga.loc[0.85, "step"] == pytest.approx(2 * 0.15 / 0.4)
    sl = t[t.method == "slow"].set_index("level")
    assert not sl.loc[0.4, "reached"] and math.isnan(sl.loc[0.4, "paraphrase"])  # never forgot that much
    assert sl.loc[0.85, "reached"] and sl.loc[0.85, "paraphrase"] == pytest.approx(0.25)
    # at equal steps the slow run squeezes less (0.3 vs 0.8); at equal forgetting (0.85) it squeezes more
    assert sl.loc[0.85, "paraphrase"] > ga.loc[0.85, "paraphrase"]


def test_equal_forgetting_default_levels_are_reached_by_every_run():
    fast = _run({0: (1.0, 0.0), 2: (0.6, 0.4), 4: (0.2, 0.8)})
    slow = _run({0: (0.9, 0.0), 2: (0.7, 0.05), 4: (0.5, 0.1)})
    t = tables.at_equal_forgetting({"a": fast, "b": slow})
    assert t.reached.all() and t.level.nunique() == 3
    assert t.level.max() < 1.0 and t.level.min() == pytest.approx(0.5)  # down to what both reach
    with pytest.raises(ValueError, match="quantity 'nope'"):
        tables.at_equal_forgetting({"a": fast}, x="nope")
