"""Batched likelihood scoring and greedy generation: the primitives every metric shares.

* :func:`score_answers` scores many answers per question in padded batches and returns per-answer
  summed log-prob, token count, and mean predictive entropy at answer positions.
* :func:`generate` decodes greedily in left-padded batches with the KV cache, cuts at EOS, strips.

Length-normalized probability follows OpenUnlearning's ``evaluate_probability``: ``T`` counts the
answer tokens *and* the EOS, ``P̄ = exp(-NLL_sum / T)``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import DEFAULT_FORMAT, encode_pairs, encode_prompts, trim


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def score_pairs(model, tokenizer, questions, answers, *, batch_size: int = 64, fmt=DEFAULT_FORMAT,
                entropy: bool = False, token_level: bool = False) -> dict:
    """Score (question, answer) pairs.

    Returns a dict of numpy arrays, one entry per pair: ``logprob`` (sum over answer tokens + EOS,
    nats), ``n_tokens`` (T), ``mean_nll`` (= -logprob/T), ``prob`` (= exp(-mean_nll)); with
    ``entropy`` also ``entropy`` (mean predictive entropy over answer positions, nats); with
    ``token_level`` also ``token_logprobs``/``token_entropy``: lists of per-token arrays.
    """
    was = model.training
    model.eval()
    dev = _device(model)
    enc = encode_pairs(tokenizer, questions, answers, fmt=fmt)
    n = enc["input_ids"].shape[0]
    # sort by length so batches hold similar lengths (less padding), then restore order
    lengths = enc["attention_mask"].sum(1)
    order = torch.argsort(lengths, descending=True)
    lp_out = np.zeros(n)
    cnt = np.zeros(n, dtype=int)
    ent_out = np.zeros(n) if entropy else None
    tok_lp = [None] * n if token_level else None
    tok_ent = [None] * n if token_level else None
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        part = trim({k: v[idx] for k, v in enc.items()})
        logits = model(input_ids=part["input_ids"].to(dev), attention_mask=part["attention_mask"].to(dev)).logits.float()
        labels = part["labels"].to(dev)[:, 1:]
        mask = labels != -100
        logp = torch.log_softmax(logits[:, :-1], -1)
        tlp = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
        lp_out[idx.numpy()] = tlp.sum(-1).cpu().numpy()
        cnt[idx.numpy()] = mask.sum(-1).cpu().numpy()
        if entropy or token_level:
            ent = -(logp.exp() * logp).sum(-1)
            if entropy:
                ent_out[idx.numpy()] = ((ent * mask).sum(-1) / mask.sum(-1).clamp_min(1)).cpu().numpy()
            if token_level:
                for j, i in enumerate(idx.tolist()):
                    m = mask[j]
                    tok_lp[i] = tlp[j][m].cpu().numpy()
                    tok_ent[i] = ent[j][m].cpu().numpy()
    model.train(was)
    out = {"logprob": lp_out, "n_tokens": cnt, "mean_nll": -lp_out / np.maximum(cnt, 1)}
    out["prob"] = np.exp(-out["mean_nll"])
    if entropy:
        out["entropy"] = ent_out
    if token_level:
        out["token_logprobs"], out["token_entropy"] = tok_lp, tok_ent
    return out


def score_answers(model, tokenizer, questions, answer_lists, **kw) -> list[dict]:
    """Score several answers per question in one flattened, batched pass.

    ``answer_lists[i]`` is a list of answers to ``questions[i]``. Returns, per question, a dict of
    arrays shaped like its answer list (keys as :func:`score_pairs`).
    """
    flat_q, flat_a, owner = [], [], []
    for i, (q, answers) in enumerate(zip(questions, answer_lists)):
        for a in answers:
            flat_q.append(q)
            flat_a.append(a)
            owner.append(i)
    res = score_pairs(model, tokenizer, flat_q, flat_a, **kw)
    owner = np.asarray(owner)
    out = []
    for i in range(len(questions)):
        sel = np.nonzero(owner == i)[0]
        out.append({k: (v[sel] if isinstance(v, np.ndarray) else [v[j] for j in sel]) for k, v in res.items()})
    return out


@torch.no_grad()
def generate(model, tokenizer, questions, *, max_new_tokens: int = 48, batch_size: int = 64, fmt=DEFAULT_FORMAT,
             do_sample: bool = False, temperature: float = 1.0, num_return_sequences: int = 1, seed: int | None = None,
             return_ids: bool = False):
    """Decode answers to ``questions`` (greedy unless ``do_sample``), left-padded, batched.

    Returns a list of stripped strings cut at EOS (``len(questions) * num_return_sequences``,
    grouped per question); with ``return_ids`` also the generated token id lists.
    """
    was = model.training
    model.eval()
    dev = _device(model)
    if seed is not None:
        torch.manual_seed(seed)
    texts, ids_out = [], []
    questions = list(questions)
    for s in range(0, len(questions), batch_size):
        enc = encode_prompts(tokenizer, questions[s:s + batch_size], fmt=fmt)
        enc = {k: v.to(dev) for k, v in enc.items()}
        kw = dict(do_sample=do_sample, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, num_return_sequences=num_return_sequences)
        if do_sample:
            kw.update(temperature=temperature, top_k=0, top_p=1.0)
        out = model.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        for row in new.tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            row = [t for t in row if t != tokenizer.pad_token_id]
            ids_out.append(row)
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    model.train(was)
    return (texts, ids_out) if return_ids else texts
