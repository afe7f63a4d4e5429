"""Maximizing entropy: ME and ME+GD, untargeted unlearning from "A Closer Look" (spec A11)."""

from __future__ import annotations

import math

import torch

from .base import (
    RETAIN_PARAMS,
    Param,
    Requirements,
    compose,
    forward,
    objective,
    position_mask,
    retain_requirements,
    with_defaults,
)

MASK_MODES = ("answer", "attended", "full_sequence_incl_padding")

ME_PARAMS = {
    "mask_mode": Param("answer", "positions averaged over: 'answer' (positions predicting answer tokens + EOS; "
                       "the kit's default, [CL]'s mask=true), 'attended' (question and answer, no padding), "
                       "'full_sequence_incl_padding' (every position of the padded batch: [CL]'s official ME+GD "
                       "runs, mask=false)", choices=MASK_MODES),
    "pad_to_length": Param(0, "with 'full_sequence_incl_padding': pad the batch with pad tokens to this many "
                           "positions first ([CL] pads to max_length=500 on TOFU); 0 keeps the batch's length",
                           low=0),
}


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """``KL(U || p)`` per position for ``(..., V)`` logits: ``-log V - (1/V) sum_v log p_v``, ``(...)``.

    Zero exactly when ``p`` is uniform, i.e. at maximum entropy ``log V``.
    """
    logp = torch.log_softmax(logits.float(), -1)
    return -math.log(logits.shape[-1]) - logp.mean(-1)


def _padded(part, length, pad_id):
    L = part["input_ids"].shape[1]
    if length <= L:
        return part
    out = dict(part)
    extra = length - L
    B = part["input_ids"].shape[0]
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
    for k, v in fill.items():
        out[k] = torch.cat([part[k], torch.full((B, extra), v, dtype=part[k].dtype, device=part[k].device)], 1)
    return out


def me_forget_loss(model, part, ctx) -> torch.Tensor:
    """The ME term on one part: ``KL(U || p_theta)`` averaged over the positions ``mask_mode`` picks."""
    mode = ctx.hp.get("mask_mode", "answer")
    if mode == "full_sequence_incl_padding":
        pad_id = getattr(ctx.tokenizer, "pad_token_id", None)
        part = _padded(part, ctx.hp.get("pad_to_length", 0), 0 if pad_id is None else pad_id)
        mode = "all"
    logits = forward(model, part).logits
    mask, _ = position_mask(part, mode)
    kl = uniform_kl(logits[:, :-1])
    m = mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1)


@objective("me", family="closer_look", formula="L = mean_t KL(Uniform || p_theta(.|x_f, y_<t))",
           source="Yuan et al. 2024, A Closer Look at Machine Unlearning for LLMs (ME); sail-sg/closer-look-LLM-unlearning",
           params=ME_PARAMS, requires=Requirements(("forget",)))
def me(model, batch, ctx):
    """Maximizing Entropy: push every next-token distribution on the forget answers towards uniform.

    Formula: per position ``KL(U || p_theta) = -log V - (1/V) sum_v log p_theta(v | prefix)``
    (``F.kl_div(log p, U)``); the loss averages it over the masked positions. Minimizing it makes the
    model maximally uncertain (entropy -> log V) on forget answers instead of making it *wrong*:
    "untargeted" unlearning that, unlike GA, is bounded below by 0 and does not collapse.
    Shapes: forget ``(B, L)``, logits ``(B, L, V)``, per-position KL ``(B, L-1)``.
    Masked: ``mask_mode`` "answer" (default) / "attended" / "full_sequence_incl_padding" (paper
    parity: [CL]'s official ME+GD runs set ``mask=false``, so the question, the answer *and all
    padding up to max_length=500* enter; set ``pad_to_length=500`` for exact parity). Reduction:
    global mean over the masked positions. [CL] adds 1e-12 inside the log of the softmax; a
    log-softmax is used here (same value up to 1e-12). Source: Yuan et al. 2024 (``me_loss``).
    Parts: ``forget``.
    """
    loss = me_forget_loss(model, batch["forget"], ctx)
    return loss, {"forget": float(loss.detach())}


@objective("me_gd", family="closer_look", formula="L = gamma KL(U || p_theta)_forget + alpha NLL_retain  (0.1, 1.0)",
           source="Yuan et al. 2024, A Closer Look at Machine Unlearning for LLMs (ME+GD); scripts/tofu/me_gd.sh",
           params={**ME_PARAMS, **with_defaults(RETAIN_PARAMS, gamma=0.1, alpha=1.0)},
           requires=lambda hp: retain_requirements(hp))
def me_gd(model, batch, ctx):
    """ME+GD: maximizing entropy on forget answers plus gradient descent on retain answers.

    Formula: ``L = gamma * L_ME(forget) + alpha * R``, defaults ``gamma=0.1`` (TOFU; [CL] uses 0.5
    for real-world and 1.0 for continual TOFU), ``alpha=1``, ``R`` = retain NLL (or KL with
    ``retain_loss_type="kl"``). ``L_ME`` is :func:`me`'s loss (same ``mask_mode``/``pad_to_length``).
    Shapes: forget/retain ``(B, L)``. Masked: ``mask_mode`` for ME, prompt and padding for the NLL.
    Reduction: global mean over masked positions (ME), global token mean (NLL).
    Source: Yuan et al. 2024, ``scripts/tofu/me_gd.sh``. Parts: ``forget`` (L_ME), ``retain``.
    """
    return compose(me_forget_loss(model, batch["forget"], ctx), model, batch, ctx)
