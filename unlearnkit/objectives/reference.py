"""The reference model pi_ref without a copy of the model.

Two providers with one interface (``seq_logprob``, ``logprobs``, ``hidden``), each taking a part
name and a batch part and returning tensors with no gradient:

* :class:`CachedReference`: computed once, before training, by the original weights, for every
  row of the parts an objective needs; looked up by the part's ``index``. Costs no model copy; its
  memory is what the objective needs (a scalar per row for NPO/DPO; ``L x V`` per row for KL/UNDIAL).
* :class:`AdapterReference`: under LoRA the frozen base model *is* the reference: the same
  weights run with the adapter disabled (``model.disable_adapter()``), live.

Never ``deepcopy`` the model for a reference.
"""

from __future__ import annotations

import torch

from ..models.layers import eval_mode
from .base import forward, layer_output, seq_logprob


def _quantity(model, part, kind: str) -> torch.Tensor:
    if kind.startswith("hidden:"):  # output of decoder layer <layer> (negative counts from the end)
        layer = int(kind.split(":", 1)[1])
        return layer_output(model, part, layer).float()
    logits = forward(model, part).logits
    if kind == "seq_logprob":
        return seq_logprob(logits, part["labels"])
    if kind == "logprobs":
        return torch.log_softmax(logits.float(), -1)
    raise ValueError(f"unknown reference quantity {kind!r}; valid: seq_logprob, logprobs, hidden:<layer>")


class _Base:
    #: True when quantities are computed on demand by the reference weights (any input works);
    #: False when they were cached before training (only the cached rows of the cached parts).
    live = False

    def seq_logprob(self, name, part):
        return self.get(name, part, "seq_logprob")

    def logprobs(self, name, part):
        return self.get(name, part, "logprobs")

    def hidden(self, name, part, layer: int):
        return self.get(name, part, f"hidden:{layer}")


class AdapterReference(_Base):
    """pi_ref = the peft model with its adapter disabled (no copy, computed live)."""

    live = True

    def __init__(self, model):
        if not hasattr(model, "disable_adapter"):
            raise TypeError("AdapterReference needs a peft model (with disable_adapter())")
        self.model = model

    @torch.no_grad()
    def get(self, name, part, kind):
        with eval_mode(self.model):
            with self.model.disable_adapter():
                return _quantity(self.model, part, kind)

    def __repr__(self):
        return "AdapterReference(adapter disabled)"


class CachedReference(_Base):
    """pi_ref quantities precomputed by the original model for every row of the needed parts."""

    def __init__(self, store: dict):
        self.store = store  # (part, kind) -> tensor (N, ...) on CPU

    @classmethod
    @torch.no_grad()
    def build(cls, model, data: dict, needs, batch_size: int = 32, dtype=torch.float32,
              max_bytes: float | None = None):
        """Run ``model`` once over ``data[part]`` (encoded splits) for each ``(part, kind)`` in ``needs``.

        Every chunk runs on the split's full padded length ``L``, so the cache holds the model's
        value at *every* position a batch can ask for (padding included, as ``kl_positions="all"``
        and UNDIAL ``positions="all"`` read it), exactly what a live reference computes there.
        ``max_bytes``: refuse, before any forward, a cache larger than this (see :meth:`size_of`).
        """
        if max_bytes is not None:
            need = cls.size_of(model, data, needs, dtype)
            if need > max_bytes:
                raise MemoryError(
                    f"the cached reference would hold {need / 2**30:.2f} GiB ({', '.join(f'{n}:{k}' for n, k in sorted(needs))}"
                    f"; token log-probs are N x L x vocabulary floats), above reference_cache_gb="
                    f"{max_bytes / 2**30:g}. Use lora=True (the reference is then the base model with the adapter "
                    "disabled, computed live, no cache), fewer or shorter rows, or raise reference_cache_gb.")
        store = {}
        device = next(model.parameters()).device
        with eval_mode(model):
            for name, kind in sorted(needs):
                enc = data[name]
                n = enc["input_ids"].shape[0]
                chunks = []
                for s in range(0, n, batch_size):
                    part = {k: v[s:s + batch_size].to(device) for k, v in enc.items()}
                    chunks.append(_quantity(model, part, kind).to("cpu", dtype))
                store[(name, kind)] = torch.cat(chunks)
        return cls(store)

    @staticmethod
    def size_of(model, data: dict, needs, dtype=torch.float32) -> int:
        """Bytes :meth:`build` would store: ``N`` per row for ``seq_logprob``, ``N x L x V`` for
        ``logprobs`` (``V`` the output vocabulary), ``N x L x d`` for ``hidden:<layer>``."""
        cfg = getattr(model, "config", None)
        vocab = getattr(cfg, "vocab_size", None) or model.get_output_embeddings().weight.shape[0]
        width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 0)
        size = torch.tensor([], dtype=dtype).element_size()
        total = 0
        for name, kind in needs:
            n, L = data[name]["input_ids"].shape
            total += n * (1 if kind == "seq_logprob" else L * (vocab if kind == "logprobs" else width))
        return total * size

    def get(self, name, part, kind):
        key = (name, kind)
        if key not in self.store:
            raise KeyError(f"reference quantity {key} was not cached; cached: {sorted(self.store)}")
        t = self.store[key][part["index"].cpu()]
        if t.dim() >= 2:
            t = t[:, : part["input_ids"].shape[1]]
        return t.to(part["input_ids"].device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.store.values())

    def __repr__(self):
        return f"CachedReference({', '.join(f'{k[0]}:{k[1]}' for k in self.store)}; {self.nbytes() / 2**20:.1f} MiB)"
