"""Task vectors (Ilharco et al. 2023) and the edit TA/TAU apply (spec A16): plain functions on
state dicts of **parameters only** (buffers are never touched), arithmetic in float32, results cast
back to each parameter's dtype. Depends on torch only.

* :func:`snapshot`: ``{name: fp32 clone}`` of a model's parameters (θ_s).
* :func:`task_vector`: ``τ = θ_t - θ_s`` (``θ_t``, ``θ_s``: models or snapshots with the same names).
* :func:`negate` / :func:`scale`: ``-τ`` / ``c·τ``.
* :func:`add_scaled`: ``θ_s + c·τ`` as a new dict.
* :func:`apply_task_vector`: write ``θ_s + c·(θ_t - θ_s)`` into a model in place. With ``c = 0`` the
  model holds ``θ_s`` exactly (bit for bit, for fp32 parameters); ``c = 1`` leaves ``θ_t``; ``c < 0``
  (TA/TAU) moves *away* from what fine-tuning on the forget set added.
"""

from __future__ import annotations

import torch


def _params(x) -> dict[str, torch.Tensor]:
    if isinstance(x, dict):
        return x
    if hasattr(x, "named_parameters"):
        return {n: p.detach() for n, p in x.named_parameters()}
    raise TypeError(f"expected a model or a {{name: tensor}} dict, got {type(x).__name__}")


@torch.no_grad()
def snapshot(model) -> dict[str, torch.Tensor]:
    """θ_s: a float32 copy of every parameter (by name), detached, on the parameter's device."""
    return {n: p.detach().float().clone() for n, p in _params(model).items()}


@torch.no_grad()
def task_vector(theta_t, theta_s) -> dict[str, torch.Tensor]:
    """``τ = θ_t - θ_s`` in float32, one tensor per parameter name (both must have the same names/shapes)."""
    a, b = _params(theta_t), _params(theta_s)
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"task_vector: the two weight sets differ in parameter names, e.g. {diff}")
    out = {}
    for n, t in a.items():
        if t.shape != b[n].shape:
            raise ValueError(f"task_vector: parameter {n!r} has shape {tuple(t.shape)} vs {tuple(b[n].shape)}")
        out[n] = t.float() - b[n].float().to(t.device)
    return out


def scale(tau: dict[str, torch.Tensor], c: float) -> dict[str, torch.Tensor]:
    """``c·τ``."""
    return {n: v * float(c) for n, v in tau.items()}


def negate(tau: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``-τ`` (task-vector negation, MUSE's "Task Vector" baseline with α = 1)."""
    return scale(tau, -1.0)


def add_scaled(theta_s, tau: dict[str, torch.Tensor], c: float = 1.0) -> dict[str, torch.Tensor]:
    """``θ_s + c·τ`` (float32 dict)."""
    base = _params(theta_s)
    return {n: base[n].float() + float(c) * tau[n].to(base[n].device) if n in tau else base[n].float().clone()
            for n in base}


@torch.no_grad()
def apply_task_vector(model, theta_s: dict[str, torch.Tensor], c: float) -> None:
    """In place: every parameter ``θ_t`` of ``model`` that is in ``theta_s`` becomes ``θ_s + c·(θ_t - θ_s)``.

    ``c = 0`` restores ``θ_s`` exactly (it is copied, not computed). Parameters absent from
    ``theta_s`` are left as they are.
    """
    c = float(c)
    for n, p in model.named_parameters():
        if n not in theta_s:
            continue
        s = theta_s[n].to(p.device)
        if c == 0.0:
            p.copy_(s.to(p.dtype))
        else:
            p.copy_((s + c * (p.detach().float() - s)).to(p.dtype))
