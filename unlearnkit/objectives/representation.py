"""Representation misdirection: RMU (spec A8).

RMU works on the residual stream at one decoder layer ``l`` (the output of module ``layers[l]``,
captured with a forward hook; the forward stops right after that layer, except under DDP, which
needs whole forwards): forget activations are
pushed towards a fixed random direction, retain activations are held at the reference model's.
"""

from __future__ import annotations

import re

import torch

from ..models.layers import decoder_layers, unwrap
from .base import Param, Requirements, check_layer, layer_output, objective


def _layer(hp) -> int:
    layer = hp["layer"]
    if isinstance(layer, float) and not layer.is_integer():
        raise ValueError(f"objective 'rmu': parameter layer={layer!r} must be an integer "
                         "(a decoder layer index, negative counts from the end)")
    return int(layer)


def _rmu_requirements(hp) -> Requirements:
    layer = _layer(hp)
    if hp["alpha"] > 0:
        return Requirements(("forget", "retain"), frozenset({("retain", f"hidden:{layer}")}))
    return Requirements(("forget",))


def _masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per token mean over dims of ``(h - target)^2``, mean over each row's masked tokens, mean over rows."""
    sq = (h.float() - target.float()).pow(2).mean(-1)  # (B, L)
    mask = mask.to(sq.dtype)
    return ((sq * mask).sum(-1) / mask.sum(-1).clamp_min(1)).mean()


def _token_mask(part, mode):
    if mode == "answer":
        return part["labels"] != -100
    return part["attention_mask"].bool()


def _freeze(model, ctx):
    """Before training (the ``setup`` hook, so before DDP wraps the model): freeze the parameters
    outside ``trainable`` and those no gradient can reach (decoder layers after ``layer``, the final
    norm and an untied LM head: the loss reads layer ``layer``'s output). Their ``.grad`` would stay
    None in a single process anyway (AdamW leaves them alone); frozen, DDP does not wait for them."""
    hp = ctx.hp
    layer = check_layer(model, _layer(hp))
    layers = decoder_layers(model)
    bare = unwrap(model)
    head = getattr(bare, "get_output_embeddings", lambda: None)()
    after = [*layers[layer + 1:], head]
    after += [m for owner in (getattr(bare, "model", None), getattr(bare, "transformer", None))
              for m in (getattr(owner, n, None) for n in ("norm", "ln_f")) if isinstance(m, torch.nn.Module)]
    emb = getattr(bare, "get_input_embeddings", lambda: None)()
    used = {id(p) for m in [*layers[:layer + 1], emb] if m is not None for p in m.parameters()}
    for m in after:
        for p in (m.parameters() if m is not None else []):
            if id(p) not in used:  # (a head tied to the embeddings is used)
                p.requires_grad_(False)
    if hp["trainable"] not in (".*", "all"):
        try:
            pat = re.compile(hp["trainable"])
        except re.error as e:
            raise ValueError(f"objective 'rmu': trainable={hp['trainable']!r} is not a regular expression ({e})") from None
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        keep = [n for n in names if pat.search(n)]
        if not keep:
            raise ValueError(f"objective 'rmu': trainable={hp['trainable']!r} matches no trainable parameter; "
                             f"names look like {names[:3]}")
        for n, p in model.named_parameters():
            if p.requires_grad and not pat.search(n):
                p.requires_grad_(False)  # its .grad stays None: AdamW skips it (no update, no decay)
        ctx.state["rmu_trainable"] = keep


def _setup(model, batch, ctx, layer):
    """Once per run (first step): draw the control vector ``c * u``."""
    st = ctx.state.get("rmu")
    if st is not None:
        return st
    hp = ctx.hp
    if "rmu_frozen" not in ctx.state:  # called without the loop (tests): freeze here
        _freeze(model, ctx)
        ctx.state["rmu_frozen"] = True
    f = batch["forget"]
    with torch.no_grad():
        h = layer_output(model, f, layer)
    d = h.shape[-1]
    g = torch.Generator().manual_seed(int(hp["vector_seed"]))
    u = torch.rand(d, generator=g)
    u = u / u.norm()
    c = hp["steering_coeff"]
    if hp["coeff_mode"] == "relative":
        with torch.no_grad():
            enc = ctx.data.get("forget")
            parts = [f] if enc is None else [
                {k: v[s:s + 32].to(f["input_ids"].device) for k, v in enc.items()} for s in range(0, len(enc["input_ids"]), 32)]
            norms = [layer_output(model, p, layer).float().norm(dim=-1)[_token_mask(p, hp["token_mask"])] for p in parts]
            c = c * float(torch.cat(norms).mean())
    st = {"control": (c * u).to(h.device), "c": c}
    ctx.state["rmu"] = st
    return st


@objective("rmu", family="baseline",
           formula="L = gamma mean_tok mean_dim (h_l(x_f) - c u)^2 + alpha mean_tok mean_dim (h_l(x_r) - h_l^ref(x_r))^2",
           source="Li et al. 2024 (WMDP, RMU); OpenUnlearning rmu.py",
           params={"layer": Param(7, "decoder layer whose output is steered (WMDP/OpenUnlearning: 7); negative "
                                  "counts from the end; must exist in the model"),
                   "steering_coeff": Param(2.0, "c: norm of the control vector (OpenUnlearning TOFU: 2; WMDP "
                                           "Zephyr-7B: 6.5)", low=0.0, low_open=True),
                   "coeff_mode": Param("absolute", "'absolute': c as given; 'relative': c times the mean L2 norm "
                                       "of layer-l activations on the forget tokens under the original model",
                                       choices=("absolute", "relative")),
                   "gamma": Param(1.0, "weight of the forget (misdirection) term", low=0.0),
                   "alpha": Param(1.0, "weight of the retain (activation-matching) term; OpenUnlearning TOFU 1, "
                                  "WMDP 1200; 0 disables it", low=0.0),
                   "token_mask": Param("answer", "tokens averaged over: 'answer' (labels != -100, "
                                       "OpenUnlearning) or 'attended' (every non-padding token, original RMU "
                                       "on raw documents)", choices=("answer", "attended")),
                   "trainable": Param(".*", "regular expression over parameter names: only matching ones are "
                                      "trained ('.*' = all, OpenUnlearning TOFU; WMDP: "
                                      "'layers\\.(5|6|7)\\.mlp\\.down_proj')"),
                   "vector_seed": Param(0, "seed of the random control vector u (fixed for the whole run)", low=0)},
           requires=_rmu_requirements, setup=lambda model, ctx: (_freeze(model, ctx), ctx.state.update(rmu_frozen=True)))
def rmu(model, batch, ctx):
    """Representation Misdirection for Unlearning.

    Formula: a control vector ``c*u`` with ``u ~ U[0,1)^d`` (seeded by ``vector_seed``, drawn once per
    run) normalized to unit norm;
    ``L_f = mean_b mean_{t in mask} mean_dims (h_l(x_f)_t - c*u)^2``,
    ``L_r = mean_b mean_{t in mask} mean_dims (h_l(x_r)_t - h_l^ref(x_r)_t)^2``,
    ``L = gamma * L_f + alpha * L_r``. ``h_l`` is the output of decoder layer ``layer``; the
    reference activations come from ``ctx.ref.hidden("retain", part, layer)``.
    Shapes: parts ``(B, L)``; activations ``(B, L, d)``; ``u`` ``(d,)``. Masked: ``token_mask``
    ("answer": labels != -100, OpenUnlearning; "attended": all non-padding tokens, original RMU).
    Reduction: mean over dims, mean over each row's tokens, mean over rows (OpenUnlearning's
    ``compute_activation_loss``). Only parameters matching ``trainable`` are trained: the others
    are frozen on the first call (their gradient stays None, so AdamW leaves them alone).
    ``c`` scales with the activation norm at layer ``l``: use ``coeff_mode="relative"`` to set it as a
    multiple of the mean norm. Source: Li et al. 2024 (WMDP); OpenUnlearning ``rmu.py``.
    Parts: ``forget`` (L_f), ``retain`` (L_r), ``forget_norm`` (mean activation norm on forget tokens).
    """
    hp = ctx.hp
    layer = check_layer(model, _layer(hp))
    st = _setup(model, batch, ctx, layer)
    f = batch["forget"]
    h_f = layer_output(model, f, layer)
    m_f = _token_mask(f, hp["token_mask"])
    l_f = _masked_mse(h_f, st["control"].to(h_f.device), m_f)
    loss = hp["gamma"] * l_f
    parts = {"forget": float(l_f.detach()), "forget_norm": float(h_f.detach().float().norm(dim=-1)[m_f].mean())}
    if hp["alpha"] > 0 and "retain" in batch:
        r = batch["retain"]
        h_r = layer_output(model, r, layer)
        h_ref = ctx.ref.hidden("retain", r, _layer(hp)).to(h_r.device)
        l_r = _masked_mse(h_r, h_ref, _token_mask(r, hp["token_mask"]))
        loss = loss + hp["alpha"] * l_r
        parts["retain"] = float(l_r.detach())
    return loss, parts
