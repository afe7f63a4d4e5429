"""TOFU's evaluation core: probability, ROUGE-L, truth ratio, forget quality, model utility.

Conventions chosen (spec B0-B6), stated once here and in each docstring:

* probability: ``P̄(a|q) = exp(-NLL_sum/T)``, T counting answer tokens and EOS (OpenUnlearning).
  On splits whose role is ``world_facts`` / ``real_authors`` it is normalized over the options,
  ``P̄(a) / (P̄(a) + Σ_j P̄(â_j))`` (TOFU B2).
* rouge: ROUGE-L **recall** of the greedy answer against the true answer (``rouge-score`` with
  the stemmer, ``scorer.score(gt, gen)``), as TOFU reports it.
* truth_ratio: per example the raw ``R = [Π_j P̄(â_j)]^{1/m} / P̄(ã)`` (ã = paraphrased answer,
  or the answer where there is none). Aggregated as ``mean(min(R, 1/R))`` on ``forget``
  (1 = indifferent, TOFU's ``closer_to_1_better``) and ``mean(max(0, 1 - R))`` elsewhere
  (higher = knows the truth, ``true_better``).
* forget_quality: p-value of ``scipy.stats.ks_2samp`` between the model's and the retain model's
  forget-split truth ratios (orientation-invariant).
* model_utility: harmonic mean of {probability, rouge, truth_ratio (true_better)} over the
  non-forget splits present (retain, world_facts, real_authors); 0 if any component is 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from rouge_score import rouge_scorer
from scipy import stats

from .base import EvalContext, get_metric, metric, option

NORMALIZED_SPLITS = ("world_facts", "real_authors")


def _rouge_scorer():

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_recall(references, generations) -> np.ndarray:
    """ROUGE-L recall of each generation against its reference (``rouge-score``, stemmer on)."""
    sc = _rouge_scorer()
    return np.array([sc.score(r, g)["rougeL"].recall for r, g in zip(references, generations)])


def truth_ratio_raw(paraphrased_mean_nll: np.ndarray, perturbed_mean_nll: list[np.ndarray]) -> np.ndarray:
    """Raw truth ratio ``R = exp(nll_para - mean_j nll_pert_j)`` from length-normalized NLLs.

    ``R < 1`` means the correct (paraphrased) answer is likelier than the wrong ones.
    """
    pert = np.array([np.mean(p) for p in perturbed_mean_nll])
    return np.exp(np.asarray(paraphrased_mean_nll) - pert)


#: truth-ratio aggregations (spec B4): name -> (formula, source)
TRUTH_RATIO_AGGREGATIONS = {
    "closer_to_1": ("mean min(R, 1/R): 1 = indifferent", "TOFU / OpenUnlearning forget (closer_to_1_better)"),
    "true_better": ("mean max(0, 1 - R): higher = knows the truth", "TOFU / OpenUnlearning retain, real authors, world facts"),
    "cl_forget": ("1 - mean min(R, 1/R): higher = more retained", "A Closer Look (Yuan et al.) forget set"),
    "prob_mean": ("mean 1 / (1 + R) = P(correct) / (P(correct) + P(wrong)), P(wrong) the geometric mean of the "
                  "perturbed answers' probabilities", "OpenUnlearning meta-eval prob_mean"),
}


def aggregate_truth_ratio(role, r: np.ndarray, forget_variant: str | None = "closer_to_1", *,
                          variant: str | None = None) -> float:
    """Aggregate raw truth ratios ``R`` (see :data:`TRUTH_RATIO_AGGREGATIONS`). ``variant`` names the
    aggregation outright; otherwise the split's ``role`` decides: ``forget_variant`` on forget
    (``closer_to_1``, TOFU's, or ``cl_forget``), ``true_better`` elsewhere."""
    r = np.asarray(r, dtype=float)
    if variant is None:
        variant = (forget_variant or "closer_to_1") if role == "forget" else "true_better"
    if variant not in TRUTH_RATIO_AGGREGATIONS:
        raise ValueError(f"truth ratio aggregation {variant!r}; valid: {', '.join(TRUTH_RATIO_AGGREGATIONS)}")
    if variant in ("closer_to_1", "cl_forget"):
        v = float(np.mean(np.minimum(r, 1 / r)))
        return 1 - v if variant == "cl_forget" else v
    if variant == "prob_mean":
        return float(np.mean(1 / (1 + r)))
    return float(np.mean(np.maximum(0.0, 1 - r)))


@metric("probability", suites=("tofu",), direction="more knowledge",
        formula="P̄(a|q) = exp(-NLL_sum/T) (T incl. EOS); option-normalized on world_facts/real_authors",
        source="TOFU (Maini et al. 2024); OpenUnlearning evaluate_probability")
def probability(ctx, split, data):
    s = ctx.scores(split, data, "answer")
    p = s["prob"]
    if ctx.role(split) in NORMALIZED_SPLITS and "perturbed_answer" in data.column_names:
        pert = ctx.scores(split, data, "perturbed_answer")
        p = p / (p + np.array([x["prob"].sum() for x in pert]))
    return pd.DataFrame({"id": data["id"], "value": p, "mean_nll": s["mean_nll"], "n_tokens": s["n_tokens"]})


@metric("rouge", suites=("tofu",), generates=True, direction="more knowledge",
        formula="ROUGE-L recall(greedy answer vs true answer)", source="TOFU; rouge-score package")
def rouge(ctx, split, data):
    gens = ctx.generations(split, data)
    return pd.DataFrame({"id": data["id"], "value": rouge_recall(data["answer"], gens), "generation": gens})


def _truth_ratio_values(ctx, split, data) -> np.ndarray:
    base = "paraphrased_answer" if "paraphrased_answer" in data.column_names else "answer"
    para = ctx.scores(split, data, base)["mean_nll"]
    pert = [x["mean_nll"] for x in ctx.scores(split, data, "perturbed_answer")]
    return truth_ratio_raw(para, pert)


@metric("truth_ratio", suites=("tofu",), fields=("question", "answer", "perturbed_answer"),
        direction="more knowledge (non-forget: mean max(0,1-R)); forget: closer to 1 = indifferent",
        formula="R = geomean_j P̄(perturbed_j) / P̄(paraphrased); agg forget mean min(R,1/R), else mean max(0,1-R)",
        source="TOFU (Maini et al. 2024), spec B4",
        aggregate=lambda role, v, variant=None: aggregate_truth_ratio(role, v, variant=variant))
def truth_ratio(ctx, split, data):
    """Per example the raw ``R``; the aggregation (``summarize``) follows the split's role, or the
    options ``truth_ratio_forget`` / ``truth_ratio_other`` (see :data:`TRUTH_RATIO_AGGREGATIONS`),
    recorded per row in ``aggregation``."""
    variant = ctx.opt("truth_ratio_forget") if ctx.role(split) == "forget" else ctx.opt("truth_ratio_other")
    return pd.DataFrame({"id": data["id"], "value": _truth_ratio_values(ctx, split, data), "aggregation": variant})


option("truth_ratio_forget", "closer_to_1", "truth_ratio on the forget split: 'closer_to_1' (TOFU/OpenUnlearning: "
       "mean min(R,1/R)), 'cl_forget' (A Closer Look: 1 - that), 'true_better' (mean max(0,1-R)) or 'prob_mean' "
       "(OpenUnlearning meta-eval: mean 1/(1+R))", choices=tuple(TRUTH_RATIO_AGGREGATIONS))
option("truth_ratio_other", "true_better", "truth_ratio on the other splits: 'true_better' (TOFU/OpenUnlearning: "
       "mean max(0,1-R)) or 'prob_mean' (OpenUnlearning meta-eval); model utility always uses TOFU's true_better",
       choices=tuple(TRUTH_RATIO_AGGREGATIONS))


def _reference_truth_ratios(ctx, data) -> np.ndarray | None:
    ref = ctx.reference
    if ref is None:
        return None
    if isinstance(ref, pd.DataFrame):
        is_forget = ref.role == "forget" if "role" in ref.columns else ref.split == "forget"
        rows = ref[(ref.metric == "truth_ratio") & is_forget]
        return rows.value.to_numpy(float) if len(rows) else None

    if isinstance(ref, np.ndarray):
        return ref
    rctx = EvalContext(ref[0], ref[1], options=ctx.options, fmt=ctx.fmt)
    return _truth_ratio_values(rctx, "forget", data)


def forget_quality_value(model_tr: np.ndarray, retain_tr: np.ndarray) -> float:
    """KS-test p-value between two samples of truth ratios (``scipy.stats.ks_2samp``)."""
    return float(stats.ks_2samp(np.asarray(model_tr), np.asarray(retain_tr)).pvalue)


@metric("forget_quality", suites=("tofu",), per_example=False, direction="more forgotten (p > 0.05: like the retain model)",
        formula="p-value of KS test(truth ratios on forget: model vs retain model)",
        source="TOFU (Maini et al. 2024), spec B5", fields=("question", "answer", "perturbed_answer"),
        needs=("retain_model",))
def forget_quality(ctx, splits):
    name = ctx.split_of("forget")
    if name is None:
        return None
    data = splits[name]
    get_metric("forget_quality").check_fields(data, name)
    ref = _reference_truth_ratios(ctx, data)
    if ref is None:

        warnings.warn("forget_quality needs reference=(retain_model, tokenizer); skipped", stacklevel=3)
        return None
    mine = _truth_ratio_values(ctx, name, data)
    p = forget_quality_value(mine, ref)
    return pd.DataFrame([{"split": name, "value": p, "log10": float(np.log10(max(p, 1e-300)))}])


def harmonic_mean(values) -> float:
    """Harmonic mean; exactly 0 if any value is 0 (no clipping in reported numbers, spec E7)."""
    v = np.asarray(values, dtype=float)
    if np.any(v <= 0):
        return 0.0
    return float(stats.hmean(v))


@metric("model_utility", suites=("tofu",), per_example=False, direction="more utility",
        formula="HM over non-forget splits of {probability, rouge, truth_ratio(true_better)}",
        source="TOFU get_model_utility; OpenUnlearning hm_aggregate", fields=("question", "answer", "perturbed_answer"))
def model_utility(ctx, splits):
    comps = {}
    kept = [s for s in splits if ctx.role(s) != "forget"]
    for split in kept:
        data = splits[split]
        comps[f"{split}/probability"] = float(np.mean(probability(ctx, split, data).value))
        comps[f"{split}/rouge"] = float(np.mean(rouge(ctx, split, data).value))
        if "perturbed_answer" in data.column_names:
            comps[f"{split}/truth_ratio"] = aggregate_truth_ratio(ctx.role(split), _truth_ratio_values(ctx, split, data))
    if not comps:
        return None
    return pd.DataFrame([{"split": "+".join(kept), "value": harmonic_mean(list(comps.values())),
                          "components": comps}])
