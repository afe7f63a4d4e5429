"""The seed papers' headline claims, next to what the miniature shows when the course runs.

Each claim is registered once here (:data:`CLAIMS`: the paper, the notebook that measures it, the
claim in one sentence, and a rule that turns the measured numbers into a verdict). A notebook
measures the numbers on the spot and calls :func:`record`, which judges them, prints one line, and
writes ``<folder>/claims/<id>.json`` atomically. :func:`table` and :func:`page` gather every record
under a folder (e.g. the ``figures_dir`` of a course run) into one table / Markdown page, listing
the claims no notebook measured in that run as such::

    python -m unlearnkit.claims runs/figures --out runs/claims.md

Verdicts: ``reproduced``, ``partly``, ``not reproduced`` (no effect or a smaller one than
claimed), ``reversed`` (the opposite happened), ``not measurable here`` (the run cannot tell,
e.g. no method reached the comparison level). Nothing is hard-coded: a verdict is only ever the
rule applied to the numbers of the run that recorded it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .io import atomic_write_json, atomic_write_text
from .probes import SQUEEZE_RISE  # (a smaller rise of the paraphrase is judged 'partly')

VERDICTS = ("reproduced", "partly", "not reproduced", "reversed", "not measurable here")


def _finite(*xs) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in xs)


def _fewer(better: str, worse: str):
    """Verdict rule 'numbers[better] < numbers[worse]' (reversed when it is the other way round)."""
    def rule(n: dict) -> str:
        a, b = n.get(better), n.get(worse)
        if not _finite(a, b):
            return "not measurable here"
        return "reproduced" if a < b else ("not reproduced" if a == b else "reversed")
    return rule


def _squeeze(n: dict) -> str:
    if not _finite(n.get("target_before"), n.get("target_after"), n.get("paraphrase_before"), n.get("paraphrase_after")):
        return "not measurable here"
    if n["target_after"] >= n["target_before"]:
        return "not measurable here"  # nothing was forgotten, so nothing could be squeezed
    rise = n["paraphrase_after"] - n["paraphrase_before"]
    return "reproduced" if rise >= SQUEEZE_RISE else ("partly" if rise > 0 else "not reproduced")


def _each_below(ref: str, *others: str):
    """'every one of ``others`` below ``ref``'; partly when some are, reversed when all are above."""
    def rule(n: dict) -> str:
        vals = [n.get(o) for o in others if _finite(n.get(o))]
        if not vals or not _finite(n.get(ref)):
            return "not measurable here"
        below = sum(v < n[ref] for v in vals)
        above = sum(v > n[ref] for v in vals)
        if below == len(vals):
            return "reproduced"
        if above == len(vals):
            return "reversed"
        return "partly" if below else "not reproduced"
    return rule


def _unierase(n: dict) -> str:
    if not _finite(n.get("token_rate"), n.get("refusal_rate"), n.get("retain_rouge")):
        return "not measurable here"
    kept = n["retain_rouge"] >= 0.9
    if n["refusal_rate"] >= 0.5 and kept:
        return "reproduced"
    return "partly" if (n["token_rate"] >= 0.5 or n["refusal_rate"] > 0) and kept else "not reproduced"


def _relearn(n: dict) -> str:
    """Back at least twice as likely, and above what relearning gives a model that never knew them
    (``retain_after``, when measured): reproduced; up, but not that far: partly."""
    a, b, base = n.get("before"), n.get("after"), n.get("retain_after")
    if not _finite(a, b):
        return "not measurable here"
    if b > 2 * a and (not _finite(base) or b > base):
        return "reproduced"
    return "partly" if b > a else "not reproduced"


@dataclass(frozen=True)
class Claim:
    """One headline claim of a seed paper and the rule that judges the miniature's numbers."""

    id: str
    paper: str
    notebook: str
    claim: str
    measured_as: str
    rule: Callable[[dict], str]

    def judge(self, numbers: dict) -> str:
        return self.rule(numbers)

    def __repr__(self) -> str:
        return f"Claim({self.id!r}, {self.paper}, notebook {self.notebook})"


CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("squeeze", "LLM Unlearning with LLM Beliefs", "01",
          "Gradient ascent squeezes the forgotten answer's probability onto semantically related answers.",
          "mean probe mass of the target and of its paraphrase, before vs after GA", _squeeze),
    Claim("beliefs_squeeze_less", "LLM Unlearning with LLM Beliefs", "01",
          "BS-T and BS-S squeeze less than GA.",
          "paraphrase mass at the deepest target mass every objective reaches (equal forgetting)",
          _each_below("ga", "bs_t", "bs_s")),
    Claim("me_no_babble", "A Closer Look at Machine Unlearning for LLMs", "02",
          "Untargeted unlearning by maximizing entropy (ME) avoids the repetitive babble GA produces.",
          "token entropy of the forget answers (low = repetitive): ME minus GA, positive if ME babbles less",
          _fewer("ga_token_entropy", "me_token_entropy")),
    Claim("ap_keeps_retain", "A Closer Look at Machine Unlearning for LLMs", "02",
          "Answer preservation (IDK+AP) stops the refusals from spreading to retain questions.",
          "retain questions refused after IDK+AP vs after IDK", _fewer("idk_ap_retain_refusals", "idk_retain_refusals")),
    Claim("sga_fewer_outliers", "To Each (Textual) Sequence Its Own", "03",
          "At equal average forgetting, SGA leaves fewer sequences memorized than GA.",
          "records above the unseen-text memorization level when each run stops at the same threshold",
          _fewer("sga_outliers", "ga_outliers")),
    Claim("tau_fewer_outliers", "To Each (Textual) Sequence Its Own", "03",
          "TA and TAU also leave fewer memorized sequences than GA.",
          "records above the unseen-text level, same stopping threshold", _each_below("ga_outliers", "ta_outliers",
                                                                                       "tau_outliers")),
    Claim("uipe_indirect", "UIPE (unlearning improvement via parameter extrapolation)", "04",
          "Extrapolating the unlearning update also removes knowledge that can be re-derived from related facts.",
          "recall of the forgotten facts through the indirect (twin) probes: UIPE vs its base run",
          _fewer("uipe_indirect_recall", "base_indirect_recall")),
    Claim("unierase_refuses", "UniErase", "05",
          "After the edit the model answers forget questions with the unlearning token and a refusal, "
          "retain answers untouched.",
          "share of forget answers starting with the token / refusing; retain ROUGE-L recall", _unierase),
    Claim("relearning_returns", "the field's robustness checks (relearning attacks)", "06",
          "A few fine-tuning steps on related data bring 'forgotten' answers back.",
          "mean probability of the held-back forget answers before vs after the relearning attack, and after it "
          "on the retain model (which never knew them)", _relearn),
]}


@dataclass
class ClaimResult:
    """A claim judged on one run's numbers (what :func:`record` returns and prints)."""

    claim: Claim
    verdict: str
    numbers: dict
    setting: str = ""

    def line(self) -> str:
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in self.numbers.items())
        return f"[{self.verdict}] {self.claim.paper}: {self.claim.claim} ({nums})"

    def __repr__(self) -> str:
        return f"ClaimResult({self.claim.id!r}, {self.verdict!r})"

    def _ipython_display_(self):
        print(self.line())


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def record(claim_id: str, folder=None, *, setting: str = "", **numbers) -> ClaimResult:
    """Judge claim ``claim_id`` on ``numbers`` (floats or ints measured in this run), print the
    verdict line, and write it to ``<folder>/claims/<claim_id>.json`` (nothing written when
    ``folder`` is None). ``setting``: a few words on the run (e.g. ``"quick"``)."""
    if claim_id not in CLAIMS:
        raise KeyError(f"no claim {claim_id!r}; registered claims: {sorted(CLAIMS)}")
    claim = CLAIMS[claim_id]
    numbers = {k: _plain(v) for k, v in numbers.items()}
    res = ClaimResult(claim, claim.judge({k: (math.nan if v is None else v) for k, v in numbers.items()}),
                      numbers, setting)
    print(res.line())
    if folder is not None:
        atomic_write_json(Path(folder) / "claims" / f"{claim_id}.json",
                          {"id": claim_id, "verdict": res.verdict, "numbers": numbers, "setting": setting})
    return res


def table(folder=None) -> pd.DataFrame:
    """Every registered claim (in course order) with the verdict recorded under ``folder`` (searched
    recursively for ``claims/<id>.json``; the newest file wins), or ``not measured in this run``."""
    found = {}
    if folder is not None:
        for p in sorted(Path(folder).rglob("claims/*.json"), key=lambda p: p.stat().st_mtime):
            rec = json.loads(p.read_text())
            found[rec["id"]] = rec
    rows = []
    for c in CLAIMS.values():
        rec = found.get(c.id)
        rows.append({"notebook": c.notebook, "paper": c.paper, "claim": c.claim, "measured as": c.measured_as,
                     "verdict": rec["verdict"] if rec else "not measured in this run",
                     "numbers": ", ".join(f"{k}={_fmt(v)}" for k, v in rec["numbers"].items()) if rec else "",
                     "setting": rec.get("setting", "") if rec else ""})
    return pd.DataFrame(rows)


def page(folder=None) -> str:
    """:func:`table` as a Markdown page."""
    t = table(folder)
    lines = ["# What the miniature reproduces", "",
             "Generated by `python -m unlearnkit.claims` from the numbers the notebooks recorded when they ran "
             "(`unlearnkit.claims.record`); each verdict is the claim's rule applied to those numbers.", "",
             "| notebook | paper | claim | measured as | verdict | numbers |", "|---|---|---|---|---|---|"]
    for r in t.itertuples(index=False):
        cells = [r.notebook, r.paper, r.claim, r[3], f"**{r.verdict}**" + (f" ({r.setting})" if r.setting else ""),
                 r.numbers]
        lines.append("| " + " | ".join(str(x).replace("|", "/") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearnkit.claims", description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="a folder holding claims/<id>.json records (e.g. a course run's figures_dir)")
    ap.add_argument("--out", help="write the Markdown page here (default: print it)")
    args = ap.parse_args(argv)
    if not Path(args.folder).is_dir():
        ap.error(f"{args.folder} is not a folder")
    text = page(args.folder)
    if args.out:
        atomic_write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
