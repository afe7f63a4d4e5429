"""Metric registry, the evaluation context (shared caches) and :func:`evaluate`.

Every metric returns a tidy table: one row per example (``id``, ``value``, extra columns), to
which :func:`evaluate` adds ``model``, ``split`` and ``metric``. Aggregate metrics (forget quality,
model utility) add rows with ``id = -1``. :func:`summarize` turns the long table into one number
per (model, split, metric) using each metric's declared aggregation and orientation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..registry import Registry
from ..world.loaders import DataError

METRICS: Registry[Metric] = Registry("metric")
SUITES: dict[str, list[str]] = {}


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``fn(ctx, split, data) -> DataFrame`` (per example, columns ``id``, ``value``...) or, for
    ``per_example=False``, ``fn(ctx, splits) -> DataFrame`` of aggregate rows (``split``, ``value``).
    ``direction`` says what a higher value means ("more knowledge" / "more forgotten" / "more
    fluent"...); ``fields`` are the data columns it needs; ``aggregate`` maps a split name and the
    per-example values to one number.
    """

    name: str
    fn: Callable
    suites: tuple[str, ...]
    formula: str
    direction: str
    source: str
    fields: tuple[str, ...] = ("question", "answer")
    per_example: bool = True
    aggregate: Callable[[str, np.ndarray], float] = lambda split, v: float(np.mean(v))
    needs: frozenset = frozenset()

    def check_fields(self, data, split: str):
        cols = set(data.column_names)
        missing = [f for f in self.fields if f not in cols]
        if missing:
            raise DataError(f"metric {self.name!r} needs field(s) {missing} which split {split!r} lacks "
                            f"(it has: {', '.join(sorted(cols))})")

    def __repr__(self):
        return f"<metric {self.name} [{', '.join(self.suites)}]: {self.formula}; higher = {self.direction}>"


def metric(name: str, *, suites: tuple[str, ...], formula: str, direction: str, source: str,
           fields=("question", "answer"), per_example: bool = True, aggregate=None, needs=()):
    """Decorator registering a metric function (see :class:`Metric`)."""

    def deco(fn):
        kw = {} if aggregate is None else {"aggregate": aggregate}
        m = Metric(name, fn, tuple(suites), formula, direction, source, tuple(fields), per_example,
                   needs=frozenset(needs), **kw)
        METRICS.add(name, m)
        for s in (*suites, "all"):
            SUITES.setdefault(s, []).append(name)
        return fn

    return deco


def list_metrics() -> list[str]:
    """Names of every registered metric (what ``evaluate(metrics=[...])`` accepts)."""
    return METRICS.names()


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


def resolve_metrics(metrics) -> list[str]:
    """Expand suite names (``"tofu"``, ``"all"``...) and validate metric names."""
    if metrics is None:
        metrics = ["tofu"]
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        if m in SUITES and m not in METRICS:
            out += SUITES[m]
        else:
            if m not in METRICS and m not in SUITES:
                valid = ", ".join(METRICS.names()) + "; suites: " + ", ".join(SUITES)
                from ..registry import UnknownNameError

                raise UnknownNameError(f"unknown metric {m!r}; valid choices: {valid}")
            out.append(METRICS.get(m).name)
    return list(dict.fromkeys(out))


@dataclass
class EvalContext:
    """Shared state for one evaluation: the model, caches of generations and scores, options.

    ``reference``: ``(model, tokenizer)`` of the retain model, or a DataFrame of its earlier
    :func:`evaluate` output (then only its rows are used). ``options``: metric options such as
    ``max_new_tokens``, ``batch_size``, ``truth_ratio_forget`` (aggregation variant).
    """

    model: Any
    tokenizer: Any
    reference: Any = None
    options: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def opt(self, key, default):
        return self.options.get(key, default)

    def generations(self, split: str, data) -> list[str]:
        from .scoring import generate

        key = ("gen", split)
        if key not in self.cache:
            self.cache[key] = generate(self.model, self.tokenizer, data["question"],
                                       max_new_tokens=self.opt("max_new_tokens", 48),
                                       batch_size=self.opt("batch_size", 64))
        return self.cache[key]

    def scores(self, split: str, data, column: str = "answer") -> dict:
        """Scores of ``data[column]`` (a string column, or a list column such as ``perturbed_answer``)."""
        from .scoring import score_answers, score_pairs

        key = ("score", split, column)
        if key not in self.cache:
            vals = data[column]
            if vals and isinstance(vals[0], list):
                self.cache[key] = score_answers(self.model, self.tokenizer, data["question"], vals,
                                                batch_size=self.opt("batch_size", 64))
            else:
                self.cache[key] = score_pairs(self.model, self.tokenizer, data["question"], vals,
                                              batch_size=self.opt("batch_size", 64))
        return self.cache[key]


def _as_splits(data) -> dict:
    from datasets import Dataset

    if hasattr(data, "split") and hasattr(data, "table") and hasattr(data, "config"):  # a World
        return {s: data.split(s) for s in ("forget", "retain", "world_facts")}
    if isinstance(data, Dataset):
        return {"data": data}
    if isinstance(data, dict):
        return dict(data)
    raise TypeError(f"data must be a World, a datasets.Dataset or a dict of them, got {type(data).__name__}")


def evaluate(model, tokenizer, data, metrics=None, *, reference=None, model_name: str | None = None,
             progress: bool = True, **options) -> pd.DataFrame:
    """Evaluate ``model`` on ``data`` with the named metrics (or suites); returns a tidy DataFrame.

    ``data``: a :class:`~unlearnkit.world.World` (its forget, retain and world_facts splits), a
    ``datasets.Dataset`` (split name ``"data"``) or a dict ``{split_name: Dataset}``.
    ``reference``: the retain model ``(model, tokenizer)`` for forget quality. Columns of the result:
    ``model, split, metric, id, value`` (+ metric-specific extras such as ``generation``).
    """
    from tqdm.auto import tqdm

    names = resolve_metrics(metrics)
    splits = _as_splits(data)
    ctx = EvalContext(model, tokenizer, reference, options)
    frames = []
    todo = [(m, s) for m in names for s in (splits if METRICS.get(m).per_example else [None])]
    for mname, split in tqdm(todo, desc="evaluate", disable=not progress, leave=False):
        m = METRICS.get(mname)
        if split is None:
            df = m.fn(ctx, splits)
            if df is None or len(df) == 0:
                continue
            df = df.assign(id=-1)
        else:
            d = splits[split]
            m.check_fields(d, split)
            df = m.fn(ctx, split, d)
            df = df.assign(split=split)
        frames.append(df.assign(metric=mname))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["split", "metric", "id", "value"])
    out.insert(0, "model", model_name or getattr(model, "name_or_path", None) or type(model).__name__)
    front = ["model", "split", "metric", "id", "value"]
    return out[front + [c for c in out.columns if c not in front]]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, metric): the metric's own aggregate of its per-example values."""
    rows = []
    for (model, split, mname), g in df.groupby(["model", "split", "metric"], sort=False):
        m = METRICS.get(mname) if mname in METRICS else None
        vals = g["value"].to_numpy(dtype=float)
        if m is None or not m.per_example:
            value = float(vals[0]) if len(vals) else np.nan
        else:
            value = m.aggregate(split, vals)
        rows.append({"model": model, "split": split, "metric": mname, "value": value, "n": len(g),
                     "direction": m.direction if m else ""})
    return pd.DataFrame(rows)
