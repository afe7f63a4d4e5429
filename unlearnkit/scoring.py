"""Batched likelihood scoring and greedy generation: the primitives every metric shares.

* :func:`score_pairs` scores (question, answer) pairs in padded batches and returns per-pair
  summed log-prob, token count, and (optionally) mean predictive entropy at answer positions,
  per-token log-probs and the per-token statistics Min-K%++ needs.
* :func:`score_answers` scores many answers per question. By default it **shares the question
  prefix**: each question's prompt goes through the model once, its key/value cache is copied to
  every answer of that question, and only the answer tokens are run again (``prefix_share=True``);
  tokens all of a question's answers begin with (TOFU's paraphrased and perturbed answers often
  share their first words) go through the model once, with the prompt.
  A header every prompt shares (the chat format's BOS, system prompt and date: at least
  :data:`MIN_SHARED_HEADER` tokens) goes through the model once per call, for all questions;
  :func:`score_pairs` shares it too. With ``prefix_share=False`` it flattens to (question, answer)
  pairs, each scored whole (the older path).
* :func:`score_texts` scores plain text (every token after the first), for MUSE-style data.
* :func:`generate` decodes greedily (through :mod:`unlearnkit.generation`'s engine: length-sorted
  batches, a pre-allocated KV cache, finished rows dropped; or samples, or beam-searches with
  ``model.generate`` in left-padded batches), cuts at EOS, strips; :func:`generate_from_ids`
  continues arbitrary token prefixes.

Length-normalized probability follows OpenUnlearning's ``evaluate_probability``: ``T`` counts the
answer tokens *and* the EOS, ``P̄ = exp(-NLL_sum / T)``.

Every function takes ``batch_size`` (rows per forward). ``batch_size=1, prefix_share=False`` is the
straightforward one-answer-per-forward implementation (kept for benchmarks and checks).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import DEFAULT_FORMAT, IGNORE, encode_pairs, trim
from .data import pad as pad_ids
from .generation import (
    MIN_SHARED_HEADER,
    _cache_keyword,
    _forward_params,
    _header_states,
    _out_cache,
    common_header,
    greedy_continue,
)
from .models.layers import eval_mode


def _device(model):
    return next(model.parameters()).device


#: default token budget of one forward on CPU (rows x padded length): long rows get smaller batches,
#: which keeps activations in cache (measured on 2 cores: 270-token TOFU rows score 1.7x faster in
#: batches of 8 than of 64). On accelerators the row count alone limits a batch.
CPU_BATCH_TOKENS = 2048


def _cache_name(model) -> str:
    """The keyword under which the model's forward takes a KV cache: ``cache`` (transformers >= 5.24,
    where ``past_key_values`` is deprecated) or ``past_key_values`` (earlier versions)."""
    return _cache_keyword(_forward_params(model)) or "past_key_values"


def _budget(model, max_batch_tokens):
    if max_batch_tokens is not None:
        return int(max_batch_tokens)
    return CPU_BATCH_TOKENS if _device(model).type == "cpu" else None


def _batches(lengths, batch_size: int, max_tokens):
    """Consecutive slices of rows (already sorted by length, longest first) such that each slice
    has at most ``batch_size`` rows and ``rows x longest`` at most ``max_tokens`` (one row at least)."""
    out, s, n = [], 0, len(lengths)
    while s < n:
        cap = batch_size
        if max_tokens:
            cap = max(1, min(cap, int(max_tokens) // max(1, int(lengths[s]))))
        out.append((s, min(n, s + cap)))
        s += cap
    return out


def _empty_outputs(n: int, entropy: bool, token_level: bool, token_stats: bool) -> dict:
    out = {"logprob": np.zeros(n), "n_tokens": np.zeros(n, dtype=int)}
    if entropy:
        out["entropy"] = np.zeros(n)
    if token_level or token_stats:
        out["token_logprobs"] = [None] * n
        out["token_entropy"] = [None] * n
    if token_stats:
        out["token_mu"] = [None] * n
        out["token_sigma"] = [None] * n
    return out


def _fill(out: dict, rows, logp: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor, entropy: bool,
          token_level: bool, token_stats: bool):
    """Write the scores of one batch into ``out`` at positions ``rows``.

    ``logp`` ``(B, T, V)`` log-softmax at the positions predicting ``tgt`` ``(B, T)``; ``mask``
    ``(B, T)`` marks real answer tokens.
    """
    tlp = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
    rows = np.asarray(rows)
    out["logprob"][rows] = tlp.sum(-1).double().cpu().numpy()
    out["n_tokens"][rows] = mask.sum(-1).cpu().numpy()
    need_ent = entropy or token_level or token_stats
    if need_ent:
        p = logp.exp()
        ent = -(p * logp).sum(-1)
        if entropy:
            out["entropy"][rows] = ((ent * mask).sum(-1) / mask.sum(-1).clamp_min(1)).cpu().numpy()
    if token_stats:
        mu = (p * logp).sum(-1)  # E_v[log p_v] = -entropy
        var = (p * logp.pow(2)).sum(-1) - mu.pow(2)
        sigma = var.clamp_min(1e-6).sqrt()
    if token_level or token_stats:
        for j, i in enumerate(rows.tolist()):
            m = mask[j].bool()
            out["token_logprobs"][i] = tlp[j][m].double().cpu().numpy()
            out["token_entropy"][i] = ent[j][m].cpu().numpy()
            if token_stats:
                out["token_mu"][i] = mu[j][m].double().cpu().numpy()
                out["token_sigma"][i] = sigma[j][m].double().cpu().numpy()


def _finish(out: dict, entropy: bool, token_level: bool, token_stats: bool) -> dict:
    out["mean_nll"] = -out["logprob"] / np.maximum(out["n_tokens"], 1)
    out["prob"] = np.exp(-out["mean_nll"])
    if not (token_level or token_stats):
        out.pop("token_logprobs", None)
        out.pop("token_entropy", None)
    order = ["logprob", "n_tokens", "mean_nll", "prob", "entropy", "token_logprobs", "token_entropy",
             "token_mu", "token_sigma"]
    return {k: out[k] for k in order if k in out}


@torch.no_grad()
def _score_encoded(model, enc: dict, *, batch_size: int, entropy: bool, token_level: bool,
                   token_stats: bool, max_batch_tokens=None) -> dict:
    """Score right-padded ``enc`` (``input_ids``/``attention_mask``/``labels``) row by row in batches."""
    dev = _device(model)
    n = enc["input_ids"].shape[0]
    # sort by length so batches hold similar lengths (less padding), then restore order
    lengths = enc["attention_mask"].sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    out = _empty_outputs(n, entropy, token_level, token_stats)
    keep_ok = "logits_to_keep" in _forward_params(model)
    with eval_mode(model):
        for s, e in _batches(lengths[order].tolist(), batch_size, _budget(model, max_batch_tokens)):
            idx = order[s:e]
            part = trim({k: v[idx] for k, v in enc.items()})
            L = part["input_ids"].shape[1]
            # logits only from the position before the batch's first target on (the LM head is not
            # run on the prompt positions every row of the batch shares)
            valid = part["labels"] != IGNORE
            start = max(1, int(valid.float().argmax(1)[valid.any(1)].min())) if keep_ok and bool(valid.any()) else 1
            kw = {"logits_to_keep": L - start + 1} if keep_ok else {}
            logits = model(input_ids=part["input_ids"].to(dev), attention_mask=part["attention_mask"].to(dev), **kw).logits
            labels = part["labels"].to(dev)[:, start:]
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            _fill(out, idx.numpy(), logp, labels, labels != IGNORE, entropy, token_level, token_stats)
    return _finish(out, entropy, token_level, token_stats)


def score_pairs(model, tokenizer, questions, answers, *, batch_size: int = 64, fmt=DEFAULT_FORMAT,
                entropy: bool = False, token_level: bool = False, token_stats: bool = False,
                max_batch_tokens: int | None = None, prefix_share: bool = True) -> dict:
    """Score (question, answer) pairs.

    Returns a dict of numpy arrays, one entry per pair: ``logprob`` (sum over answer tokens + EOS,
    nats), ``n_tokens`` (T), ``mean_nll`` (= -logprob/T), ``prob`` (= exp(-mean_nll)); with
    ``entropy`` also ``entropy`` (mean predictive entropy over answer positions, nats); with
    ``token_level`` also ``token_logprobs``/``token_entropy``: lists of per-token arrays (length T);
    with ``token_stats`` also ``token_mu``/``token_sigma`` (per token: ``E_v[log p_v]`` and the
    standard deviation of ``log p_v`` under ``p``, variance clamped at 1e-6; Min-K%++).
    ``batch_size`` caps rows per forward and ``max_batch_tokens`` rows x padded length (default
    :data:`CPU_BATCH_TOKENS` on CPU, no cap elsewhere).

    When every prompt starts with the same ``>= MIN_SHARED_HEADER`` tokens (the chat format's
    system prompt and date header), the pairs are scored like :func:`score_answers` with one
    answer per question: the header's KV cache is computed once per call and shared (same values
    up to float rounding); ``prefix_share=False`` scores every pair whole.
    """
    questions, answers = list(questions), list(answers)
    if prefix_share and fmt.chat and questions and len(questions) == len(answers) and tokenizer.pad_token_id is not None:
        p_ids = [fmt.prompt_ids(q, tokenizer) for q in questions]
        if common_header(p_ids) >= MIN_SHARED_HEADER:
            res = _score_shared(model, tokenizer, questions, [[a] for a in answers], batch_size=batch_size, fmt=fmt,
                                entropy=entropy, token_level=token_level, token_stats=token_stats,
                                max_batch_tokens=max_batch_tokens, p_ids=p_ids)
            return {k: (np.concatenate([r[k] for r in res]) if isinstance(res[0][k], np.ndarray)
                        else [x for r in res for x in r[k]]) for k in res[0]}
    enc = encode_pairs(tokenizer, questions, answers, fmt=fmt)
    return _score_encoded(model, enc, batch_size=batch_size, entropy=entropy, token_level=token_level,
                          token_stats=token_stats, max_batch_tokens=max_batch_tokens)


def score_texts(model, tokenizer, texts, *, batch_size: int = 64, max_length: int | None = None,
                entropy: bool = False, token_level: bool = False, token_stats: bool = False,
                max_batch_tokens: int | None = None) -> dict:
    """Score plain texts: every token after the first is a target (MUSE's whole-text log-probs).

    Same keys as :func:`score_pairs`; ``n_tokens`` = tokens scored (no EOS added). Texts are
    tokenized with the tokenizer's special tokens and truncated to ``max_length`` tokens.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (load_model does this)")
    seqs = []
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"row {i}: empty text")
        ids = tokenizer(t, add_special_tokens=True)["input_ids"]
        seqs.append(ids[:max_length] if max_length else ids)
    input_ids, attn = pad_ids(seqs, tokenizer.pad_token_id)
    labels = torch.full_like(input_ids, IGNORE)
    for i, s in enumerate(seqs):
        labels[i, 1:len(s)] = torch.tensor(s[1:], dtype=torch.long)
    enc = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}
    return _score_encoded(model, enc, batch_size=batch_size, entropy=entropy, token_level=token_level,
                          token_stats=token_stats, max_batch_tokens=max_batch_tokens)


def _select_cache(cache, idx: torch.Tensor):
    """Rows ``idx`` (repeats allowed) of a KV cache: a ``transformers`` Cache or legacy tuples."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(idx)
        return cache
    return tuple(tuple(t[idx] for t in layer) for layer in cache)


def _repeat_header(model, header_kv, n: int):
    """A fresh ``DynamicCache`` holding the header's keys and values for ``n`` rows."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for i, (k, v) in enumerate(header_kv):
        cache.update(k.expand(n, *k.shape[1:]).contiguous(), v.expand(n, *v.shape[1:]).contiguous(), i)
    return cache


@torch.no_grad()
def _score_shared(model, tokenizer, questions, answer_lists, *, batch_size: int, fmt, entropy: bool,
                  token_level: bool, token_stats: bool, max_batch_tokens=None, p_ids=None,
                  share_header: bool = True) -> list[dict]:
    """Prefix-shared scoring: one prompt pass per question, its KV cache reused by every answer.

    When every prompt starts with the same ``>= MIN_SHARED_HEADER`` tokens (the chat format's system
    prompt and date header), that header goes through the model once per call and its KV cache is
    copied to every batch (``share_header``); each batch then runs only the rest of its prompts.
    Prompts (after the header) are left-padded with explicit ``position_ids`` (so padding does not
    shift RoPE or learned positions; the padding sits between header and question, masked out);
    the tokens all of a question's answers begin with (:func:`_shared_answer_prefixes`) are appended
    to its prompt, so they run once; each answer's other tokens are right-padded and continue at its
    prompt's true length. The log-probs of an answer's shared tokens and of its first own token come
    from the prompt pass's last positions (kept for every question of the batch). ``p_ids``: the
    prompts' token ids when the caller has them.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (load_model does this)")
    dev = _device(model)
    if p_ids is None:
        p_ids = [fmt.prompt_ids(q, tokenizer) for q in questions]
    flat = []  # (question index, answer ids)
    for i, (q, answers) in enumerate(zip(questions, answer_lists)):
        for a in answers:
            if not isinstance(a, str) or not a.strip():
                raise ValueError(f"empty answer for question {q!r}")
            flat.append((i, fmt.answer_ids(q, a, tokenizer, prompt_ids=p_ids[i])))
    n = len(flat)
    out = _empty_outputs(n, entropy, token_level, token_stats)
    shared = _shared_answer_prefixes(flat, len(questions))
    # order questions by the longest answer tokens they run after their prompt pass (the answer
    # pass is the larger one: this pads least; on TOFU 5-6% fewer padded tokens than ordering by
    # prompt + answer); answers stay grouped by question
    longest, rest = {}, {}
    for i, a in flat:
        longest[i] = max(longest.get(i, 0), len(a) + len(p_ids[i]))
        rest[i] = max(rest.get(i, 0), len(a) - len(shared[i]))
    order = sorted(range(n), key=lambda k: (-rest[flat[k][0]], flat[k][0], k))
    pad = tokenizer.pad_token_id
    keep_ok, cache_name = "logits_to_keep" in _forward_params(model), _cache_name(model)  # (read once, not per batch)
    used = sorted({i for i, _ in flat})
    C = common_header([p_ids[i] for i in used]) if share_header else 0
    header_kv = None
    with eval_mode(model):
        if C >= MIN_SHARED_HEADER:
            header_kv = _header_states(model, p_ids[used[0]][:C], dev)
        if header_kv is None:
            C = 0
        # the budget counts what a batch computes: the header is not recomputed
        spans = _batches([longest[flat[k][0]] - C for k in order], batch_size, _budget(model, max_batch_tokens))
        for s, e in spans:
            rows = order[s:e]
            qs = list(dict.fromkeys(flat[k][0] for k in rows))
            slot = {q: j for j, q in enumerate(qs)}
            # each question's prompt, then the answer prefix all its answers share, in one pass
            pin, smask = pad_ids([p_ids[q][C:] + shared[q] for q in qs], pad, left=True)
            pmask = torch.cat([torch.ones((len(qs), C), dtype=smask.dtype), smask], 1)
            pos = (pmask.cumsum(1) - 1).clamp_min(0)[:, C:]
            K = 1 + max(len(shared[q]) for q in qs)  # positions whose logits the prompt pass keeps
            kw = {cache_name: _repeat_header(model, header_kv, len(qs))} if C else {}
            if keep_ok:
                kw["logits_to_keep"] = K
            po = model(input_ids=pin.to(dev), attention_mask=pmask.to(dev), position_ids=pos.to(dev), use_cache=True,
                       **kw)
            owner = torch.tensor([slot[flat[k][0]] for k in rows], dtype=torch.long)
            cache = _select_cache(_out_cache(po), owner.to(dev))
            cut = [len(shared[flat[k][0]]) for k in rows]  # tokens of each answer the prompt pass already holds
            ain, amask = pad_ids([flat[k][1] for k in rows], pad)
            rin, _ = pad_ids([flat[k][1][c:-1] or [pad] for k, c in zip(rows, cut)], pad)
            plen = pmask.sum(1)[owner]
            R = rin.shape[1]
            rpos = plen[:, None] + torch.arange(R)[None, :]
            rmask = (torch.arange(R)[None, :] < torch.tensor([len(flat[k][1]) - 1 - c for k, c in zip(rows, cut)])[:, None])
            if int(rmask.sum()):
                full_mask = torch.cat([pmask[owner], rmask.to(pmask.dtype)], 1)
                ao = model(input_ids=rin.to(dev), attention_mask=full_mask.to(dev), position_ids=rpos.to(dev),
                           use_cache=True, **{cache_name: cache}).logits.float()
            else:
                ao = torch.zeros((len(rows), R, po.logits.shape[-1]), device=dev)
            # row j's logits: its question's last cut_j + 1 prompt-pass positions, then its own positions
            kept = po.logits[:, -K:].float()
            T = ain.shape[1]
            t = torch.arange(T)[None, :]
            c = torch.tensor(cut)[:, None]
            from_prompt = t <= c
            src = torch.where(from_prompt, owner[:, None] * K + (K - 1 - c + t),
                              len(qs) * K + torch.arange(len(rows))[:, None] * R + (t - c - 1).clamp(0, R - 1))
            logits = torch.cat([kept.reshape(-1, kept.shape[-1]), ao.reshape(-1, ao.shape[-1])])[src.to(dev)]
            logp = torch.log_softmax(logits, -1)
            _fill(out, np.array(rows), logp, ain.to(dev), amask.to(dev), entropy, token_level, token_stats)
    res = _finish(out, entropy, token_level, token_stats)
    owner_all = np.array([i for i, _ in flat])
    return _split_by_owner(res, owner_all, len(questions))


def _shared_answer_prefixes(flat, n_questions: int) -> list[list[int]]:
    """Per question, the leading tokens all its answers share (a question with one answer: none),
    capped so that every answer keeps at least one token of its own. TOFU's paraphrased and perturbed
    answers often begin alike ("The author's father was a ..."): :func:`_score_shared` runs those
    tokens once, with the prompt, for all the answers."""
    answers: list[list[list[int]]] = [[] for _ in range(n_questions)]
    for i, a in flat:
        answers[i].append(a)
    return [group[0][:common_header(group)] if len(group) > 1 else [] for group in answers]


def _split_by_owner(res: dict, owner: np.ndarray, n_questions: int) -> list[dict]:
    out = []
    for i in range(n_questions):
        sel = np.nonzero(owner == i)[0]
        out.append({k: (v[sel] if isinstance(v, np.ndarray) else [v[j] for j in sel]) for k, v in res.items()})
    return out


def score_answers(model, tokenizer, questions, answer_lists, *, prefix_share: bool = True, batch_size: int = 64,
                  fmt=DEFAULT_FORMAT, entropy: bool = False, token_level: bool = False,
                  token_stats: bool = False, max_batch_tokens: int | None = None) -> list[dict]:
    """Score several answers per question in batches.

    ``answer_lists[i]`` is a list of answers to ``questions[i]``. Returns, per question, a dict of
    arrays shaped like its answer list (keys as :func:`score_pairs`). ``prefix_share=True`` runs
    each question's prompt once and reuses its KV cache for all its answers, and a header common to
    every prompt (the chat format's system prompt and date) once for all questions (same numbers as
    the flat path up to float rounding, fewer FLOPs); ``batch_size`` counts answers per forward,
    ``max_batch_tokens`` caps answers x (prompt + answer length) as in :func:`score_pairs`.
    """
    questions, answer_lists = list(questions), [list(a) for a in answer_lists]
    if len(questions) != len(answer_lists):
        raise ValueError(f"score_answers: {len(questions)} questions but {len(answer_lists)} answer lists")
    kw = dict(batch_size=batch_size, fmt=fmt, entropy=entropy, token_level=token_level, token_stats=token_stats,
              max_batch_tokens=max_batch_tokens)
    if not any(answer_lists):
        return [_finish(_empty_outputs(0, entropy, token_level, token_stats), entropy, token_level, token_stats)
                for _ in questions]
    if prefix_share:
        return _score_shared(model, tokenizer, questions, answer_lists, **kw)
    flat_q, flat_a, owner = [], [], []
    for i, (q, answers) in enumerate(zip(questions, answer_lists)):
        for a in answers:
            flat_q.append(q)
            flat_a.append(a)
            owner.append(i)
    res = score_pairs(model, tokenizer, flat_q, flat_a, prefix_share=False, **kw)
    return _split_by_owner(res, np.asarray(owner), len(questions))


@torch.no_grad()
def generate_from_ids(model, tokenizer, prompt_ids, *, max_new_tokens=48, batch_size: int = 64,
                      do_sample: bool = False, temperature: float = 1.0, num_return_sequences: int = 1,
                      num_beams: int = 1, seed: int | None = None, return_ids: bool = False,
                      max_batch_tokens: int | None = None):
    """Continue token-id prompts (lists of ints), batched; greedy by default.

    ``max_new_tokens``: an int, or one int per prompt (each continuation is cut to its own
    length). Returns stripped strings cut at EOS (``len(prompt_ids) * num_return_sequences``,
    grouped per prompt); with ``return_ids`` also the generated token id lists.

    Greedy decoding of one sequence per prompt goes through :func:`unlearnkit.generation.greedy_continue`
    (length-sorted batches of at most ``batch_size`` rows and ``max_batch_tokens`` rows x (prompt +
    new tokens), a pre-allocated KV cache, finished rows dropped; the same tokens as
    ``model.generate``); sampling, beam search and models that engine does not support use
    ``model.generate`` in left-padded batches of ``batch_size`` prompts.
    """
    dev = _device(model)
    if seed is not None:
        torch.manual_seed(seed)
    prompt_ids = [list(p) for p in prompt_ids]
    limits = [max_new_tokens] * len(prompt_ids) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != len(prompt_ids):
        raise ValueError(f"generate: {len(limits)} max_new_tokens values for {len(prompt_ids)} prompts")
    texts, ids_out = [], []
    pad = tokenizer.pad_token_id
    if not do_sample and num_beams == 1 and num_return_sequences == 1 and prompt_ids:
        with eval_mode(model):
            rows = greedy_continue(model, prompt_ids, limits, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
                                   batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        if rows is not None:
            rows = [[t for t in row if t != pad] for row in rows]
            texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]
            return (texts, rows) if return_ids else texts
    with eval_mode(model):
        for s in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[s:s + batch_size]
            lim = limits[s:s + batch_size]
            inp, attn = pad_ids(chunk, pad, left=True)
            L = inp.shape[1]
            kw = dict(do_sample=do_sample, max_new_tokens=max(1, max(lim)), pad_token_id=pad,
                      eos_token_id=tokenizer.eos_token_id, num_return_sequences=num_return_sequences)
            if do_sample:
                kw.update(temperature=temperature, top_k=0, top_p=1.0)
            if num_beams > 1:
                kw.update(num_beams=num_beams)
            out = model.generate(input_ids=inp.to(dev), attention_mask=attn.to(dev), **kw)
            new = out[:, L:].cpu()
            for r, row in enumerate(new.tolist()):
                row = row[: lim[r // num_return_sequences]]
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                row = [t for t in row if t != pad]
                ids_out.append(row)
                texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return (texts, ids_out) if return_ids else texts


def generate(model, tokenizer, questions, *, max_new_tokens: int = 48, batch_size: int = 64, fmt=DEFAULT_FORMAT,
             do_sample: bool = False, temperature: float = 1.0, num_return_sequences: int = 1, seed: int | None = None,
             return_ids: bool = False, num_beams: int = 1, max_batch_tokens: int | None = None):
    """Decode answers to ``questions`` (greedy unless ``do_sample``; beam search with ``num_beams``),
    batched (:func:`generate_from_ids` on the formatted prompts).

    Returns a list of stripped strings cut at EOS (``len(questions) * num_return_sequences``,
    grouped per question); with ``return_ids`` also the generated token id lists.
    """
    prompts = [fmt.prompt_ids(q, tokenizer) for q in questions]
    return generate_from_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             do_sample=do_sample, temperature=temperature, num_return_sequences=num_return_sequences,
                             num_beams=num_beams, seed=seed, return_ids=return_ids, max_batch_tokens=max_batch_tokens)
