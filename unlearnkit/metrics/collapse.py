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

from ..data import row_ids
from .base import metric
from .closer_look import (
    collapse_flags,
    is_collapsed,  # noqa: F401  (part of this module's API)
    repetition_rate,
    token_entropy_value,
)


@metric("collapse", suites=("closer_look",), generates=True, direction="more degenerate output (collapse, not forgetting)",
        formula="1 if greedy answer is empty, >50% repeated bigrams, or token entropy < 0.6 (n >= 4); mean = collapse rate",
        source="unlearnkit (DESIGN.md collapse detector); token entropy from Yuan et al. 2024", fields=("question",))
def collapse(ctx, split, data):
    """Per greedy answer: 1.0 if collapsed, else 0.0; with its repetition rate and token entropy."""
    gens, toks = ctx.generations(split, data), ctx.generation_tokens(split, data)
    flags = collapse_flags(ctx, split, data)
    return pd.DataFrame({"id": row_ids(data), "value": [float(f) for f in flags],
                         "repetition": [repetition_rate(t) for t in toks],
                         "token_entropy": [token_entropy_value(t) for t in toks], "generation": gens})
