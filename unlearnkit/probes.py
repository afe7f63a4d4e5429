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

from .data import DEFAULT_FORMAT, IGNORE, PromptFormat, encode_pairs, row_ids
from .memorization import memorization_probe
from .models.layers import eval_mode
from .scoring import generate, score_answers, score_pairs

PROBE_QUANTITIES = ("target", "paraphrase", "perturbed", "belief", "initial_belief", "entropy")
#: the rise of the paraphrase's mean probe mass (0-1) that counts as a squeeze (the squeezing effect);
#: ``UnlearnResult.squeeze_story`` and the squeeze claim's verdict both read it
SQUEEZE_RISE = 0.05


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
          max_new_tokens: int = 48, fmt: PromptFormat = DEFAULT_FORMAT) -> pd.DataFrame:
    """Probe ``model`` on ``data``: mass on target / paraphrase / perturbed / greedy / initial answers.

    Returns tidy rows (see :class:`UnlearnResult`). ``initial_beliefs`` are the greedy answers at
    step 0 (scored again at every step, so one can see the model's own earlier belief lose or gain mass).
    """
    qs = list(data["question"])
    ids = row_ids(data)
    greedy = generate(model, tokenizer, qs, max_new_tokens=max_new_tokens, fmt=fmt)
    groups = {"target": [[a] for a in data["answer"]], "belief": [[g or "."] for g in greedy]}
    if "paraphrased_answer" in data.column_names:
        groups["paraphrase"] = [[a] for a in data["paraphrased_answer"]]
    if "perturbed_answer" in data.column_names:
        groups["perturbed"] = list(data["perturbed_answer"])
    if initial_beliefs is not None:
        groups["initial_belief"] = [[g or "."] for g in initial_beliefs]
    names = list(groups)
    lists = [[a for name in names for a in groups[name][i]] for i in range(len(qs))]
    scored = score_answers(model, tokenizer, qs, lists, entropy=True, fmt=fmt)
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
                positions: int = 4, greedy=None, fmt: PromptFormat = DEFAULT_FORMAT) -> pd.DataFrame:
    """Token-level view of where the mass goes, for the first ``positions`` answer tokens.

    Rows with ``kind == "topk"``: teacher-forced on the target answer, the ``top_k`` most likely
    next tokens at answer position ``position`` (``rank`` 0 = most likely) plus the target token
    itself (``is_target``; its rank may exceed ``top_k``), with ``prob``. Rows with
    ``kind == "greedy"`` (if ``greedy`` answers are given): each token of the greedy answer with its
    probability and the predictive entropy (nats) of the distribution it was drawn from.
    Columns: step, split, id, kind, position, rank, token_id, token, prob, entropy, is_target.
    """
    qs = list(data["question"])
    ids = row_ids(data)
    enc = encode_pairs(tokenizer, qs, data["answer"], fmt=fmt)
    dev = next(model.parameters()).device
    with eval_mode(model):
        logits = model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev)).logits.float()
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
        sc = score_pairs(model, tokenizer, qs, answers, token_level=True, fmt=fmt)
        genc = encode_pairs(tokenizer, qs, answers, fmt=fmt)
        for i in range(len(qs)):
            toks = genc["labels"][i][genc["labels"][i] != IGNORE].tolist()
            for j, tid in enumerate(toks):
                rows.append({"step": step, "split": split, "id": ids[i], "kind": "greedy", "position": j, "rank": -1,
                             "token_id": tid, "token": tokenizer.decode([tid]),
                             "prob": float(np.exp(sc["token_logprobs"][i][j])),
                             "entropy": float(sc["token_entropy"][i][j]), "is_target": False})
    return pd.DataFrame(rows)


class ProbeRecorder:
    """Probes a model along a run and applies the ``keep`` policy: the unlearning loop calls
    :meth:`record` at step 0 and every ``every`` steps, then :meth:`restore` once at the end.

    ``forget`` / ``retain``: the fixed probe sets (``retain=None``: forget probes only).
    ``keep``: ``"last"`` (nothing to do), ``"best"`` (remember the trainable weights of the probed
    step with the largest retain-minus-forget target mass), or ``"first_forgotten"`` (:meth:`record`
    returns True at the first probed step whose mean forget target mass is <= ``forget_threshold``).
    ``active=False`` (a process other than the main one) records nothing. Later objectives and
    metrics extend the probes by subclassing and overriding :meth:`probe_split`.
    """

    def __init__(self, tokenizer, forget, retain=None, *, every: int = 1, max_new_tokens: int = 48,
                 token_probes: bool = True, keep: str = "last", forget_threshold: float = 0.1, active: bool = True,
                 fmt: PromptFormat = DEFAULT_FORMAT):
        if keep != "last" and not every:
            raise ValueError(f"keep={keep!r} chooses among probed steps, but probe_every=0 disables probes; "
                             "set probe_every >= 1")
        if keep == "best" and retain is None:
            raise ValueError("keep='best' scores each probed step by retain minus forget target mass and needs "
                             "retain probes: pass retain data (or retain_probe_data) and keep retain_probes=True")
        self.tokenizer, self.sets = tokenizer, {"forget": forget, "retain": retain}
        self.every, self.max_new_tokens, self.token_probes = every, max_new_tokens, token_probes
        self.keep, self.forget_threshold, self.active, self.fmt = keep, forget_threshold, active, fmt
        self.rows, self.token_rows, self.initial = [], [], {}
        self.kept_step, self.kept_score, self.kept_weights = None, -np.inf, None

    def due(self, step: int, last: int) -> bool:
        """Whether step ``step`` (of ``last``) is a probed one."""
        return bool(self.every) and (step % self.every == 0 or step == last)

    def probe_split(self, model, split: str, data, step: int) -> pd.DataFrame:
        """The probe rows of one split at ``step`` (token probes are kept aside for forget). Plain
        text (a ``text`` column, e.g. memorized records): per-sequence MA (``quantity="ma"``)."""
        if "question" not in data.column_names and "text" in data.column_names:
            return memorization_probe(model, self.tokenizer, data, step=step, split=split)
        df = probe(model, self.tokenizer, data, split=split, step=step, initial_beliefs=self.initial.get(split),
                   max_new_tokens=self.max_new_tokens, fmt=self.fmt)
        if split not in self.initial:  # step 0: the greedy answers become the initial beliefs
            self.initial[split] = list(df[df.quantity == "belief"].text)
            df = pd.concat([df, df[df.quantity == "belief"].assign(quantity="initial_belief", text=None)])
        if self.token_probes and split == "forget":
            self.token_rows.append(token_probe(model, self.tokenizer, data, split=split, step=step,
                                               greedy=list(df[df.quantity == "belief"].text), fmt=self.fmt))
        return df

    def record(self, model, step: int) -> bool:
        """Probe ``model`` (unwrapped) at ``step``; True when ``keep='first_forgotten'`` is reached."""
        if not self.every or not self.active:
            return False
        now = [self.probe_split(model, split, d, step) for split, d in self.sets.items() if d is not None]
        self.rows.extend(now)
        model.train()
        if self.keep == "last":
            return False
        score = keep_score(pd.concat(now), step)
        if self.keep == "best" and score["gap"] > self.kept_score:
            self.kept_step, self.kept_score = step, score["gap"]
            self.kept_weights = {n: q.detach().clone() for n, q in model.named_parameters() if q.requires_grad}
        if self.keep == "first_forgotten" and score["forget_target"] <= self.forget_threshold:
            self.kept_step, self.kept_score = step, score["forget_target"]
            return True
        return False

    @torch.no_grad()
    def restore(self, model, step: int) -> int:
        """Put the kept weights back into ``model`` (``keep='best'``); returns the step ``model`` holds."""
        if self.keep != "best" or self.kept_weights is None or self.kept_step == step:
            return step
        for n, q in model.named_parameters():
            if n in self.kept_weights:
                q.copy_(self.kept_weights[n])
        return self.kept_step

    @property
    def probes(self) -> pd.DataFrame:
        return pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame()

    @property
    def tokens(self) -> pd.DataFrame:
        return pd.concat(self.token_rows, ignore_index=True) if self.token_rows else pd.DataFrame()

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in self.sets.items() if v is not None}
        return (f"ProbeRecorder(sets={sizes}, every={self.every}, keep={self.keep!r}, "
                f"steps recorded={len(self.rows) // max(len(sizes), 1)})")
