"""Collapse detector: output that repeats itself or is no longer language is *collapse*, not forgetting.

Gradient ascent drives a model into babble ("born born born ..."), which ROUGE against the true
answer scores as perfectly forgotten. This metric flags such generations so that tables report
them as what they are (DESIGN.md, spec E8).

A greedy answer counts as collapsed when any of these holds (thresholds are options):

* it is empty;
* its repeated-bigram rate ``1 - |distinct token bigrams| / |token bigrams|`` exceeds
  ``collapse_repetition`` (default 0.5) — half of its bigrams are repeats;
* it has at least ``collapse_min_tokens`` (default 4) tokens and its closer-look token entropy
  (``H / log2 n`` over unigrams) is below ``collapse_entropy`` (default 0.6).
"""

from __future__ import annotations

import pandas as pd

from .base import metric, option
from .closer_look import _row_ids, token_entropy_value


def repetition_rate(tokens, n: int = 2) -> float:
    """Share of repeated n-grams: ``1 - |distinct n-grams| / |n-grams|`` (0 when there are none).

    >>> repetition_rate(["born", "born", "born", "born"])  # 3 bigrams, 1 distinct
    0.6666666666666667
    """
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def is_collapsed(tokens, repetition: float = 0.5, entropy: float = 0.6, min_tokens: int = 4) -> bool:
    """The rule above, on a list of tokens."""
    if not tokens:
        return True
    if repetition_rate(tokens) > repetition:
        return True
    return len(tokens) >= min_tokens and token_entropy_value(tokens) < entropy


option("collapse_repetition", 0.5, "collapse: repeated-bigram rate above which an answer is collapsed", low=0.0,
       high=1.0)
option("collapse_entropy", 0.6, "collapse: token entropy (0-1) below which an answer of collapse_min_tokens or more "
       "tokens is collapsed", low=0.0, high=1.0)
option("collapse_min_tokens", 4, "collapse: shortest answer (tokens) the entropy rule applies to", low=1)


def collapse_flags(ctx, split, data) -> list[bool]:
    """Per greedy answer of ``split``: collapsed or not, with the thresholds from ``ctx`` options."""
    rep, ent, n = ctx.opt("collapse_repetition"), ctx.opt("collapse_entropy"), ctx.opt("collapse_min_tokens")
    return [is_collapsed(t, rep, ent, n) for t in ctx.generation_tokens(split, data)]


@metric("collapse", suites=("closer_look",), direction="more degenerate output (collapse, not forgetting)",
        formula="1 if greedy answer is empty, >50% repeated bigrams, or token entropy < 0.6 (n >= 4); mean = collapse rate",
        source="unlearnkit (DESIGN.md collapse detector); token entropy from Yuan et al. 2024", fields=("question",))
def collapse(ctx, split, data):
    """Per greedy answer: 1.0 if collapsed, else 0.0; with its repetition rate and token entropy."""
    gens, toks = ctx.generations(split, data), ctx.generation_tokens(split, data)
    flags = collapse_flags(ctx, split, data)
    return pd.DataFrame({"id": _row_ids(data), "value": [float(f) for f in flags],
                         "repetition": [repetition_rate(t) for t in toks],
                         "token_entropy": [token_entropy_value(t) for t in toks], "generation": gens})
