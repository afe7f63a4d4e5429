"""Memorization-aware unlearning (Barbulescu & Triantafillou, ICML 2024; spec A15, A16): SGA, TA, TAU.

All three score every forget sequence's memorization accuracy (MA, :mod:`unlearnkit.memorization`)
before the first step (``setup`` hook) and again after every *epoch* (each time the loop has drawn
as many forget items as the forget set holds; ``rescore_every`` > 0 re-scores every k steps
instead). The per-run store lives in ``ctx.state``:

* ``ma``: the latest per-sequence MA ``(N,)``; ``ma_history``: ``[(step, ma array)]`` at each scoring;
* ``updates``: how many steps each forget row received a gradient ``(N,)`` (SGA's selectivity);
* ``phase`` ("ascent" / "descent"), ``theta_s`` (TA/TAU snapshot), ``edited_ma`` history (TA/TAU).

**Stopping.** When a scoring shows the stop criterion, the weights *at that moment* are kept (a
snapshot), ``ctx.state["stop"]`` ends the loop, and the ``finish`` hook puts those weights back, so
the one update the loop still applies after the objective asked to stop does not count. Forget data
must carry ``question``/``answer`` (the world's records do; ``ctx.raw["forget"]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..editing.task_vectors import apply_task_vector, snapshot
from ..memorization import per_sequence_ma
from .base import Param, Requirements, forward, nll, objective

_COMMON = {
    "ma_threshold": Param(0.33, "stop when the forget set's mean MA (TA/TAU: the edited model's) is below this "
                          "(the paper's 0.33 for GPT-Neo 2.7B; set it to the unseen-data MA of your model)",
                          low=0.0, high=1.0),
    "rescore_every": Param(0, "re-score every forget sequence's MA every k steps (0: once per epoch, i.e. after "
                           "as many forget items as the forget set holds, as the paper)", low=0),
}

SGA_PARAMS = {
    "mem_threshold": Param(0.70, "SGA: a batch item gets gradient ascent only while its MA >= this (the most "
                           "memorized item of each batch always does)", low=0.0, high=1.0),
    **_COMMON,
}

TA_PARAMS = {
    "mem_threshold": Param(0.0, "phase 1 selection threshold (0: plain GA, TA; 0.70: SGA, TAU)", low=0.0, high=1.0),
    "first_threshold": Param(0.9, "switch from phase 1 (ascent) to fine-tuning once the forget mean MA is below "
                             "this (TA 0.9, TAU 0.5)", low=0.0, high=1.0),
    "c": Param(-3.0, "edit coefficient: theta_s + c (theta_t - theta_s); c < 0 negates the forget-set fine-tuning "
               "(TA -3, TAU -1; 0 returns the snapshot theta_s)", high=0.0),
    **_COMMON,
}


def _score(model, ctx, step: int):
    ma = per_sequence_ma(model, ctx.tokenizer, ctx.raw["forget"])
    ctx.state["ma"] = ma
    ctx.state.setdefault("ma_history", []).append((step, ma.copy()))
    ctx.state["seen"] = 0
    return ma


def _setup(model, ctx):
    n = len(ctx.raw["forget"])
    if n == 0:
        raise ValueError("forget set is empty: SGA/TA/TAU need >= 1 sequence")
    ctx.state["updates"] = np.zeros(n, dtype=int)
    ctx.state["phase"] = "ascent"
    _score(model, ctx, 0)


def _due(ctx, n_items: int) -> bool:
    every = ctx.hp.get("rescore_every", 0)
    if every:
        return ctx.step > 0 and ctx.step % every == 0
    return ctx.state.get("seen", 0) >= n_items


def _stop(model, ctx, reason: str):
    ctx.state["stop"] = reason
    ctx.state["stop_weights"] = snapshot(model)


def _selective_ascent(model, f, ctx, threshold: float):
    """GA (HF token mean) on the batch items whose MA >= threshold, plus the batch's most memorized."""
    idx = f["index"].cpu().numpy()
    mem = ctx.state["ma"][idx]
    keep = mem >= threshold
    keep[int(np.argmax(mem))] = True
    ctx.state["updates"][idx[keep]] += 1
    sel = torch.as_tensor(np.nonzero(keep)[0], device=f["input_ids"].device)
    part = {k: v[sel] for k, v in f.items() if k != "prompt_len"}
    loss = -nll(forward(model, part).logits, part["labels"])
    return loss, int(keep.sum())


def _frozen(model, f):
    """A zero loss with a graph (the step after a stop request must not move the weights we keep)."""
    return 0.0 * nll(forward(model, f).logits, f["labels"])


@objective("sga", family="memorization",
           formula="L = -NLL over batch items with MA(x) >= mem_threshold (and the batch's max-MA item); "
                   "re-score MA every epoch; stop when mean_forget MA < ma_threshold",
           source="Barbulescu & Triantafillou 2024 (To Each (Textual Sequence) Its Own), gpt_neo_pl.py ufl",
           params=SGA_PARAMS, requires=Requirements(("forget",)), setup=_setup,
           finish=lambda model, ctx: _restore(model, ctx))
def sga(model, batch, ctx):
    """Selective gradient ascent: only the still-memorized sequences are pushed down.

    Formula: ``L = -NLL(x_k)`` (HF token mean over the kept items' record tokens + EOS), kept
    ``k = {i in batch : MA(x_i) >= mem_threshold} ∪ {argmax_i MA(x_i)}``. MA per sequence is scored
    before step 1 and re-scored every epoch; training stops (weights of that scoring kept) once the
    forget set's mean MA < ``ma_threshold``. Defaults: the paper's (0.70, 0.33). Shapes: forget part
    ``(B, L)``. Parts logged: ``forget`` (the loss), ``kept`` (items updated this step), ``mean_ma``
    (latest scoring). ``ctx.state["updates"]`` counts each sequence's updates.
    """
    f = batch["forget"]
    n = len(ctx.raw["forget"])
    if ctx.state.get("stop"):
        return _frozen(model, f), {"forget": 0.0, "kept": 0.0, "mean_ma": float(ctx.state["ma"].mean())}
    if _due(ctx, n):
        _score(model, ctx, ctx.step)
    if ctx.state["ma"].mean() < ctx.hp["ma_threshold"]:
        _stop(model, ctx, f"forget mean MA {ctx.state['ma'].mean():.3f} < ma_threshold={ctx.hp['ma_threshold']} "
                          f"at step {ctx.step}")
        return _frozen(model, f), {"forget": 0.0, "kept": 0.0, "mean_ma": float(ctx.state["ma"].mean())}
    loss, k = _selective_ascent(model, f, ctx, ctx.hp["mem_threshold"])
    ctx.state["seen"] = ctx.state.get("seen", 0) + len(f["index"])
    return loss, {"forget": float(loss.detach()), "kept": float(k), "mean_ma": float(ctx.state["ma"].mean())}


def _restore(model, ctx):
    w = ctx.state.get("stop_weights")
    if w is not None:
        apply_task_vector(model, w, 0.0)
    elif ctx.state.get("ma_history") and ctx.state["ma_history"][-1][0] != ctx.step + 1:
        _score(model, ctx, ctx.step + 1)  # the returned weights' MA closes the history
    _keep_state(ctx)


#: the per-run store of the most recent SGA/TA/TAU run (``ctx.state`` without weights), until the loop
#: returns ``ctx.state`` itself; read it with :func:`last_run` / :func:`ma_history`.
_LAST: dict = {}


def _keep_state(ctx):
    _LAST.clear()
    _LAST.update({k: v for k, v in ctx.state.items() if k not in ("theta_s", "stop_weights")})
    _LAST["ids"] = list(ctx.raw["forget"]["id"]) if "id" in ctx.raw["forget"].column_names \
        else list(range(len(ctx.raw["forget"])))


def last_run() -> dict:
    """The store of the most recent ``sga`` / ``task_arithmetic`` / ``tau`` run: ``ma_history``,
    ``edited_ma``, ``updates`` (per forget row), ``phase``, ``switch_step``, ``stop``, ``ids``."""
    if not _LAST:
        raise RuntimeError("no sga / task_arithmetic / tau run has finished in this session")
    return dict(_LAST)


def ma_history(state: dict | None = None) -> pd.DataFrame:
    """Each forget sequence's MA at every scoring of a run, tidy: ``step``, ``id``, ``value``, ``model``
    ("training" weights; "edited" for TA/TAU's theta_s + c (theta_t - theta_s) at validations)."""
    st = last_run() if state is None else state
    ids = st["ids"]
    rows = [{"step": s, "id": i, "value": float(v), "model": "training"}
            for s, ma in st.get("ma_history", []) for i, v in zip(ids, ma)]
    rows += [{"step": s, "id": i, "value": float(v), "model": "edited"}
             for s, ma in st.get("edited_ma", []) for i, v in zip(ids, ma)]
    return pd.DataFrame(rows, columns=["step", "id", "value", "model"])


@torch.no_grad()
def _edited_ma(model, ctx) -> np.ndarray:
    """Per-sequence MA of the edited model theta_s + c (theta_t - theta_s); the training weights are restored."""
    cur = snapshot(model)
    apply_task_vector(model, ctx.state["theta_s"], ctx.hp["c"])
    try:
        ma = per_sequence_ma(model, ctx.tokenizer, ctx.raw["forget"])
    finally:
        apply_task_vector(model, cur, 0.0)
    ctx.state.setdefault("edited_ma", []).append((ctx.step, ma.copy()))
    return ma


def _ta_finish(model, ctx):
    if ctx.state.get("stop_weights") is not None:  # stopped: the edited weights of that validation
        apply_task_vector(model, ctx.state["stop_weights"], 0.0)
    elif ctx.state.get("theta_s") is not None:  # ran out of steps in phase 2: the edit of the last weights
        apply_task_vector(model, ctx.state["theta_s"], ctx.hp["c"])
        ma = per_sequence_ma(model, ctx.tokenizer, ctx.raw["forget"])
        ctx.state.setdefault("edited_ma", []).append((ctx.step + 1, ma))
    else:  # ran out of steps in phase 1: the ascent model
        _score(model, ctx, ctx.step + 1)
    _keep_state(ctx)


def _task_arithmetic(model, batch, ctx):
    f = batch["forget"]
    n = len(ctx.raw["forget"])
    hp = ctx.hp
    logs = {}
    if ctx.state.get("stop"):
        return _frozen(model, f), {"forget": 0.0}
    if _due(ctx, n):
        if ctx.state["phase"] == "ascent":
            _score(model, ctx, ctx.step)
        else:
            ctx.state["seen"] = 0
            ma = _edited_ma(model, ctx)
            logs["edited_ma"] = float(ma.mean())
            if ma.mean() < hp["ma_threshold"]:
                cur = snapshot(model)
                apply_task_vector(model, ctx.state["theta_s"], hp["c"])
                _stop(model, ctx, f"edited model's forget mean MA {ma.mean():.3f} < ma_threshold={hp['ma_threshold']} "
                                  f"at step {ctx.step}")
                apply_task_vector(model, cur, 0.0)
                return _frozen(model, f), {"forget": 0.0, **logs}
    if ctx.state["phase"] == "ascent" and ctx.state["ma"].mean() < hp["first_threshold"]:
        ctx.state["phase"] = "descent"
        ctx.state["switch_step"] = ctx.step
        ctx.state["theta_s"] = snapshot(model)
        ctx.state["seen"] = 0
    if ctx.state["phase"] == "ascent":
        loss, k = _selective_ascent(model, f, ctx, hp["mem_threshold"])
        logs.update(kept=float(k), phase=0.0)
    else:
        loss = nll(forward(model, f).logits, f["labels"])
        ctx.state["updates"][f["index"].cpu().numpy()] += 1
        logs.update(phase=1.0)
    ctx.state["seen"] = ctx.state.get("seen", 0) + len(f["index"])
    return loss, {"forget": float(loss.detach()), "mean_ma": float(ctx.state["ma"].mean()), **logs}


_TA_DOC = """Task arithmetic for unlearning: negate what re-learning the forget set adds.

Phase 1: selective gradient ascent (``mem_threshold``; 0 = plain GA) until the forget mean MA <
``first_threshold``. Then snapshot ``theta_s`` and *fine-tune* (+NLL, HF token mean) on the forget
set; at every validation (each epoch) evaluate ``theta_edit = theta_s + c (theta_t - theta_s)`` with
``c <= 0`` (weights restored afterwards) and stop once the edited model's mean MA < ``ma_threshold``.
The returned model is ``theta_edit`` (at the stopping validation, or of the last weights if the steps
run out in phase 2; if they run out in phase 1 it is the phase-1 model). Parts logged: ``forget``,
``mean_ma``, ``phase`` (0 ascent, 1 fine-tuning), ``kept``, ``edited_ma`` (at validations).
"""


def task_arithmetic(model, batch, ctx):
    return _task_arithmetic(model, batch, ctx)


task_arithmetic.__doc__ = _TA_DOC + "\nTA defaults: mem_threshold 0 (GA), first_threshold 0.9, c -3, ma_threshold 0.33."
objective("task_arithmetic", family="memorization",
          formula="GA until mean MA < first_threshold; snapshot theta_s; fine-tune (+NLL) on forget; "
                  "theta_edit = theta_s + c (theta_t - theta_s); stop when MA(theta_edit) < ma_threshold",
          source="Barbulescu & Triantafillou 2024, gpt_neo_av.py privacy_method=air (TA)",
          params=TA_PARAMS, requires=Requirements(("forget",)), setup=_setup, finish=_ta_finish)(task_arithmetic)

TAU_PARAMS = {**TA_PARAMS,
              "mem_threshold": Param(0.70, TA_PARAMS["mem_threshold"].doc, low=0.0, high=1.0),
              "first_threshold": Param(0.5, TA_PARAMS["first_threshold"].doc, low=0.0, high=1.0),
              "c": Param(-1.0, TA_PARAMS["c"].doc, high=0.0)}


def tau(model, batch, ctx):
    return _task_arithmetic(model, batch, ctx)


tau.__doc__ = _TA_DOC + "\nTAU = TA after SGA. Defaults: mem_threshold 0.70 (SGA), first_threshold 0.5, c -1."
objective("tau", family="memorization",
          formula="SGA until mean MA < first_threshold; snapshot theta_s; fine-tune (+NLL) on forget; "
                  "theta_edit = theta_s + c (theta_t - theta_s); stop when MA(theta_edit) < ma_threshold",
          source="Barbulescu & Triantafillou 2024, gpt_neo_av.py privacy_method=air with SGA (TAU)",
          params=TAU_PARAMS, requires=Requirements(("forget",)), setup=_setup, finish=_ta_finish)(tau)
