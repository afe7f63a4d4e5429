"""Preference-style objectives: NPO, SimNPO, DPO and IdkDPO (spec A4, A5, A6).

All four compare **sequence** log-probabilities ``log pi(y|x) = sum_t log p(y_t | x, y_<t)`` over
the answer tokens + EOS (prompt and padding carry label -100 and never count). NPO/DPO/IdkDPO
compare them with the reference model's (``ctx.ref.seq_logprob``: cached once before training
under full fine-tuning, the adapter disabled under LoRA); SimNPO is reference-free and length
normalized. Each one adds the shared retain term ``alpha * R`` (NLL or KL on a retain batch).
"""

from __future__ import annotations

from .base import (
    RETAIN_PARAMS,
    Param,
    compose,
    forward,
    npo_forget_loss,
    objective,
    preference_loss,
    retain_requirements,
    seq_logprob,
    seq_mean_nll,
    with_defaults,
)

BETA_NPO = Param(0.1, "inverse temperature beta of the log-sigmoid (NPO/DPO: 0.1 in every source); "
                 "as beta -> 0 NPO becomes GA on summed log-probs", low=0.0, low_open=True)


@objective("npo", family="baseline",
           formula="L = -(2/beta) mean log sigmoid(-beta [log pi(y_f|x_f) - log pi_ref(y_f|x_f)]) + alpha R",
           source="Zhang et al. 2024 (NPO); OpenUnlearning npo.py; licong-lin/negative-preference-optimization",
           params={"beta": BETA_NPO, **RETAIN_PARAMS},
           requires=lambda hp: retain_requirements(hp, ref=[("forget", "seq_logprob")]))
def npo(model, batch, ctx):
    """Negative Preference Optimization: DPO with only a dispreferred answer (the forget answer).

    Formula: ``L_f = -(2/beta) * mean_b log sigmoid(-beta * [log pi_theta(y_f|x_f) - log pi_ref(y_f|x_f)])``,
    ``L = gamma * L_f + alpha * R`` (``alpha=0`` disables the retain term: plain NPO).
    Shapes: forget ``(B, L)`` -> sequence log-probs ``(B,)``; ``ctx.ref.seq_logprob("forget")`` ``(B,)``.
    Masked: prompt and padding (sums run over answer tokens + EOS). Reduction: sum over tokens, mean
    over the batch. The gradient is GA's reweighted by ``2*sigmoid(beta*logratio)``, which fades once
    the answer is far less likely than under the reference: NPO slows down instead of collapsing.
    MUSE's elementwise-logit NPO is a known bug and is not reproduced.
    Source: Zhang et al. 2024; OpenUnlearning ``npo.py``/``compute_dpo_loss``. Defaults: beta 0.1,
    gamma 1, alpha 1 (retain NLL). Parts: ``forget`` (L_f), ``retain``, ``logratio`` (batch mean).
    """
    f = batch["forget"]
    lp = seq_logprob(forward(model, f).logits, f["labels"])
    ratio = lp - ctx.ref.seq_logprob("forget", f).to(lp.dtype)
    return compose(npo_forget_loss(ratio, ctx.hp["beta"]), model, batch, ctx,
                   {"logratio": float(ratio.detach().mean())})


@objective("simnpo", family="baseline",
           formula="L = -(2/beta) mean log sigmoid(beta [NLL(y_f|x_f)/|y_f| - delta]) + alpha R",
           source="Fan et al. 2024 (SimNPO); OpenUnlearning simnpo.py; OPTML-Group/Unlearn-Simple",
           params={"beta": Param(4.5, "inverse temperature (OpenUnlearning 4.5; SimNPO's TOFU scripts 2.5)",
                                 low=0.0, low_open=True),
                   "delta": Param(0.0, "margin delta subtracted from the mean NLL, code form: the paper's gamma "
                                  "equals beta*delta"),
                   **with_defaults(RETAIN_PARAMS, gamma=0.125)},
           requires=lambda hp: retain_requirements(hp))
def simnpo(model, batch, ctx):
    """SimNPO: reference-free, length-normalized NPO.

    Formula (code form, OpenUnlearning and the SimNPO repository):
    ``l_b = NLL_sum(y_b|x_b)/T_b - delta``, ``L_f = -(2/beta) * mean_b log sigmoid(beta * l_b)``,
    ``L = gamma * L_f + alpha * R``. The paper writes the margin as ``gamma_paper = beta * delta``.
    Shapes: forget ``(B, L)`` -> per-sequence mean NLL ``(B,)``. Masked: prompt and padding; ``T_b``
    counts answer tokens + EOS. Reduction: mean over each sequence's tokens, then over the batch.
    Defaults (OpenUnlearning): beta 4.5, delta 0, gamma 0.125, alpha 1 (retain NLL).
    Source: Fan et al. 2024. Parts: ``forget`` (L_f), ``retain``, ``mean_nll``.
    """
    f = batch["forget"]
    mean_nll = seq_mean_nll(forward(model, f).logits, f["labels"])
    beta = ctx.hp["beta"]
    lf = preference_loss(mean_nll - ctx.hp["delta"], beta)
    return compose(lf, model, batch, ctx, {"mean_nll": float(mean_nll.detach().mean())})


def _dpo(model, batch, ctx, win: str):
    f, w = batch["forget"], batch[win]
    lp_l = seq_logprob(forward(model, f).logits, f["labels"])
    lp_w = seq_logprob(forward(model, w).logits, w["labels"])
    ref_l = ctx.ref.seq_logprob("forget", f).to(lp_l.dtype)
    ref_w = ctx.ref.seq_logprob(win, w).to(lp_w.dtype)
    margin = (lp_w - ref_w) - (lp_l - ref_l)
    lf = preference_loss(margin, ctx.hp["beta"])
    return compose(lf, model, batch, ctx, {"margin": float(margin.detach().mean())})


def _dpo_requirements(win):
    return lambda hp: retain_requirements(hp, parts=("forget", win),
                                          ref=[("forget", "seq_logprob"), (win, "seq_logprob")])


@objective("dpo", family="baseline",
           formula="L = -(2/beta) mean log sigmoid(beta [(log pi - log pi_ref)(y_w|x_f) - (log pi - log pi_ref)(y_f|x_f)]) + alpha R",
           source="Rafailov et al. 2023 (DPO); TOFU 'dpo'; OpenUnlearning dpo.py",
           params={"beta": BETA_NPO,
                   "preferred_field": Param("perturbed_answer", "data field holding the preferred answer y_w "
                                            "(its first entry when it is a list)"),
                   **RETAIN_PARAMS},
           requires=_dpo_requirements("forget_alt"))
def dpo(model, batch, ctx):
    """DPO with the forget answer as the rejected answer and another answer from the data as the chosen one.

    Formula: ``margin_b = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_f|x) - log pi_ref(y_f|x)]``,
    ``L_f = -(2/beta) * mean_b log sigmoid(beta * margin_b)``, ``L = gamma * L_f + alpha * R``.
    ``y_w`` comes from the field ``preferred_field`` (default ``perturbed_answer``: a wrong answer in
    the same form, i.e. "unlearn by believing something else"); train.py encodes it as batch part
    ``forget_alt``, row-aligned with ``forget``. Shapes: both parts ``(B, L)`` -> sequence log-probs
    ``(B,)``; reference log-probs ``(B,)`` for each. Masked: prompt and padding. Reduction: sum over
    tokens, mean over the batch. TOFU's original ``dpo`` has no 2/beta and no retain term (set
    ``alpha=0`` and rescale the learning rate to match). Source: Rafailov et al. 2023; TOFU.
    Parts: ``forget`` (L_f), ``retain``, ``margin``.
    """
    return _dpo(model, batch, ctx, "forget_alt")


@objective("idk_dpo", family="baseline",
           formula="L = -(2/beta) mean log sigmoid(beta [(log pi - log pi_ref)(y_idk|x_f) - (log pi - log pi_ref)(y_f|x_f)]) + alpha R",
           source="TOFU (Maini et al. 2024); OpenUnlearning IdkDPO; Closer Look 'DPO'",
           params={"beta": BETA_NPO, **RETAIN_PARAMS},
           requires=_dpo_requirements("forget_idk"))
def idk_dpo(model, batch, ctx):
    """IdkDPO: prefer an "I don't know" answer over the forget answer (DPO on refusals).

    Formula: as ``dpo`` with ``y_w`` = a refusal drawn per row from the IDK bank (batch part
    ``forget_idk``; the kit's ``assets/idk.txt`` or ``unlearn(..., idk=...)``), ``y_l`` = the forget
    answer: ``L_f = -(2/beta) * mean_b log sigmoid(beta * margin_b)``, ``L = gamma * L_f + alpha * R``.
    Shapes: ``forget``/``forget_idk`` ``(B, L)``, sequence log-probs ``(B,)``. Masked: prompt and
    padding. Reduction: sum over tokens, mean over the batch. Defaults (OpenUnlearning): beta 0.1,
    gamma 1, alpha 1 (retain NLL). Source: TOFU; OpenUnlearning ``IdkDPO`` (plain DPO on IDK
    labels, not TOFU's ``idk`` loss, which is ``idk_nll`` here). Parts: ``forget``, ``retain``, ``margin``.
    """
    return _dpo(model, batch, ctx, "forget_idk")
