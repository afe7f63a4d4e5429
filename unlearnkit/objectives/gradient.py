"""Gradient ascent, GradDiff and KL-Min: the field's first baselines (spec A1, A2, A3).

Shapes, for every objective here: each batch part holds ``input_ids``/``attention_mask``/
``labels`` ``(B, L)``; logits are ``(B, L, V)``. Only answer tokens and the final EOS carry labels
(prompt and padding are -100 and never enter an NLL).
"""

from __future__ import annotations

from .base import RETAIN_PARAMS, Param, Requirements, compose, forward, nll, objective, retain_requirements


@objective("ga", family="baseline", formula="L = -NLL(forget answers)  (global token mean)",
           source="Jang et al. 2023 (Knowledge Unlearning); OpenUnlearning grad_ascent.py",
           requires=Requirements(("forget",)))
def ga(model, batch, ctx):
    """Gradient ascent: minimize the negated NLL of the forget answers.

    Formula: ``L = -NLL(x_f, y_f)``, the HF loss negated. Shapes: forget part ``(B, L)``, logits
    ``(B, L, V)``. Masked: prompt and padding tokens (labels -100); answer tokens + EOS count.
    Reduction: global token mean over every answer token of the batch (longer answers weigh more).
    Source: Jang et al. 2023; OpenUnlearning ``grad_ascent.py``; TOFU ``ga``.

    Unbounded below: the model eventually collapses into repetition, which ROUGE then misreads as
    forgetting. No hyperparameters besides the optimizer's. Parts logged: ``forget`` (= the loss).
    """
    f = batch["forget"]
    loss = -nll(forward(model, f).logits, f["labels"])
    return loss, {"forget": float(loss.detach())}


@objective("graddiff", family="baseline",
           formula="L = gamma * (-NLL_forget) + alpha * R,  R = NLL_retain or KL(pi_ref || pi)_retain",
           source="Liu et al. 2022; TOFU (Maini et al. 2024); OpenUnlearning grad_diff.py",
           params=RETAIN_PARAMS, requires=lambda hp: retain_requirements(hp))
def graddiff(model, batch, ctx):
    """Gradient difference: ascent on forget answers plus descent on retain answers.

    Formula: ``L = gamma * (-NLL(x_f, y_f)) + alpha * R`` with ``R = NLL(x_r, y_r)``
    (``retain_loss_type="nll"``, default, OpenUnlearning) or ``R = KL(pi_ref || pi_theta)`` on the
    retain batch (``"kl"``, averaged over the positions ``kl_positions`` picks). Shapes: forget and
    retain parts ``(B, L)`` each (two separate forwards, as TOFU). Masked: prompt and padding in
    both NLLs. Reduction: each NLL is a global token mean over its own batch. ``alpha=0`` is GA
    scaled by ``gamma``. Source: Liu et al. 2022; TOFU ``grad_diff``; OpenUnlearning ``grad_diff.py``.
    Parts logged: ``forget`` (-NLL_f), ``retain`` (R).
    """
    f = batch["forget"]
    return compose(-nll(forward(model, f).logits, f["labels"]), model, batch, ctx)


KL_PARAMS = {**RETAIN_PARAMS,
             "retain_loss_type": Param("kl", "KL-Min's retain term is always KL(pi_ref || pi) on retain",
                                       choices=("kl",))}


@objective("kl", family="baseline",
           formula="L = gamma * (-NLL_forget) + alpha * KL(pi_ref || pi_theta)_retain",
           source="TOFU 'KL' (Maini et al. 2024); Closer Look 'GA+KL'; MUSE ga_klr (logit bug not ported)",
           params=KL_PARAMS, requires=lambda hp: retain_requirements(hp))
def kl_min(model, batch, ctx):
    """KL-Min: gradient ascent on forget answers, KL to the reference model on retain.

    Formula: ``L = gamma * (-NLL(x_f, y_f)) + alpha * mean_t KL(pi_ref(.|x_r,<t) || pi_theta(.|x_r,<t))``.
    Shapes: forget/retain ``(B, L)``; the reference log-probs of the retain batch ``(B, L, V)`` come
    from ``ctx.ref.logprobs("retain", part)`` (cached once before training, or the adapter disabled
    under LoRA). Masked: the NLL uses answer tokens only; the KL averages over ``kl_positions``:
    ``"attended"`` (default: question and answer, no padding), ``"answer"``, or ``"all"`` (the
    TOFU/OpenUnlearning anchors' ``batchmean`` over ``B*L``, padding included). Reduction: global
    token mean (NLL); mean over the chosen positions (KL). MUSE's ``klr`` feeds raw logits to
    ``kl_div``: a bug, not reproduced. Source: TOFU ``KL``; [CL] ``GA+KL``. Parts: ``forget``, ``retain``.
    """
    f = batch["forget"]
    return compose(-nll(forward(model, f).logits, f["labels"]), model, batch, ctx)
