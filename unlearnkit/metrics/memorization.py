"""Per-sequence memorization metrics (spec B11-B13), suite ``memorization``.

=========================  ==========================================================================
``exact_memorization``     EM: share of sequence tokens whose teacher-forced argmax is right (OU)
``extraction_strength``    ES: ``1 - k*/T``, ``k*`` the start of the longest fully-matching suffix;
                           0 when the last token misses (OU returns 1/T there)
``memorization_accuracy``  MA: greedy next-token accuracy (Jang et al.; the Barbulescu paper's
                           per-sequence memorization). On the kit's data it equals EM (see
                           :mod:`unlearnkit.memorization`)
``extraction_likelihood``  EL_n: mean over prefixes ``t = 1..T-n`` of the n-gram overlap between the
                           greedy continuation of ``x_<t`` and ``x_≥t`` (``n = mem_el_n``, 10);
                           sequences of ``T <= n`` tokens are left out (EL_n undefined); a split
                           with no longer sequence is skipped (suite) or raises (named)
``memorization_outliers``  the Barbulescu unlearning-quality count: forget sequences whose MA is
                           still above the threshold (default: the mean MA on unseen text of the
                           same kind, the holdout split, of the original model if ``original=`` is
                           given, else of the evaluated model), with the std of MA;
                           ``mem_outlier_rule="two_sided"``: the authors' code, ``#(MA >= 0.60) +
                           #(MA <= 0.15)``
``miau``                   the perturbation membership score (DetectGPT-style) on the world's own
                           perturbations (same template, other values), not T5 mask filling
=========================  ==========================================================================

Data: rows with ``question``/``answer`` (the world's records: ``World.forget_records``...) or plain
``text``. Per-sequence values are in [0, 1] (MIAU: a z-score); ``memorization_outliers`` returns the
per-sequence MA rows (column ``outlier``) plus one aggregate row per split (``id = -1``, value = the
count, with ``threshold``, ``threshold_source``, ``std``, ``n_high``, ``n_low``, ``statement``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..memorization import memorization_scores, miau_scores, outlier_summary, per_sequence_ma
from ..world.loaders import DataError
from .base import NON_FORGET_SPLITS, MissingInputError, metric, option

option("mem_el_n", 10, "extraction_likelihood: n of EL_n (n-gram length, tokens)", low=1)
option("mem_threshold", None, "memorization_outliers (one-sided): MA above which a sequence counts as still "
       "memorized (default None: the mean MA of the holdout split, i.e. unseen text of the same kind)", low=0.0, high=1.0)
option("mem_outlier_rule", "above_unseen", "memorization_outliers: 'above_unseen' (count MA > threshold) or "
       "'two_sided' (the authors' code: MA >= mem_high plus MA <= mem_low)", choices=("above_unseen", "two_sided"))
option("mem_high", 0.60, "memorization_outliers, two-sided rule: upper MA threshold (the code's 0.60)", low=0.0, high=1.0)
option("mem_low", 0.15, "memorization_outliers, two-sided rule: lower MA threshold (the code's 0.15)", low=0.0, high=1.0)

_FIELDS = dict(fields=("question", "answer"), alt_fields=(("text",),))
_SRC_OU = "OpenUnlearning memorization.py (exact_memorization, extraction_strength)"
_SRC_KU = "Jang et al. 2023 (Knowledge Unlearning), models/Neo_Model.py"


def _nanmean(split, v):
    v = np.asarray(v, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _scores(ctx, split, data) -> pd.DataFrame:
    key = ("memorization", split)
    if key not in ctx.cache:
        ctx.cache[key] = memorization_scores(ctx.model, ctx.tokenizer, data, el_n=None,
                                             batch_size=ctx.opt("batch_size"), quantities=("em", "es", "ma"))
    return ctx.cache[key]


def _one(ctx, split, data, q):
    df = _scores(ctx, split, data)
    return df[df.quantity == q][["id", "value", "n_tokens"]].reset_index(drop=True)


@metric("exact_memorization", suites=("memorization",), direction="more memorized (0 = no token right, 1 = verbatim)",
        formula="EM = (1/T) sum_t 1[argmax p(.|ctx, x_<t) = x_t]", source=_SRC_OU, **_FIELDS)
def exact_memorization_metric(ctx, split, data):
    return _one(ctx, split, data, "em")


@metric("extraction_strength", suites=("memorization",), direction="more memorized (share of the sequence "
        "recoverable as a matching suffix)", formula="ES = 1 - k*/T, k* = min{k : argmax matches x on [k, T)}; "
        "0 if no suffix matches", source=_SRC_OU + "; 0 instead of 1/T when no suffix matches", **_FIELDS)
def extraction_strength_metric(ctx, split, data):
    return _one(ctx, split, data, "es")


@metric("memorization_accuracy", suites=("memorization",), direction="more memorized",
        formula="MA = (1/T) sum_t 1[greedy_next(ctx, x_<t) = x_t]", source=_SRC_KU + "; Barbulescu & Triantafillou "
        "2024 g(x)", **_FIELDS)
def memorization_accuracy_metric(ctx, split, data):
    return _one(ctx, split, data, "ma")


@metric("extraction_likelihood", suites=("memorization",), direction="more extractable",
        formula="EL_n = mean_{t=1..T-n} |{g in ngrams_n(greedy(x_<t)) : g in ngrams_n(x_>=t)}| / |ngrams_n(x_>=t)|",
        source=_SRC_KU + " (the [SU] code copies MA into its EL column; here EL is computed)",
        aggregate=_nanmean, **_FIELDS)
def extraction_likelihood_metric(ctx, split, data):
    n = ctx.opt("mem_el_n")
    key = ("memorization_el", split, n)
    if key not in ctx.cache:
        ctx.cache[key] = memorization_scores(ctx.model, ctx.tokenizer, data, el_n=n, batch_size=ctx.opt("batch_size"),
                                             quantities=("el",))
    df = ctx.cache[key][["id", "value", "n_tokens"]].assign(n=n)
    kept = df[df.n_tokens > n]
    if kept.empty:
        raise DataError(f"every sequence of split {split!r} has at most mem_el_n={n} tokens (longest: "
                        f"{int(df.n_tokens.max())}): EL_n is undefined; lower mem_el_n (valid range: 1 to longest - 1)")
    return kept.reset_index(drop=True)


def unseen_level(ctx) -> tuple[float, str]:
    """The mean MA on the holdout split (unseen text of the same kind), and a sentence saying whose.

    Whose: the model *before* unlearning when ``original=(model, tokenizer)`` is given (a fixed level,
    comparable across methods: unlearning also lowers MA on unseen text), else the evaluated model.
    """
    if ctx.holdout is None:
        raise MissingInputError("metric 'memorization_outliers' needs a threshold: pass mem_threshold=<MA in [0, 1]>, "
                                "or a holdout split of unseen records (holdout=world.holdout_records)")
    if ctx.original is not None:
        key = ("memorization_unseen_original",)
        if key not in ctx.cache:
            om, otok = ctx.original
            ctx.cache[key] = per_sequence_ma(om, otok, ctx.holdout, batch_size=ctx.opt("batch_size"))
        ma = ctx.cache[key]
        whose = "the original model (before unlearning)"
    else:
        ma = _one(ctx, "holdout", ctx.holdout, "ma")["value"].to_numpy()
        whose = "the evaluated model"
    return float(np.mean(ma)), f"mean MA of {whose} on {len(ma)} unseen sequences (holdout)"


@metric("memorization_outliers", suites=("memorization",), per_example=False,
        direction="more sequences still memorized (0 = none above the threshold)",
        formula="c(D_f) = #{x in D_f : MA(x) > tau}, tau = unseen-data mean MA (default); two-sided: "
                "#(MA >= 0.60) + #(MA <= 0.15), with std(MA)",
        source="Barbulescu & Triantafillou 2024 (metric c(D_f)); the authors' analysis code (two-sided count)",
        **_FIELDS)
def memorization_outliers_metric(ctx, splits):
    rule = ctx.opt("mem_outlier_rule")
    frames = []
    for split, data in splits.items():
        if split in NON_FORGET_SPLITS or split == "holdout":
            continue
        if not ({"question", "answer"} <= set(data.column_names) or "text" in data.column_names):
            continue
        per = _one(ctx, split, data, "ma")
        if rule == "two_sided":
            hi, lo, src = ctx.opt("mem_high"), ctx.opt("mem_low"), "fixed thresholds of the authors' analysis code"
        else:
            hi, lo = ctx.opt("mem_threshold"), None
            src = "given (mem_threshold)"
            if hi is None:
                hi, src = unseen_level(ctx)
        s = outlier_summary(per["value"], high=hi, low=lo)
        outl = per["value"] >= hi if lo is not None else per["value"] > hi
        if lo is not None:
            outl |= per["value"] <= lo
        frames.append(per.assign(split=split, outlier=outl.to_numpy()))
        cmp = (f"MA >= {hi:.3f} or <= {lo:.3f}" if lo is not None else f"MA > {hi:.3f}")
        statement = (f"{s['total']} of {s['n']} {split} sequences have {cmp} (threshold: {src}); "
                     f"std of MA {s['std']:.3f}")
        frames.append(pd.DataFrame([{"split": split, "id": -1, "value": float(s["total"]), "threshold": hi,
                                     "low": lo, "threshold_source": src, "rule": rule, "std": s["std"],
                                     "n_high": s["n_high"], "n_low": s.get("n_low", np.nan), "n": s["n"],
                                     "statement": statement}]))
    return pd.concat(frames, ignore_index=True) if frames else None


@metric("miau", suites=("memorization",), direction="more likely a member (still memorized)",
        formula="(ll(x) - mean_j ll(x~_j)) / std_j ll(x~_j), ll = mean token log-lik., x~_j = same template, "
                "other values of the world's vocabulary",
        source="Barbulescu & Triantafillou 2024, gpt_neo_mia.py (MIAU; T5 mask-filling replaced by the world's "
               "own value perturbations)", fields=("question", "answer", "perturbed_answer"))
def miau_metric(ctx, split, data):
    return miau_scores(ctx.model, ctx.tokenizer, data, batch_size=ctx.opt("batch_size"))


def memorization_histogram(values, bins: int = 10) -> pd.DataFrame:
    """Histogram data of per-sequence values on [0, 1]: ``bin_left``, ``bin_right``, ``count`` (``bins`` bins)."""
    if int(bins) < 1:
        raise ValueError(f"bins={bins!r} is out of range; valid range: integers >= 1")
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=int(bins), range=(0.0, 1.0))
    return pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "count": counts})
