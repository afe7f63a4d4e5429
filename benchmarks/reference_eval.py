"""A reference TOFU evaluator that follows open-unlearning's design, for ``bench_tofu.py``.

It is written here, independently of the kit's scoring code, the way open-unlearning's TOFU
evaluation works (``src/evals``: ``evaluate_probability``, ``eval_text_similarity``, the truth-ratio
and model-utility aggregations, ``mia_min_k``):

* **likelihood**: each split's (question, answer) sequences in **dataset order, batches of 32**,
  right-padded, one full forward per batch (logits at every position), the per-sequence summed
  cross-entropy over the answer tokens (EOS / end of turn included) -> ``P = exp(-NLL/T)``.
  Every answer list is scored the open-unlearning way: the paraphrased answers as one pass over
  the split, the perturbed answers as one pass **per perturbed slot** (the j-th perturbed answer of
  every row of a batch together). Each distinct (question, answer) of a split is scored once
  (open-unlearning re-scores some of them for several metrics; counting them once is the
  reference's best case);
* **generation**: ``model.generate(do_sample=False)`` on **left-padded batches of 32** prompts in
  dataset order, up to **200 new tokens** (a batch runs until every row has stopped), decoded
  with ``skip_special_tokens`` and stripped; ROUGE-L recall against the answer;
* the same formulas as TOFU/open-unlearning: probability (option-normalised on real authors and
  world facts), ROUGE-L recall, truth ratio (forget: mean min(R, 1/R); elsewhere mean max(0, 1-R)),
  model utility (harmonic mean of the nine retain / real-authors / world-facts components) and
  Min-K% (k = 0.4, EOS dropped) membership AUC of forget vs holdout.

Prompts: plain (``Question: {q}\\nAnswer:`` + `` {answer}`` + EOS, the prompt tokenized with the
tokenizer's special tokens, the answer without) or chat (the tokenizer's chat template with a
system prompt and a date; the answer is what the template of the whole conversation adds after the
prompt), the token ids open-unlearning's ``preprocess_chat_template`` produces.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from rouge_score import rouge_scorer
from scipy import stats
from sklearn.metrics import roc_auc_score

BATCH = 32
MAX_NEW_TOKENS = 200
IGNORE = -100


class Formatter:
    """Token ids of prompts and answers, plain or chat (``system_prompt``/``date_string`` for chat)."""

    def __init__(self, tokenizer, chat: bool = False, system_prompt: str | None = None, date_string: str | None = None):
        self.tok, self.chat, self.system, self.date = tokenizer, chat, system_prompt, date_string

    def _msgs(self, q, a=None):
        m = ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": q}]
        return m + ([{"role": "assistant", "content": a}] if a is not None else [])

    def _chat_ids(self, msgs, gen):
        kw = {"date_string": self.date} if self.date else {}
        text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def prompt(self, q: str) -> list[int]:
        if self.chat:
            return self._chat_ids(self._msgs(q), True)
        return self.tok(f"Question: {q}\nAnswer:")["input_ids"]

    def pair(self, q: str, a: str) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one (question, answer): labels IGNORE on the prompt."""
        p = self.prompt(q)
        if self.chat:
            full = self._chat_ids(self._msgs(q, a.strip()), False)
        else:
            full = p + self.tok(" " + a.strip(), add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return full, [IGNORE] * len(p) + full[len(p):]


def _pad(rows, value, left=False):
    L = max(len(r) for r in rows)
    out = torch.full((len(rows), L), value, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(L - len(r), L) if left else slice(0, len(r))
        out[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return out, mask


class Reference:
    """Runs the reference evaluation; ``timing`` accumulates seconds in ``generation`` and ``scoring``
    and ``sequences`` counts the scored sequences."""

    def __init__(self, model, tokenizer, fmt: Formatter):
        self.model, self.tok, self.fmt = model, tokenizer, fmt
        self.timing = {"generation": 0.0, "scoring": 0.0}
        self.sequences = 0
        self.encoded = []  # every scored (question, answer, input ids), for the identity check against the kit

    @torch.no_grad()
    def probs(self, questions, answers, keep_tokens: bool = False):
        """Per pair: (prob, mean NLL) arrays and, with ``keep_tokens``, the per-token log-probs."""
        t = time.perf_counter()
        probs, nlls, toks = [], [], []
        for s in range(0, len(questions), BATCH):
            qa = list(zip(questions[s:s + BATCH], answers[s:s + BATCH]))
            enc = [self.fmt.pair(q, a) for q, a in qa]
            self.encoded += [(q, a, e[0]) for (q, a), e in zip(qa, enc)]
            ids, mask = _pad([e[0] for e in enc], self.tok.pad_token_id)
            labels, _ = _pad([e[1] for e in enc], IGNORE)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            sl, lab = logits[:, :-1].float(), labels[:, 1:]
            ce = torch.nn.functional.cross_entropy(sl.transpose(1, 2), lab, ignore_index=IGNORE, reduction="none")
            n = (lab != IGNORE).sum(-1)
            nll = ce.sum(-1) / n
            nlls.append(nll.double().numpy())
            probs.append(torch.exp(-nll).double().numpy())
            if keep_tokens:
                for j in range(len(enc)):
                    toks.append((-ce[j][lab[j] != IGNORE]).double().numpy())
            self.sequences += len(enc)
        self.timing["scoring"] += time.perf_counter() - t
        out = (np.concatenate(probs), np.concatenate(nlls))
        return (*out, toks) if keep_tokens else out

    def pert_probs(self, questions, pert_lists):
        """Per row the (prob, mean NLL) of each perturbed answer: one pass per perturbed slot."""
        m = len(pert_lists[0])
        probs, nlls = np.zeros((len(questions), m)), np.zeros((len(questions), m))
        for j in range(m):
            probs[:, j], nlls[:, j] = self.probs(questions, [p[j] for p in pert_lists])
        return probs, nlls

    @torch.no_grad()
    def generate(self, questions) -> list[str]:
        t = time.perf_counter()
        out = []
        for s in range(0, len(questions), BATCH):
            ids, mask = _pad([self.fmt.prompt(q) for q in questions[s:s + BATCH]], self.tok.pad_token_id, left=True)
            gen = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=MAX_NEW_TOKENS,
                                      pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            out += [self.tok.decode(g, skip_special_tokens=True).strip() for g in gen[:, ids.shape[1]:]]
        self.timing["generation"] += time.perf_counter() - t
        return out


def rouge_recall(refs, gens) -> np.ndarray:
    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([sc.score(r, g)["rougeL"].recall for r, g in zip(refs, gens)])


def min_k(token_lps, k: float = 0.4) -> np.ndarray:
    """Min-K% Prob: -mean of the lowest max(1, int(k T)) token log-probs (EOS dropped first)."""
    out = []
    for lp in token_lps:
        lp = lp[:-1] if len(lp) > 1 else lp
        out.append(-np.sort(lp)[:max(1, int(len(lp) * k))].mean())
    return np.array(out)


def evaluate(model, tokenizer, splits: dict, roles: dict, fmt: Formatter, holdout=None) -> dict:
    """The TOFU evaluation of ``splits`` (``{name: Dataset}``, ``roles[name]`` in forget / retain /
    real_authors / world_facts) and, with a ``holdout``, the Min-K% AUC of forget vs holdout.

    Returns ``{"values": {(split, metric): per-row array}, "aggregates": {(split, metric): float},
    "generations": {split: [str]}, "timing": {...}, "sequences": int, "encoded": [...]}``.
    """
    ref = Reference(model.eval(), tokenizer, fmt)
    vals, aggs, gens = {}, {}, {}
    utility = []
    forget_tokens = None
    for name, d in splits.items():
        role = roles[name]
        qs, ans = list(d["question"]), list(d["answer"])
        if role == "forget" and holdout is not None:
            p, _, forget_tokens = ref.probs(qs, ans, keep_tokens=True)
        else:
            p, _ = ref.probs(qs, ans)
        pert_p, pert_nll = ref.pert_probs(qs, list(d["perturbed_answer"]))
        if role in ("real_authors", "world_facts"):
            # the answer is the "correct" side of the truth ratio (no paraphrase), scored above
            para_nll = -np.log(p)
            prob = p / (p + pert_p.sum(1))
        else:
            _, para_nll = ref.probs(qs, list(d["paraphrased_answer"]))
            prob = p
        r = np.exp(para_nll - pert_nll.mean(1))
        gens[name] = ref.generate(qs)
        rouge = rouge_recall(ans, gens[name])
        vals[(name, "probability")], vals[(name, "rouge")], vals[(name, "truth_ratio")] = prob, rouge, r
        aggs[(name, "probability")], aggs[(name, "rouge")] = float(prob.mean()), float(rouge.mean())
        if role == "forget":
            aggs[(name, "truth_ratio")] = float(np.mean(np.minimum(r, 1 / r)))
        else:
            aggs[(name, "truth_ratio")] = float(np.mean(np.maximum(0.0, 1 - r)))
            utility += [aggs[(name, "probability")], aggs[(name, "rouge")], aggs[(name, "truth_ratio")]]
    aggs[("all", "model_utility")] = 0.0 if min(utility) <= 0 else float(stats.hmean(utility))
    if holdout is not None and forget_tokens is not None:
        _, _, hold_tokens = ref.probs(list(holdout["question"]), list(holdout["answer"]), keep_tokens=True)
        m, h = min_k(forget_tokens), min_k(hold_tokens)
        aggs[("all", "mia_min_k")] = float(roc_auc_score(np.r_[np.zeros(len(m)), np.ones(len(h))], np.r_[m, h]))
    return {"values": vals, "aggregates": aggs, "generations": gens, "timing": ref.timing, "sequences": ref.sequences,
            "encoded": ref.encoded}
