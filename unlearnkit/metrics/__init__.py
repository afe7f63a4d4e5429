"""Metrics: each registered by name, returning tidy per-example tables; suites group them."""

from . import tofu  # noqa: F401  (registers)
from .base import METRICS, SUITES, EvalContext, Metric, evaluate, get_metric, list_metrics, metric, summarize
from .scoring import generate, score_answers, score_pairs
from .tofu import aggregate_truth_ratio, forget_quality_value, harmonic_mean, rouge_recall, truth_ratio_raw

__all__ = ["METRICS", "SUITES", "EvalContext", "Metric", "evaluate", "get_metric", "list_metrics", "metric",
           "summarize", "generate", "score_answers", "score_pairs", "aggregate_truth_ratio",
           "forget_quality_value", "harmonic_mean", "rouge_recall", "truth_ratio_raw"]
