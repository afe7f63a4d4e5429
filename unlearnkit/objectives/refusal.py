"""Refusal objectives: teach the model to answer forget questions with "I don't know" (spec A7, A12).

The refusals come from the IDK bank (``unlearnkit/assets/idk.txt``, or ``unlearn(..., idk=file)``):
train.py draws one per row, seeded, and encodes batch parts ``forget_idk`` (forget questions,
refusal answers; row-aligned with ``forget``) and ``retain_idk`` (retain questions, refusal
answers; row-aligned with ``retain``).
"""

from __future__ import annotations

import torch

from .base import (
    RETAIN_PARAMS,
    Param,
    Requirements,
    compose,
    forward,
    nll,
    objective,
    preference_loss,
    retain_requirements,
    seq_logprob,
    shift,
)


def _nll_sum_count(model, part):
    """Summed NLL over answer tokens + EOS of a part, and the token count (for a pooled token mean)."""
    logits = forward(model, part).logits
    lg, tgt, mask = shift(logits, part["labels"])
    tok = torch.nn.functional.cross_entropy(lg.float().transpose(1, 2), tgt, reduction="none")
    return (tok * mask).sum(), mask.sum()


def _idk_nll_requirements(hp):
    if hp["combine"] == "concat":
        return Requirements(("forget_idk", "retain"))
    return retain_requirements(hp, parts=("forget_idk",))


@objective("idk_nll", family="baseline",
           formula="L = NLL([(x_f, y_idk); (x_r, y_r)])  (concat, TOFU) or gamma NLL(x_f, y_idk) + alpha R (sum)",
           source="TOFU 'idk' (Maini et al. 2024); Closer Look 'IDK'",
           params={"combine": Param("concat", "'concat': TOFU's one global token mean over the IDK-relabelled forget "
                                    "batch and the retain batch together (gamma/alpha unused); 'sum': [CL]'s "
                                    "gamma*NLL(x_f, y_idk) + alpha*R, each a token mean", choices=("concat", "sum")),
                   **RETAIN_PARAMS},
           requires=_idk_nll_requirements)
def idk_nll(model, batch, ctx):
    """IdkNLL: fine-tune the forget questions towards a refusal, keep fitting the retain answers.

    Formula (``combine="concat"``, default, TOFU's ``idk``): one NLL over the concatenation of the
    forget questions with IDK answers and the retain batch, ``L = (S_idk + S_r) / (T_idk + T_r)``
    with ``S`` summed token NLLs and ``T`` token counts: a single global token mean, so the part
    with more answer tokens weighs more; ``gamma``/``alpha`` are not used. With ``combine="sum"``
    ([CL]'s IDK + GD/KL): ``L = gamma * NLL(x_f, y_idk) + alpha * R`` (``alpha=0`` drops the retain set).
    Shapes: ``forget_idk``/``retain`` ``(B, L)``. Masked: prompt and padding; refusal / retain answer
    tokens + EOS count. Reduction: global token mean. Source: TOFU ``idk``; [CL] ``IDK``.
    Parts: ``forget`` (NLL of the refusals), ``retain``.
    """
    fi = batch["forget_idk"]
    if ctx.hp["combine"] == "sum":
        return compose(nll(forward(model, fi).logits, fi["labels"]), model, batch, ctx)
    s_f, n_f = _nll_sum_count(model, fi)
    s_r, n_r = _nll_sum_count(model, batch["retain"])
    loss = (s_f + s_r) / (n_f + n_r).clamp_min(1)
    return loss, {"forget": float(s_f.detach() / n_f.clamp_min(1)), "retain": float(s_r.detach() / n_r.clamp_min(1))}


@objective("idk_ap", family="closer_look",
           formula="L = gamma NLL(x_f, y_idk) - alpha (1/beta) mean log sigmoid(beta [log pi(y_r|x_r) - log pi(y_idk|x_r)])",
           source="Yuan et al. 2024, A Closer Look at Machine Unlearning for LLMs (IDK+AP); sail-sg/closer-look-LLM-unlearning",
           params={"beta": Param(0.1, "inverse temperature of the answer-preservation log-sigmoid ([CL]: 0.1)",
                                 low=0.0, low_open=True),
                   "gamma": Param(1.0, "weight of the IDK NLL on forget questions", low=0.0),
                   "alpha": Param(1.0, "weight of the answer-preservation term on retain questions", low=0.0),
                   "gd": Param(0.0, "optional extra weight of a plain retain NLL (0 in [CL]'s IDK+AP)", low=0.0)},
           requires=lambda hp: Requirements(("forget_idk", "retain", "retain_idk")))
def idk_ap(model, batch, ctx):
    """IDK+AP: refuse on forget questions, and keep *preferring* the true answer over a refusal on retain.

    Formula: ``L_IDK = NLL(x_f, y_idk)`` (global token mean);
    ``L_AP = -(1/beta) * mean_b log sigmoid(beta * [log pi(y_r|x_r) - log pi(y_idk|x_r)])``, a
    reference-free DPO with "true answer over IDK" on retain questions (note 1/beta, not 2/beta);
    ``L = gamma * L_IDK + alpha * L_AP (+ gd * NLL(x_r, y_r))``. AP is what stops the refusals
    spreading to retain questions, which IdkNLL's plain retain NLL does not prevent directly.
    Shapes: ``forget_idk``, ``retain``, ``retain_idk`` ``(B, L)`` (``retain_idk`` row-aligned with
    ``retain``); sequence log-probs ``(B,)``. Masked: prompt and padding. Reduction: global token
    mean (IDK NLL); sum over tokens then batch mean (AP). Defaults ([CL]): beta 0.1, gamma 1, alpha 1.
    Source: Yuan et al. 2024 (``trainer/losses.py::idk_loss, ap_loss``). Parts: ``forget`` (L_IDK),
    ``retain`` (L_AP), ``ap_margin`` (mean log-ratio of true answer over refusal on retain).
    """
    hp = ctx.hp
    fi, r, ri = batch["forget_idk"], batch["retain"], batch["retain_idk"]
    l_idk = nll(forward(model, fi).logits, fi["labels"])
    r_logits = forward(model, r).logits
    lp_r = seq_logprob(r_logits, r["labels"])
    lp_ri = seq_logprob(forward(model, ri).logits, ri["labels"])
    margin = lp_r - lp_ri
    l_ap = preference_loss(margin, hp["beta"], scale=1.0)
    loss = hp["gamma"] * l_idk + hp["alpha"] * l_ap
    parts = {"forget": float(l_idk.detach()), "retain": float(l_ap.detach()), "ap_margin": float(margin.detach().mean())}
    if hp["gd"] > 0:
        g = nll(r_logits, r["labels"])
        loss = loss + hp["gd"] * g
        parts["retain_nll"] = float(g.detach())
    return loss, parts
