"""Gradient ascent and GradDiff: the field's first baselines (spec A1, A2)."""

from __future__ import annotations

from .base import RETAIN_PARAMS, Requirements, compose, forward, nll, objective, retain_requirements


@objective("ga", family="baseline", formula="L = -NLL(forget answers)  (global token mean)",
           source="Jang et al. 2023; OpenUnlearning grad_ascent.py", requires=Requirements(("forget",)))
def ga(model, batch, ctx):
    """Gradient ascent: minimize the negated NLL of forget answers (HF global token mean over the
    answer tokens + EOS of the batch). Unbounded below: the model eventually collapses into
    repetition, which ROUGE then misreads as forgetting. No hyperparameters besides the optimizer's.
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

    ``gamma`` weighs the forget term (default 1), ``alpha`` the retain term (default 1),
    ``retain_loss_type`` picks NLL (default, OpenUnlearning) or KL to the reference model on retain
    (KL at every attended position). Both terms are HF global token means over answer tokens.
    """
    f = batch["forget"]
    return compose(-nll(forward(model, f).logits, f["labels"]), model, batch, ctx)
