"""Metric registry, the evaluation context (shared caches) and :func:`evaluate`.

Every metric returns a tidy table: one row per example (``id``, ``value``, extra columns), to
which :func:`evaluate` adds ``model``, ``split`` and ``metric``. Aggregate metrics (forget quality,
model utility, MIA AUCs, PrivLeak) add rows with ``id = -1``. :func:`summarize` turns the long
table into one number per (model, split, metric) using each metric's declared aggregation.

Suites (``"tofu"``, ``"muse"``, ``"mia"``, ``"closer_look"``, ``"squeeze"``, ``"robustness"``,
``"all"``) are built from each metric's ``suites=``. A metric that needs an input the call did not
give (the retain model, the original model, an NLI model, a holdout split) or a data field a split
lacks is **skipped with a warning** when it comes from a suite, and **raises** (naming the missing
option or field) when it was asked for by name.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset
from tqdm.auto import tqdm

from ..data import DEFAULT_FORMAT, PromptFormat
from ..generation import CPU_GEN_BATCH_TOKENS
from ..io import model_digest, run_manifest
from ..registry import Param, Registry, UnknownNameError, resolve_params
from ..scoring import generate, score_answers, score_pairs
from ..validate import as_dataset, check_ids, check_vocab, context_length, warn_long
from ..world.loaders import DataError, check_dataset

METRICS: Registry[Metric] = Registry("metric")
SUITES: dict[str, list[str]] = {}

#: what a split is for, whatever it is called: the role decides truth-ratio aggregation, option
#: normalisation, model utility's components, the MIA holdout and which metrics run on it
ROLES = ("forget", "retain", "real_authors", "world_facts", "holdout")
#: roles that hold knowledge the model should keep; metrics registered ``forget_only`` skip them
NON_FORGET_SPLITS = ("retain", "world_facts", "real_authors", "holdout")
_ROLE_NAMES = [(re.compile(r"^forget(\d+)?(_perturbed)?$"), "forget"),
               (re.compile(r"^retain(\d+)?(_perturbed)?$"), "retain"),
               (re.compile(r"^real_authors(_perturbed)?$"), "real_authors"),
               (re.compile(r"^world_facts(_perturbed)?$"), "world_facts"),
               (re.compile(r"^holdout(\d+)?(_perturbed)?$"), "holdout")]
log = logging.getLogger("unlearnkit")


def infer_role(name: str) -> str | None:
    """The role of a split from its name (a role itself, or TOFU's file names: ``forget01``,
    ``retain_perturbed``, ``real_authors_perturbed``, ``world_facts_perturbed``, ``holdout10``...);
    None when the name says nothing (such a split is scored as before roles existed: every metric,
    model utility included)."""
    for pat, role in _ROLE_NAMES:
        if pat.match(str(name)):
            return role
    return None


def split_roles(splits, roles: dict | None = None) -> dict:
    """``{split name: role or None}``: ``roles`` as given (each checked against :data:`ROLES`), the
    others inferred from their names with a logged message where the name is not the role itself."""
    roles = dict(roles or {})
    unknown = sorted(set(roles) - set(splits))
    if unknown:
        raise ValueError(f"roles names split(s) {unknown} that are not in the data; splits: {list(splits)}")
    for name, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{name!r}] = {role!r} is not a role; valid roles: {', '.join(ROLES)}")
    out = {}
    for name in splits:
        if name in roles:
            out[name] = roles[name]
            continue
        out[name] = infer_role(name)
        if out[name] is not None and out[name] != name:
            log.info("split %r has role %r (inferred from its name; pass roles={...} to set it)", name, out[name])
    return out


#: every option :func:`evaluate` accepts: name -> :class:`~unlearnkit.registry.Param` (default, what it
#: does, valid range). Each metric module declares its own with :func:`option`; unknown or
#: out-of-range options raise an error naming the option.
OPTIONS: dict[str, Param] = {}


def option(name: str, default, doc: str, **range_kw) -> None:
    """Declare an evaluation option (``range_kw``: ``low``, ``high``, ``choices``... as in ``Param``)."""
    if name in OPTIONS:
        raise ValueError(f"evaluation option {name!r} is declared twice")
    OPTIONS[name] = Param(default, doc, **range_kw)


option("batch_size", 64, "rows per scoring forward pass", low=1)
option("gen_batch_size", None, "rows per greedy decoding batch (default: twice batch_size; on CPU decoding also keeps "
       f"rows x (prompt + max_new_tokens) within {CPU_GEN_BATCH_TOKENS} tokens)", low=1)
option("max_batch_tokens", None, "cap on rows x padded length per scoring forward (default: 2048 on CPU, none elsewhere)")
option("max_new_tokens", 48, "length limit of greedy answers (tokens)", low=1)
option("prefix_share", True, "compute shared prefixes once: a header every prompt shares (chat format: system "
       "prompt, date) once per scoring call, each question's prompt once for all its answers")


class MissingInputError(ValueError):
    """A metric was asked for by name but an input it needs was not given (the message names it)."""


#: what a metric can need beyond the model and the data: name -> (check(ctx), how to give it)
NEEDS: dict[str, tuple[Callable, str]] = {
    "retain_model": (lambda ctx: ctx.reference is not None,
                     "the retain model: pass reference=(retain_model, tokenizer) (or an earlier evaluate() table of it)"),
    "original_model": (lambda ctx: ctx.original is not None,
                       "the model before unlearning: pass original=(model, tokenizer)"),
    "nli_model": (lambda ctx: bool(ctx.options.get("nli_model")),
                  "an NLI model: pass nli_model='<folder or hub name of a sequence-classification NLI model>'"),
    "holdout": (lambda ctx: ctx.holdout is not None,
                "a holdout split (rows never trained on): pass a World, a data dict with a 'holdout' entry, "
                "or holdout=<Dataset>"),
    "retain_auc": (lambda ctx: ctx.reference is not None or ctx.options.get("retain_auc") is not None,
                   "the retain model's MIA AUC: pass reference=(retain_model, tokenizer), or retain_auc=<float> "
                   "(OpenUnlearning substitutes 0.5)"),
}


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``fn(ctx, split, data) -> DataFrame`` (per example, columns ``id``, ``value``...) or, for
    ``per_example=False``, ``fn(ctx, splits) -> DataFrame`` of rows with a ``split`` column (and
    ``id``: -1 for aggregate rows, which is filled in where absent).
    ``direction`` says what a higher value means ("more knowledge" / "more forgotten" / "more
    fluent"...); ``fields`` are the data columns it needs (``alt_fields``: other sufficient sets,
    e.g. ``("text",)`` for plain-text data); ``aggregate`` maps a split name and the per-example
    values to one number; ``needs`` names inputs from :data:`NEEDS`; ``forget_only`` metrics run
    only on splits not named in :data:`NON_FORGET_SPLITS`. ``generates``: whether the metric reads
    the split's greedy answers (:meth:`EvalContext.generations`), a bool or ``fn(ctx) -> bool``;
    :func:`evaluate` decodes the answers of every such split in one pooled call.
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
    alt_fields: tuple[tuple[str, ...], ...] = ()
    forget_only: bool = False
    generates: bool | Callable = False

    def reads_generations(self, ctx) -> bool:
        """Whether this metric will read the greedy answers of its splits in ``ctx``."""
        return bool(self.generates(ctx) if callable(self.generates) else self.generates)

    def missing_fields(self, data) -> list[str]:
        cols = set(data.column_names)
        missing = [f for f in self.fields if f not in cols]
        if missing and any(all(f in cols for f in alt) for alt in self.alt_fields):
            return []
        return missing

    def check_fields(self, data, split: str):
        missing = self.missing_fields(data)
        if missing:
            alt = "".join(f" (or {list(a)})" for a in self.alt_fields)
            raise DataError(f"metric {self.name!r} needs field(s) {missing}{alt} which split {split!r} lacks "
                            f"(it has: {', '.join(sorted(data.column_names))})")

    def missing_needs(self, ctx) -> list[str]:
        return [n for n in sorted(self.needs) if not NEEDS[n][0](ctx)]

    def applies_to(self, role: str | None) -> bool:
        """Whether this metric runs on a split of ``role`` (``forget_only`` metrics skip the others)."""
        return not (self.forget_only and role in NON_FORGET_SPLITS)

    def __repr__(self):
        return f"<metric {self.name} [{', '.join(self.suites)}]: {self.formula}; higher = {self.direction}>"


def metric(name: str, *, suites: tuple[str, ...], formula: str, direction: str, source: str,
           fields=("question", "answer"), per_example: bool = True, aggregate=None, needs=(), alt_fields=(),
           forget_only: bool = False, generates=False):
    """Decorator registering a metric function (see :class:`Metric`)."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"metric {name!r}: unknown needs {sorted(unknown)}; valid: {', '.join(NEEDS)}")

    def deco(fn):
        kw = {} if aggregate is None else {"aggregate": aggregate}
        m = Metric(name, fn, tuple(suites), formula, direction, source, tuple(fields), per_example,
                   needs=frozenset(needs), alt_fields=tuple(tuple(a) for a in alt_fields), forget_only=forget_only,
                   generates=generates, **kw)
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


def _resolve(metrics) -> list[tuple[str, bool]]:
    """``(metric name, asked for by name)`` pairs, suites expanded, duplicates dropped."""
    if metrics is None:
        metrics = ["tofu"]
    if isinstance(metrics, str):
        metrics = [metrics]
    out: dict[str, bool] = {}
    for m in metrics:
        if m in SUITES and m not in METRICS:
            for name in SUITES[m]:
                out.setdefault(name, False)
        else:
            if m not in METRICS and m not in SUITES:
                valid = ", ".join(METRICS.names()) + "; suites: " + ", ".join(SUITES)

                raise UnknownNameError(f"unknown metric {m!r}; valid choices: {valid}")
            out[METRICS.get(m).name] = True
    return list(out.items())


def resolve_metrics(metrics) -> list[str]:
    """Expand suite names (``"tofu"``, ``"all"``...) and validate metric names."""
    return [name for name, _ in _resolve(metrics)]


@dataclass
class EvalContext:
    """Shared state for one evaluation: the model, caches of generations and scores, options.

    ``reference``: ``(model, tokenizer)`` of the retain model, or a DataFrame of its earlier
    :func:`evaluate` output (then only its rows are used). ``original``: ``(model, tokenizer)``
    before unlearning (squeezing). ``holdout``: rows never trained on (membership inference).
    ``splits``: every split of this evaluation (metrics that look across splits use it).
    ``options``: evaluation options (:data:`OPTIONS`: ``max_new_tokens``, ``batch_size``,
    ``max_batch_tokens``, ``prefix_share``, and each metric's own); absent ones take their defaults.
    """

    model: Any
    tokenizer: Any
    reference: Any = None
    options: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    original: Any = None
    holdout: Any = None
    splits: dict = field(default_factory=dict)
    #: how questions and answers become tokens (:class:`unlearnkit.data.PromptFormat`)
    fmt: PromptFormat = DEFAULT_FORMAT
    #: split name -> role (:data:`ROLES`, or None when the name says nothing)
    roles: dict = field(default_factory=dict)
    #: splits whose answers are scored with per-token statistics from the start (membership
    #: inference reads them; set by :func:`evaluate` from the metrics it runs)
    token_stats_splits: set = field(default_factory=set)
    #: splits whose greedy answers some metric of this evaluation reads (set by :func:`evaluate`):
    #: the first request decodes all of them in one pooled call, so decoding batches stay full
    gen_splits: list = field(default_factory=list)

    def role(self, split: str) -> str | None:
        """The role of ``split``: as given to :func:`evaluate`, else inferred from its name."""
        return self.roles[split] if split in self.roles else infer_role(split)

    def split_of(self, role: str) -> str | None:
        """The name of the first split with ``role`` (None if there is none)."""
        return next((s for s in self.splits if self.role(s) == role), None)

    def __repr__(self) -> str:
        model = getattr(self.model, "name_or_path", None) or type(self.model).__name__
        given = ", ".join(f"{k}={v!r}" for k, v in self.options.items()) or "defaults"
        extra = [n for n, v in (("reference", self.reference), ("original", self.original),
                                ("holdout", self.holdout)) if v is not None]
        return (f"EvalContext(model={model!r}, splits={list(self.splits)}, with={extra or 'nothing else'}, "
                f"options: {given}; {len(self.cache)} cached results)")

    def opt(self, key: str):
        """The value of evaluation option ``key`` (its declared default when not given)."""
        if key not in OPTIONS:
            raise KeyError(f"{key!r} is not a declared evaluation option (declare it with metrics.base.option)")
        return self.options.get(key, OPTIONS[key].default)

    def require(self, need: str, metric_name: str):
        """Raise :class:`MissingInputError` if ``need`` (a :data:`NEEDS` key) is not satisfied."""
        ok, how = NEEDS[need]
        if not ok(self):
            raise MissingInputError(f"metric {metric_name!r} needs {how}")

    def gen_batch(self) -> int:
        """Rows per greedy decoding batch: the ``gen_batch_size`` option, else twice ``batch_size``."""
        return int(self.opt("gen_batch_size") or 2 * self.opt("batch_size"))

    def generations(self, split: str, data) -> list[str]:
        """Greedy answers to ``data["question"]`` (``max_new_tokens`` option; cached per split).

        The first request for one of :attr:`gen_splits` decodes every split listed there that has
        no answers yet, in one call (length-sorted batches of ``gen_batch_size`` rows across
        splits): the same answers as one call per split, in fuller batches.
        """
        key = ("gen", split)
        if key not in self.cache:
            todo = [(split, data)]
            if split in self.gen_splits and data is self.splits.get(split):
                todo += [(s, self.splits[s]) for s in self.gen_splits if s != split and ("gen", s) not in self.cache]
            questions = [q for _, d in todo for q in d["question"]]
            answers = generate(self.model, self.tokenizer, questions, max_new_tokens=self.opt("max_new_tokens"),
                               batch_size=self.gen_batch(), fmt=self.fmt)
            start = 0
            for s, d in todo:
                self.cache[("gen", s)] = answers[start:start + len(d)]
                start += len(d)
        return self.cache[key]

    def generation_tokens(self, split: str, data) -> list[list[str]]:
        """The greedy answers of :meth:`generations`, each split into the tokenizer's tokens (cached)."""
        key = ("gen_tokens", split)
        if key not in self.cache:
            self.cache[key] = [self.tokenizer.tokenize(g) if g else [] for g in self.generations(split, data)]
        return self.cache[key]

    def scores(self, split: str, data, column: str = "answer", token_stats: bool = False) -> dict:
        """Scores of ``data[column]`` (a string column, or a list column such as ``perturbed_answer``).

        ``paraphrased_answer`` and ``perturbed_answer`` (what the truth ratio needs) are scored
        together, several answers per question with the question's prefix computed once
        (``prefix_share`` option, default True). ``token_stats`` adds the per-token quantities of
        :func:`~unlearnkit.scoring.score_pairs` (membership inference needs them); they are computed
        with the first scoring of a split listed in :attr:`token_stats_splits`, so each
        (question, answer) goes through the model once per evaluation.
        """

        key = ("score", split, column)
        token_stats = token_stats or (column == "answer" and split in self.token_stats_splits)
        if key in self.cache and (not token_stats or "token_mu" in self.cache[key]):
            return self.cache[key]
        bs = self.opt("batch_size")
        share = self.opt("prefix_share")
        mbt = self.opt("max_batch_tokens")
        cols = data.column_names
        if column in ("paraphrased_answer", "perturbed_answer") and "paraphrased_answer" in cols \
                and "perturbed_answer" in cols:
            lists = [[p, *pert] for p, pert in zip(data["paraphrased_answer"], data["perturbed_answer"])]
            res = score_answers(self.model, self.tokenizer, data["question"], lists, batch_size=bs, prefix_share=share,
                                max_batch_tokens=mbt, fmt=self.fmt)
            self.cache[("score", split, "paraphrased_answer")] = {
                k: np.array([r[k][0] for r in res]) for k in ("logprob", "n_tokens", "mean_nll", "prob")}
            self.cache[("score", split, "perturbed_answer")] = [{k: v[1:] for k, v in r.items()} for r in res]
            return self.cache[key]
        vals = data[column]
        if vals and isinstance(vals[0], list):
            self.cache[key] = score_answers(self.model, self.tokenizer, data["question"], vals, batch_size=bs,
                                            prefix_share=share, max_batch_tokens=mbt, fmt=self.fmt,
                                            token_stats=token_stats)
        else:
            self.cache[key] = score_pairs(self.model, self.tokenizer, data["question"], vals, batch_size=bs,
                                          max_batch_tokens=mbt, fmt=self.fmt, prefix_share=share,
                                          token_stats=token_stats)
        return self.cache[key]


def _as_splits(data) -> dict:

    if hasattr(data, "split") and hasattr(data, "table") and hasattr(data, "config"):  # a World
        return {s: data.split(s) for s in ("forget", "retain", "world_facts")}
    if isinstance(data, (Dataset, pd.DataFrame)):
        data = {"data": data}
    if isinstance(data, dict):
        out = {}
        for name, d in data.items():
            d = as_dataset(f"split {name!r}", d)
            if "id" not in d.column_names:  # metrics key rows by id: positions, as row_ids would
                d = d.add_column("id", list(range(len(d))))
            check_ids(f"split {name!r}", d)
            out[name] = d
        return out
    raise TypeError(f"data must be a World, a datasets.Dataset, a pandas DataFrame or a dict of them, got "
                    f"{type(data).__name__}")


def _holdout_of(data, splits, given, roles):
    """The membership-inference holdout; a dict's split with role ``holdout`` is taken out of
    ``splits`` (it is the MIA baseline, not a split to score: TOFU's model utility would count it)."""
    name = next((s for s in splits if roles.get(s) == "holdout"), None)
    entry = splits.pop(name) if name is not None else None
    if given is not None:
        return given
    if hasattr(data, "split") and hasattr(data, "table") and hasattr(data, "config"):
        try:
            h = data.split("holdout")
        except KeyError:
            return None
        return h if len(h) else None
    return entry


def _skip(mname: str, why: str):
    warnings.warn(f"metric {mname!r} skipped: {why}", UserWarning, stacklevel=3)


def evaluate(model, tokenizer, data, metrics=None, *, reference=None, original=None, holdout=None,
             model_name: str | None = None, progress: bool = True, prompt_format=None, roles=None,
             **options) -> pd.DataFrame:
    """Evaluate ``model`` on ``data`` with the named metrics or suites; returns one tidy DataFrame.

    ``data``: a :class:`~unlearnkit.world.World` (its forget, retain and world_facts splits; its
    holdout split serves membership inference), a ``datasets.Dataset`` (split name ``"data"``) or a
    dict ``{split_name: Dataset}`` (a ``"holdout"`` entry is the membership-inference holdout, not a
    split of its own).
    ``metrics``: metric names and/or suite names (``"tofu"``, ``"muse"``, ``"mia"``,
    ``"closer_look"``, ``"squeeze"``, ``"robustness"``, ``"all"``); default ``"tofu"``.
    ``reference``: the retain model ``(model, tokenizer)`` (forget quality, PrivLeak, reference MIA).
    ``original``: the model before unlearning ``(model, tokenizer)`` (squeezing).
    ``holdout``: a ``Dataset`` of never-trained rows (overrides the World's / dict's).
    ``roles``: ``{split name: role}`` with roles from :data:`ROLES` (forget, retain, real_authors,
    world_facts, holdout); splits not named there get their role from their name (TOFU's file
    names included: ``forget01``, ``retain_perturbed``...), with a logged message. The role, not
    the name, decides truth-ratio aggregation, option normalisation and model utility; the
    result's ``role`` column says which role each row was scored under.
    ``prompt_format``: ``"plain"`` (default: ``Question: ...\nAnswer:``), ``"chat"`` (the tokenizer's
    chat template, as instruct TOFU models were trained), a dict of
    :class:`~unlearnkit.data.PromptFormat` fields (``system_prompt``, ``date_string``...) or a
    PromptFormat; recorded in the table's ``attrs["prompt_format"]``.
    ``options``: evaluation options (:data:`OPTIONS`, listed with defaults and ranges in
    ``docs/metrics.md``: ``max_new_tokens``, ``batch_size``, ``prefix_share``, ``nli_model``,
    ``embedding_model``, ``mia_k``...); an unknown or out-of-range option raises, naming it.

    Columns of the result: ``model, split, metric, id, value`` (+ metric-specific extras such as
    ``generation``). Inputs missing for a metric: a warning and a skip if it came from a suite, a
    :class:`MissingInputError` (or :class:`DataError` for data fields) if it was named.
    """

    options = {k: v for k, v in resolve_params("evaluate", OPTIONS, options).items() if k in options}
    picked = _resolve(metrics)
    splits = _as_splits(data)
    fmt = PromptFormat.of(prompt_format)
    role_of = split_roles(splits, roles)
    ctx = EvalContext(model, tokenizer, reference, options, original=original,
                      holdout=_holdout_of(data, splits, holdout, role_of), splits=splits, fmt=fmt, roles=role_of)
    for name, d in {**splits, **({"holdout": ctx.holdout} if ctx.holdout is not None else {})}.items():
        check_dataset(d, f"split {name!r}")
    check_vocab(model, tokenizer)
    if any(m.startswith("mia_") or m == "privleak" for m, _ in picked):  # they score the member split's answers
        member = ctx.options.get("mia_member_split", "forget")
        ctx.token_stats_splits = {ctx.split_of("forget") if member == "forget" and member not in splits else member,
                                  "holdout"}
    for name, d in splits.items():
        if "answer" in d.column_names:
            warn_long(f"split {name!r}", d, tokenizer, context_length(model), fmt,
                      "they are scored as they are (positions past the context are extrapolated: treat their "
                      "values with caution)")
    todo = []
    for mname, named in picked:
        m = METRICS.get(mname)
        missing = m.missing_needs(ctx)
        if missing:
            how = "; ".join(NEEDS[n][1] for n in missing)
            if named:
                raise MissingInputError(f"metric {mname!r} needs {how}")
            _skip(mname, f"it needs {how}")
            continue
        if not m.per_example:
            todo.append((m, None, named))
            continue
        for split, d in splits.items():
            if not m.applies_to(ctx.role(split)):
                continue
            missing_f = m.missing_fields(d)
            if missing_f and not named:
                _skip(mname, f"split {split!r} lacks field(s) {missing_f}")
                continue
            todo.append((m, split, named))
    ctx.gen_splits = list(dict.fromkeys(split for m, split, _ in todo if split is not None and m.reads_generations(ctx)))
    frames = []
    bar = tqdm(todo, desc="evaluate", disable=not progress, leave=False)
    for m, split, named in bar:
        bar.set_postfix_str(f"{m.name} [{split or 'all splits'}]", refresh=False)
        if split is None:
            try:
                df = m.fn(ctx, splits)
            except (DataError, MissingInputError) as e:
                if named:
                    raise
                _skip(m.name, str(e))
                continue
            if df is None or len(df) == 0:
                continue
            df = df.assign(id=-1) if "id" not in df.columns else df.assign(id=df["id"].fillna(-1))
        else:
            d = splits[split]
            m.check_fields(d, split)
            try:
                df = m.fn(ctx, split, d)
            except (DataError, MissingInputError) as e:
                if named:
                    raise
                _skip(m.name, f"split {split!r}: {e}")
                continue
            if df is None or len(df) == 0:
                continue
            df = df.assign(split=split)
        frames.append(df.assign(metric=m.name))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["split", "metric", "id", "value"])
    out.insert(0, "model", model_name or getattr(model, "name_or_path", None) or type(model).__name__)
    front = ["model", "split", "metric", "id", "value"]
    out = out[front + [c for c in out.columns if c not in front]]
    out["role"] = [ctx.role(s) if s in splits else (infer_role(s) or "") for s in out["split"]]
    out.attrs["prompt_format"] = fmt.describe()
    out.attrs["manifest"] = run_manifest(model, tokenizer, splits, prompt_format=fmt.describe(), options={k: ctx.opt(k) for k in OPTIONS},
                                         metrics=[m for m, _ in picked], roles=role_of,
                                         reference_digest=_reference_digest(reference))
    return out


def _reference_digest(reference):
    """The manifest's note of the reference: a model's digest, or what kind of precomputed values it is."""
    model = reference[0] if isinstance(reference, tuple) else reference
    if model is None:
        return None
    return model_digest(model) if hasattr(model, "state_dict") else f"precomputed {type(model).__name__}"


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, metric): the metric's own aggregate of its per-example values.

    For metrics that report their own aggregate rows (``id == -1``: forget quality, AUCs...), that
    row's value is used.
    """
    rows = []
    for (model, split, mname), g in df.groupby(["model", "split", "metric"], sort=False):
        m = METRICS.get(mname) if mname in METRICS else None
        role = g["role"].iloc[0] if "role" in g.columns and g["role"].iloc[0] else infer_role(split)
        kw = {"variant": g["aggregation"].iloc[0]} if "aggregation" in g.columns and pd.notna(g["aggregation"].iloc[0]) \
            else {}
        vals = g["value"].to_numpy(dtype=float)
        agg_rows = g[g["id"] == -1] if "id" in g.columns else g.iloc[:0]
        if m is None or not m.per_example:
            if len(agg_rows):
                value = float(agg_rows["value"].iloc[0])
            elif m is not None and len(vals):
                value = m.aggregate(role, vals, **kw)
            else:
                value = float(vals[0]) if len(vals) else np.nan
        else:
            value = m.aggregate(role, vals, **kw)
        rows.append({"model": model, "split": split, "metric": mname, "value": value, "n": len(g),
                     "direction": m.direction if m else ""})
    return pd.DataFrame(rows)
