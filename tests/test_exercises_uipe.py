"""Notebook 04's exercises (UIPE): the reference passes, stubs only hint, typical mistakes get a plain message."""

import pandas as pd
import pytest

from unlearnkit import exercises as ex


def stub(*args):
    raise NotImplementedError


def test_extrapolate_reference_stub_and_mistakes(capsys):
    assert ex.check_extrapolate(ex.reference("extrapolate"))
    assert "✓" in capsys.readouterr().out
    assert not ex.check_extrapolate(stub)
    assert "not done yet" in capsys.readouterr().out
    with pytest.raises(ex.ExerciseError, match="theta0 \\+ alpha\\*v"):
        ex.check_extrapolate(lambda o, u, a: [x + a * (y - x) for x, y in zip(o, u)])
    with pytest.raises(ex.ExerciseError, match="back towards theta0"):
        ex.check_extrapolate(lambda o, u, a: [y - a * (y - x) for x, y in zip(o, u)])
    assert "alpha * (u - o)" in ex.solution("extrapolate")


def sweep_table():
    rows = []
    for a, ind, ret in [(0.0, 0.8, 0.50), (0.5, 0.5, 0.47), (1.0, 0.5, 0.46), (1.5, 0.2, 0.40)]:
        rows += [{"alpha": a, "norm_ratio": 1 + a, "split": "indirect", "metric": "related_recall", "value": ind},
                 {"alpha": a, "norm_ratio": 1 + a, "split": "retain", "metric": "probability", "value": ret}]
    return pd.DataFrame(rows)


def test_alpha_for_budget(capsys):
    t = sweep_table()
    assert ex.reference("alpha_for_budget", t) == 0.5  # 1.5 breaks the 90% budget (0.40 < 0.45); 0.5 ties 1.0
    assert ex.check_alpha_for_budget(t, 0.5)
    assert "✓" in capsys.readouterr().out
    assert not ex.check_alpha_for_budget(t, ...)
    with pytest.raises(ex.ExerciseError, match="below the budget"):
        ex.check_alpha_for_budget(t, 1.5)
    with pytest.raises(ex.ExerciseError, match="smaller"):
        ex.check_alpha_for_budget(t, 1.0)
    with pytest.raises(ex.ExerciseError, match="leaves less"):
        ex.check_alpha_for_budget(t, 0.0)
    with pytest.raises(ex.ExerciseError, match="not swept"):
        ex.check_alpha_for_budget(t, 0.7)
    assert ex.check_alpha_for_budget(t, 1.5, budget=0.8)
    with pytest.raises(ex.ExerciseError, match="related_recall"):
        ex.check_alpha_for_budget(t[t.split == "retain"], 0.5)


def test_carrier(capsys):
    c = pd.DataFrame({"id": [7, 9], "question": ["Where was the twin of Ann Lo born?", "q"], "value": ["Oslo", "1950"],
                      "person": ["Ann Lo", "Bo Ki"], "attribute": ["birthplace", "birth_year"],
                      "twin": ["Cy Lo", "Di Ki"], "carrier_id": [3, 5],
                      "carrier_question": ["Who shares a birthplace with Ann Lo?", "x"],
                      "carrier_answer": ["Cy Lo, the twin of Ann Lo, was born in Oslo too.", "y"]})
    assert ex.reference("carrier", c, 7) == "Cy Lo"
    assert ex.check_carrier(c, 7, " cy  lo ")
    assert "Oslo" in capsys.readouterr().out
    assert not ex.check_carrier(c, 7, ...)
    with pytest.raises(ex.ExerciseError, match="forgotten person"):
        ex.check_carrier(c, 7, "Ann Lo")
    with pytest.raises(ex.ExerciseError, match="someone else"):
        ex.check_carrier(c, 7, "Di Ki")
    with pytest.raises(ex.ExerciseError, match="not the id"):
        ex.check_carrier(c, 8, "Cy Lo")
