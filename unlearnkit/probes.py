"""Probes: where a model puts its probability mass on a fixed set of questions.

:func:`probe` scores, for each question, the target answer, its paraphrase, the perturbed (wrong)
answers, the model's current greedy answer ("belief") and its greedy answer at step 0; the
unlearning loop calls it every ``probe_every`` steps, and so can anyone, on any model.
:func:`token_probe` is the token-level view (top-k next tokens, greedy-answer entropies).
:func:`keep_score` is what the loop's ``keep`` policy reads off a step's probes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import IGNORE, encode_pairs
from .scoring import generate, score_answers, score_pairs

PROBE_QUANTITIES = ("target", "paraphrase", "perturbed", "belief", "initial_belief", "entropy")


def keep_score(probes: pd.DataFrame, step: int) -> dict:
    """Mean ``target`` mass per split at ``step`` and the ``keep='best'`` score (retain - forget)."""
    d = probes[(probes.step == step) & (probes.quantity == "target")]
    means = d.groupby("split").value.mean()
    out = {f"{k}_target": float(v) for k, v in means.items()}
    if "forget" in means and "retain" in means:
        out["gap"] = float(means["retain"] - means["forget"])
    return out


@torch.no_grad()
def probe(model, tokenizer, data, *, split: str = "forget", step: int = 0, initial_beliefs=None,
          max_new_tokens: int = 48) -> pd.DataFrame:
    """Probe ``model`` on ``data``: mass on target / paraphrase / perturbed / greedy / initial answers.

    Returns tidy rows (see :class:`UnlearnResult`). ``initial_beliefs`` are the greedy answers at
    step 0 (scored again at every step, so one can see the model's own earlier belief lose or gain mass).
    """
    qs = list(data["question"])
    ids = list(data["id"]) if "id" in data.column_names else list(range(len(qs)))
    greedy = generate(model, tokenizer, qs, max_new_tokens=max_new_tokens)
    groups = {"target": [[a] for a in data["answer"]], "belief": [[g or "."] for g in greedy]}
    if "paraphrased_answer" in data.column_names:
        groups["paraphrase"] = [[a] for a in data["paraphrased_answer"]]
    if "perturbed_answer" in data.column_names:
        groups["perturbed"] = list(data["perturbed_answer"])
    if initial_beliefs is not None:
        groups["initial_belief"] = [[g or "."] for g in initial_beliefs]
    names = list(groups)
    lists = [[a for name in names for a in groups[name][i]] for i in range(len(qs))]
    scored = score_answers(model, tokenizer, qs, lists, entropy=True)
    rows = []
    for i, sc in enumerate(scored):
        k = 0
        for name in names:
            m = len(groups[name][i])
            seq_p = np.exp(sc["logprob"][k:k + m])
            row = {"step": step, "split": split, "id": ids[i], "quantity": name,
                   "value": float(seq_p.sum()), "prob_norm": float(sc["prob"][k:k + m].mean()),
                   "text": greedy[i] if name == "belief" else None}
            rows.append(row)
            if name == "target":
                rows.append({"step": step, "split": split, "id": ids[i], "quantity": "entropy",
                             "value": float(sc["entropy"][k]), "prob_norm": np.nan, "text": None})
            k += m
    return pd.DataFrame(rows)


@torch.no_grad()
def token_probe(model, tokenizer, data, *, split: str = "forget", step: int = 0, top_k: int = 8,
                positions: int = 4, greedy=None) -> pd.DataFrame:
    """Token-level view of where the mass goes, for the first ``positions`` answer tokens.

    Rows with ``kind == "topk"``: teacher-forced on the target answer, the ``top_k`` most likely
    next tokens at answer position ``position`` (``rank`` 0 = most likely) plus the target token
    itself (``is_target``; its rank may exceed ``top_k``), with ``prob``. Rows with
    ``kind == "greedy"`` (if ``greedy`` answers are given): each token of the greedy answer with its
    probability and the predictive entropy (nats) of the distribution it was drawn from.
    Columns: step, split, id, kind, position, rank, token_id, token, prob, entropy, is_target.
    """
    qs = list(data["question"])
    ids = list(data["id"]) if "id" in data.column_names else list(range(len(qs)))
    enc = encode_pairs(tokenizer, qs, data["answer"])
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    logits = model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev)).logits.float()
    model.train(was)
    probs = torch.softmax(logits[:, :-1], -1).cpu()
    labels = enc["labels"][:, 1:]
    rows = []
    for i in range(len(qs)):
        pos = torch.nonzero(labels[i] != IGNORE).flatten()[:positions]
        for j, t in enumerate(pos.tolist()):
            p = probs[i, t]
            tgt = int(labels[i, t])
            top = torch.topk(p, top_k)
            tgt_rank = int((p > p[tgt]).sum())
            cand = list(zip(top.indices.tolist(), range(top_k)))
            if tgt_rank >= top_k:
                cand.append((tgt, tgt_rank))
            for tid, rank in cand:
                rows.append({"step": step, "split": split, "id": ids[i], "kind": "topk", "position": j, "rank": rank,
                             "token_id": tid, "token": tokenizer.decode([tid]), "prob": float(p[tid]),
                             "entropy": np.nan, "is_target": tid == tgt})
    if greedy is not None:
        answers = [g if g else "." for g in greedy]
        sc = score_pairs(model, tokenizer, qs, answers, token_level=True)
        genc = encode_pairs(tokenizer, qs, answers)
        for i in range(len(qs)):
            toks = genc["labels"][i][genc["labels"][i] != IGNORE].tolist()
            for j, tid in enumerate(toks):
                rows.append({"step": step, "split": split, "id": ids[i], "kind": "greedy", "position": j, "rank": -1,
                             "token_id": tid, "token": tokenizer.decode([tid]),
                             "prob": float(np.exp(sc["token_logprobs"][i][j])),
                             "entropy": float(sc["token_entropy"][i][j]), "is_target": False})
    return pd.DataFrame(rows)
