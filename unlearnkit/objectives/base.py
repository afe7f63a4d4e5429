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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import DEFAULT_FORMAT, IGNORE, PromptFormat
from ..losses import (  # noqa: F401  (the toolbox objective modules import from here)
    forward,
    kl_ref_to_model,
    nll,
    npo_forget_loss,
    position_mask,
    preference_loss,
    reduce,
    seq_logprob,
    seq_mean_nll,
    shift,
    token_logprobs,
)
from ..models.layers import check_layer, decoder_layers, layer_output  # noqa: F401
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
    #: optional lifecycle hooks, for methods that are more than a loss (SGA, task arithmetic...):
    #: ``setup(model, ctx)`` once before the first step (e.g. snapshot weights into ``ctx.state``);
    #: ``finish(model, ctx)`` once after the last step, before the ``keep`` policy; it may change the
    #: weights in place (under ``torch.no_grad``). ``model`` is the bare trainable model (unwrapped).
    #: To stop training early, an objective sets ``ctx.state["stop"] = "<reason>"`` during a step.
    setup: Callable | None = None
    finish: Callable | None = None

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
              requires: Callable[[dict], Requirements] | Requirements | None = None,
              setup: Callable | None = None, finish: Callable | None = None):
    """Decorator registering ``fn(model, batch, ctx)`` as objective ``name`` (hooks: see :class:`Objective`)."""

    def deco(fn):
        req = requires
        if req is None:
            req_fn = lambda hp: Requirements()  # noqa: E731
        elif isinstance(req, Requirements):
            req_fn = lambda hp, r=req: r  # noqa: E731
        else:
            req_fn = req
        OBJECTIVES.add(name, Objective(name, fn, family, formula, source, dict(params or {}), req_fn,
                                       fn.__doc__ or "", setup, finish))
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
    fmt: PromptFormat = DEFAULT_FORMAT  # how questions and answers become tokens (e.g. for BS-S samples)


# -- retain regularizers, shared by every composite objective ------------------------------------

RETAIN_PARAMS = {
    "gamma": Param(1.0, "weight of the forget term", low=0.0),
    "alpha": Param(1.0, "weight of the retain term (0 disables it)", low=0.0),
    "retain_loss_type": Param("nll", "retain regularizer: NLL on retain answers, or KL(pi_ref||pi) on retain",
                              choices=("nll", "kl")),
    "kl_positions": Param("attended", "positions the KL retain term averages over (retain_loss_type='kl' only): "
                          "'attended' (question + answer, no padding; the kit's default), 'answer' (answer tokens + "
                          "EOS only), 'all' (every position of the padded batch, padding included: the "
                          "OpenUnlearning/TOFU anchors' batchmean over B*L)", choices=("attended", "answer", "all")),
}


def with_defaults(params: dict[str, Param], **defaults) -> dict[str, Param]:
    """A copy of ``params`` with other defaults (e.g. a source's ``alpha``), docs and ranges kept."""
    out = dict(params)
    for k, v in defaults.items():
        p = out[k]
        out[k] = Param(v, p.doc, p.low, p.high, p.low_open, p.high_open, p.choices)
    return out


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
        where = ctx.hp.get("kl_positions", "attended")
        if where == "all":
            mask = None
        elif where == "answer":
            mask = part["labels"][:, 1:] != IGNORE  # positions that predict an answer token
            mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
        else:
            mask = part["attention_mask"].bool()
        return kl_ref_to_model(logits, ref_lp, mask)
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
