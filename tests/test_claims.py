"""The claims registry: each verdict comes from its rule applied to recorded numbers, and the page
gathers what the notebooks recorded."""

import json

import pytest

from unlearnkit import claims


@pytest.mark.parametrize("numbers, verdict", [
    (dict(target_before=0.6, target_after=0.1, paraphrase_before=0.3, paraphrase_after=0.8), "reproduced"),
    (dict(target_before=0.6, target_after=0.1, paraphrase_before=0.3, paraphrase_after=0.2), "not reproduced"),
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
