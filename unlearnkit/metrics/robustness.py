"""Robustness probes: is the knowledge removed, or only hidden?

Each probe re-asks for the forgotten facts in a way the unlearning objective did not optimize
against; a model that only *hides* a fact gives it back. The passed model is never modified:
relearning and quantization work on a deep copy (which doubles memory for the duration).

* ``relearning``: fine-tune a copy for ``relearn_steps`` (10) AdamW steps at ``relearn_lr``
  (1e-4) on a small part of the split (``relearn_fraction`` = 0.25 of the rows, at least one;
  ``relearn_on="retain"`` uses as many retain rows instead: related but different facts, chosen by
  :func:`related_rows`),
  then re-measure probability (length-normalized, as ``probability``) and ROUGE-L recall on the
  **other** rows. ``value`` = probability after relearning; ``gain`` = after - before. Knowledge
  that comes back after a few steps on *other* facts was suppressed, not erased (relearning
  attacks: Lynch et al. 2024, Hu et al. 2024).
* ``quantization``: round a copy's linear-layer weights to ``quant_bits`` (4; or 8) with symmetric
  absmax scaling per group of ``quant_group_size`` input weights (64; per output row when it does
  not divide the row), ``lm_head`` and embeddings kept; re-measure probability and ROUGE-L recall
  on every row. Unlearning by tiny weight changes can be undone by rounding (Zhang et al. 2024,
  "Does your LLM truly unlearn? An embarrassingly simple approach").
* ``paraphrase_probe``: ask the ``paraphrased_question``; ``value`` = ROUGE-L recall of the
  greedy answer against the answer; also the probability of the answer given the paraphrased
  question.
* ``prefix_probe``: give the question and the first words of the answer (up to the fact's value
  when the rows say it, else the first ``prefix_fraction`` = 0.5 of the words) and let the model
  continue; ``value`` = ROUGE-L recall of the continuation against the true rest of the answer;
  ``value_stated`` (rows with ``value``) says whether the continuation states the fact.

Higher values everywhere mean **more knowledge recovered** (less robust forgetting).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import torch

from ..data import DEFAULT_FORMAT, encode_pairs, row_ids, select
from ..losses import nll
from ..scoring import generate, generate_from_ids, score_pairs
from ..world.loaders import DataError
from .base import metric, option
from .tofu import rouge_recall

# -- pure / model-level helpers ------------------------------------------------------------------


def fake_quantize(w: torch.Tensor, bits: int = 4, group_size: int | None = 64) -> torch.Tensor:
    """Symmetric absmax round-to-nearest quantization of a 2-D weight, returned de-quantized.

    Each group of ``group_size`` consecutive input weights of a row (the whole row when
    ``group_size`` is None or does not divide it) gets ``scale = max|w| / (2^(bits-1) - 1)``;
    ``w_q = clamp(round(w / scale), -q, q) · scale``. E.g. ``[0.14, -0.7]`` at 4 bits: scale 0.1,
    ``[0.1, -0.7]``.
    """
    if bits < 2 or bits > 16:
        raise ValueError(f"quant_bits={bits} must lie in [2, 16]")
    q = 2 ** (bits - 1) - 1
    w2 = w.detach().float()
    shape = w2.shape
    if w2.dim() == 1:
        w2 = w2[None]
    rows, cols = w2.shape[0], w2.reshape(w2.shape[0], -1).shape[1]
    w2 = w2.reshape(rows, cols)
    g = group_size if group_size and cols % group_size == 0 else cols
    grouped = w2.reshape(rows, cols // g, g)
    scale = grouped.abs().amax(-1, keepdim=True) / q
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    deq = (grouped / scale).round().clamp(-q, q) * scale
    return deq.reshape(shape).to(w.dtype)


def _quantizable(model):
    for name, mod in model.named_modules():
        if name.split(".")[-1] == "lm_head":
            continue
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D":
            yield name, mod


def quantize_copy(model, bits: int = 4, group_size: int | None = 64):
    """A deep copy of ``model`` with every linear weight (not ``lm_head``) fake-quantized."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for _, mod in _quantizable(q):
            mod.weight.copy_(fake_quantize(mod.weight, bits, group_size))
    q.eval()
    return q


def finetune_copy(model, tokenizer, questions, answers, *, steps: int = 10, lr: float = 1e-4, batch_size: int = 8,
                  seed: int = 0, max_grad_norm: float = 1.0, fmt=DEFAULT_FORMAT):
    """Fine-tune a deep copy of ``model`` on (question, answer) pairs; the original is untouched.

    ``steps`` AdamW steps (no weight decay) of the HF-style answer-token NLL
    (:func:`unlearnkit.objectives.base.nll`) on random batches of ``batch_size`` rows, gradient
    norm clipped at ``max_grad_norm``. Returns the copy in eval mode.
    """

    work = copy.deepcopy(model)
    work.train()
    dev = next(work.parameters()).device
    enc = encode_pairs(tokenizer, list(questions), list(answers), fmt=fmt)
    n = enc["input_ids"].shape[0]
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[:batch_size]
        part = select(enc, idx)
        logits = work(input_ids=part["input_ids"].to(dev), attention_mask=part["attention_mask"].to(dev)).logits
        loss = nll(logits, part["labels"].to(dev))
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    work.eval()
    return work


def relearn_split(n: int, fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(relearn, evaluate)``: a seeded random ``max(1, ⌊fraction·n + 0.5⌋)`` rows to
    fine-tune on and the rest to evaluate on (needs ``n >= 2``)."""
    if n < 2:
        raise ValueError("relearning needs at least 2 rows: some to relearn on, the others to evaluate")
    k = min(n - 1, max(1, int(fraction * n + 0.5)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:k]), np.sort(perm[k:])


def related_rows(pool, data, k: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``k`` rows of ``pool`` (e.g. the retain split) most related to the rows of ``data``, and how
    they were chosen.

    With structured facts (``attribute`` and ``value`` columns in both, as the miniature world has)
    a pool row scores 2 if it states one of ``data``'s values (another person born in the same
    city), 1 if it is about one of ``data``'s attributes, else 0; the ``k`` best are taken, ties in
    seeded random order (``"related"``). Without those columns the rows are a seeded random sample
    (``"random"``). Returns sorted row positions.
    """
    n = len(pool)
    k = min(n, max(1, int(k)))
    order = np.random.default_rng(seed).permutation(n)
    cols = set(pool.column_names) & set(data.column_names)
    if not {"attribute", "value"} <= cols:
        return np.sort(order[:k]), "random"
    values = {str(v).lower() for v in data["value"]}
    attrs = set(data["attribute"])
    score = np.array([2 if str(v).lower() in values else 1 if a in attrs else 0
                      for a, v in zip(pool["attribute"], pool["value"])])
    best = order[np.argsort(-score[order], kind="stable")][:k]
    return np.sort(best), "related"


def answer_prefix(answer: str, value: str | None = None, fraction: float = 0.5) -> tuple[str, str]:
    """Split an answer into ``(prefix, rest)`` for the prefix probe: before the fact's ``value``
    when it occurs after some words, else after ``⌊fraction·words + 0.5⌋`` words (at least one word
    on each side; ``("", answer)`` for a one-word answer)."""
    a = answer.strip()
    if value:
        k = a.find(value)
        if k > 0 and a[:k].strip():
            return a[:k].rstrip(), a[k:]
    words = a.split()
    if len(words) < 2:
        return "", a
    m = min(len(words) - 1, max(1, int(fraction * len(words) + 0.5)))
    return " ".join(words[:m]), " ".join(words[m:])


def _states(text: str, value: str) -> bool:
    v = re.escape(value.lower().strip())
    return re.search(rf"(?<!\w){v}(?!\w)", text.lower()) is not None


option("relearn_steps", 10, "relearning: fine-tuning steps", low=1)
option("relearn_lr", 1e-4, "relearning: learning rate", low=0.0, low_open=True)
option("relearn_fraction", 0.25, "relearning: fraction of the split fine-tuned on (the rest is evaluated)", low=0.0,
       high=1.0, low_open=True, high_open=True)
option("relearn_batch_size", 8, "relearning: rows per fine-tuning step", low=1)
option("relearn_on", "forget", "relearning: fine-tune on part of the evaluated split, or on retain rows",
       choices=("forget", "retain"))
option("relearn_seed", 0, "relearning: seed of the row split and the fine-tuning")
option("quant_bits", 4, "quantization: bits per weight", low=2, high=16)
option("quant_group_size", 64, "quantization: input weights sharing one scale (0: one scale per row)", low=0)
option("prefix_fraction", 0.5, "prefix_probe: fraction of the answer's words given when rows carry no value",
       low=0.0, high=1.0, low_open=True, high_open=True)




def _prob_and_rouge(model, tokenizer, questions, answers, ctx):

    bs = ctx.opt("batch_size")
    p = score_pairs(model, tokenizer, questions, answers, batch_size=bs, fmt=ctx.fmt)["prob"]
    gens = generate(model, tokenizer, questions, max_new_tokens=ctx.opt("max_new_tokens"), batch_size=ctx.gen_batch(),
                    fmt=ctx.fmt)
    return p, rouge_recall(answers, gens), gens


# -- registered metrics ---------------------------------------------------------------------------


@metric("relearning", suites=("robustness",), generates=True, forget_only=True,
        direction="more knowledge recovered after a few fine-tuning steps on other rows (less robust forgetting)",
        formula="P̄(a|q) on held-back rows after relearn_steps of NLL fine-tuning on relearn_fraction of the split",
        source="relearning attacks (Lynch et al. 2024; Hu et al. 2024, 'Jogging the memory of unlearned LLMs')")
def relearning(ctx, split, data):
    """Options: ``relearn_steps`` (10), ``relearn_lr`` (1e-4), ``relearn_fraction`` (0.25),
    ``relearn_batch_size`` (8), ``relearn_on`` ("forget" | "retain"), ``relearn_seed`` (0)."""
    tok = ctx.tokenizer
    seed = int(ctx.opt("relearn_seed"))
    on = ctx.opt("relearn_on")
    n = len(data)
    how = "random"
    if on == "forget":
        if n < 2:
            raise DataError(f"metric 'relearning' needs at least 2 rows in split {split!r} (some to relearn on, "
                            f"the others to evaluate); it has {n}")
        re_idx, ev_idx = relearn_split(n, float(ctx.opt("relearn_fraction")), seed)
        train = data.select(re_idx.tolist())
    elif on == "retain":
        if "retain" not in ctx.splits:
            raise DataError("metric 'relearning' with relearn_on='retain' needs a 'retain' split in the data")
        pool = ctx.splits["retain"]
        rows, how = related_rows(pool, data, int(float(ctx.opt("relearn_fraction")) * n + 0.5), seed)
        train = pool.select(rows.tolist())
        ev_idx = np.arange(n)
    else:
        raise ValueError(f"relearn_on={on!r}; valid: 'forget', 'retain'")
    before_p = ctx.scores(split, data, "answer")["prob"][ev_idx]
    gens = ctx.generations(split, data)
    answers = list(data["answer"])
    ev_answers = [answers[i] for i in ev_idx]
    before_r = rouge_recall(ev_answers, [gens[i] for i in ev_idx])
    tuned = finetune_copy(ctx.model, tok, train["question"], train["answer"], steps=int(ctx.opt("relearn_steps")),
                          lr=float(ctx.opt("relearn_lr")), batch_size=int(ctx.opt("relearn_batch_size")),
                          seed=seed)
    qs = [data["question"][i] for i in ev_idx]
    after_p, after_r, after_g = _prob_and_rouge(tuned, tok, qs, ev_answers, ctx)
    del tuned
    ids = row_ids(data)
    return pd.DataFrame({"id": [ids[i] for i in ev_idx], "value": after_p, "prob_before": before_p,
                         "gain": after_p - before_p, "rouge_before": before_r, "rouge_after": after_r,
                         "generation_after": after_g, "relearn_on": on if on == "forget" else f"retain ({how})",
                         "n_relearn": len(train)})


@metric("quantization", suites=("robustness",), generates=True,
        direction="more knowledge after weight rounding (on forget: knowledge that rounding brings back)",
        formula="P̄(a|q) after rounding linear weights to quant_bits (absmax, groups of 64)",
        source="Zhang et al. 2024, 'Does your LLM truly unlearn? An embarrassingly simple approach'")
def quantization(ctx, split, data):
    """Options: ``quant_bits`` (4), ``quant_group_size`` (64; 0 = per row). The quantized copy is
    built once per evaluation and shared by all splits."""
    bits = int(ctx.opt("quant_bits"))
    gs = ctx.opt("quant_group_size") or None
    key = ("quantized", bits, gs)
    if key not in ctx.cache:
        ctx.cache[key] = quantize_copy(ctx.model, bits, gs)
    qm = ctx.cache[key]
    before_p = ctx.scores(split, data, "answer")["prob"]
    gens = ctx.generations(split, data)
    before_r = rouge_recall(data["answer"], gens)
    after_p, after_r, after_g = _prob_and_rouge(qm, ctx.tokenizer, data["question"], data["answer"], ctx)
    return pd.DataFrame({"id": row_ids(data), "value": after_p, "prob_before": before_p, "gain": after_p - before_p,
                         "rouge_before": before_r, "rouge_after": after_r, "generation_after": after_g, "bits": bits})


@metric("paraphrase_probe", suites=("robustness",), fields=("question", "answer", "paraphrased_question"),
        direction="more knowledge (the fact comes back when the question is rephrased)",
        formula="ROUGE-L recall(greedy answer to paraphrased_question, true answer); also P̄(a|paraphrased q)",
        source="TOFU / closer-look paraphrase evaluation; unlearnkit robustness probe")
def paraphrase_probe(ctx, split, data):
    """Per row: ROUGE-L recall of the answer to the paraphrased question (``value``) and the
    length-normalized probability of the true answer given it (``prob``)."""

    bs = ctx.opt("batch_size")
    pq = list(data["paraphrased_question"])
    key = ("gen_paraphrased_question", split)
    if key not in ctx.cache:
        ctx.cache[key] = generate(ctx.model, ctx.tokenizer, pq, max_new_tokens=ctx.opt("max_new_tokens"),
                                  batch_size=ctx.gen_batch(), fmt=ctx.fmt)
    gens = ctx.cache[key]
    prob = score_pairs(ctx.model, ctx.tokenizer, pq, data["answer"], batch_size=bs, fmt=ctx.fmt)["prob"]
    return pd.DataFrame({"id": row_ids(data), "value": rouge_recall(data["answer"], gens), "prob": prob,
                         "generation": gens})


@metric("prefix_probe", suites=("robustness",),
        direction="more knowledge (the model completes the answer once given its first words)",
        formula="ROUGE-L recall(continuation of question + first answer words, rest of the answer)",
        source="unlearnkit robustness probe (prefix / partial-answer attack)")
def prefix_probe(ctx, split, data):
    """Options: ``prefix_fraction`` (0.5 of the words when the rows carry no ``value``)."""

    tok = ctx.tokenizer
    frac = float(ctx.opt("prefix_fraction"))
    values = list(data["value"]) if "value" in data.column_names else [None] * len(data)
    prefixes, rests, prompts = [], [], []
    for q, a, v in zip(data["question"], data["answer"], values):
        pre, rest = answer_prefix(a, str(v) if v is not None else None, frac)
        ids = ctx.fmt.prefix_ids(q, pre, tok) if pre else ctx.fmt.prompt_ids(q, tok)
        prefixes.append(pre)
        rests.append(rest)
        prompts.append(ids)
    gens = generate_from_ids(ctx.model, tok, prompts, max_new_tokens=ctx.opt("max_new_tokens"),
                             batch_size=ctx.gen_batch())
    out = pd.DataFrame({"id": row_ids(data), "value": rouge_recall(rests, gens), "prefix": prefixes, "rest": rests,
                        "generation": gens})
    if "value" in data.column_names:
        out["value_stated"] = [_states(g, str(v)) for g, v in zip(gens, values)]
    return out
