"""Membership-inference attacks (spec B9), OpenUnlearning's conventions.

Every attack gives each example a score that **increases with non-member-ness** (loss-like):

=============  ===============================================================================
``mia_loss``   ``avg_loss = NLL_sum / T`` (T counts answer tokens and EOS, as ``probability``)
``mia_zlib``   ``avg_loss / len(zlib.compress(text.encode("utf-8")))`` (OU divides the *mean* loss)
``mia_min_k``  ``-mean`` of the lowest ``max(1, int(k·T'))`` token log-probs, ``k = 0.4``
``mia_min_k_plus_plus``  ``z_t = (log p(x_t) - μ_t) / σ_t`` with ``μ_t = Σ_v p_v log p_v``,
               ``σ_t² = Σ_v p_v (log p_v)² - μ_t²`` (clamped at 1e-6); ``-mean`` of the lowest
               ``max(1, int(k·T'))`` of the ``z_t``
``mia_reference``  ``avg_loss(model) - avg_loss(reference model)`` (reference = the retain model)
``mia_gradnorm``   mean over parameter tensors of ``‖∇_θ avg_loss‖_p`` (``p`` = ``mia_gradnorm_p``,
               2 by default; 1, 2 or ``inf``), one example per backward pass
=============  ===============================================================================

Token vectors of Min-K% / Min-K%++ follow OU's ``tokenwise_logprobs``: answer tokens with the
final EOS **dropped** (``T' = T - 1``); LOSS / ZLib use the EOS-inclusive ``avg_loss`` (OU's
``evaluate_probability``). On plain-text data (a ``text`` column) every token after the first is
scored and nothing is dropped (MUSE's whole-text form).

**AUC orientation (OpenUnlearning):** members (the forget split) are labelled 0, holdout rows 1,
``AUC = roc_auc_score(labels, scores)``. AUC ≈ 1: the forget set still looks like training data
(not forgotten); ≈ 0.5: indistinguishable from never-seen rows; MUSE's AUC is ``1 - AUC_OU``.

Each metric returns per-example scores (rows of split ``forget`` and ``holdout``, column
``member``) and one aggregate row (split ``forget_vs_holdout``, ``id = -1``, value = AUC).
Options: ``mia_k`` (0.4), ``mia_member_split`` ("forget"), ``batch_size``, ``mia_gradnorm_p`` (2).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from ..data import IGNORE, encode_pairs, row_ids
from ..models.layers import eval_mode
from ..scoring import _device, score_texts
from ..world.loaders import DataError
from .base import EvalContext, MissingInputError, get_metric, metric, option

option("mia_k", 0.4, "Min-K% / Min-K%++: fraction of lowest-scoring tokens averaged", low=0.0, high=1.0,
       low_open=True)
option("mia_member_split", "forget", "membership inference: the split whose rows are the members (vs the holdout)")
option("mia_max_length", 512, "membership inference on plain text: tokens of each text scored", low=2)
option("mia_gradnorm_p", 2, "mia_gradnorm: the norm (1, 2 or 'inf')", choices=(1, 2, "inf", float("inf")))

# -- pure functions -------------------------------------------------------------------------------


def _n_lowest(n: int, k: float) -> int:
    return max(1, int(n * k))


def min_k_score(token_logprobs, k: float = 0.4) -> float:
    """Min-K% Prob score: ``-mean`` of the lowest ``max(1, int(k·T))`` token log-probs (nats).

    >>> min_k_score([-0.1, -2.0, -0.5, -3.0, -0.2], k=0.4)  # 2 lowest: -3, -2 -> 2.5
    2.5
    """
    lp = np.asarray(token_logprobs, dtype=float)
    if lp.size == 0:
        return 0.0
    return float(-np.sort(lp)[: _n_lowest(lp.size, k)].mean())


def min_k_plus_plus_score(token_logprobs, mu, sigma, k: float = 0.4) -> float:
    """Min-K%++ score: ``-mean`` of the lowest ``max(1, int(k·T))`` of ``(log p - μ) / σ``."""
    lp = np.asarray(token_logprobs, dtype=float)
    if lp.size == 0:
        return 0.0
    z = (lp - np.asarray(mu, dtype=float)) / np.asarray(sigma, dtype=float)
    return float(-np.sort(z)[: _n_lowest(z.size, k)].mean())


def zlib_score(avg_loss: float, text: str) -> float:
    """ZLib score: mean loss divided by the zlib-compressed byte length of ``text``."""
    return float(avg_loss) / len(zlib.compress(text.encode("utf-8")))


def reference_score(avg_loss, ref_avg_loss):
    """Reference-model score: ``avg_loss(model) - avg_loss(reference)`` (element-wise)."""
    return np.asarray(avg_loss, dtype=float) - np.asarray(ref_avg_loss, dtype=float)


def mia_auc(member_scores, nonmember_scores) -> float:
    """ROC AUC with members labelled 0 and non-members 1 (OpenUnlearning orientation).

    Loss-like scores lower on members give AUC 1; ``mia_auc([0.1, 0.2], [0.8, 0.9]) == 1.0``.
    """

    m, h = np.asarray(member_scores, dtype=float), np.asarray(nonmember_scores, dtype=float)
    if len(m) == 0 or len(h) == 0:
        raise ValueError("mia_auc needs at least one member and one non-member score")
    labels = np.r_[np.zeros(len(m)), np.ones(len(h))]
    return float(roc_auc_score(labels, np.r_[m, h]))


# -- scoring --------------------------------------------------------------------------------------


def is_text_data(data) -> bool:
    cols = data.column_names
    return not ("question" in cols and "answer" in cols) and "text" in cols


def mia_stats(ctx: EvalContext, key: str, data) -> dict:
    """Per-example quantities every attack needs, cached in ``ctx`` under ``key``.

    Returns ``avg_loss`` ``(N,)`` (nats/token, EOS included on QA rows), ``tokens`` (list of
    per-token log-prob arrays, EOS dropped on QA rows), ``mu``/``sigma`` (per-token Min-K%++
    statistics, same shapes) and ``text`` (the scored text: the answer, or the whole text).
    """
    ck = ("mia", key)
    if ck in ctx.cache:
        return ctx.cache[ck]

    bs = ctx.opt("batch_size")
    mbt = ctx.opt("max_batch_tokens")
    if is_text_data(data):
        texts = list(data["text"])
        s = score_texts(ctx.model, ctx.tokenizer, texts, batch_size=bs, token_stats=True,
                        max_length=ctx.opt("mia_max_length"), max_batch_tokens=mbt)
        drop = 0
    else:
        texts = [a.strip() for a in data["answer"]]
        s = ctx.scores(key, data, "answer", token_stats=True)  # shared with probability: one forward per pair
        drop = 1 if ctx.tokenizer.eos_token_id is not None else 0

    def cut(v):
        return v[:-drop] if drop and len(v) > 1 else v

    out = {"avg_loss": s["mean_nll"], "tokens": [cut(v) for v in s["token_logprobs"]],
           "mu": [cut(v) for v in s["token_mu"]], "sigma": [cut(v) for v in s["token_sigma"]], "text": texts,
           "id": row_ids(data)}
    ctx.cache[ck] = out
    return out


ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def attack_scores(ctx: EvalContext, key: str, data, attack: str) -> np.ndarray:
    """Scores ``(N,)`` of one attack (``loss``, ``zlib``, ``min_k``, ``min_k_plus_plus``) on ``data``."""
    st = mia_stats(ctx, key, data)
    k = float(ctx.opt("mia_k"))
    if attack == "loss":
        return np.asarray(st["avg_loss"], dtype=float)
    if attack == "zlib":
        return np.array([zlib_score(a, t) for a, t in zip(st["avg_loss"], st["text"])])
    if attack == "min_k":
        return np.array([min_k_score(t, k) for t in st["tokens"]])
    if attack == "min_k_plus_plus":
        return np.array([min_k_plus_plus_score(t, m, s, k) for t, m, s in zip(st["tokens"], st["mu"], st["sigma"])])
    raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")


def _member_and_holdout(ctx: EvalContext, splits: dict, name: str):
    member = ctx.opt("mia_member_split")
    if member == "forget" and member not in splits:  # the default: the split whose role is forget
        member = ctx.split_of("forget") or member
    if member not in splits:
        raise DataError(f"metric {name!r} compares split {member!r} (option mia_member_split) with the holdout, "
                        f"but the data has only: {', '.join(splits)}")
    ctx.require("holdout", name)
    m = get_metric(name)
    m.check_fields(splits[member], member)
    m.check_fields(ctx.holdout, "holdout")
    return member, splits[member], ctx.holdout


def _table(member: str, mdata, mscores, hdata, hscores, extra: dict | None = None) -> pd.DataFrame:
    auc = mia_auc(mscores, hscores)
    rows = pd.concat([
        pd.DataFrame({"split": member, "id": row_ids(mdata), "value": mscores, "member": True}),
        pd.DataFrame({"split": "holdout", "id": row_ids(hdata), "value": hscores, "member": False}),
        pd.DataFrame([{"split": f"{member}_vs_holdout", "id": -1, "value": auc, "member": None, **(extra or {})}]),
    ], ignore_index=True)
    return rows


def reference_auc_split(ctx) -> str:
    return f"{ctx.opt('mia_member_split')}_vs_holdout"


def _attack_metric(attack: str):
    name = f"mia_{attack}"

    def fn(ctx, splits):
        member, mdata, hdata = _member_and_holdout(ctx, splits, name)
        return _table(member, mdata, attack_scores(ctx, member, mdata, attack),
                      hdata, attack_scores(ctx, "holdout", hdata, attack))

    fn.__name__ = name
    return fn


_COMMON = dict(suites=("mia",), per_example=False, needs=("holdout",), alt_fields=(("text",),),
               direction="AUC (forget vs holdout, OU orientation): 1 = forget rows still look like training data, "
                         "0.5 = indistinguishable (forgotten); per-example score: higher = looks less like a member")
_SOURCE = "OpenUnlearning src/evals/metrics/mia (spec B9)"

metric("mia_loss", formula="score = avg NLL per token (EOS incl.); AUC forget(0) vs holdout(1)",
       source=_SOURCE + "; Yeom et al. 2018", **_COMMON)(_attack_metric("loss"))
metric("mia_zlib", formula="score = avg NLL / len(zlib.compress(text)); AUC forget vs holdout",
       source=_SOURCE + "; Carlini et al. 2021", **_COMMON)(_attack_metric("zlib"))
metric("mia_min_k", formula="score = -mean(lowest 40% token log-probs, EOS dropped); AUC forget vs holdout",
       source=_SOURCE + "; Shi et al. 2024 (Min-K% Prob)", **_COMMON)(_attack_metric("min_k"))
metric("mia_min_k_plus_plus",
       formula="score = -mean(lowest 40% of (log p_t - mu_t)/sigma_t); AUC forget vs holdout",
       source=_SOURCE + "; Zhang et al. 2024 (Min-K%++)", **_COMMON)(_attack_metric("min_k_plus_plus"))


def _reference_losses(ctx: EvalContext, key: str, data) -> np.ndarray:
    ref = ctx.reference
    if isinstance(ref, pd.DataFrame):
        rows = ref[(ref.metric == "mia_loss") & (ref.split == key)]
        lookup = dict(zip(rows.id, rows.value))
        ids = row_ids(data)
        missing = [i for i in ids if i not in lookup]
        if missing:
            raise MissingInputError(f"metric 'mia_reference': the reference table has no 'mia_loss' rows of split "
                                    f"{key!r} for ids {missing[:5]}...; evaluate the retain model with 'mia_loss' "
                                    "first, or pass reference=(retain_model, tokenizer)")
        return np.array([lookup[i] for i in ids], dtype=float)
    rctx = _reference_context(ctx)
    return attack_scores(rctx, key, data, "loss")


def _reference_context(ctx: EvalContext) -> EvalContext:
    if "reference_ctx" not in ctx.cache:
        ref = ctx.reference
        if not (isinstance(ref, (tuple, list)) and len(ref) == 2):
            raise MissingInputError("the reference must be (retain_model, tokenizer) here, got "
                                    f"{type(ref).__name__}")
        ctx.cache["reference_ctx"] = EvalContext(ref[0], ref[1], options=ctx.options, fmt=ctx.fmt)
    return ctx.cache["reference_ctx"]


@metric("mia_reference", suites=("mia",), per_example=False, needs=("holdout", "retain_model"),
        alt_fields=(("text",),), direction=_COMMON["direction"],
        formula="score = avg NLL(model) - avg NLL(retain model); AUC forget vs holdout",
        source=_SOURCE + "; Carlini et al. 2022 (reference-model attack)")
def mia_reference(ctx, splits):
    member, mdata, hdata = _member_and_holdout(ctx, splits, "mia_reference")
    ms = reference_score(attack_scores(ctx, member, mdata, "loss"), _reference_losses(ctx, member, mdata))
    hs = reference_score(attack_scores(ctx, "holdout", hdata, "loss"), _reference_losses(ctx, "holdout", hdata))
    return _table(member, mdata, ms, hdata, hs)


# -- GradNorm -------------------------------------------------------------------------------------


def grad_norm_score(grads, p: float = 2.0) -> float:
    """GradNorm score: the mean over parameter tensors of ``‖g‖_p`` (``p`` in {1, 2, inf}).

    ``grads``: the per-tensor gradients of one example's mean loss (tensors or arrays of any
    shape). ``grad_norm_score([[3, 4], [0, 1]]) == (5 + 1) / 2 == 3.0``.
    """
    norms = [float(torch.linalg.vector_norm(torch.as_tensor(g, dtype=torch.float64).reshape(-1), ord=p))
             for g in grads]
    if not norms:
        raise ValueError("grad_norm_score: no gradients (no parameter takes part in the loss)")
    return float(np.mean(norms))


def _gradnorm_p(ctx) -> float:
    p = ctx.opt("mia_gradnorm_p")
    p = float("inf") if str(p).lower() in ("inf", "infinity") else float(p)
    if p not in (1.0, 2.0, float("inf")):
        raise ValueError(f"option mia_gradnorm_p must be 1, 2 or 'inf', got {ctx.opt('mia_gradnorm_p')!r}")
    return p


def gradnorm_scores(ctx: EvalContext, key: str, data) -> np.ndarray:
    """GradNorm scores ``(N,)`` of ``data``: one forward + backward per example (batch size 1).

    The loss is the example's mean NLL over the tokens the other attacks score (answer + EOS on QA
    rows, every token after the first on plain text). Gradients are taken w.r.t. the parameters
    that require grad (all floating-point parameters when none does, e.g. a frozen model); the
    model's ``.grad`` fields and ``requires_grad`` flags are restored afterwards, so calling it
    never disturbs a training state (it is still slow: one backward per row).
    """
    ck = ("mia_gradnorm", key, _gradnorm_p(ctx))
    if ck in ctx.cache:
        return ctx.cache[ck]

    model, tok, p = ctx.model, ctx.tokenizer, _gradnorm_p(ctx)
    if is_text_data(data):
        max_len = ctx.opt("mia_max_length")
        encs = []
        for t in data["text"]:
            ids = torch.tensor([tok(t, add_special_tokens=True)["input_ids"][:max_len]])
            encs.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    else:
        encs = [encode_pairs(tok, [q], [a], fmt=ctx.fmt) for q, a in zip(data["question"], data["answer"])]
    params = [q for q in model.parameters() if q.requires_grad]
    enabled = []
    if not params:
        enabled = [q for q in model.parameters() if q.is_floating_point()]
        for q in enabled:
            q.requires_grad_(True)
        params = enabled
    saved = [q.grad for q in params]
    dev = _device(model)
    scores = []
    try:
        with eval_mode(model):
            for enc in encs:
                for q in params:
                    q.grad = None
                with torch.enable_grad():
                    out = model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev))
                    logits = out.logits[:, :-1].float()
                    labels = enc["labels"][:, 1:].to(dev)
                    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                             ignore_index=IGNORE)
                    loss.backward()
                scores.append(grad_norm_score([q.grad for q in params if q.grad is not None], p))
    finally:
        for q, g in zip(params, saved):
            q.grad = g
        for q in enabled:
            q.requires_grad_(False)
    ctx.cache[ck] = np.asarray(scores)
    return ctx.cache[ck]


@metric("mia_gradnorm", formula="score = mean over parameter tensors of ||grad avg NLL||_p (p=2); AUC forget vs holdout",
        source=_SOURCE + " (gradnorm attack)", **_COMMON)
def mia_gradnorm(ctx, splits):
    """GradNorm attack (slow: one backward per row). Option ``mia_gradnorm_p`` (1, 2 or 'inf')."""
    member, mdata, hdata = _member_and_holdout(ctx, splits, "mia_gradnorm")
    return _table(member, mdata, gradnorm_scores(ctx, member, mdata), hdata, gradnorm_scores(ctx, "holdout", hdata),
                  extra={"p": _gradnorm_p(ctx)})
