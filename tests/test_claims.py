"""The claims registry: each verdict comes from its rule applied to recorded numbers, and the page
gathers what the notebooks recorded."""

import json

import pytest

from unlearnkit import claims


@pytest.mark.parametrize("numbers, verdict", [
    (dict(target_before=0.6, target_after=0.1, paraphrase_before=0.3, paraphrase_after=0.8), "reproduced"),
    (dict(target_before=0.6, target_after=0.1, paraphrase_before=0.3, paraphrase_after=0.2), "not reproduced"),
    (dict(target_before=0.6, target_after=0.1, paraphrase_before=0.3, paraphrase_after=0.32), "partly"),  # < SQUEEZE_RISE
    (dict(target_before=0.6, target_after=0.7, paraphrase_before=0.3, paraphrase_after=0.8), "not measurable here"),
])
def test_squeeze_rule(numbers, verdict):
    assert claims.CLAIMS["squeeze"].judge(numbers) == verdict


@pytest.mark.parametrize("bs_t, bs_s, verdict", [(0.2, 0.3, "reproduced"), (0.2, 0.6, "partly"),
                                                 (0.6, 0.7, "reversed"), (float("nan"), float("nan"), "not measurable here")])
def test_each_below_rule(bs_t, bs_s, verdict):
    assert claims.CLAIMS["beliefs_squeeze_less"].judge({"ga": 0.5, "bs_t": bs_t, "bs_s": bs_s}) == verdict


def test_fewer_rule_reversed_and_equal():
    c = claims.CLAIMS["sga_fewer_outliers"]
    assert c.judge({"sga_outliers": 0, "ga_outliers": 4}) == "reproduced"
    assert c.judge({"sga_outliers": 4, "ga_outliers": 4}) == "not reproduced"
    assert c.judge({"sga_outliers": 5, "ga_outliers": 4}) == "reversed"


def test_record_writes_and_table_gathers(tmp_path, capsys):
    res = claims.record("relearning_returns", tmp_path / "figs", setting="quick", before=0.01, after=0.5)
    assert res.verdict == "reproduced" and "[reproduced]" in capsys.readouterr().out
    rec = json.loads((tmp_path / "figs" / "claims" / "relearning_returns.json").read_text())
    assert rec["numbers"] == {"before": 0.01, "after": 0.5}
    t = claims.table(tmp_path).set_index(claims.table(tmp_path).claim.map(
        {c.claim: c.id for c in claims.CLAIMS.values()}))
    assert t.loc["relearning_returns", "verdict"] == "reproduced"
    assert t.loc["squeeze", "verdict"] == "not measured in this run"
    assert list(t.notebook) == sorted(t.notebook)  # course order
    out = tmp_path / "claims.md"
    assert claims.main([str(tmp_path), "--out", str(out)]) == 0
    assert "**reproduced** (quick)" in out.read_text() and out.read_text().count("\n| 0") == len(claims.CLAIMS)


def test_unknown_claim_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered claims"):
        claims.record("squeez", None, x=1)


def _result_with_paraphrase(path):
    """An UnlearnResult whose forget probes show the target falling and the paraphrase along ``path``."""
    import pandas as pd

    from unlearnkit import UnlearnResult

    target = [0.6, 0.3, 0.05, 0.01][: len(path)]
    rows = [{"step": s, "split": "forget", "id": 0, "quantity": q, "value": v}
            for q, vals in (("target", target), ("paraphrase", path)) for s, v in enumerate(vals)]
    return UnlearnResult(None, None, "ga", {}, pd.DataFrame(rows), pd.DataFrame())


def test_squeeze_story_says_what_the_probes_show_by_the_claims_threshold():
    told = _result_with_paraphrase([0.2, 0.4, 0.1, 0.0]).squeeze_story()
    assert "from 0.600 to 0.0100 by step 3" in told and "rose from 0.200 to 0.400 (peak at step 1)" in told
    flat = _result_with_paraphrase([0.2, 0.2 + claims.SQUEEZE_RISE / 2, 0.1, 0.0]).squeeze_story()
    assert "no squeeze into it" in flat and "went from 0.200 to 0.000" in flat
