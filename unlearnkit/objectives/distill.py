"""Self-distillation objectives: UNDIAL (spec A9)."""

from __future__ import annotations

import torch

from .base import (
    RETAIN_PARAMS,
    Param,
    compose,
    forward,
    objective,
    position_mask,
    retain_requirements,
    with_defaults,
)


def undial_targets(ref_logprobs: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """``q = softmax(z_ref - beta * onehot(y))`` per position: ``(B, T, V)`` from ``(B, T, V)``
    reference log-probs (a log-softmax is a shifted logit vector, so the softmax is the same) and
    ``(B, T)`` target tokens."""
    adj = ref_logprobs.float().scatter_add(-1, targets.unsqueeze(-1),
                                           torch.full_like(targets, -beta, dtype=torch.float32).unsqueeze(-1))
    return torch.softmax(adj, -1)


def _undial_requirements(hp):
    return retain_requirements(hp, ref=[("forget", "logprobs")])


@objective("undial", family="baseline",
           formula="L = mean_t CE(p_theta,t, softmax(z_ref,t - beta onehot(y_t))) + alpha R",
           source="Dong et al. 2024 (UNDIAL); OpenUnlearning compute_undial_loss",
           params={"beta": Param(10.0, "how much the true token's reference logit is lowered (OpenUnlearning: 10)",
                                 low=0.0),
                   "positions": Param("answer", "positions averaged over: 'answer' (the kit's default, answer tokens "
                                      "+ EOS), 'attended' (question and answer), 'all' (every padded position, as "
                                      "OpenUnlearning; target = next input token, not its -100 wrap-around)",
                                      choices=("answer", "attended", "all")),
                   **with_defaults(RETAIN_PARAMS, alpha=0.0)},
           requires=_undial_requirements)
def undial(model, batch, ctx):
    """UNDIAL: distil the reference model into itself with the true next token's logit lowered by beta.

    Formula: at every position ``t`` the target is ``q_t = softmax(z_ref,t - beta * onehot(y_t))``
    (the teacher's distribution with the correct token suppressed, the rest renormalized); the
    loss is the cross-entropy ``-sum_v q_t[v] log p_theta,t[v]``, averaged over positions;
    ``L = gamma * L_f + alpha * R`` (``alpha=0`` by default: no retain term). Unlike GA it is
    bounded: its minimum is reached when the model copies ``q``, so it does not collapse.
    Shapes: forget ``(B, L)``, logits and reference log-probs ``(B, L, V)`` (``ctx.ref.logprobs``),
    ``q`` ``(B, L-1, V)``. Masked: ``positions`` ("answer": only positions predicting answer tokens
    + EOS, the kit's fix; "all": every position as OpenUnlearning, whose one-hot at label -100
    wraps to vocab id V-100, a bug not reproduced). Reduction: mean over the masked positions of
    the batch. Defaults (OpenUnlearning): beta 10, gamma 1, alpha 0. Source: Dong et al. 2024.
    Parts: ``forget`` (the CE), ``retain`` if alpha > 0.
    """
    f = batch["forget"]
    logits = forward(model, f).logits
    mask, tgt = position_mask(f, ctx.hp["positions"])
    ref_lp = ctx.ref.logprobs("forget", f)[:, :-1].to(logits.device)
    q = undial_targets(ref_lp, tgt, ctx.hp["beta"])
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    ce = -(q * logp).sum(-1)
    m = mask.to(ce.dtype)
    lf = (ce * m).sum() / m.sum().clamp_min(1)
    return compose(lf, model, batch, ctx)
