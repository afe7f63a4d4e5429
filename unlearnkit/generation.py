"""Greedy decoding without per-step framework overhead: the engine behind :func:`unlearnkit.scoring.generate`.

:func:`greedy_continue` continues token-id prompts greedily and returns, per prompt, the new token ids
(cut before EOS, at most that prompt's own ``max_new_tokens``), in the prompts' original order. It
produces the same tokens as ``model.generate(do_sample=False)`` on the same left-padded batch (a
test compares them token for token) while doing less work:

* prompts are **sorted by length** and batched under a **token budget** (rows x (longest prompt +
  longest limit) at most ``max_batch_tokens``; at most ``batch_size`` rows), so a batch holds prompts
  of similar length and the prefill pads little;
* a **header every prompt shares** (the chat format's BOS, system prompt and date) goes through the
  model once per call; its keys and values start every batch's cache, and the prefill runs only the
  rest of each prompt;
* the KV cache is **pre-allocated** once per batch (:class:`ArenaLayer`, a ``transformers`` cache
  layer that writes each step's keys and values in place instead of concatenating the whole cache
  every step, as ``DynamicCache`` does);
* rows **leave the decode batch** once they emit EOS or reach their own limit (the cache is
  compacted when a quarter of the rows have finished, so the copy is amortised);
* the decode loop is plain Python around ``model(...)``: no logits processors, stopping criteria or
  per-step input preparation beyond one token, one mask column and one position per row.

It applies to any ``transformers`` causal LM whose cache is made of plain (full-attention)
``DynamicLayer`` s and whose generation config adds no logits processing (repetition penalty,
suppressed tokens, minimum length...). Anything else (sliding-window or linear-attention caches,
encoder-decoders, models without the Cache API, such generation configs) is decoded by
``model.generate`` instead: :func:`supports` says which path a model takes.

``torch.compile`` was not used: on CPU its compile time (tens of seconds per batch shape) exceeds
what it saves for the kit's models, and it does not hold for arbitrary HF models.
"""

from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

#: default token budget of one generation batch on CPU: rows x (longest prompt + longest limit).
#: Decoding is one token per row per step, so the linear layers see ``rows`` tokens a step: the
#: more rows, the closer they get to the matmul peak (measured on one core with the 6.3M tiny
#: Llama, 200 new tokens: 64 rows decode ~20% faster per row than 32, 128 another ~5%), while the
#: cache grows with rows x length. With TOFU prompts and 200 new tokens this budget lets
#: ``batch_size`` (64 in ``evaluate``) decide. On accelerators only ``batch_size`` limits a batch.
CPU_GEN_BATCH_TOKENS = 32768

#: generation-config fields whose non-default values make ``model.generate`` change the logits;
#: a model with any of them decodes through ``model.generate`` (greedy must mean the same thing)
_PROCESSING_FIELDS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
                      "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
                      "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
                      "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
                      "forced_eos_token_id": (None,), "sequence_bias": (None,), "guidance_scale": (None, 1.0),
                      "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False),
                      "watermarking_config": (None,)}


#: shortest token prefix common to every prompt that :func:`greedy_continue` and the scoring
#: functions of :mod:`unlearnkit.scoring` compute once and share (the chat format's BOS, system
#: prompt and date header: 20-60 tokens); shorter common prefixes (the plain format's
#: ``Question:``) are not worth a separate pass
MIN_SHARED_HEADER = 8


def common_header(prompts: list[list[int]]) -> int:
    """Length of the token prefix every prompt shares, capped so that each prompt keeps at least
    one token of its own (its last position predicts the answer's first token)."""
    if not prompts:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    c = 0
    while c < n and all(p[c] == first[c] for p in prompts):
        c += 1
    return c


class ArenaLayer(DynamicLayer):
    """A full-attention cache layer with pre-allocated storage.

    Keys and values live in ``(batch, heads, capacity, head_dim)`` tensors allocated at the first
    update; each update writes its ``(batch, heads, new, head_dim)`` states at the current length and
    returns views of the filled part, ``(batch, heads, length, head_dim)``, so attention sees
    exactly what a ``DynamicLayer`` would hold, without a concatenation of the whole cache per step.
    ``capacity`` (tokens) grows by doubling if an update would pass it.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = int(capacity)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        b, h, _, dk = key_states.shape
        self._k = key_states.new_empty((b, h, self.capacity, dk))
        self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
        self.length = 0
        self.is_initialized = True

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.capacity)
        k = self._k.new_empty((*self._k.shape[:2], cap, self._k.shape[-1]))
        v = self._v.new_empty((*self._v.shape[:2], cap, self._v.shape[-1]))
        k[:, :, :self.length] = self._k[:, :, :self.length]
        v[:, :, :self.length] = self._v[:, :, :self.length]
        self._k, self._v, self.capacity = k, v, cap

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Write the new states after the cached ones; returns the keys and values so far."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, m = self.length, key_states.shape[-2]
        if n + m > self.capacity:
            self._grow(n + m)
        self._k[:, :, n:n + m] = key_states
        self._v[:, :, n:n + m] = value_states
        self.length = n + m
        self.keys, self.values = self._k[:, :, :n + m], self._v[:, :, :n + m]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (copies only the filled part of the storage)."""
        if not self.is_initialized:
            return
        n = self.length
        k = self._k.new_empty((len(indices), *self._k.shape[1:]))
        v = self._v.new_empty((len(indices), *self._v.shape[1:]))
        k[:, :, :n] = self._k[indices, :, :n]
        v[:, :, :n] = self._v[indices, :, :n]
        self._k, self._v = k, v
        self.keys, self.values = k[:, :, :n], v[:, :, :n]

    def reset(self) -> None:
        self.length = 0
        self._k = self._v = None
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self.length = max(0, self.length + tokens_to_remove)
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]


def _forward_params(model) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_keyword(params: set[str]) -> str | None:
    """The forward's cache keyword: ``cache`` (transformers >= 5.24) or ``past_key_values``; None if neither."""
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def _processing_free(model) -> bool:
    cfg = getattr(model, "generation_config", None)
    if cfg is None:
        return True
    for name, neutral in _PROCESSING_FIELDS.items():
        v = getattr(cfg, name, None)
        if v is not None and v not in neutral and not (isinstance(v, (list, tuple, dict)) and not v):
            return False
    return True


def _new_cache(model, capacity: int) -> Cache | None:
    """A cache of :class:`ArenaLayer` s for ``model``, or None where its default cache is not made of
    plain full-attention layers (sliding windows, linear attention...)."""
    try:
        probe = DynamicCache(config=model.config)
    except Exception:  # a config DynamicCache cannot read: let model.generate handle the model
        return None
    if not probe.layers or any(type(layer) is not DynamicLayer for layer in probe.layers):
        return None
    return Cache(layers=[ArenaLayer(capacity) for _ in probe.layers])


def supports(model) -> bool:
    """Whether :func:`greedy_continue` decodes ``model`` itself (else it calls ``model.generate``):
    a decoder-only model whose forward takes ``attention_mask``, ``position_ids`` and a Cache, whose
    cache layers are plain full-attention ``DynamicLayer`` s, and whose generation config adds no
    logits processing."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "is_encoder_decoder", False):
        return False
    params = _forward_params(model)
    if _cache_keyword(params) is None or not {"attention_mask", "position_ids", "use_cache"} <= params:
        return False
    return _processing_free(model) and _new_cache(model, 1) is not None


def _batches(lengths: list[int], limits: list[int], order: list[int], batch_size: int, max_tokens):
    """Consecutive slices of ``order`` (prompt indices, longest prompt first): at most ``batch_size``
    rows and, with ``max_tokens``, rows x (longest prompt + longest limit in the slice) at most
    ``max_tokens`` (one row at least)."""
    out, s, n = [], 0, len(order)
    while s < n:
        e, longest, lim = s, 0, 0
        while e < n and e - s < batch_size:
            longest2, lim2 = max(longest, lengths[order[e]]), max(lim, limits[order[e]])
            if max_tokens and e > s and (e - s + 1) * (longest2 + lim2) > max_tokens:
                break
            longest, lim, e = longest2, lim2, e + 1
        out.append(order[s:e])
        s = e
    return out


def _out_cache(out):
    """The KV cache a forward returned (``out.cache`` in transformers >= 5.24, else ``past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def _header_states(model, header: list[int], device, cache=None):
    """Keys and values of the shared ``header`` after one forward pass (one ``(1, heads, len, head_dim)``
    pair per layer), or None where the cache has no per-layer ``keys``/``values`` (then nothing is
    shared). ``cache``: an empty cache to fill (generation's arena); None: the model's default cache."""
    params = _forward_params(model)
    kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    if cache is not None:
        kw[_cache_keyword(params)] = cache
    ids = torch.tensor([header], dtype=torch.long, device=device)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                position_ids=torch.arange(len(header), device=device)[None], use_cache=True, **kw)
    layers = getattr(cache if cache is not None else _out_cache(out), "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


@torch.no_grad()
def _decode_batch(model, prompts: list[list[int]], limits: list[int], eos: int | None, pad: int, cache_kw: str,
                  logits_kw: dict, device, header=None) -> list[list[int]]:
    """Greedy continuations of one batch of prompts (left-padded, one prefill, then one token per step).

    ``header``: ``(C, states)`` when every prompt starts with the same ``C`` tokens whose keys and
    values are ``states`` (:func:`_header_states`): the cache starts with them, the prompts' other
    tokens are left-padded after them (padding between header and question, masked out, with
    explicit positions) and only those go through the prefill.
    """
    n = len(prompts)
    C, states = header if header is not None else (0, None)
    rest = [p[C:] for p in prompts]
    longest = C + max(len(p) for p in rest)
    steps = max(limits)
    ids = torch.full((n, longest - C), pad, dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    mask[:, :C] = 1
    for i, p in enumerate(rest):
        ids[i, longest - C - len(p):] = torch.as_tensor(p, dtype=torch.long)
        mask[i, longest - len(p):] = 1
    pos = ((mask.cumsum(1) - 1).masked_fill(mask == 0, 0))[:, C:]
    # the mask of every step, pre-allocated: columns past the prompt are filled one per step
    full_mask = torch.ones((n, longest + steps), dtype=torch.long)
    full_mask[:, :longest] = mask
    full_mask = full_mask.to(device)
    cache = _new_cache(model, longest + steps)
    for layer, (k, v) in zip(cache.layers, states or ()):
        layer.update(k.expand(n, *k.shape[1:]), v.expand(n, *v.shape[1:]))
    out = model(input_ids=ids.to(device), attention_mask=full_mask[:, :longest], position_ids=pos.to(device),
                use_cache=True, **{cache_kw: cache}, **logits_kw)
    nxt = out.logits[:, -1].argmax(-1)
    next_pos = pos[:, -1:].to(device) + 1
    rows = list(range(n))  # prompt index of each row of the live batch
    lim = torch.as_tensor(limits, dtype=torch.long)
    gen = torch.empty((n, steps), dtype=torch.long)  # written per step; read up to each row's length
    lengths = [0] * n
    done: set[int] = set()
    live_lim = lim.clone()
    for t in range(steps):
        tok = nxt.cpu()
        gen[torch.as_tensor(rows), t] = tok
        finished = (live_lim <= t + 1)
        if eos is not None:
            finished |= tok == eos
        for j in torch.nonzero(finished).flatten().tolist():
            r = rows[j]
            if r not in done:
                done.add(r)
                lengths[r] = t + 1
        alive = [j for j, r in enumerate(rows) if r not in done]
        if not alive:
            break
        if len(rows) - len(alive) >= max(1, len(rows) // 4):  # compact: drop finished rows
            keep = torch.as_tensor(alive, dtype=torch.long)
            keep_dev = keep.to(device)
            cache.batch_select_indices(keep_dev)
            full_mask = full_mask[keep_dev]
            next_pos = next_pos[keep_dev]
            nxt = nxt[keep_dev]
            rows = [rows[j] for j in alive]
            live_lim = live_lim[keep]
        cur = longest + t + 1
        out = model(input_ids=nxt[:, None], attention_mask=full_mask[:, :cur], position_ids=next_pos,
                    use_cache=True, **{cache_kw: cache}, **logits_kw)
        nxt = out.logits[:, -1].argmax(-1)
        next_pos = next_pos + 1
    res = []
    for r in range(n):
        row = gen[r, :lengths[r]].tolist()
        if eos is not None and row and row[-1] == eos:
            row = row[:-1]
        res.append(row)
    return res


def greedy_continue(model, prompt_ids, max_new_tokens, *, eos_token_id: int | None, pad_token_id: int | None,
                    batch_size: int = 64, max_batch_tokens: int | None = None,
                    share_header: bool = True) -> list[list[int]] | None:
    """Greedy continuations of ``prompt_ids`` (lists of token ids), in their order.

    ``max_new_tokens``: an int or one int per prompt (each row stops at its own limit). Each result is
    the list of new token ids, cut before the first ``eos_token_id`` (EOS itself is not included).
    ``batch_size`` caps rows per batch; ``max_batch_tokens`` caps rows x (longest prompt + longest
    limit) (default :data:`CPU_GEN_BATCH_TOKENS` on CPU, none elsewhere); ``pad_token_id`` fills the
    left padding (masked out; 0 when None). With ``share_header``, a header of at least
    :data:`MIN_SHARED_HEADER` tokens every prompt starts with (the chat format's system prompt and
    date) goes through the model once per call; its keys and values start every batch's cache.
    Returns None when the
    model is not one this engine decodes (:func:`supports`); the caller then uses ``model.generate``.
    The model must be in eval mode (dropout off).
    """
    if not supports(model):
        return None
    prompts = [list(p) for p in prompt_ids]
    limits = [int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int) else [int(x) for x in max_new_tokens]
    if len(limits) != len(prompts):
        raise ValueError(f"greedy_continue: {len(limits)} max_new_tokens values for {len(prompts)} prompts")
    if any(not p for p in prompts):
        raise ValueError("greedy_continue: an empty prompt (every prompt needs at least one token)")
    device = next(model.parameters()).device
    if max_batch_tokens is None and device.type == "cpu":
        max_batch_tokens = CPU_GEN_BATCH_TOKENS
    params = _forward_params(model)
    cache_kw = _cache_keyword(params)
    logits_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    results: list[list[int]] = [[] for _ in prompts]
    todo = [i for i in range(len(prompts)) if limits[i] > 0]
    order = sorted(todo, key=lambda i: (-len(prompts[i]), i))
    lengths = [len(p) for p in prompts]
    header = None
    if share_header and len(todo) > 1:
        C = common_header([prompts[i] for i in todo])
        states = _header_states(model, prompts[todo[0]][:C], device, _new_cache(model, C)) if C >= MIN_SHARED_HEADER else None
        header = (C, states) if states is not None else None
    for chunk in _batches(lengths, limits, order, max(1, int(batch_size)), max_batch_tokens):
        outs = _decode_batch(model, [prompts[i] for i in chunk], [limits[i] for i in chunk], eos_token_id,
                             0 if pad_token_id is None else pad_token_id, cache_kw, logits_kw, device, header)
        for i, o in zip(chunk, outs):
            results[i] = o
    return results
