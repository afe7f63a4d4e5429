"""UIPE: Unlearning Improvement via Parameter Extrapolation (arXiv 2503.04693; spec A18).

Given the weights before unlearning ``θ₀`` and after ``θ_u`` (any GA-family method), UIPE moves
further along the unlearning update ``v = θ_u − θ₀``::

    θ_UIPE = θ_u + α·v = θ₀ + (1 + α)·v          (α ≥ 0; α = 0 gives θ_u back exactly)

applied once, post hoc, with no data and no training. The rationale: the update that removes a
fact has a component along *related* knowledge from which the fact can be re-derived; amplifying
it removes more of that, at a cost in utility, so α trades forgetting against utility.

Kit conventions (spec A18 and its operator notes; no author code is public, so the exact equation
and whether it is applied per step are unverified): parameters only (buffers such as the rotary
``inv_freq`` are copied unchanged), arithmetic in fp32 and cast back to each tensor's dtype,
non-floating tensors untouched. With a PEFT/LoRA model the extrapolated delta is the adapter's
``ΔW = s·B·A`` (the adapter starts at ΔW = 0 under peft's default initialisation), so UIPE scales
every ``lora_B`` by ``(1 + α)``. The measured norm ratio ``‖θ_UIPE − θ₀‖ / ‖θ_u − θ₀‖`` (1 + α up
to rounding) is reported with every result.

Layers: :func:`extrapolate_state` is a pure function of state dicts (torch only);
:func:`uipe` works on models; :func:`unlearn_uipe` wraps :func:`unlearnkit.train.unlearn` (any
registered objective) and :func:`uipe_sweep` evaluates many α after one unlearning run, so these
two import the loop and the metrics inside the function (editing sits beside objectives; nothing
below imports it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from ..metrics import evaluate, resolve_metrics, summarize
from ..train import unlearn

#: α grid of the sweep when none is given (spec A18: [0, 1] in steps of 0.1)
DEFAULT_ALPHAS = tuple(round(0.1 * k, 1) for k in range(11))

#: metrics of :func:`uipe_sweep` per split when none are given: direct forgetting, indirect
#: (related-knowledge) recall and utility
DEFAULT_SWEEP_METRICS = {"forget": ["fact_recall", "probability"], "indirect": ["related_recall", "probability"],
                         "retain": ["fact_recall", "probability"]}


def check_alpha(alpha) -> float:
    """``alpha`` as a float, or a ``ValueError`` naming it and its valid range ``[0, inf)``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise ValueError(f"uipe: alpha={alpha!r} must be a finite number in [0, inf)")
    a = float(alpha)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"uipe: alpha={alpha!r} must be a finite number in [0, inf) (0 returns the unlearned "
                         "weights; the paper's grid is [0, 1])")
    return a


def check_same_tensors(original: Mapping, unlearned: Mapping, names: Iterable[str] | None = None) -> list[str]:
    """The names to extrapolate, checked: the same names with the same shapes in both mappings.

    Raises ``ValueError`` naming the first mismatching tensor (in ``unlearned``'s order).
    """
    names = list(unlearned) if names is None else list(names)
    for n in names:
        if n not in unlearned:
            raise ValueError(f"uipe: tensor {n!r} is not in the unlearned weights")
        if n not in original:
            raise ValueError(f"uipe: tensor {n!r} of the unlearned model has no counterpart in the original "
                             "(different architectures or parameter names?)")
        if tuple(original[n].shape) != tuple(unlearned[n].shape):
            raise ValueError(f"uipe: tensor {n!r} has shape {tuple(original[n].shape)} in the original but "
                             f"{tuple(unlearned[n].shape)} in the unlearned model")
    extra = [n for n in original if n not in unlearned]
    if extra:
        raise ValueError(f"uipe: tensor {extra[0]!r} of the original model is missing from the unlearned one")
    return names


def _extrapolate_(target: torch.Tensor, base: torch.Tensor, orig: torch.Tensor, alpha: float) -> tuple[float, float]:
    """``target ← base + α(base − orig)`` in fp32, cast to ``target``'s dtype; returns the squared
    norms ``(‖base − orig‖², ‖target − orig‖²)`` (fp64 sums)."""
    b = base.detach().to(torch.float32)
    o = orig.detach().to(device=b.device, dtype=torch.float32)
    v = b - o
    new = b if alpha == 0 else b + alpha * v
    target.copy_(new.to(target.dtype))
    d_new = target.detach().to(torch.float32) - o
    return float(v.double().pow(2).sum()), float(d_new.double().pow(2).sum())


def _ratio(old_sq: float, new_sq: float) -> float:
    return math.sqrt(new_sq) / math.sqrt(old_sq) if old_sq > 0 else float("nan")


def extrapolate_state(original: Mapping[str, torch.Tensor], unlearned: Mapping[str, torch.Tensor], alpha: float,
                      params: Iterable[str] | None = None) -> tuple[dict, dict]:
    """UIPE on state dicts: ``out[n] = θ_u[n] + α(θ_u[n] − θ₀[n])`` for every name in ``params``.

    ``original`` / ``unlearned``: name -> tensor (any shapes, equal between the two). ``params``:
    the names to extrapolate (a model's parameter names); default every floating tensor of
    ``unlearned``. Other entries (buffers, integer tensors) are copied from ``unlearned``
    unchanged. Arithmetic in fp32, each result cast back to its tensor's dtype. Neither input is
    modified. Returns ``(state, info)`` with ``info``: ``alpha``, ``norm_ratio`` (measured
    ‖θ_UIPE − θ₀‖ / ‖θ_u − θ₀‖ over the extrapolated tensors, after the cast; nan if θ_u = θ₀),
    ``update_norm`` (‖θ_u − θ₀‖), ``n_tensors`` (extrapolated) and ``skipped`` (names copied).

    >>> s, info = extrapolate_state({"w": torch.zeros(2)}, {"w": torch.tensor([1., 2.])}, 0.5)
    >>> s["w"].tolist(), round(info["norm_ratio"], 6)
    ([1.5, 3.0], 1.5)
    """
    alpha = check_alpha(alpha)
    if params is None:
        params = [n for n, t in unlearned.items() if torch.is_floating_point(t)]
    names = check_same_tensors(original, unlearned, params)
    chosen = set(names)
    out, old_sq, new_sq = {}, 0.0, 0.0
    with torch.no_grad():
        for n, t in unlearned.items():
            if n in chosen and torch.is_floating_point(t):
                out[n] = torch.empty_like(t)
                a, b = _extrapolate_(out[n], t, original[n], alpha)
                old_sq, new_sq = old_sq + a, new_sq + b
            else:
                out[n] = t.clone()
    skipped = [n for n in unlearned if n not in chosen or not torch.is_floating_point(unlearned[n])]
    return out, {"alpha": alpha, "norm_ratio": _ratio(old_sq, new_sq), "update_norm": math.sqrt(old_sq),
                 "n_tensors": len(names) - sum(1 for n in names if not torch.is_floating_point(unlearned[n])),
                 "skipped": skipped}


# -- models ---------------------------------------------------------------------------------------

def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "base_model")


def _lora_pairs(model) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """``(module name, A, B, scaling)`` for every LoRA module of a peft model's active adapter(s)."""
    out = []
    for name, mod in model.named_modules():
        lb = getattr(mod, "lora_B", None)
        la = getattr(mod, "lora_A", None)
        if not isinstance(lb, torch.nn.ModuleDict) or not isinstance(la, torch.nn.ModuleDict):
            continue
        for key in lb:
            out.append((f"{name}.{key}", la[key].weight, lb[key].weight, float(mod.scaling[key])))
    return out


def _check_lora_only(model):
    """UIPE on a peft model extrapolates the adapter; a trainable tensor outside it has no θ₀ here."""
    for n, p in model.named_parameters():
        if p.requires_grad and "lora_" not in n:
            raise ValueError(f"uipe: the peft model trains {n!r}, which is not a LoRA adapter tensor; UIPE on a "
                             "peft model extrapolates the adapter delta only (merge the adapter and pass "
                             "original=<the model before unlearning> to extrapolate full weights)")


def _lora_apply_(pairs, b_base: list[torch.Tensor], alpha: float) -> float:
    """Set each ``B ← (1 + α)·B_u`` (fp32, cast back); returns the measured norm ratio of ``s·B·A``."""
    old_sq = new_sq = 0.0
    with torch.no_grad():
        for (_, A, B, s), b0 in zip(pairs, b_base):
            b32 = b0.to(torch.float32)
            B.copy_((b32 + alpha * b32).to(B.dtype) if alpha else b0)
            a32 = A.detach().to(torch.float32)
            old_sq += float((s * (b32 @ a32)).double().pow(2).sum())
            new_sq += float((s * (B.detach().to(torch.float32) @ a32)).double().pow(2).sum())
    return _ratio(old_sq, new_sq)


def _param_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]  # tied weights once


def _theta0(original, unlearned):
    """θ₀'s parameters by name and the unlearned model's trainable names, checked to match (names
    and shapes; the first mismatch is named). ``original``: a model or a result with ``.model``."""
    if original is None:
        raise ValueError("uipe: original=None, but θ₀ (the model before unlearning) is needed for a model without "
                         "a LoRA adapter")
    original = getattr(original, "model", original) if not isinstance(original, torch.nn.Module) else original
    names = _param_names(unlearned)
    o_params = dict(original.named_parameters())
    check_same_tensors(o_params, dict(unlearned.named_parameters()), names)
    return names, o_params


def uipe(original, unlearned, alpha: float, *, inplace: bool = False, return_info: bool = False):
    """Extrapolate an unlearned model: ``θ_UIPE = θ_u + α(θ_u − θ₀)`` on its **parameters**.

    ``original``: the model before unlearning (θ₀), same architecture and parameter names; for a
    peft/LoRA ``unlearned`` it may be None (θ₀ is the adapter-free base, UIPE scales each
    ``lora_B`` by 1 + α). ``unlearned``: the model after unlearning, or an
    :class:`~unlearnkit.train.UnlearnResult`. ``alpha``: finite, >= 0. Buffers (rotary
    ``inv_freq``...) keep ``unlearned``'s values. ``inplace``: change ``unlearned`` itself instead of
    a deep copy (saves one copy of the weights). Returns the model, or ``(model, info)`` with
    ``return_info`` (``info``: ``alpha``, measured ``norm_ratio``, ``update_norm``, ``n_tensors``,
    ``lora``). Errors (bad α, mismatching tensors) are raised before anything is copied.
    """
    alpha = check_alpha(alpha)
    unlearned = getattr(unlearned, "model", unlearned) if not isinstance(unlearned, torch.nn.Module) else unlearned
    if is_peft(unlearned):
        _check_lora_only(unlearned)
        work = unlearned if inplace else copy.deepcopy(unlearned)
        pairs = _lora_pairs(work)
        if not pairs:
            raise ValueError("uipe: the peft model has no LoRA modules (lora_A / lora_B) to extrapolate")
        base = [B.detach().clone() for _, _, B, _ in pairs]
        ratio = _lora_apply_(pairs, base, alpha)
        info = {"alpha": alpha, "norm_ratio": ratio, "n_tensors": len(pairs), "lora": True,
                "update_norm": math.sqrt(sum(float((s * (b.float() @ A.detach().float())).double().pow(2).sum())
                                             for (_, A, _, s), b in zip(pairs, base)))}
    else:
        names, o_params = _theta0(original, unlearned)
        extra = [n for n in o_params if n not in set(names)]
        if extra:
            raise ValueError(f"uipe: tensor {extra[0]!r} of the original model is missing from the unlearned one")
        work = unlearned if inplace else copy.deepcopy(unlearned)
        old_sq = new_sq = 0.0
        with torch.no_grad():
            for n, p in work.named_parameters():
                if not torch.is_floating_point(p):
                    continue
                a, b = _extrapolate_(p, p.detach().clone(), o_params[n], alpha)
                old_sq, new_sq = old_sq + a, new_sq + b
        info = {"alpha": alpha, "norm_ratio": _ratio(old_sq, new_sq), "update_norm": math.sqrt(old_sq),
                "n_tensors": len(names), "lora": False}
    base_name = getattr(unlearned, "name_or_path", None) or type(unlearned).__name__
    work.name_or_path = f"uipe[alpha={alpha:g}]({base_name})"
    return (work, info) if return_info else work


def unlearn_uipe(model, tokenizer, forget, retain=None, method: str = "ga", *, alpha: float = 0.3, **unlearn_kwargs):
    """Unlearn with any registered objective, then extrapolate the update by ``alpha`` (UIPE).

    Calls :func:`unlearnkit.train.unlearn` (``unlearn_kwargs``: ``steps``, ``lr``, ``lora``, the
    objective's hyperparameters...), then :func:`uipe` on ``result.model`` in place: θ₀ is the
    ``model`` you passed, which ``unlearn`` never modifies, so no extra copy of the weights is made
    (with ``inplace=True`` in ``unlearn_kwargs`` the parameters are snapshot first: one copy).
    The result's ``hparams`` gain ``uipe_alpha``; its ``manifest`` gains ``uipe``: ``alpha``,
    measured ``norm_ratio`` (‖θ_UIPE − θ₀‖ / ‖θ_u − θ₀‖), ``update_norm`` and ``lora``. Its
    ``probes`` and ``log`` are those of the unlearning run (recorded before the extrapolation).
    ``alpha`` is validated before any training.
    """
    alpha = check_alpha(alpha)
    if "uipe_alpha" in unlearn_kwargs:
        raise ValueError("unlearn_uipe: pass the extrapolation coefficient as alpha=..., not uipe_alpha")
    lora = unlearn_kwargs.get("lora")
    theta0 = model
    if unlearn_kwargs.get("inplace") and not lora:
        theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = unlearn(model, tokenizer, forget, retain, method=method, **unlearn_kwargs)
    if lora:
        _, info = uipe(None, res.model, alpha, inplace=True, return_info=True)
    elif isinstance(theta0, dict):
        info = _uipe_from_state(theta0, res.model, alpha)
    else:
        _, info = uipe(theta0, res.model, alpha, inplace=True, return_info=True)
    res.model.name_or_path = f"{res.method}+uipe[alpha={alpha:g}]({getattr(model, 'name_or_path', None) or type(model).__name__})"
    res.hparams = {**res.hparams, "uipe_alpha": alpha}
    res.manifest = {**res.manifest, "uipe": {k: info[k] for k in ("alpha", "norm_ratio", "update_norm", "lora")}}
    return res


def _uipe_from_state(theta0: dict, model, alpha: float) -> dict:
    check_same_tensors(theta0, dict(model.named_parameters()), _param_names(model))
    old_sq = new_sq = 0.0
    with torch.no_grad():
        for n, p in model.named_parameters():
            if torch.is_floating_point(p):
                a, b = _extrapolate_(p, p.detach().clone(), theta0[n], alpha)
                old_sq, new_sq = old_sq + a, new_sq + b
    return {"alpha": alpha, "norm_ratio": _ratio(old_sq, new_sq), "update_norm": math.sqrt(old_sq), "lora": False}


# -- the α sweep ----------------------------------------------------------------------------------

def extrapolations(original, unlearned, alphas: Iterable[float]):
    """Yield ``(alpha, model, info)`` for each α, from ONE working copy of ``unlearned`` whose
    parameters are rewritten for each α (from θ_u each time, never cumulatively). No training, no
    data. The yielded model is the same object every time: evaluate it before the next step.
    ``original`` as in :func:`uipe` (None for a peft model). Every α is validated first."""
    alphas = [check_alpha(a) for a in alphas]
    unlearned = getattr(unlearned, "model", unlearned) if not isinstance(unlearned, torch.nn.Module) else unlearned
    if is_peft(unlearned):
        _check_lora_only(unlearned)
        work = copy.deepcopy(unlearned)
        pairs = _lora_pairs(work)
        base = [B.detach().clone() for _, _, B, _ in pairs]
        for a in alphas:
            ratio = _lora_apply_(pairs, base, a)
            yield a, work, {"alpha": a, "norm_ratio": ratio, "lora": True}
        return
    names, o_params = _theta0(original, unlearned)
    u_params = dict(unlearned.named_parameters())
    work = copy.deepcopy(unlearned)
    for a in alphas:
        old_sq = new_sq = 0.0
        with torch.no_grad():
            for n, p in work.named_parameters():
                if torch.is_floating_point(p):
                    x, y = _extrapolate_(p, u_params[n], o_params[n], a)
                    old_sq, new_sq = old_sq + x, new_sq + y
        work.name_or_path = f"uipe[alpha={a:g}]"
        yield a, work, {"alpha": a, "norm_ratio": _ratio(old_sq, new_sq), "lora": False}


def _sweep_splits(data) -> dict:
    if hasattr(data, "split") and hasattr(data, "table") and hasattr(data, "config"):  # a World
        names = ["forget", "retain"] + (["indirect"] if getattr(data.config, "related_facts", 0) else [])
        return {n: data.split(n) for n in names}
    if isinstance(data, dict):
        return dict(data)
    raise TypeError(f"uipe_sweep: data must be a World or a dict {{split: Dataset}}, got {type(data).__name__}")


def uipe_sweep(original, unlearned, tokenizer, data, alphas: Iterable[float] = DEFAULT_ALPHAS, metrics=None, *,
               per_example: bool = False, progress: bool = False, **options) -> pd.DataFrame:
    """Forgetting and utility along α, from one unlearning run: no training, one extrapolation each.

    ``unlearned``: the unlearned model or an :class:`~unlearnkit.train.UnlearnResult`;
    ``original``: θ₀ (None for a peft model). ``data``: a World (splits forget, retain and, with
    ``related_facts``, indirect) or a dict ``{split: Dataset}``. ``metrics``: a dict ``{split:
    [metric names]}`` (default :data:`DEFAULT_SWEEP_METRICS`, restricted to the splits present) or
    a list used for every split. ``options``: evaluation options (``max_new_tokens``...).

    Returns a tidy table, one row per (alpha, split, metric): ``alpha``, ``norm_ratio`` (measured,
    = 1 + α up to rounding), ``split``, ``metric``, ``value`` (the metric's aggregate), ``n``,
    ``direction``. With ``per_example=True``: one row per (alpha, split, metric, example), the
    columns of :func:`unlearnkit.metrics.evaluate` plus ``alpha`` and ``norm_ratio``. Metric
    names, splits and every α are checked before any work.
    """
    alphas = [check_alpha(a) for a in alphas]
    if not alphas:
        raise ValueError("uipe_sweep: alphas is empty; give at least one alpha >= 0")
    splits = _sweep_splits(data)
    if metrics is None:
        plan = {s: m for s, m in DEFAULT_SWEEP_METRICS.items() if s in splits}
    elif isinstance(metrics, dict):
        unknown = [s for s in metrics if s not in splits]
        if unknown:
            raise ValueError(f"uipe_sweep: metrics name split(s) {unknown} that data lacks (it has {list(splits)})")
        plan = dict(metrics)
    else:
        plan = {s: list([metrics] if isinstance(metrics, str) else metrics) for s in splits}
    for ms in plan.values():
        resolve_metrics(ms)
    frames = []
    for a, model, info in extrapolations(original, unlearned, alphas):
        for s, ms in plan.items():
            df = evaluate(model, tokenizer, {s: splits[s]}, ms, progress=progress, model_name=f"alpha={a:g}",
                          **options)
            frames.append(df.assign(alpha=a, norm_ratio=info["norm_ratio"]))
    out = pd.concat(frames, ignore_index=True)
    if not per_example:
        return summarize_sweep(out)
    front = ["alpha", "norm_ratio", "split", "metric", "id", "value"]
    return out[front + [c for c in out.columns if c not in front]]


def summarize_sweep(examples: pd.DataFrame) -> pd.DataFrame:
    """The per-example table of :func:`uipe_sweep` (``per_example=True``) reduced to one row per
    (alpha, split, metric) with each metric's own aggregate: the table ``uipe_sweep`` returns by
    default. Columns ``alpha, norm_ratio, split, metric, value, n, direction``."""
    rows = []
    for (a, r), g in examples.groupby(["alpha", "norm_ratio"], sort=True):
        rows.append(summarize(g).assign(alpha=a, norm_ratio=r))
    out = pd.concat(rows, ignore_index=True)
    front = ["alpha", "norm_ratio", "split", "metric", "value"]
    return out[front + [c for c in out.columns if c not in front and c != "model"]]
