"""Metrics: each registered by name, returning tidy per-example tables; suites group them.

Suites: ``tofu`` (probability, rouge, truth_ratio, forget_quality, model_utility), ``closer_look``
(token_entropy, cosine_similarity, entailment_score, fact_recall, collapse), ``muse``
(verbatim_memorization, knowledge_memorization, privleak), ``mia`` (mia_loss, mia_zlib, mia_min_k,
mia_min_k_plus_plus, mia_reference, mia_gradnorm, privleak), ``squeeze`` (squeezing), ``robustness``
(relearning, quantization, paraphrase_probe, prefix_probe), ``related`` (related_recall: indirect
probes of forgotten facts), ``memorization`` (exact_memorization, extraction_strength,
memorization_accuracy, extraction_likelihood, memorization_outliers, miau) and ``all``. The reference page
``docs/metrics.md`` is generated from the registry by :mod:`unlearnkit.metrics.catalog`.
"""

from ..scoring import generate, generate_from_ids, score_answers, score_pairs, score_texts
from . import (  # noqa: F401  (registers)
    closer_look,
    collapse,
    memorization,
    mia,
    muse,
    related,  # noqa: F401  (registers related_recall)
    robustness,
    squeezing,
    tofu,
)
from .base import (
    METRICS,
    NEEDS,
    OPTIONS,
    ROLES,
    SUITES,
    EvalContext,
    Metric,
    MissingInputError,
    evaluate,
    get_metric,
    infer_role,
    list_metrics,
    metric,
    option,
    resolve_metrics,
    split_roles,
    summarize,
)
from .catalog import metrics_markdown, metrics_table
from .closer_look import (
    classify_answer,
    cosine_scores,
    entailment_values,
    is_refusal,
    token_entropy_value,
    wrong_values,
)
from .memorization import memorization_histogram
from .mia import (
    grad_norm_score,
    gradnorm_scores,
    mia_auc,
    min_k_plus_plus_score,
    min_k_score,
    reference_score,
    zlib_score,
)
from .muse import privleak_value, rouge_l_f1
from .robustness import (
    answer_prefix,
    fake_quantize,
    finetune_copy,
    quantize_copy,
    related_rows,
    relearn_split,
)
from .squeezing import (
    belief_answers,
    misreport_table,
    squeeze_candidates,
    squeeze_decomposition,
    squeeze_summary,
    token_squeeze,
    token_squeeze_summary,
)
from .tofu import aggregate_truth_ratio, forget_quality_value, harmonic_mean, rouge_recall, truth_ratio_raw

__all__ = ["METRICS", "ROLES", "infer_role", "split_roles", "NEEDS", "OPTIONS", "option", "SUITES", "EvalContext", "Metric", "MissingInputError", "evaluate", "get_metric",
           "list_metrics", "metric", "resolve_metrics", "summarize", "generate", "generate_from_ids", "score_answers",
           "score_pairs", "score_texts", "aggregate_truth_ratio", "forget_quality_value", "harmonic_mean",
           "rouge_recall", "truth_ratio_raw", "token_entropy_value", "cosine_scores", "entailment_values",
           "classify_answer", "is_refusal", "wrong_values", "min_k_score", "min_k_plus_plus_score", "zlib_score",
           "reference_score", "mia_auc", "grad_norm_score", "gradnorm_scores", "privleak_value", "rouge_l_f1", "fake_quantize", "quantize_copy",
           "finetune_copy", "relearn_split", "related_rows", "answer_prefix", "belief_answers", "squeeze_candidates",
           "squeeze_decomposition", "squeeze_summary", "token_squeeze", "token_squeeze_summary",
           "metrics_table", "misreport_table", "metrics_markdown", "memorization_histogram"]
