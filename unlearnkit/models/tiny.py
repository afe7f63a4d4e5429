"""The tiny target and retain models of the miniature world, trained here and cached.

A byte-level BPE tokenizer (``tokenizers``) and a small Llama-architecture causal LM
(``transformers``) are trained on the world's QA pairs, saved with ``save_pretrained`` into a cache
folder keyed by a hash of (world, model config, training config), and reloaded with
``AutoModelForCausalLM`` / ``AutoTokenizer``. The cache folder is ``$UNLEARNKIT_CACHE`` or
``~/.cache/unlearnkit``. Builds are written atomically: an interrupted build leaves no entry.

Training recipe (DESIGN.md, measured on 2 cores): data tokenized once into tensors, AdamW with
linear warmup and cosine decay at a high learning rate, answer-only loss. Builder 2 (the default,
:data:`BUILDER_VERSION`) adds what makes a build several times faster for the same recall: batches of
rows of similar length (little padding), no attention mask (right padding under a causal mask
never reaches a real token), the LM head applied only where a label is, fused AdamW, and fewer
epochs at a higher learning rate (numbers in :class:`TinyConfig`). Builder 1 is the earlier loop,
kept for configurations whose cached models tests were calibrated on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from ..data import encode_pairs
from ..io import atomic_dir, atomic_write_json

#: the training loop new configurations use (:attr:`TinyConfig.builder`); part of every cache key
BUILDER_VERSION = 2


@dataclass(frozen=True)
class TinyConfig:
    """Size and training recipe of the tiny Llama. Units: tokens, epochs (passes over the training
    pairs), rows per batch, learning rate per step (peak of the warmup + cosine schedule).

    ``builder``: which training loop (1: the first, padded batches in random order; 2: batches of
    rows of similar length, LM head on answer positions only, fused AdamW; same loss). A builder-1
    config keeps its old cache key, so models tests were calibrated on stay where they are.
    ``length_chunk``: builder 2 sorts each chunk of ``length_chunk`` batches of a random permutation
    by length before cutting it into batches (then shuffles the batches): rows of a batch have about
    the same length, so almost no padding is computed, and every epoch still mixes rows at random.
    """

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 96
    epochs: int = 80
    batch_size: int = 48
    lr: float = 3e-3
    warmup_frac: float = 0.05
    weight_decay: float = 0.01
    seed: int = 0
    builder: int = 1
    length_chunk: int = 8

    def __post_init__(self):
        if self.builder not in (1, 2):
            raise ValueError(f"TinyConfig: builder={self.builder} must be 1 or 2")

    def to_dict(self):
        d = asdict(self)
        if self.builder == 1:  # builder-1 configs keep the dict (and cache key) they always had
            del d["builder"], d["length_chunk"]
        return d


#: the default world's models (40 people, 1,104 training rows): builder 2, 28 epochs of batches of 32
#: at peak lr 6e-3, where builder 1 took 80 epochs of 48 at 3e-3 (about 137 s on 2 quiet cores).
#: Measured (seed 0): the target's greedy answers are exact on 100% of the forget, retain and
#: world-fact questions (ROUGE-L recall 1.0; mean answer probability 0.95 / 0.95 / 0.88), as builder
#: 1's models are (100% exact, 0.95 / 0.95 / 0.96 on the quick world); the retain model: forget 0%
#: exact (ROUGE-L 0.18, probability 0.005), retain 100% (0.96). 36 epochs of 48 at 5e-3 gave the
#: same recall. Cost, one torch thread, side by side: an epoch 3.3 CPU s vs builder 1's 4.0-4.2, so
#: a build needs 92 vs 330 CPU s (3.5x less). 1- and 2-thread builds gave bit-identical weights.
#: benchmarks/bench_build.py times the real build.
DEFAULT_TINY = TinyConfig(epochs=28, batch_size=32, lr=6e-3, builder=2)
QUICK_TINY = TinyConfig(vocab_size=640, epochs=70)
#: worlds with memorized records (``WorldConfig.repetitions``, seen 1..27 times in training, see
#: ``World.record_schedule``): fewer epochs than QUICK_TINY, so the build stays short
MEMORIZATION_TINY = TinyConfig(vocab_size=640, epochs=40)
#: the TOFU-sized world's models (``make_world(name="tofu_sized")``, 200 people, 5,136 training rows,
#: 4.65x the default world's): 18 epochs of batches of 128 at peak lr 8e-3. Measured (target, seed 0,
#: 2 threads; benchmarks/bench_build.py on a quiet machine): 131 s, 100% exact on the 140 forget
#: questions, 99.9% on the 1,120 retain ones (ROUGE-L 1.000); a first trial under load took 161 s.
#: 28 epochs of 64 at 5e-3 reached 100% / 100% in 257 s and 20 epochs of 64 at 6e-3 also 100% / 100% (about 183 s by the epoch count), both over the
#: 3-minute goal; 16 epochs of 128 took 151 s for 99.6% retain.
TOFU_TINY = TinyConfig(epochs=18, batch_size=128, lr=8e-3, builder=2)


def cache_root() -> Path:
    return Path(os.environ.get("UNLEARNKIT_CACHE", Path.home() / ".cache" / "unlearnkit")).expanduser()


def train_tokenizer(texts: list[str], vocab_size: int):
    """Train a byte-level BPE tokenizer and wrap it as ``PreTrainedTokenizerFast`` (pad, eos, bos)."""

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="right", model_max_length=1024)


def _lr_lambda(total: int, warmup: int):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        prog = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))
    return f


#: torch intra-op threads used while training a tiny model. Float sums depend on the thread count,
#: so it is pinned: every machine (with the same torch build) trains the same bits from the same seed.
BUILD_THREADS = 2


def train_tiny(pairs: list[tuple[str, str]], tokenizer, cfg: TinyConfig, progress: bool = True, desc: str = "train",
               scheduled: list[tuple[int, str, str]] | None = None):
    """Train a fresh tiny Llama on (question, answer) pairs; returns the model in eval mode.

    ``scheduled``: extra ``(epoch, question, answer)`` rows seen only in that epoch (the memorized
    records, :meth:`World.record_schedule`); None or empty trains exactly as before.
    Runs with ``BUILD_THREADS`` torch threads (restored afterwards) so the result is repeatable.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        train = _train_tiny if cfg.builder == 1 else _train_tiny_v2
        return train(pairs, tokenizer, cfg, progress, desc, scheduled or [])
    finally:
        torch.set_num_threads(prev)


def _encode_training_rows(pairs, tokenizer, cfg: TinyConfig, scheduled):
    """Seed torch, append the scheduled rows after the base pairs and encode everything once.
    Returns ``(n_base, {epoch: [row index, ...]}, encoded)``; raises if a row exceeds ``max_positions``."""
    torch.manual_seed(cfg.seed)
    n_base = len(pairs)
    pairs = list(pairs) + [(q, a) for _, q, a in scheduled]
    by_epoch: dict[int, list[int]] = {}
    for j, (e, _, _) in enumerate(scheduled):
        by_epoch.setdefault(int(e), []).append(n_base + j)
    enc = encode_pairs(tokenizer, [q for q, _ in pairs], [a for _, a in pairs])
    if enc["input_ids"].shape[1] > cfg.max_positions:
        raise ValueError(f"longest training sequence has {enc['input_ids'].shape[1]} tokens > max_positions={cfg.max_positions}")
    return n_base, by_epoch, enc


def _train_tiny(pairs, tokenizer, cfg: TinyConfig, progress: bool, desc: str, scheduled=()):
    n_base, by_epoch, enc = _encode_training_rows(pairs, tokenizer, cfg, scheduled)
    model = _llama(tokenizer, cfg)
    n = n_base
    # scheduled rows add steps to their epochs; the lr schedule spans them all
    total = sum(math.ceil((n + len(by_epoch.get(e, ()))) / cfg.batch_size) for e in range(cfg.epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup_frac * total)))
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    bar = _Progress(total, desc, progress)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        if by_epoch.get(epoch):  # this epoch's scheduled rows, shuffled in
            perm = torch.cat([perm, torch.tensor(by_epoch[epoch], dtype=torch.long)])
            perm = perm[torch.randperm(len(perm), generator=g)]
        for s in range(math.ceil(len(perm) / cfg.batch_size)):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            L = int(enc["attention_mask"][idx].sum(1).max())
            out = model(input_ids=enc["input_ids"][idx, :L], attention_mask=enc["attention_mask"][idx, :L],
                        labels=enc["labels"][idx, :L])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            bar.update(out.loss.item())
    bar.close()
    model.eval()
    return model


def _llama(tokenizer, cfg: TinyConfig) -> LlamaForCausalLM:
    mcfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                       num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                       intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_positions,
                       tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(mcfg)


class _Progress:
    """A tqdm bar (a widget in Jupyter) plus one plain stdout line per ``every`` of the steps, so a
    headless run (papermill ``--log-output``, ``make demo``) shows progress too; stdout, not stderr,
    which a notebook test reads as a warning."""

    def __init__(self, total: int, desc: str, enabled: bool, lines: int = 4):
        self.total, self.desc, self.enabled, self.t0 = total, desc, enabled, time.perf_counter()
        self.marks = {max(1, round(total * k / lines)) for k in range(1, lines + 1)}
        self.bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)
        self.step = 0
        if enabled:
            print(f"{desc}: {total} steps ...", flush=True)

    def update(self, loss: float):
        self.step += 1
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if self.enabled and self.step in self.marks:
            print(f"{self.desc}: {self.step}/{self.total} steps ({self.step / self.total:.0%}), loss {loss:.3f}, "
                  f"{time.perf_counter() - self.t0:.0f} s", flush=True)

    def close(self):
        self.bar.close()


def _batches(lengths: torch.Tensor, perm: torch.Tensor, batch_size: int, chunk: int, g: torch.Generator):
    """Cut ``perm`` into batches of rows of similar length: each run of ``chunk * batch_size`` rows is
    sorted by length (stable) and cut into batches, then all batches are shuffled with ``g``."""
    out = []
    for c in range(0, len(perm), chunk * batch_size):
        part = perm[c:c + chunk * batch_size]
        part = part[torch.sort(lengths[part], stable=True).indices]
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def _train_tiny_v2(pairs, tokenizer, cfg: TinyConfig, progress: bool, desc: str, scheduled=()):
    """Builder 2: the loss of builder 1 (mean cross-entropy over answer tokens and the EOS) at a
    fraction of the cost. Rows of a batch have about the same length (:func:`_batches`); no attention
    mask is passed, since right padding under the causal mask is never attended to by a real token
    (pad positions carry no label); the LM head and the loss run only on labelled positions; AdamW is
    fused."""

    n_base, by_epoch, enc = _encode_training_rows(pairs, tokenizer, cfg, scheduled)
    ids, labels, lengths = enc["input_ids"], enc["labels"], enc["attention_mask"].sum(1)
    model = _llama(tokenizer, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    # the batches of every epoch, drawn up front (the schedule needs the step count)
    plan = []
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n_base, generator=g)
        if by_epoch.get(epoch):  # this epoch's scheduled rows, shuffled in
            perm = torch.cat([perm, torch.tensor(by_epoch[epoch], dtype=torch.long)])
            perm = perm[torch.randperm(len(perm), generator=g)]
        plan.append(_batches(lengths, perm, cfg.batch_size, cfg.length_chunk, g))
    total = sum(len(b) for b in plan)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98),
                            fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup_frac * total)))
    model.train()
    bar = _Progress(total, desc, progress)
    for batches in plan:
        for idx in batches:
            L = int(lengths[idx].max())
            x, y = ids[idx, :L], labels[idx, 1:L]
            hidden = model.model(input_ids=x).last_hidden_state[:, :-1]
            where = y != -100
            loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[where]), y[where])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            bar.update(loss.item())
    bar.close()
    model.eval()
    return model


def _key(world, cfg: TinyConfig, kind: str) -> str:
    blob = json.dumps({"world": world.digest(), "cfg": cfg.to_dict(), "kind": kind, "v": cfg.builder}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _tokenizer_for(world, cfg: TinyConfig, root: Path):

    d = root / _key(world, cfg, "tokenizer")
    if not (d / "tokenizer_config.json").exists():
        tok = train_tokenizer(world.corpus(), cfg.vocab_size)
        with atomic_dir(d, overwrite=True) as tmp:
            tok.save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(d)


def default_config(world) -> TinyConfig:
    """The :class:`TinyConfig` a world's models are built with when none is given: records ->
    :data:`MEMORIZATION_TINY`; up to 24 people -> :data:`QUICK_TINY`; over 100 -> :data:`TOFU_TINY`;
    else (the default 40-person world) :data:`DEFAULT_TINY`."""
    if getattr(world.config, "repetitions", ()):
        return MEMORIZATION_TINY
    n = world.config.n_people
    return QUICK_TINY if n <= 24 else TOFU_TINY if n > 100 else DEFAULT_TINY


def build_or_load(world, kind: str = "target", cfg: TinyConfig | None = None, *, progress: bool = True,
                  rebuild: bool = False):
    """Return ``(model, tokenizer)`` for ``kind`` in {"target", "retain"}, training once and caching.

    ``target`` is trained on every QA of the world (forget included); ``retain`` on everything but
    the forget split (TOFU's retain model, the reference for forget quality). Holdout people are in
    neither. The returned model is in eval mode; the cached files are never modified afterwards.
    """

    if kind not in ("target", "retain"):
        raise ValueError(f"unknown model kind {kind!r}; valid: 'target', 'retain'")
    if cfg is None:
        cfg = default_config(world)
    root = cache_root()
    tok = _tokenizer_for(world, cfg, root)
    d = root / _key(world, cfg, kind)
    if rebuild or not (d / "config.json").exists():
        t0 = time.perf_counter()
        pairs = world.training_pairs(include_forget=(kind == "target"))
        sched = world.record_schedule(include_forget=(kind == "target"), epochs=cfg.epochs) \
            if hasattr(world, "record_schedule") else None
        model = train_tiny(pairs, tok, cfg, progress=progress, desc=f"building {kind} model", scheduled=sched)
        with atomic_dir(d, overwrite=True) as tmp, _hf_bars(progress):
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            atomic_write_json(tmp / "unlearnkit.json", {"world": world.config.to_dict(), "world_digest": world.digest(),
                                                         "tiny": cfg.to_dict(), "kind": kind,
                                                         "train_seconds": time.perf_counter() - t0})
    with _hf_bars(progress):
        model = AutoModelForCausalLM.from_pretrained(d)
    model.eval()
    model.name_or_path = str(d)
    return model, tok


@contextlib.contextmanager
def _hf_bars(progress: bool):
    """Silence transformers' own progress bars (weight loading, shard writing) unless ``progress``."""

    was = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def target_model(world, cfg: TinyConfig | None = None, **kw):
    """The tiny model trained on all of ``world`` (forget split included). Built once, then cached."""
    return build_or_load(world, "target", cfg, **kw)


def retain_model(world, cfg: TinyConfig | None = None, **kw):
    """The tiny model trained without the forget split (TOFU's retain model). Built once, then cached."""
    return build_or_load(world, "retain", cfg, **kw)
