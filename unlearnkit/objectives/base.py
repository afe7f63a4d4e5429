"""The one signature, registry and shared primitives of every unlearning objective.

An objective is a function ``fn(model, batch, ctx) -> (loss, parts)``:

* ``batch`` maps part names to encoded tensors: ``"forget"`` always, and ``"retain"``,
  ``"forget_idk"`` (forget questions with an "I don't know" answer, row-aligned with
  ``"forget"``) and ``"retain_idk"`` (row-aligned with ``"retain"``) when the objective asks for
  them. Each part has ``input_ids``/``attention_mask``/``labels`` ``(B, L)`` (labels are -100
  outside answer tokens + EOS) and ``index`` ``(B,)``, the rows' positions in their split.
* ``ctx`` is an :class:`ObjectiveContext`: validated hyperparameters ``ctx.hp``, the reference
  model ``ctx.ref`` (see :mod:`unlearnkit.objectives.reference`), the step, a per-run ``state``
  dict, the tokenizer, and a seeded generator.
* ``loss`` is a scalar to **minimize**; ``parts`` maps names (``"forget"``, ``"retain"``...) to
  floats for logging.

Register with :func:`objective`; look up with :func:`get_objective`; list with
:func:`list_objectives`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..registry import Param, Registry, resolve_params

OBJECTIVES: Registry[Objective] = Registry("objective")

#: the parts a batch can carry. forget_idk / forget_alt are row-aligned with forget (IDK answer / the
#: first entry of the field named by the objective's ``preferred_field`` hyperparameter), retain_idk with retain.
PARTS = ("forget", "retain", "forget_idk", "retain_idk", "forget_alt")


@dataclass(frozen=True)
class Requirements:
    """What an objective needs at train time, given its hyperparameters.

    ``parts``: batch parts to build. ``ref``: set of ``(part, kind)`` reference quantities, kind in
    {"seq_logprob", "logprobs", "hidden:<layer>"}. ``generation``: samples from the model (BS-S).
    """

    parts: tuple[str, ...] = ("forget",)
    ref: frozenset = frozenset()
    generation: bool = False


@dataclass(frozen=True)
class Objective:
    """A registered objective: its function, documented hyperparameters and metadata."""

    name: str
    fn: Callable
    family: str
    formula: str
    source: str
    params: dict[str, Param] = field(default_factory=dict)
    requires: Callable[[dict], Requirements] = lambda hp: Requirements()
    doc: str = ""

    def resolve(self, **given) -> dict[str, Any]:
        """Defaults merged with ``given``; bad names or values raise naming objective and range."""
        return resolve_params(f"objective {self.name!r}", self.params, given)

    def requirements(self, hp: dict) -> Requirements:
        return self.requires(hp)

    def __call__(self, model, batch, ctx):
        return self.fn(model, batch, ctx)

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={p.default!r}" for k, p in self.params.items())
        return f"<objective {self.name} [{self.family}] ({ps}): {self.formula}>"


def objective(name: str, *, family: str, formula: str, source: str, params: dict[str, Param] | None = None,
              requires: Callable[[dict], Requirements] | Requirements | None = None):
    """Decorator registering ``fn(model, batch, ctx)`` as objective ``name``."""

    def deco(fn):
        req = requires
        if req is None:
            req_fn = lambda hp: Requirements()  # noqa: E731
        elif isinstance(req, Requirements):
            req_fn = lambda hp, r=req: r  # noqa: E731
        else:
            req_fn = req
        OBJECTIVES.add(name, Objective(name, fn, family, formula, source, dict(params or {}), req_fn, fn.__doc__ or ""))
        return fn

    return deco


def get_objective(name: str) -> Objective:
    """The registered objective ``name`` (unknown names raise, listing the valid ones)."""
    return OBJECTIVES.get(name)


def list_objectives() -> list[str]:
    """Names of every registered objective (what ``unlearn(method=...)`` accepts)."""
    return OBJECTIVES.names()


@dataclass
class ObjectiveContext:
    """Everything an objective may use besides the model and the batch."""

    hp: dict[str, Any]
    ref: Any = None
    step: int = 0
    state: dict = field(default_factory=dict)
    tokenizer: Any = None
    generator: torch.Generator | None = None
    data: dict = field(default_factory=dict)  # encoded splits (part name -> tensors), see train.py
    raw: dict = field(default_factory=dict)  # the datasets themselves ("forget", "retain"), e.g. for BS-S prompts


# -- shared primitives ------------------------------------------------------------------------------

def forward(model, part: dict[str, torch.Tensor], hidden: bool = False):
    """Run the model on a batch part; returns the HF output (``.logits`` is ``(B, L, V)``)."""
    return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], output_hidden_states=hidden)


def shift(logits: torch.Tensor, labels: torch.Tensor):
    """Align logits with the tokens they predict: ``logits[:, :-1]`` vs ``labels[:, 1:]``.

    Returns ``(logits (B, L-1, V), targets (B, L-1) with -100 replaced by 0, mask (B, L-1) bool)``.
    """
    lg = logits[:, :-1]
    lb = labels[:, 1:]
    mask = lb != -100
    return lg, lb.clamp_min(0), mask


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor):
    """Log-prob of each label token: ``(B, L-1)`` (0 where masked) and the mask ``(B, L-1)``."""
    lg, tgt, mask = shift(logits, labels)
    lp = torch.log_softmax(lg.float(), -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return lp * mask, mask


def seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x)`` summed over answer tokens: ``(B,)``."""
    lp, _ = token_logprobs(logits, labels)
    return lp.sum(-1)


def seq_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean NLL over answer tokens: ``(B,)`` (nats per token)."""
    lp, mask = token_logprobs(logits, labels)
    return -lp.sum(-1) / mask.sum(-1).clamp_min(1)


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HF-style NLL: global mean over every answer token in the batch (scalar)."""
    lg, tgt, mask = shift(logits, labels)
    return F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def reduce(per_token: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce ``(B, T)`` per-token values over ``mask`` as ``token_mean_global``, ``seq_mean`` or ``seq_sum``."""
    per_token = per_token * mask
    if reduction == "token_mean_global":
        return per_token.sum() / mask.sum().clamp_min(1)
    if reduction == "seq_mean":
        return (per_token.sum(-1) / mask.sum(-1).clamp_min(1)).mean()
    if reduction == "seq_sum":
        return per_token.sum(-1).mean()
    raise ValueError(f"unknown reduction {reduction!r}; valid: token_mean_global, seq_mean, seq_sum")


def kl_ref_to_model(logits: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(pi_ref || pi_theta)`` per position, averaged over ``mask`` (all positions if None).

    ``logits``/``ref_logprobs``: ``(B, L, V)``. With ``mask=None`` this is the anchors'
    (OpenUnlearning/TOFU) "batchmean over B*L" form, padding included; pass the attention or answer
    mask ``(B, L)`` for the masked variant.
    """
    logp = torch.log_softmax(logits.float(), -1)
    kl = (ref_logprobs.exp() * (ref_logprobs - logp)).sum(-1)
    if mask is None:
        return kl.mean()
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


# -- retain regularizers, shared by every composite objective ------------------------------------

RETAIN_PARAMS = {
    "gamma": Param(1.0, "weight of the forget term", low=0.0),
    "alpha": Param(1.0, "weight of the retain term (0 disables it)", low=0.0),
    "retain_loss_type": Param("nll", "retain regularizer: NLL on retain answers, or KL(pi_ref||pi) on retain",
                              choices=("nll", "kl")),
}


def retain_requirements(hp: dict, parts=("forget",), ref=()) -> Requirements:
    """Requirements of a ``gamma * forget + alpha * retain`` objective."""
    parts, ref = list(parts), set(ref)
    if hp.get("alpha", 0) > 0:
        parts.append("retain")
        if hp.get("retain_loss_type") == "kl":
            ref.add(("retain", "logprobs"))
    return Requirements(tuple(dict.fromkeys(parts)), frozenset(ref))


def retain_term(model, batch, ctx) -> torch.Tensor:
    """``R_NLL`` (HF token mean on retain answers) or ``R_KL`` (KL to the reference at every
    attended position of the retain batch; the anchors also include padding, see spec §0)."""
    part = batch["retain"]
    logits = forward(model, part).logits
    if ctx.hp.get("retain_loss_type", "nll") == "kl":
        ref_lp = ctx.ref.logprobs("retain", part)
        return kl_ref_to_model(logits, ref_lp, part["attention_mask"].bool())
    return nll(logits, part["labels"])


def compose(forget_loss: torch.Tensor, model, batch, ctx, extra: dict | None = None):
    """``gamma * forget_loss + alpha * retain_term`` with both parts logged."""
    hp = ctx.hp
    loss = hp.get("gamma", 1.0) * forget_loss
    parts = {"forget": float(forget_loss.detach())}
    if hp.get("alpha", 0) > 0 and "retain" in batch:
        r = retain_term(model, batch, ctx)
        loss = loss + hp["alpha"] * r
        parts["retain"] = float(r.detach())
    parts.update(extra or {})
    return loss, parts
