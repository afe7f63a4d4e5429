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
            mask = part["labels"][:, 1:] != -100  # positions that predict an answer token
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


# -- more shared primitives: preference losses, position masks, layer activations ------------------

def npo_forget_loss(logratio: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's forget term ``-(2/beta) * mean_batch log sigmoid(-beta * logratio)``.

    ``logratio``: ``(B,)`` ``log pi_theta(y|x) - log pi_ref(y|x)`` (sequence sums). Its gradient is
    a GA gradient reweighted by ``2 * sigmoid(beta * logratio)``: as beta -> 0 it becomes GA on the
    summed log-prob; once the forget answer is much less likely than under the reference, it fades.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * logratio).mean()


def preference_loss(margin: torch.Tensor, beta: float, scale: float = 2.0) -> torch.Tensor:
    """DPO-style ``-(scale/beta) * mean_batch log sigmoid(beta * margin)`` for a ``(B,)`` margin
    (preferred minus dispreferred log-ratio). ``scale=2`` for DPO/IdkDPO/NPO, ``1`` for [CL]'s AP."""
    return -(scale / beta) * F.logsigmoid(beta * margin).mean()


def position_mask(part: dict[str, torch.Tensor], mode: str = "answer", length: int | None = None):
    """Which shifted positions enter a per-position loss, and the token each one predicts.

    Returns ``(mask (B, L-1) bool, targets (B, L-1) long)`` aligned with ``logits[:, :-1]``.
    ``mode``: ``"answer"``: positions predicting an answer token or the EOS (labels != -100);
    ``"attended"``: positions predicting any attended token (question and answer, no padding),
    target = the next input token; ``"all"``: every position of the padded batch, padding included,
    target = the next input token (what [CL]'s ``mask=false`` ME and OpenUnlearning's UNDIAL average
    over; the latter's ``-100`` one-hot wrap-around is *not* reproduced).
    """
    ids, labels = part["input_ids"], part["labels"]
    if mode == "answer":
        lb = labels[:, 1:]
        return lb != -100, lb.clamp_min(0)
    nxt = ids[:, 1:]
    if mode == "attended":
        return part["attention_mask"][:, 1:].bool(), nxt
    if mode == "all":
        return torch.ones_like(nxt, dtype=torch.bool), nxt
    raise ValueError(f"unknown position mode {mode!r}; valid: answer, attended, all")


class _StopForward(Exception):
    pass


def _unwrap(model):
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module  # DDP / accelerate wrappers
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # peft: LoRA layers are injected in place, hooks still see them
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama/Mistral/Qwen ``model.layers``, GPT-2
    ``transformer.h``, GPT-NeoX ``gpt_neox.layers``...), through peft and DDP wrappers."""
    m = _unwrap(model)
    for path in ("model.layers", "layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                 "transformer.layers"):
        obj = m
        for a in path.split("."):
            obj = getattr(obj, a, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise TypeError(f"could not find the decoder layers of {type(m).__name__} (looked for model.layers, "
                    "transformer.h, gpt_neox.layers...)")


def check_layer(model, layer: int) -> int:
    """``layer`` as a valid index into :func:`decoder_layers` (negative counts from the end)."""
    n = len(decoder_layers(model))
    if not -n <= layer < n:
        raise ValueError(f"layer={layer} is out of range: the model has {n} decoder layers "
                         f"(valid range: [{-n}, {n - 1}], negative counts from the end)")
    return layer % n


def layer_output(model, part: dict[str, torch.Tensor], layer: int, stop: bool = True) -> torch.Tensor:
    """Residual-stream output of decoder layer ``layer`` (the module ``layers[layer]``): ``(B, L, d)``.

    Captured with a forward hook, as RMU's official code does (for the last layer this differs from
    ``hidden_states[-1]``, which HF takes *after* the final norm). With ``stop`` the forward stops
    right after that layer: later layers and the LM head cost nothing.
    """
    layers = decoder_layers(model)
    layer = check_layer(model, layer)
    box = {}

    def hook(module, args, out):
        box["h"] = out[0] if isinstance(out, (tuple, list)) else out
        if stop:
            raise _StopForward

    handle = layers[layer].register_forward_hook(hook)
    try:
        forward(model, part)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return box["h"]
