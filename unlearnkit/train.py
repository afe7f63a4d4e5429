"""The unlearning loop: any registered objective, full fine-tuning or LoRA, on ``accelerate``.

``unlearn(model, tokenizer, forget, retain, method="ga", steps=30)`` trains a *new* model object
(the one passed in is never modified, in memory or on disk) and records **probes** every
``probe_every`` steps on a fixed probe set: where the target answer's probability mass went.

Scaling: the loop uses :class:`accelerate.Accelerator`; run the same script with
``accelerate launch`` (DDP / FSDP / DeepSpeed configs) and batches are sharded across processes
with no code change. Probes are recorded on the main process.
"""

from __future__ import annotations

import atexit
import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm

from .data import DEFAULT_FORMAT, PromptFormat, encode_pairs, select
from .idk import load_idk
from .io import atomic_dir, atomic_write_json, run_manifest
from .models.loading import is_lora, save_model, wrap_lora
from .objectives import AdapterReference, CachedReference, ObjectiveContext, get_objective, list_objectives
from .probes import SQUEEZE_RISE, ProbeRecorder
from .registry import Param, Registry, UnknownNameError, resolve_params
from .validate import check_destination, check_qa, check_vocab, context_length, unknown_names, warn_long

#: hyperparameters of the loop itself (the objective's come from its registry entry)
LOOP_PARAMS = {
    "steps": Param(20, "optimizer steps", low=1),
    "lr": Param(1e-4, "learning rate (AdamW)", low=0.0, low_open=True),
    "batch_size": Param(8, "forget examples per step (per process)", low=1),
    "retain_batch_size": Param(8, "retain examples per step", low=1),
    "weight_decay": Param(0.01, "AdamW weight decay", low=0.0),
    "warmup_steps": Param(0, "linear warm-up steps", low=0),
    "max_grad_norm": Param(1.0, "gradient clipping norm (0 disables)", low=0.0),
    "probe_every": Param(1, "record probes every k steps (0 disables)", low=0),
    "probe_size": Param(8, "forget examples in the probe set (retain probes: the same number)", low=1),
    "max_new_tokens": Param(48, "generation length of the probes' greedy answers (tokens)", low=1),
    "retain_probes": Param(True, "also probe retain rows (False: forget probes only, about half the probe time)"),
    "token_probes": Param(True, "also record token-level probes (top-k next tokens, greedy-answer entropies)"),
    "keep": Param("last", "which weights res.model holds: 'last' (the final step), 'best' (the probed step "
                  "with the largest mean retain minus mean forget target mass), or 'first_forgotten' (stop at the "
                  "first probed step whose mean forget target mass is <= forget_threshold)",
                  choices=("last", "best", "first_forgotten")),
    "forget_threshold": Param(0.1, "keep='first_forgotten': mean forget target mass (sequence probability) "
                              "that counts as forgotten", low=0.0, high=1.0),
    "reference_cache_gb": Param(4.0, "largest cached reference (GiB) built before training for objectives that "
                                "need reference token log-probs (KL, UNDIAL: N x L x vocabulary floats); larger "
                                "raises before training (use lora=True: a live reference, no cache)", low=0.0,
                                low_open=True),
    "mixed_precision": Param("no", "accelerate's mixed precision: 'bf16' or 'fp16' on GPUs ('no' on CPUs)",
                             choices=("no", "bf16", "fp16")),
    "gradient_checkpointing": Param(False, "recompute activations in the backward pass (less memory, ~30% "
                                    "more compute; for big models on GPUs)"),
    "seed": Param(0, "seed for data order, sampling and initialisation (an integer)", low=0),
    "guard_weights": Param(True, "keep a copy of the trainable weights before each update, so an update that makes "
                           "them NaN/inf is undone (False saves that copy; the loss and the gradient norm are "
                           "checked either way)"),
}

class DivergedError(RuntimeError):
    """The loss or the gradient became NaN/inf."""


@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns.

    ``model``: the unlearned model (a new object). ``probes``: tidy trajectory, one row per
    (step, split, id, quantity) with ``value`` (sequence probability of that answer, i.e. its
    probability *mass*, summed over the answers of that kind, e.g. all perturbed answers; or mean
    predictive entropy in nats for ``quantity == "entropy"``),
    ``prob_norm`` (length-normalized probability, TOFU's), ``text`` (the greedy answer for
    ``belief`` rows). ``token_probes``: the token-level view on forget probes (see
    :func:`token_probe`), recorded at the same steps. ``log``: loss parts per step. ``stopped``:
    why training stopped early (None if it ran all steps). ``kept_step``: the step whose weights
    ``model`` holds (the last one unless the ``keep`` policy chose another).
    """

    model: object
    tokenizer: object
    method: str
    hparams: dict
    probes: pd.DataFrame
    log: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    stopped: str | None = None
    token_probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    kept_step: int | None = None
    #: the objective's per-run state (``ctx.state``), e.g. SGA's per-sequence MA history; not saved
    state: dict = field(default_factory=dict, repr=False)

    def summary(self) -> pd.DataFrame:
        """Mean probe values per (step, split, quantity): the trajectory at a glance."""
        return self.probes.groupby(["step", "split", "quantity"], as_index=False)["value"].mean()

    def squeeze_summary(self, split: str = "forget") -> pd.DataFrame:
        """Per answer kind: mean mass at the start, its peak (and step), and at the end.

        The squeezing effect reads off this table: the target's mass falls while a paraphrase or
        the model's other beliefs *gain* mass (peak > start) before everything collapses.
        """
        s = self.summary()
        s = s[(s.split == split) & (s.quantity != "entropy")]
        rows = []
        for q, g in s.groupby("quantity", sort=False):
            g = g.sort_values("step")
            peak = g.loc[g.value.idxmax()]
            rows.append({"quantity": q, "start": g.value.iloc[0], "peak": peak.value, "peak_step": int(peak.step),
                         "end": g.value.iloc[-1]})
        return pd.DataFrame(rows).set_index("quantity")

    def squeeze_story(self, split: str = "forget") -> str:
        """Two sentences read off :meth:`squeeze_summary`: how far the target answer's mass fell, and
        whether its paraphrase gained at least :data:`~unlearnkit.probes.SQUEEZE_RISE` on the way
        (the mass squeezed into an answer that still states the fact)."""
        sq = self.squeeze_summary(split)
        t, p = sq.loc["target"], sq.loc["paraphrase"]
        story = f"The target answer's mass fell from {t.start:.3f} to {t.end:.4f} by step {int(self.probes.step.max())}. "
        if p.peak >= p.start + SQUEEZE_RISE:
            return story + (f"Meanwhile the paraphrase rose from {p.start:.3f} to {p.peak:.3f} (peak at step "
                            f"{int(p.peak_step)}): the mass was squeezed into an answer that still states the fact.")
        return story + (f"The paraphrase went from {p.start:.3f} to {p.end:.3f} (peak {p.peak:.3f}): no squeeze into "
                        f"it in this run (a rise of {SQUEEZE_RISE} or more would count).")

    def save(self, path: str | Path, overwrite: bool = False, merge_lora: bool = False) -> Path:
        """Write model, tokenizer, probes.csv, log.csv and run.json to a new folder, atomically.

        A LoRA result is saved as its adapter with the base model's path recorded (``run.json``
        ``manifest.base_model``; ``load_model(path)`` loads base + adapter), or with
        ``merge_lora=True`` as a full model with the adapter merged in (reloads with no base).
        """
        check_destination(path, overwrite, what="path")
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_model(self.model, tmp, merge_lora=merge_lora)
            self.tokenizer.save_pretrained(tmp)
            self.probes.to_csv(tmp / "probes.csv", index=False)
            self.token_probes.to_csv(tmp / "token_probes.csv", index=False)
            self.log.to_csv(tmp / "log.csv", index=False)
            atomic_write_json(tmp / "run.json", {"method": self.method, "hparams": self.hparams,
                                                 "stopped": self.stopped, "kept_step": self.kept_step,
                                                 "lora": is_lora(self.model) and not merge_lora,
                                                 "manifest": self.manifest})
        return Path(path)

    def __repr__(self) -> str:
        last = self.log.iloc[-1] if len(self.log) else None
        tail = f", final loss {last['loss']:.4g}" if last is not None else ""
        stop = f", stopped: {self.stopped}" if self.stopped else ""
        kept = f", kept step {self.kept_step}" if self.kept_step is not None and self.kept_step != len(self.log) else ""
        return (f"UnlearnResult(method={self.method!r}, steps={len(self.log)}{tail}, probes={len(self.probes)} rows"
                f"{kept}{stop})")


# -- data -----------------------------------------------------------------------------------------

def _encode_split(tokenizer, data, answers=None, fmt=DEFAULT_FORMAT, max_length=None):
    answers = list(data["answer"]) if answers is None else answers
    enc = encode_pairs(tokenizer, data["question"], answers, fmt=fmt, max_length=max_length)
    enc["index"] = torch.arange(len(answers))
    return enc


def _idk_answers(n: int, bank: list[str], seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [bank[i] for i in rng.integers(0, len(bank), size=n)]


def encode_parts(tokenizer, forget, retain, parts, *, idk=None, seed: int = 0, preferred_field: str = "perturbed_answer",
                 fmt: PromptFormat = DEFAULT_FORMAT, max_length: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Encode, once, every batch part an objective asks for (see ``objectives.base.PARTS``).

    ``forget_idk`` / ``retain_idk`` pair each question with a refusal drawn (seeded) from the bank
    ``idk``; ``forget_alt`` with the first entry of ``forget[preferred_field]``. Each part holds
    ``input_ids``/``attention_mask``/``labels`` ``(N, L)`` and ``index`` ``(N,)``; ``max_length``
    truncates rows longer than that many tokens (the answer's end).
    """
    data = {"forget": _encode_split(tokenizer, forget, fmt=fmt, max_length=max_length)}
    if "retain" in parts or "retain_idk" in parts:
        data["retain"] = _encode_split(tokenizer, retain, fmt=fmt, max_length=max_length)
    if "forget_idk" in parts or "retain_idk" in parts:
        bank = load_idk(idk)
        if "forget_idk" in parts:
            data["forget_idk"] = _encode_split(tokenizer, forget, _idk_answers(len(forget), bank, seed), fmt, max_length)
        if "retain_idk" in parts:
            data["retain_idk"] = _encode_split(tokenizer, retain, _idk_answers(len(retain), bank, seed + 1), fmt,
                                               max_length)
    if "forget_alt" in parts:  # a preferred alternative answer per forget row (plain DPO)
        check_qa("forget", forget, ("question", preferred_field))
        alts = [a[0] if isinstance(a, list) else a for a in forget[preferred_field]]
        data["forget_alt"] = _encode_split(tokenizer, forget, alts, fmt, max_length)
    return data


# methods that are not losses for this loop, and where they live
_NOT_OBJECTIVES = {
    "unierase": "an edit, not a loss: unlearnkit.editing.unierase(model, tok, forget, retain, ...)",
    "alphaedit": "an edit, not a loss: unlearnkit.editing.apply_alphaedit(model, tok, requests, state, ...)",
    "uipe": "an extrapolation around any objective: unlearnkit.editing.unlearn_uipe(model, tok, forget, retain, "
            "method='ga', alpha=0.3, ...)",
}


def _objective(method: str):
    """The registered objective ``method``; UniErase, AlphaEdit and UIPE get an error naming their function."""
    key = Registry.key(method) if isinstance(method, str) else method
    if key in _NOT_OBJECTIVES:
        raise UnknownNameError(f"{method!r} is {_NOT_OBJECTIVES[key]}; unlearn(method=...) takes the objectives "
                               f"{', '.join(list_objectives())}")
    return get_objective(method)


def check_params(method: str = "ga", **hparams) -> dict:
    """Validate a method name and loop + objective hyperparameters without any data or model; returns
    them resolved (defaults filled, ``"30"`` -> 30). For notebook parameter cells and sweeps: a
    misspelt name gets a did-you-mean over both namespaces, a bad value its valid range."""
    obj = _objective(method)
    unknown_names(f"unlearn with objective {obj.name!r}", hparams,
                  {f"objective {obj.name!r}": list(obj.params), "loop": list(LOOP_PARAMS)})
    loop_hp = resolve_params("unlearn", LOOP_PARAMS, {k: v for k, v in hparams.items() if k in LOOP_PARAMS})
    return {"method": obj.name, **loop_hp, **obj.resolve(**{k: v for k, v in hparams.items() if k not in LOOP_PARAMS})}


def _resolve(model, tokenizer, method: str, hparams: dict, splits: dict, fmt):
    """Validate everything before any work: the objective, both parameter sets (one namespace for
    the did-you-mean), the data (converted to Datasets; fields, ids), the vocabulary, the batch
    sizes and the rows' lengths against the model's context (too long: truncated, with a warning)."""
    obj = _objective(method)
    hp = check_params(method, **hparams)
    loop_hp, obj_hp = {k: hp[k] for k in LOOP_PARAMS}, {k: hp[k] for k in obj.params}
    req = obj.requirements(obj_hp)
    if ("retain" in req.parts or "retain_idk" in req.parts) and splits["retain"] is None:
        raise ValueError(f"objective {method!r} needs retain data (alpha={obj_hp.get('alpha')}); pass retain=... "
                         "or set alpha=0 where the objective allows it")
    for name in ("forget", "retain", "probe", "retain_probe"):
        splits[name] = check_qa(name, splits[name])
    check_vocab(model, tokenizer)
    if splits["retain"] is not None and loop_hp["retain_batch_size"] > len(splits["retain"]):
        warnings.warn(f"retain_batch_size={loop_hp['retain_batch_size']} > the {len(splits['retain'])} retain rows: "
                      f"clamped to {len(splits['retain'])}", UserWarning, stacklevel=3)
        loop_hp["retain_batch_size"] = len(splits["retain"])
    limit = context_length(model)
    for name in ("forget", "retain"):
        warn_long(name, splits[name], tokenizer, limit, fmt, "their answers are truncated to fit (training)")
    return obj, loop_hp, obj_hp, req, limit


def _probe_sets(forget, retain, probe_data, retain_probe_data, loop_hp):
    size = loop_hp["probe_size"]
    pf = probe_data if probe_data is not None else forget.select(range(min(size, len(forget))))
    pr = retain_probe_data if loop_hp["retain_probes"] else None
    if pr is None and retain is not None and loop_hp["retain_probes"]:
        pr = retain.select(range(min(size, len(retain))))
    return pf, pr


# -- the loop -------------------------------------------------------------------------------------

def unlearn(model, tokenizer, forget, retain=None, method: str = "ga", *, lora=None, idk=None,
            probe_data=None, retain_probe_data=None, progress: bool = True, output_dir=None, overwrite: bool = False,
            inplace: bool = False, prompt_format=None, **hparams) -> UnlearnResult:
    """Unlearn ``forget`` from a copy of ``model`` with the objective ``method``.

    Parameters: ``forget``/``retain``: ``datasets.Dataset`` with ``question`` and ``answer``
    (TOFU format). ``method``: a name from :func:`list_objectives`. ``lora``: None (full
    fine-tuning), True (default adapter) or a dict / ``peft.LoraConfig``. ``idk``: list of refusal
    strings or a file, for IDK objectives (default: the kit's bank). ``hparams``: the loop's
    (``steps``, ``lr``, ``batch_size``, ``seed``, ``probe_every``...) and the objective's
    (``beta``, ``alpha``...), validated with errors naming the parameter and its range.
    ``prompt_format``: ``"plain"`` (default), ``"chat"`` (the tokenizer's chat template, for instruct
    models), a dict of :class:`~unlearnkit.data.PromptFormat` fields or a PromptFormat: training
    batches, the reference, the probes and sampling all use it; the manifest records it.
    ``output_dir``: if given, the result is saved there (a new folder, written atomically); it is
    checked before any work (exists without ``overwrite=True``, or not writable: an error, and no
    training time spent). Everything else is validated before any work too (:func:`check_params`,
    data fields and ids, the vocabulary); rows longer than the model's context are truncated with a
    warning that counts them. A loss or gradient norm that turns NaN/inf (checked whatever
    ``max_grad_norm``), or an update that makes the weights non-finite (``guard_weights``), stops
    the run with the weights of the last finite step; ``res.stopped`` says at which step.
    ``inplace``: train ``model`` itself instead of a deep copy, saving one copy of the weights for
    big models; the object you passed is then changed (its weights, or under LoRA its modules, which
    get the adapter); files on disk never are. Default False: ``model`` is left untouched.
    ``keep`` (loop parameter): which probed step's weights come back (see :data:`LOOP_PARAMS`);
    with several processes the probes, and so the choice, are made on the main process, the one
    that writes results; a ``first_forgotten`` stop reaches every process through accelerate's
    trigger.
    """
    check_destination(output_dir, overwrite)
    fmt = PromptFormat.of(prompt_format)
    splits = {"forget": forget, "retain": retain, "probe": probe_data, "retain_probe": retain_probe_data}
    obj, hp, obj_hp, req, limit = _resolve(model, tokenizer, method, hparams, splits, fmt)
    forget, retain = splits["forget"], splits["retain"]
    pf, pr = _probe_sets(forget, retain, splits["probe"], splits["retain_probe"], hp)
    seed, steps = hp["seed"], hp["steps"]
    set_seed(seed)
    accelerator = _accelerator(hp, req)
    recorder = ProbeRecorder(tokenizer, pf, pr, every=hp["probe_every"], max_new_tokens=hp["max_new_tokens"],
                             token_probes=hp["token_probes"], keep=hp["keep"], forget_threshold=hp["forget_threshold"],
                             active=accelerator.is_main_process, fmt=fmt)
    inputs = run_manifest(model, tokenizer, {"forget": forget, "retain": retain}, prefix="base_")

    # setup: a copy of the model (unless inplace), the data encoded once, the reference without a copy
    work = model if inplace else copy.deepcopy(model)
    work.train()
    if lora:
        work = wrap_lora(work, lora)
    if hp["gradient_checkpointing"]:
        work.gradient_checkpointing_enable()
    data = encode_parts(tokenizer, forget, retain, req.parts, idk=idk, seed=seed,
                        preferred_field=obj_hp.get("preferred_field", "perturbed_answer"), fmt=fmt, max_length=limit)
    ref = None
    if req.ref:
        ref = AdapterReference(work) if lora else CachedReference.build(
            work, data, req.ref, max_bytes=hp["reference_cache_gb"] * 2**30)
    g = torch.Generator().manual_seed(seed + 1 + accelerator.process_index)
    ctx = ObjectiveContext(hp=obj_hp, ref=ref, tokenizer=tokenizer, generator=g, data=data,
                           raw={"forget": forget, "retain": retain}, fmt=fmt)
    if obj.setup is not None:  # before DDP wraps the model: it may freeze parameters
        obj.setup(work, ctx)
    params = [p for p in work.parameters() if p.requires_grad]
    work, opt, loader, sched = accelerator.prepare(work, *_optimizer(params, len(forget), hp))
    bare = accelerator.unwrap_model(work)
    if recorder.record(bare, 0):
        accelerator.set_trigger()

    # the loop: one batch of forget rows (epochs in order) and random retain rows per step
    logs, stopped, diverged, step = [], None, False, 0
    bar = tqdm(total=steps, desc=f"unlearn[{obj.name}]", disable=not progress or not accelerator.is_main_process,
               leave=False)
    batches, guard = _cycle(loader), _Guard(params, hp)
    while step < steps:
        if hp["keep"] == "first_forgotten" and accelerator.check_trigger():
            stopped = (f"forgotten at step {step}: mean forget target mass {recorder.kept_score:.4f} <= "
                       f"forget_threshold={hp['forget_threshold']} (keep='first_forgotten')")
            break
        idx = torch.as_tensor(next(batches)).cpu()
        r_idx = torch.randint(0, len(data["retain"]["index"]), (hp["retain_batch_size"],), generator=g) \
            if "retain" in data else None
        batch = {name: {k: v.to(accelerator.device) for k, v in select(data[name], idx if name.startswith("forget")
                                                                        else r_idx).items()} for name in req.parts}
        ctx.step = step
        row, stopped = guard.update(accelerator, work, obj, batch, ctx, opt, sched, step)
        if row is None:
            diverged = True
            break
        step += 1
        logs.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{logs[-1]['loss']:.3f}", refresh=False)
        if (recorder.due(step, steps) or ctx.state.get("stop")) and recorder.record(bare, step):
            accelerator.set_trigger()
        if ctx.state.get("stop"):
            stopped = str(ctx.state["stop"])
            break
    bar.close()

    # wrap up: the objective's own finish, divergence, the keep policy, the result
    if diverged:
        warnings.warn(f"unlearn[{obj.name}] stopped early: {stopped}", RuntimeWarning, stacklevel=2)
        recorder.record(bare, step)
    elif obj.finish is not None:
        with torch.no_grad():
            obj.finish(bare, ctx)
    if hp["keep"] == "first_forgotten" and recorder.kept_step is None and accelerator.is_main_process:
        warnings.warn(f"unlearn[{obj.name}]: keep='first_forgotten' but the mean forget target mass never fell to "
                      f"forget_threshold={hp['forget_threshold']}; the model holds the last step", UserWarning,
                      stacklevel=2)
    kept_step = recorder.restore(bare, step)
    bare.eval()
    bare.name_or_path = f"{obj.name}({getattr(model, 'name_or_path', None) or type(model).__name__})"
    result = UnlearnResult(
        model=bare, tokenizer=tokenizer, method=obj.name, hparams={**hp, **obj_hp}, probes=recorder.probes,
        log=pd.DataFrame(logs), stopped=stopped, kept_step=kept_step, token_probes=recorder.tokens, state=ctx.state,
        manifest={**run_manifest(bare, tokenizer, None, seed=seed, method=obj.name, lora=bool(lora),
                                 n_forget=len(forget), n_retain=len(retain) if retain is not None else 0,
                                 base_model=_base_path(model), prompt_format=fmt.describe(), grad_accumulation=1,
                                 **{k: hp[k] for k in ("batch_size", "retain_batch_size", "mixed_precision")}),
                  **inputs})
    if output_dir is not None and accelerator.is_main_process:  # one writer
        result.save(output_dir, overwrite=overwrite)
    accelerator.wait_for_everyone()
    return result


class _Guard:
    """One optimizer update with finiteness checks whatever the clipping: the loss, the gradient
    norm (computed even when ``max_grad_norm=0``) and, with ``guard_weights``, the weights after the
    update (undone from a copy taken before it). On a failure the update is not applied and
    :meth:`update` returns ``(None, why)``; the model then holds the weights of the last finite step."""

    def __init__(self, params, hp):
        self.params, self.hp = params, hp
        self.copy = [torch.empty_like(p, device=p.device) for p in params] if hp["guard_weights"] else None

    def update(self, accelerator, work, obj, batch, ctx, opt, sched, step):
        loss, parts = obj(work, batch, ctx)
        keep = f"the model keeps the weights after step {step} (the last finite step)"
        if not torch.isfinite(loss):
            return None, f"loss became {loss.item()} at step {step + 1}; {keep}"
        accelerator.backward(loss)
        clip = self.hp["max_grad_norm"]
        gn = float(accelerator.clip_grad_norm_(self.params, clip if clip > 0 else math.inf))
        if not math.isfinite(gn):
            opt.zero_grad(set_to_none=True)
            return None, f"gradient norm became {gn} at step {step + 1}; update skipped, {keep}"
        if self.copy is not None:
            with torch.no_grad():
                for c, p in zip(self.copy, self.params):
                    c.copy_(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if self.copy is not None and not all(bool(torch.isfinite(p).all()) for p in self.params):
            with torch.no_grad():
                for c, p in zip(self.copy, self.params):
                    p.copy_(c)
            return None, f"the update of step {step + 1} made weights NaN/inf; it was undone, {keep}"
        sched.step()
        return {"step": step + 1, "loss": float(loss.detach()), "grad_norm": gn, "lr": sched.get_last_lr()[0],
                **parts}, None


def _base_path(model):
    """The folder or hub name ``model`` was loaded from (for a LoRA result's reload), else its name."""
    return getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)


def _accelerator(hp: dict, req) -> Accelerator:
    """The run's :class:`accelerate.Accelerator` (mixed precision from ``hp``); refuses, before any
    work, what cannot run on parameters sharded across processes (FSDP, DeepSpeed ZeRO-3)."""
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=hp["mixed_precision"])
    if acc.num_processes > 1:
        atexit.unregister(_close_process_group)  # once, however many runs the script makes
        atexit.register(_close_process_group)
    ds = getattr(acc.state, "deepspeed_plugin", None)
    sharded = acc.distributed_type == DistributedType.FSDP or (
        acc.distributed_type == DistributedType.DEEPSPEED and getattr(ds, "zero_stage", 0) == 3)
    if sharded and (hp["probe_every"] or req.generation):
        what = "probes (probe_every > 0)" if hp["probe_every"] else "sampling from the model (BS-S)"
        raise ValueError(f"{what} run the whole model on one process, but this run shards its parameters "
                         f"({acc.distributed_type}); set probe_every=0 (and evaluate the saved model afterwards), "
                         "or use DDP / DeepSpeed ZeRO-2")
    return acc


def _close_process_group():
    """Closes the process group accelerate opened, at interpreter exit. Left open, gloo's worker threads
    are torn down by static destructors and the process may abort ("terminate called without an active
    exception", SIGABRT): the launcher then reports a failed run, and kills the other ranks, after all
    the work was done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _optimizer(params, n_forget: int, hp: dict):
    """AdamW with linear warm-up, and a seeded shuffling loader of forget row indices."""
    opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    warm = hp["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    loader = torch.utils.data.DataLoader(range(n_forget), batch_size=min(hp["batch_size"], n_forget), shuffle=True,
                                         generator=torch.Generator().manual_seed(hp["seed"]), drop_last=False)
    return opt, loader, sched


def _cycle(loader):
    """Batches of ``loader`` epoch after epoch (each epoch reshuffled by the loader's generator)."""
    while True:
        yield from loader
