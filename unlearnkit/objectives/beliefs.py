"""Bootstrapping with the model's own beliefs: BS-T and BS-S ("LLM Unlearning with LLM Beliefs",
arXiv 2510.19422; spec A13, A14).

GA and NPO lower ``pi(y|x)`` for the forget answer, but the softmax moves the mass onto the
model's *other* high-likelihood answers, often paraphrases that still state the fact (the
squeezing effect). BS-T also pushes down the model's top-k next-token beliefs at every answer
position; BS-S also pushes down whole answers sampled from the current model.
"""

from __future__ import annotations

import torch

from .. import scoring  # (scoring.generate looked up at call time: tests replace it)
from ..data import encode_pairs, encode_prompts, row_ids
from ..models.layers import eval_mode
from .base import (
    RETAIN_PARAMS,
    Param,
    Requirements,
    compose,
    forward,
    nll,
    npo_forget_loss,
    objective,
    reduce,
    retain_requirements,
    seq_logprob,
    shift,
)

BASE = Param("ga", "base unlearning loss the beliefs are added to: 'ga' (gradient ascent) or 'npo' "
             "(needs reference log-probs)", choices=("ga", "npo"))
BETA = Param(0.1, "NPO's beta (base='npo' only)", low=0.0, low_open=True)
LAM = "share of the beliefs in the target"


# -- BS-T -----------------------------------------------------------------------------------------

def soft_targets(logits: torch.Tensor, targets: torch.Tensor, lam: float, top_k: int,
                 temperature: float = 1.0, detach: bool = True) -> torch.Tensor:
    """BS-T's soft target ``t = lam * softmax(top-k logits / temperature) + (1 - lam) * onehot(y)``.

    ``logits`` ``(B, T, V)`` (already aligned with ``targets`` ``(B, T)``); returns ``(B, T, V)``,
    each row summing to 1. The belief is renormalized over the top-k set only (zeros elsewhere),
    as in the BS code, and detached (``sg[.]``) unless ``detach=False``.
    """
    src = logits.detach() if detach else logits
    k = min(int(top_k), logits.shape[-1])
    topv, topi = src.float().topk(k, -1)
    belief = torch.softmax(topv / temperature, -1)
    t = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device).scatter(-1, topi, lam * belief)
    one = torch.full(targets.shape, 1.0 - lam, dtype=torch.float32, device=logits.device).unsqueeze(-1)
    return t.scatter_add(-1, targets.unsqueeze(-1), one)


def _bst_requirements(hp):
    ref = [("forget", "logprobs")] if hp["base"] == "npo" else []
    return retain_requirements(hp, ref=ref)


@objective("bs_t", family="beliefs",
           formula="L = -mean_b mean_i CE(t_i, p_theta,i),  t_i = lam sg[softmax(top-k logits)] + (1-lam) onehot(y_i);  + alpha R",
           source="LLM Unlearning with LLM Beliefs (arXiv 2510.19422), Eq. 6-7; BS code bst.py",
           params={"lam": Param(0.5, f"lambda_BST: {LAM} (0 = the base loss on the answer alone)", low=0.0, high=1.0),
                   "top_k": Param(20, "k: size of the belief set H_k (top-k next tokens)", low=1),
                   "temperature": Param(1.0, "temperature of the top-k softmax (higher spreads the belief)",
                                        low=0.0, low_open=True),
                   "detach": Param(True, "stop the gradient through the belief (the BS code's default; "
                                   "essential for stability)"),
                   "base": BASE, "beta": BETA,
                   "reduction": Param("seq_mean", "GA base: 'seq_mean' (per-sequence mean then batch mean, the BS "
                                      "code), 'token_mean_global' (HF) or 'seq_sum'",
                                      choices=("seq_mean", "token_mean_global", "seq_sum")),
                   **RETAIN_PARAMS},
           requires=_bst_requirements)
def bs_t(model, batch, ctx):
    """BS-T: token-level bootstrapping. Gradient ascent on a soft target that mixes the true token
    with the model's own top-k beliefs.

    Formula: at answer position ``i``, ``t_i = lam * sg[softmax over H_k of z_i / temperature] +
    (1 - lam) * e_{y_i}`` with ``H_k = TopK_k(p_theta(.|x, y_<i))``;
    ``ce_i = -sum_v t_i[v] log p_theta(v|x, y_<i)``. Base ``ga``: ``L_f = -mean_b mean_i ce_i``
    (the BS code's ``-mean(ce)``; ``reduction`` picks another pooling). Base ``npo``: the soft
    log-likelihood ``s = sum_i <t_i, log p_i>`` replaces ``log pi(y|x)`` and
    ``L_f = -(2/beta) mean_b log sigmoid(-beta (s_theta - s_ref))``, ``s_ref`` using the *same*
    targets with the reference log-probs (the kit's extension: the BS code builds BS-T on GradDiff).
    ``L = gamma * L_f + alpha * R``. Residual view: GA pushes on ``p - e_y``; BS-T on
    ``(p - e_y) - lam * q``, an extra push down on the top-k neighbourhood, so no new peak forms.
    Shapes: forget ``(B, L)``, logits ``(B, L, V)``, ``t`` ``(B, L-1, V)`` (memory ``B*L*V``).
    Masked: only positions predicting answer tokens + EOS. Reduction: base ``ga``: per-sequence
    mean over answer positions, then batch mean (``reduction``); base ``npo``: sum over positions,
    batch mean of the log-sigmoid. Defaults (BS code): lam 0.5, k 20, detach, seq_mean; alpha 1
    (TOFU experiments use retain regularization). ``lam=0`` is GA.
    Source: arXiv 2510.19422 Eq. 6-7. Parts: ``forget``, ``retain``, ``target_nll``.
    """
    hp = ctx.hp
    f = batch["forget"]
    logits = forward(model, f).logits
    lg, tgt, mask = shift(logits, f["labels"])
    t = soft_targets(lg, tgt, hp["lam"], hp["top_k"], hp["temperature"], hp["detach"])
    logp = torch.log_softmax(lg.float(), -1)
    ce = -(t * logp).sum(-1)  # (B, T)
    if hp["base"] == "npo":
        ref_lp = ctx.ref.logprobs("forget", f)[:, :-1].to(logp.device)
        s_ref = ((t * ref_lp).sum(-1) * mask).sum(-1)
        s = -(ce * mask).sum(-1)
        lf = npo_forget_loss(s - s_ref, hp["beta"])
    else:
        lf = -reduce(ce, mask, hp["reduction"])
    tnll = -(logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * mask).sum() / mask.sum().clamp_min(1)
    return compose(lf, model, batch, ctx, {"target_nll": float(tnll.detach())})


# -- BS-S -----------------------------------------------------------------------------------------

def _bss_requirements(hp):
    ref = [("forget", "seq_logprob")] if hp["base"] == "npo" else []
    r = retain_requirements(hp, ref=ref)
    return Requirements(r.parts, r.ref, generation=True)


def _gen_model(model):
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def _to(part, dev):
    return {k: v.to(dev) for k, v in part.items()}


@torch.no_grad()
def _refresh(model, batch, ctx):
    """Sample fresh answers for the batch's forget rows whose cache is missing or older than
    ``regen_every`` steps; returns how many rows were (re)sampled."""

    hp = ctx.hp
    if ctx.tokenizer is None or not ctx.raw.get("forget"):
        raise ValueError("objective 'bs_s' samples answers from the model: it needs ctx.tokenizer and "
                         "ctx.raw['forget'] (unlearn() provides both)")
    st = ctx.state.setdefault("bs_s", {"cache": {}, "generated": 0})
    cache = st["cache"]
    raw = ctx.raw["forget"]
    if "questions" not in st:
        st["questions"] = list(raw["question"])
        st["ids"] = row_ids(raw)
    rows = [int(i) for i in batch["forget"]["index"].tolist()]
    stale = [i for i in rows if st["ids"][i] not in cache
             or ctx.step - cache[st["ids"][i]]["step"] >= hp["regen_every"]]
    if not stale:
        return 0
    tok = ctx.tokenizer
    gm = _gen_model(model)
    qs = [st["questions"][i] for i in stale]
    n = hp["n_samples"]
    # never sample past the positions the model was built for (the miniature: 96)
    max_new = hp["sample_max_new_tokens"]
    max_pos = getattr(getattr(gm, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, int):
        max_new = max(1, min(max_new, max_pos - encode_prompts(tok, qs, fmt=ctx.fmt)["input_ids"].shape[1]))
    texts = scoring.generate(gm, tok, qs, max_new_tokens=max_new, do_sample=True, fmt=ctx.fmt,
                     temperature=hp["temperature"], num_return_sequences=n,
                     seed=hp["sample_seed"] * 1_000_003 + ctx.step)
    live_ref = ctx.ref is not None and getattr(ctx.ref, "live", False)
    dev = batch["forget"]["input_ids"].device
    for j, i in enumerate(stale):
        samples = [s for s in texts[j * n:(j + 1) * n] if s.strip()]
        entry = {"step": ctx.step, "samples": samples, "ref": None}
        if samples and hp["base"] == "npo":
            enc = _to(encode_pairs(tok, [st["questions"][i]] * len(samples), samples, fmt=ctx.fmt), dev)
            if live_ref:  # the adapter disabled under LoRA: the exact reference
                entry["ref"] = ctx.ref.seq_logprob("forget_sampled", enc).float().cpu()
                entry["ref_source"] = "reference"
            else:  # cached reference: the sampling model anchors its own samples (exact at step 0)
                with eval_mode(gm):
                    entry["ref"] = seq_logprob(forward(model, enc).logits, enc["labels"]).float().cpu()
                entry["ref_source"] = f"model@step{ctx.step}"
        cache[st["ids"][i]] = entry
    st["generated"] += len(stale) * n
    return len(stale)


def _base_loss(model, part, base, beta, ref_lp=None):
    logits = forward(model, part).logits
    if base == "npo":
        lp = seq_logprob(logits, part["labels"])
        return npo_forget_loss(lp - ref_lp.to(lp.device, lp.dtype), beta)
    return -nll(logits, part["labels"])


@objective("bs_s", family="beliefs",
           formula="L = (1-lam) L_base(D_u) + lam L_base(D^_u),  D^_u = answers sampled from the current model;  + alpha R",
           source="LLM Unlearning with LLM Beliefs (arXiv 2510.19422), Eq. 8; BS code bss.py",
           params={"lam": Param(0.5, "lambda_BSS: weight of the sampled answers (0 = the base loss alone)",
                                low=0.0, high=1.0),
                   "n_samples": Param(1, "N: answers sampled per forget question", low=1),
                   "temperature": Param(1.0, "sampling temperature (full distribution, no top-k/top-p)",
                                        low=0.0, low_open=True),
                   "sample_max_new_tokens": Param(200, "length limit of a sampled answer (tokens; also capped so "
                                                  "prompt + answer fit the model's max_position_embeddings; "
                                                  "the BS code's max_new_tokens)", low=1),
                   "regen_every": Param(10, "resample a question's answers once they are this many steps old "
                                        "(1 = every step, the BS code's 0; the BS code's default is 2 epochs)",
                                        low=1),
                   "sample_seed": Param(0, "seed of the sampling (combined with the step)", low=0),
                   "base": BASE, "beta": BETA, **RETAIN_PARAMS},
           requires=_bss_requirements)
def bs_s(model, batch, ctx):
    """BS-S: sequence-level bootstrapping. Unlearn the forget answers *and* answers the model itself
    currently gives to the forget questions.

    Formula: ``L_f = (1 - lam) * L_base(x_f, y_f) + lam * L_base(x_f, y^)`` with ``y^ ~ pi_theta(.|x_f)``
    sampled (temperature ``temperature``, ``n_samples`` per question, up to ``sample_max_new_tokens``)
    from the *current* model, cached per example id in ``ctx.state["bs_s"]`` and resampled once
    ``regen_every`` steps old (on-policy; a huge ``regen_every`` samples once, off-policy).
    ``L = gamma * L_f + alpha * R``. ``L_base``: ``ga`` (-NLL, global token mean over the part) or
    ``npo`` (summed log-prob ratio to the reference). Reference of a *sample* under NPO: with LoRA
    the adapter is disabled (the exact ``pi_ref``); with a cached reference the samples were not
    cached before training, so their anchor is the model that drew them, scored at sampling time
    (exactly ``pi_ref`` for samples drawn before the first update, the then-current model for later
    refreshes, i.e. [CL]'s moving reference ``fix_ref_model=false``; ``ref_source`` in the cache
    says which). Samples are cut at EOS; an empty sample (immediate EOS) carries no belief and is
    dropped; with no usable sample in the batch ``L_f`` is the base loss on ``D_u`` alone.
    Why the samples' age matters: for answers drawn from the current model at temperature 1, the
    expected gradient of the GA term on them is zero (score-function identity,
    ``E_{y~pi}[grad log pi(y|x)] = 0``): redrawn every step, BS-S is a down-weighted GA plus noise.
    Samples from an earlier model (``regen_every > 1``; drawn once at the start with a huge
    ``regen_every``) push down what the model *believed*, which is the point; so do a temperature
    below 1 and the NPO base (its per-sample weights break the identity).
    Shapes: forget ``(B, L)``; samples re-encoded with :func:`unlearnkit.data.encode_pairs` to
    ``(B*N', L')``. Masked: prompt and padding. Reduction: as the base loss, per set.
    Defaults (BS code): lam 0.5, N 1, temperature 1, sample_max_new_tokens 200 (the BS code's
    ``max_new_tokens``; renamed so it does not clash with the loop's probe length), base GA, alpha 1.
    Source: arXiv 2510.19422 Eq. 8; the BS code caches per batch, the kit per example id.
    Parts: ``forget``, ``retain``, ``forget_target``, ``forget_sampled``, ``n_samples``, ``resampled``.
    """
    hp = ctx.hp
    f = batch["forget"]
    n_new = _refresh(model, batch, ctx)
    st = ctx.state["bs_s"]
    base, beta = hp["base"], hp["beta"]
    ref_f = ctx.ref.seq_logprob("forget", f) if base == "npo" else None
    l_u = _base_loss(model, f, base, beta, ref_f)
    qs, ans, refs = [], [], []
    for i in f["index"].tolist():
        e = st["cache"][st["ids"][int(i)]]
        qs += [st["questions"][int(i)]] * len(e["samples"])
        ans += e["samples"]
        if e["ref"] is not None:
            refs.append(e["ref"])
    parts = {"forget_target": float(l_u.detach()), "n_samples": len(ans), "resampled": n_new}
    if ans:
        enc = _to(encode_pairs(ctx.tokenizer, qs, ans, fmt=ctx.fmt), f["input_ids"].device)
        l_s = _base_loss(model, enc, base, beta, torch.cat(refs) if base == "npo" else None)
        lf = (1 - hp["lam"]) * l_u + hp["lam"] * l_s
        parts["forget_sampled"] = float(l_s.detach())
    else:
        lf = l_u
    return compose(lf, model, batch, ctx, parts)
