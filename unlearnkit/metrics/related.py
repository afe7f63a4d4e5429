"""Related knowledge: can the model still re-derive a forgotten fact through a related one?

``related_recall`` runs on a split of **indirect probes** (the miniature world's ``indirect`` split,
``WorldConfig(related_facts > 0)``): questions never trained on verbatim whose answer is a
forgotten value, reachable through a related fact that the model keeps ("Where was the twin of F
born?" is answered by "T, the twin of F, was born in Z too", a retain fact). Each row names its
``carrier`` (the id of that related fact). This is the route that UIPE (spec A18) argues survives
gradient-ascent unlearning and that extrapolating the update closes.

Data without the ``carrier`` field is not an indirect-probe split: asked for by name, the metric
raises a :class:`~unlearnkit.world.loaders.DataError` naming the missing field.
"""

from __future__ import annotations

import pandas as pd

from ..data import row_ids
from ..idk import load_idk
from .base import metric
from .closer_look import classify_answer, wrong_values
from .collapse import collapse_flags


@metric("related_recall", suites=("related",), generates=True, fields=("question", "answer", "value", "carrier"),
        direction="more knowledge (the forgotten value is re-derived through related knowledge)",
        formula="1[greedy answer to an indirect probe states the forgotten value]; labels as fact_recall; "
                "prob = P(answer|question) (sequence probability)",
        source="UIPE (arXiv 2503.04693), spec A18; indirect probes of the miniature world (related_facts knob)")
def related_recall(ctx, split, data):
    """Per indirect probe: 1.0 if the greedy answer states the forgotten ``value``, else 0.0.

    Extra columns: ``label`` (collapsed / true / wrong / refusal / none, as ``fact_recall``),
    ``prob`` (sequence probability of the reference answer, in [0, 1]), ``generation``,
    ``carrier`` (id of the related fact that carries the answer) and, when present, ``person``,
    ``attribute`` and ``twin``.
    """

    bank = load_idk(ctx.opt("idk"))
    gens = ctx.generations(split, data)
    pert = data["perturbed_answer"] if "perturbed_answer" in data.column_names else [[] for _ in gens]
    labels = []
    for g, a, v, p, bad in zip(gens, data["answer"], data["value"], pert, collapse_flags(ctx, split, data)):
        labels.append("collapsed" if bad else classify_answer(g, str(v), wrong_values(a, str(v), p), bank))
    prob = ctx.scores(split, data)["prob"]
    out = pd.DataFrame({"id": row_ids(data), "value": [1.0 if lab == "true" else 0.0 for lab in labels],
                        "label": labels, "prob": [float(x) for x in prob], "generation": gens,
                        "carrier": list(data["carrier"])})
    for col in ("person", "attribute", "twin"):
        if col in data.column_names:
            out[col] = list(data[col])
    return out
