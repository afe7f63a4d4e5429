"""Per-token and per-sequence losses on a causal LM's logits, shared by objectives and metrics.

Shapes: ``logits (B, L, V)``, ``labels (B, L)`` with :data:`unlearnkit.data.IGNORE` outside the
tokens that count (answer tokens + EOS). Log-probabilities are natural (nats). Everything here is
a pure function of tensors: no registry, no model state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import IGNORE


def forward(model, part: dict[str, torch.Tensor], hidden: bool = False):
    """Run the model on a batch part; returns the HF output (``.logits`` is ``(B, L, V)``)."""
    return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], output_hidden_states=hidden)


def shift(logits: torch.Tensor, labels: torch.Tensor):
    """Align logits with the tokens they predict: ``logits[:, :-1]`` vs ``labels[:, 1:]``.

    Returns ``(logits (B, L-1, V), targets (B, L-1) with IGNORE replaced by 0, mask (B, L-1) bool)``.
    """
    lg = logits[:, :-1]
    lb = labels[:, 1:]
    mask = lb != IGNORE
    return lg, lb.clamp_min(0), mask


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor):
    """Log-prob of each label token: ``(B, L-1)`` (0 where masked) and the mask ``(B, L-1)``."""
    lg, tgt, mask = shift(logits, labels)
    lp = torch.log_softmax(lg.float(), -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return lp * mask, mask


def seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x)`` summed over answer tokens: ``(B,)``."""
    lp, _ = token_logprobs(logits, labels)
    return lp.sum(-1)


def seq_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean NLL over answer tokens: ``(B,)`` (nats per token)."""
    lp, mask = token_logprobs(logits, labels)
    return -lp.sum(-1) / mask.sum(-1).clamp_min(1)


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HF-style NLL: global mean over every answer token in the batch (scalar)."""
    lg, tgt, mask = shift(logits, labels)
    return F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE)


def reduce(per_token: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce ``(B, T)`` per-token values over ``mask`` as ``token_mean_global``, ``seq_mean`` or ``seq_sum``."""
    per_token = per_token * mask
    if reduction == "token_mean_global":
        return per_token.sum() / mask.sum().clamp_min(1)
    if reduction == "seq_mean":
        return (per_token.sum(-1) / mask.sum(-1).clamp_min(1)).mean()
    if reduction == "seq_sum":
        return per_token.sum(-1).mean()
    raise ValueError(f"unknown reduction {reduction!r}; valid: token_mean_global, seq_mean, seq_sum")


def kl_ref_to_model(logits: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(pi_ref || pi_theta)`` per position, averaged over ``mask`` (all positions if None).

    ``logits``/``ref_logprobs``: ``(B, L, V)``. With ``mask=None`` this is the anchors'
    (OpenUnlearning/TOFU) "batchmean over B*L" form, padding included; pass the attention or answer
    mask ``(B, L)`` for the masked variant.
    """
    logp = torch.log_softmax(logits.float(), -1)
    kl = (ref_logprobs.exp() * (ref_logprobs - logp)).sum(-1)
    if mask is None:
        return kl.mean()
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def npo_forget_loss(logratio: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's forget term ``-(2/beta) * mean_batch log sigmoid(-beta * logratio)``.

    ``logratio``: ``(B,)`` ``log pi_theta(y|x) - log pi_ref(y|x)`` (sequence sums). Its gradient is
    a GA gradient reweighted by ``2 * sigmoid(beta * logratio)``: as beta -> 0 it becomes GA on the
    summed log-prob; once the forget answer is much less likely than under the reference, it fades.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * logratio).mean()


def preference_loss(margin: torch.Tensor, beta: float, scale: float = 2.0) -> torch.Tensor:
    """DPO-style ``-(scale/beta) * mean_batch log sigmoid(beta * margin)`` for a ``(B,)`` margin
    (preferred minus dispreferred log-ratio). ``scale=2`` for DPO/IdkDPO/NPO, ``1`` for [CL]'s AP."""
    return -(scale / beta) * F.logsigmoid(beta * margin).mean()


def position_mask(part: dict[str, torch.Tensor], mode: str = "answer", length: int | None = None):
    """Which shifted positions enter a per-position loss, and the token each one predicts.

    Returns ``(mask (B, L-1) bool, targets (B, L-1) long)`` aligned with ``logits[:, :-1]``.
    ``mode``: ``"answer"``: positions predicting an answer token or the EOS (labels != IGNORE);
    ``"attended"``: positions predicting any attended token (question and answer, no padding),
    target = the next input token; ``"all"``: every position of the padded batch, padding included,
    target = the next input token (what [CL]'s ``mask=false`` ME and OpenUnlearning's UNDIAL average
    over; the latter's ``-100`` one-hot wrap-around is *not* reproduced).
    """
    ids, labels = part["input_ids"], part["labels"]
    if mode == "answer":
        lb = labels[:, 1:]
        return lb != IGNORE, lb.clamp_min(0)
    nxt = ids[:, 1:]
    if mode == "attended":
        return part["attention_mask"][:, 1:].bool(), nxt
    if mode == "all":
        return torch.ones_like(nxt, dtype=torch.bool), nxt
    raise ValueError(f"unknown position mode {mode!r}; valid: answer, attended, all")
