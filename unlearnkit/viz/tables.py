"""Pure functions that turn recorded probes into the tables the widgets and plots draw.

Everything here reads :class:`~unlearnkit.train.UnlearnResult` tables (``probes``,
``token_probes``) and the probe data (rows with ``id``, ``question``, ``answer`` and, where
present, ``paraphrased_answer`` / ``perturbed_answer``); nothing here runs a model (the
misreport table, which does, is :func:`unlearnkit.metrics.misreport_table`).

**Not double counting.** The probes score the target, the paraphrase, the perturbed answers, the
model's greedy answer before unlearning (``initial_belief``) and its greedy answer at the current
step (``belief``). The greedy answers are often *the same text* as the target or the paraphrase
(before GA the model says the target; after GA it says the paraphrase). :func:`answer_distribution`
compares texts and counts each distinct answer once, so that "everything else" =
``1 - Σ distinct masses`` (clipped at 0) is a real probability.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..data import DEFAULT_FORMAT
from ..metrics.closer_look import token_entropy_value

#: the kinds of answer, in display order
KINDS = ("target", "paraphrase", "perturbed", "initial_belief", "belief", "other")
#: token tags of the token-level view, in priority order (a token continuing several answers
#: gets the first tag that applies)
TOKEN_TAGS = ("target", "paraphrase", "belief", "perturbed", "other")


# -- helpers ---------------------------------------------------------------------------------------

def _norm(text) -> str:
    """Answer texts are compared after stripping and collapsing whitespace (the probes strip too)."""
    if not isinstance(text, str):
        return ""
    return re.sub(r"\s+", " ", text).strip()


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    try:
        return [x for x in v if isinstance(x, str)]
    except TypeError:
        return []


def rows_by_id(data) -> dict:
    """``{id: row dict}`` of a ``datasets.Dataset``, a DataFrame or a list of dicts (with ``id``;
    rows without one are numbered 0, 1, ... as the probes do)."""
    if data is None:
        return {}
    if isinstance(data, pd.DataFrame):
        recs = data.to_dict("records")
    elif hasattr(data, "column_names"):
        recs = [dict(zip(data.column_names, vals)) for vals in zip(*(data[c] for c in data.column_names))]
    else:
        recs = [dict(r) for r in data]
    return {r.get("id", i): r for i, r in enumerate(recs)}


def probe_steps(probes: pd.DataFrame, split: str = "forget") -> list[int]:
    """The steps at which probes were recorded for ``split`` (sorted)."""
    if probes is None or len(probes) == 0:
        return []
    return sorted(int(s) for s in probes.loc[probes.split == split, "step"].unique())


def nearest_step(steps, step) -> int:
    """The recorded step closest to ``step`` (ties: the earlier one)."""
    steps = list(steps)
    if not steps:
        raise ValueError("no probe steps recorded (was unlearn run with probe_every=0?)")
    return min(steps, key=lambda s: (abs(s - step), s))


def _values(probes, qid, step, split):
    d = probes[(probes.split == split) & (probes.id == qid) & (probes.step == step)]
    if d.empty:
        raise KeyError(f"no probes for question id {qid!r} at step {step} ({split}); "
                       f"recorded steps: {probe_steps(probes, split)}")
    val = {q: float(v) for q, v in zip(d.quantity, d.value)}
    text = d.loc[d.quantity == "belief", "text"]
    return val, (text.iloc[0] if len(text) else None)


# -- sequence level --------------------------------------------------------------------------------

def answer_distribution(probes: pd.DataFrame, data, qid, step: int, *, split: str = "forget",
                        before_step: int | None = None) -> pd.DataFrame:
    """Where one question's probability mass is, before (``before_step``, default the first
    recorded step) and at ``step``: one row per kind of answer in :data:`KINDS`.

    Columns: ``kind``, ``text`` (the answer; for ``perturbed`` the wrong answers joined by " | "),
    ``before``, ``after`` (sequence probability mass), ``same_as`` (the kind this answer
    duplicates, e.g. the greedy answer *is* the paraphrase; missing if distinct) and ``counted``
    (whether its mass enters the sum that defines ``other``). ``other`` = ``1 - Σ`` counted masses,
    clipped at 0. ``before`` of the current greedy answer is NaN unless it duplicates an answer
    that was scored before (the probes score it only under the model of its own step), and
    ``other``'s ``before`` then still contains it.

    ``data``: the probe rows (for the answers' texts); matched on ``id``.
    """
    steps = probe_steps(probes, split)
    before_step = steps[0] if before_step is None else before_step
    rows = rows_by_id(data)
    if qid not in rows:
        raise KeyError(f"question id {qid!r} is not in the data given ({len(rows)} rows)")
    row = rows[qid]
    v0, greedy0 = _values(probes, qid, before_step, split)
    v1, greedy1 = _values(probes, qid, step, split)
    texts = {"target": _norm(row.get("answer")), "paraphrase": "", "perturbed": ""}
    paraphrases = [_norm(t) for t in _as_list(row.get("paraphrased_answer"))]
    perturbed = [_norm(t) for t in _as_list(row.get("perturbed_answer"))]
    texts["paraphrase"] = " | ".join(paraphrases)
    texts["perturbed"] = " | ".join(perturbed)
    texts["initial_belief"] = _norm(greedy0)
    texts["belief"] = _norm(greedy1)

    def duplicate_of(text, earlier):
        if not text:
            return None
        if text == texts["target"]:
            return "target"
        if text in paraphrases and "paraphrase" in v1:
            return "paraphrase"
        if text in perturbed and "perturbed" in v1:
            return "perturbed"
        if "initial_belief" in earlier and text == texts["initial_belief"]:
            return "initial_belief"
        return None

    same = {"target": None, "paraphrase": None, "perturbed": None}
    same["initial_belief"] = duplicate_of(texts["initial_belief"], ())
    same["belief"] = duplicate_of(texts["belief"], ("initial_belief",))
    # a duplicate of a duplicate points at the original kind
    if same["belief"] == "initial_belief" and same["initial_belief"] is not None:
        same["belief"] = same["initial_belief"]

    out = []
    same = {k: (v if isinstance(v, str) else None) for k, v in same.items()}
    for kind in KINDS[:-1]:
        if kind in ("paraphrase", "perturbed") and kind not in v1:
            continue
        b = v0.get(kind, np.nan)
        a = v1.get(kind, np.nan)
        if kind == "initial_belief":
            b = v0.get("belief", b)  # at the first step the initial belief is the greedy answer
        if kind == "belief":
            src = same["belief"]
            b = v0.get(src, np.nan) if src is not None else np.nan
            if src == "initial_belief":
                b = v0.get("belief", b)
        out.append({"kind": kind, "text": texts[kind], "before": b, "after": a, "same_as": same[kind],
                    "counted": same[kind] is None})
    counted = [r for r in out if r["counted"]]
    out.append({"kind": "other", "text": "(everything else)",
                "before": max(0.0, 1.0 - float(np.nansum([r["before"] for r in counted]))),
                "after": max(0.0, 1.0 - float(np.nansum([r["after"] for r in counted]))),
                "same_as": None, "counted": True})
    df = pd.DataFrame(out)
    df.attrs.update(id=qid, step=int(step), before_step=int(before_step), question=row.get("question"))
    return df


def mean_answer_distribution(probes: pd.DataFrame, data, step: int | str = "last", *,
                             split: str = "forget") -> pd.DataFrame:
    """:func:`answer_distribution` averaged over every probe question (at ``step``; ``"last"``:
    the last recorded step). Duplicated answers count 0 in the mean of the kind they duplicate
    (their mass is already in it), so the kinds' means still sum to at most 1."""
    steps = probe_steps(probes, split)
    s = steps[-1] if step == "last" else nearest_step(steps, int(step))
    rows = rows_by_id(data)
    ids = [q for q in dict.fromkeys(probes.loc[(probes.split == split) & (probes.step == s), "id"]) if q in rows]
    if not ids:
        raise ValueError("no probe question of this run is in the data given (match on 'id')")
    frames = []
    for q in ids:
        d = answer_distribution(probes, data, q, s, split=split)
        d.loc[~d.counted, ["before", "after"]] = 0.0
        frames.append(d.assign(id=q))
    allq = pd.concat(frames, ignore_index=True)
    out = allq.groupby("kind", sort=False)[["before", "after"]].mean().reindex(
        [k for k in KINDS if k in set(allq.kind)]).reset_index()
    out.attrs.update(step=s, n_questions=len(ids))
    return out


def mass_table(results: dict, data, step: int | str = "last", *, split: str = "forget",
               kinds=("target", "paraphrase", "perturbed", "other")) -> pd.DataFrame:
    """One row per objective (``results``: ``{name: UnlearnResult}``): the mean mass of each kind
    of answer at ``step`` (default: each run's last), from :func:`mean_answer_distribution`."""
    rows = {}
    for name, res in results.items():
        d = mean_answer_distribution(res.probes, data, step, split=split).set_index("kind")["after"]
        rows[name] = d.reindex(list(kinds))
    out = pd.DataFrame(rows).T
    out.columns.name = None
    return out


# -- equal forgetting ------------------------------------------------------------------------------

def forgetting_path(result, *, x: str = "target", y: str = "paraphrase", split: str = "forget",
                    y_split: str | None = None) -> pd.DataFrame:
    """One run's path through (forgetting, side effect): per probed step, the mean of probe quantity
    ``x`` on ``split`` questions and the mean of ``y`` on ``y_split`` questions (default ``split``).

    Quantities are probability masses (0..1) or ``entropy`` (nats), see :data:`unlearnkit.probes.PROBE_QUANTITIES`.
    Returns columns ``step, x, y`` (one row per step probed on both splits, in step order)."""
    p = result.probes if hasattr(result, "probes") else result
    if p is None or len(p) == 0:
        raise ValueError("no probes recorded (was unlearn run with probe_every=0?)")

    def means(q, sp):
        d = p[(p.split == sp) & (p.quantity == q)]
        if d.empty:
            have = sorted(p.loc[p.split == sp, "quantity"].unique())
            raise ValueError(f"no probes of quantity {q!r} on split {sp!r}; recorded there: {have}")
        return d.groupby("step")["value"].mean()

    both = pd.concat({"x": means(x, split), "y": means(y, y_split or split)}, axis=1).dropna()
    return both.rename_axis("step").reset_index()


def _crossing(path: pd.DataFrame, level: float):
    """(fractional step, y) where ``path.x`` first falls to ``level``, linearly interpolated between
    the two probed steps around it; None when the run never gets there."""
    xs, ys, st = path.x.to_numpy(), path.y.to_numpy(), path.step.to_numpy(dtype=float)
    below = np.nonzero(xs <= level)[0]
    if not len(below):
        return None
    i = int(below[0])
    if i == 0 or xs[i - 1] == xs[i]:
        return st[i], ys[i]
    w = (xs[i - 1] - level) / (xs[i - 1] - xs[i])
    return st[i - 1] + w * (st[i] - st[i - 1]), ys[i - 1] + w * (ys[i] - ys[i - 1])


def at_equal_forgetting(results: dict, levels=None, *, x: str = "target", y: str = "paraphrase",
                        split: str = "forget", y_split: str | None = None) -> pd.DataFrame:
    """Compare runs at the same amount of forgetting instead of the same number of steps.

    For each run (``results``: ``{name: UnlearnResult}``) and each ``level`` of the forgetting
    quantity ``x`` (mean over the ``split`` probe questions, e.g. the target answer's mass), the
    value of ``y`` (mean over ``y_split``, default ``split``) at the first point where the run's
    ``x`` falls to that level, interpolated linearly between probed steps, and that (fractional)
    step. ``levels`` default: three levels evenly spaced between the runs' highest starting ``x`` and
    the lowest ``x`` that *every* run reaches, so each method is read where all of them have been.
    Returns one row per (method, level): ``method, level, step, <y>, reached`` (``reached`` False and
    NaN values where a run never forgot that much)."""
    paths = {name: forgetting_path(r, x=x, y=y, split=split, y_split=y_split) for name, r in results.items()}
    if not paths:
        raise ValueError("at_equal_forgetting: no results to compare")
    if levels is None:
        start = max(float(p.x.iloc[0]) for p in paths.values())
        common = max(float(p.x.min()) for p in paths.values())
        levels = np.linspace(start, common, 4)[1:] if common < start else [common]
    col = y if (y_split or split) == split else f"{y_split} {y}"
    rows = []
    for name, path in paths.items():
        for level in levels:
            hit = _crossing(path, float(level))
            rows.append({"method": name, "level": float(level), "step": hit[0] if hit else np.nan,
                         col: hit[1] if hit else np.nan, "reached": hit is not None})
    return pd.DataFrame(rows)


# -- token level -----------------------------------------------------------------------------------

def answer_token_ids(tokenizer, text: str) -> tuple[int, ...]:
    """Token ids of an answer as the probes see it: the answer prefix, the stripped text, EOS
    (the same convention as :func:`unlearnkit.data.encode_pairs`)."""

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tuple(tokenizer(DEFAULT_FORMAT.answer_prefix + _norm(text), add_special_tokens=False)["input_ids"] + eos)


def tag_tokens(tokenizer, target: str, candidates: dict[str, list[str]], positions: int) -> list[dict[int, str]]:
    """For each of the first ``positions`` target tokens, ``{token_id: tag}`` of the tokens that
    *continue* an answer there: at position ``t`` (teacher forcing on the target's first ``t``
    tokens) token ``v`` continues answer ``c`` if ``c`` starts with the same ``t`` tokens and its
    next token is ``v``. ``candidates``: ``{"paraphrase": [...], "belief": [...], "perturbed": [...]}``.
    The target's own token is tagged ``target``; priority follows :data:`TOKEN_TAGS`."""
    tgt = answer_token_ids(tokenizer, target)
    encoded = [(tag, answer_token_ids(tokenizer, c)) for tag in TOKEN_TAGS[1:-1]
               for c in candidates.get(tag, []) if _norm(c)]
    out = []
    for t in range(min(positions, len(tgt))):
        tags = {tgt[t]: "target"}
        for tag, ids in encoded:
            if len(ids) > t and ids[:t] == tgt[:t] and ids[t] not in tags:
                tags[ids[t]] = tag
        out.append(tags)
    return out


def moving_positions(result, qid, *, max_positions: int = 3, threshold: float = 0.02,
                     split: str = "forget") -> list[int]:
    """The answer positions worth looking at: position 0 (where the answer's phrasing is chosen)
    and the recorded positions where the target token's probability moved by more than
    ``threshold`` at some step; at most ``max_positions``, in order."""
    tp = result.token_probes
    t = tp[(tp.split == split) & (tp.id == qid) & (tp.kind == "topk") & tp.is_target]
    if t.empty:
        return [0]
    p = t.pivot_table(index="step", columns="position", values="prob", aggfunc="first").sort_index()
    moved = (p - p.iloc[0]).abs().max()
    keep = [0] + [int(c) for c in p.columns if c != 0 and moved[c] > threshold]
    return sorted(keep[:max_positions])


def token_view(result, data, qid, step: int, *, top_k: int = 5, positions: int | list[int] = 3,
               before_step: int | None = None, split: str = "forget") -> pd.DataFrame:
    """Top-``top_k`` next tokens at answer positions (teacher-forced on the target; ``positions``:
    the first n, or a list of positions, 0-based), before and at ``step``, each tagged target /
    paraphrase / belief / perturbed / other (:func:`tag_tokens`, beliefs = the greedy answers
    before and at ``step``).

    One row per (position, token): ``position, token_id, token, tag, before, after`` (next-token
    probability; NaN where the token was outside that step's recorded top-k), ``is_target``.
    Tokens are the union of both steps' top ``top_k`` and the target token, sorted by ``before``.
    """
    tp = result.token_probes
    if tp is None or len(tp) == 0 or "kind" not in tp.columns:
        raise ValueError("this result has no token-level probes: run unlearn(..., token_probes=True)")
    tp = tp[(tp.split == split) & (tp.id == qid) & (tp.kind == "topk")]
    steps = sorted(int(s) for s in tp.step.unique())
    if not steps:
        raise KeyError(f"no token probes for question id {qid!r}")
    before_step = steps[0] if before_step is None else before_step
    row = rows_by_id(data)[qid]
    _, g0 = _values(result.probes, qid, before_step, split)
    _, g1 = _values(result.probes, qid, step, split)
    wanted = list(range(positions)) if isinstance(positions, int) else sorted(int(p) for p in positions)
    tags = tag_tokens(result.tokenizer, row["answer"],
                      {"paraphrase": _as_list(row.get("paraphrased_answer")),
                       "belief": [g for g in (g0, g1) if isinstance(g, str)],
                       "perturbed": _as_list(row.get("perturbed_answer"))}, max(wanted) + 1 if wanted else 0)
    b = tp[tp.step == before_step]
    a = tp[tp.step == step]
    out = []
    for pos in [p for p in wanted if p < len(tags)]:
        bp, ap = b[b.position == pos], a[a.position == pos]
        keep = set(bp.loc[(bp["rank"] < top_k) | bp.is_target, "token_id"]) | \
            set(ap.loc[(ap["rank"] < top_k) | ap.is_target, "token_id"])
        pb = dict(zip(bp.token_id, bp.prob))
        pa = dict(zip(ap.token_id, ap.prob))
        names = {**dict(zip(bp.token_id, bp.token)), **dict(zip(ap.token_id, ap.token))}
        tgt_ids = set(bp.loc[bp.is_target, "token_id"]) | set(ap.loc[ap.is_target, "token_id"])
        for tid in keep:
            out.append({"position": pos, "token_id": int(tid), "token": names[tid], "tag": tags[pos].get(tid, "other"),
                        "before": pb.get(tid, np.nan), "after": pa.get(tid, np.nan), "is_target": tid in tgt_ids})
    df = pd.DataFrame(out, columns=["position", "token_id", "token", "tag", "before", "after", "is_target"])
    if len(df):
        df = df.sort_values(["position", "before", "after"], ascending=[True, False, False],
                            na_position="last").reset_index(drop=True)
    df.attrs.update(id=qid, step=int(step), before_step=int(before_step))
    return df


# -- entropy ---------------------------------------------------------------------------------------

def greedy_tokens(result, qid, step: int, *, split: str = "forget") -> pd.DataFrame:
    """The greedy answer at ``step`` as tokens: ``position, token_id, token, prob, entropy``
    (predictive entropy in nats of the distribution each token was drawn from)."""
    tp = result.token_probes
    if tp is None or len(tp) == 0 or "kind" not in tp.columns or not (tp.kind == "greedy").any():
        raise ValueError("this result has no greedy-answer token probes: run unlearn(..., token_probes=True)")
    g = tp[(tp.split == split) & (tp.id == qid) & (tp.step == step) & (tp.kind == "greedy")]
    if g.empty:
        raise KeyError(f"no greedy token probes for question id {qid!r} at step {step}")
    return g.sort_values("position")[["position", "token_id", "token", "prob", "entropy"]].reset_index(drop=True)


def entropy_view(result, qid, step: int, *, split: str = "forget", before_step: int | None = None) -> dict:
    """Before and at ``step``: the greedy answer (``text``), its tokens with predictive entropy
    (:func:`greedy_tokens`), its **token entropy** (normalized unigram entropy of
    ``tokenizer.tokenize(text)``, spec B7, as the ``token_entropy`` metric computes it) and the
    **mean predictive entropy** over its tokens (nats). Returns ``{"before": {...}, "after": {...}}``."""
    steps = probe_steps(result.probes, split)
    before_step = steps[0] if before_step is None else before_step
    out = {}
    for name, s in (("before", before_step), ("after", step)):
        _, text = _values(result.probes, qid, s, split)
        toks = greedy_tokens(result, qid, s, split=split)
        text = text if isinstance(text, str) else ""
        out[name] = {"step": int(s), "text": text, "tokens": toks,
                     "token_entropy": token_entropy_value(result.tokenizer.tokenize(text) if text else []),
                     "mean_entropy": float(toks.entropy.mean())}
    return out


# -- comparing models ------------------------------------------------------------------------------

def tradeoff_table(summary: pd.DataFrame, x: str = "forget_quality", y: str = "model_utility") -> pd.DataFrame:
    """One row per model with the two aggregates ``x`` and ``y`` (from :func:`unlearnkit.summarize`;
    any split). Models lacking either are dropped."""
    d = summary[summary.metric.isin((x, y))]
    t = d.groupby(["model", "metric"], sort=False)["value"].first().unstack("metric")
    if x not in t.columns or y not in t.columns:
        raise ValueError(f"the summary needs both {x!r} and {y!r} rows; it has metrics {sorted(set(summary.metric))}")
    t = t[[x, y]].dropna().reset_index()
    t.columns.name = None
    return t


#: the robustness attacks of :func:`attack_table`: metric -> (what is measured, label)
ATTACKS = {"relearning": ("probability", "relearning (a few steps on other rows)"),
           "quantization": ("probability", "4-bit weight rounding"),
           "paraphrase_probe": ("ROUGE-L recall", "paraphrased question"),
           "prefix_probe": ("ROUGE-L recall", "answer prefix given")}


def attack_table(table: pd.DataFrame, split: str = "forget") -> pd.DataFrame:
    """Before vs after each robustness attack, per model, from a long :func:`unlearnkit.evaluate`
    table (several models concatenated) holding the ``robustness`` suite (and ``rouge``).

    One row per (model, attack): ``measure`` (probability or ROUGE-L recall), ``before`` (the model
    as it is, on the same rows: relearning's held-back rows, every row otherwise; ``rouge`` of the
    plain question for the probes, NaN without it), ``after`` (under the attack) and ``change``.
    """
    rows = []
    d = table[table.split == split]
    for model, g in d.groupby("model", sort=False):
        rouge = g[g.metric == "rouge"]
        for name, (measure, label) in ATTACKS.items():
            a = g[g.metric == name]
            if a.empty:
                continue
            if "prob_before" in a.columns and a.prob_before.notna().any():
                before = float(a.prob_before.mean())
            else:
                same = rouge[rouge.id.isin(a.id)]
                before = float(same.value.mean()) if len(same) else float("nan")
            after = float(a.value.astype(float).mean())
            rows.append({"model": model, "attack": label, "measure": measure, "before": before, "after": after,
                         "change": after - before})
    return pd.DataFrame(rows, columns=["model", "attack", "measure", "before", "after", "change"])
