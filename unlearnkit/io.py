"""Atomic writes and the run manifest that travels with every result."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False):
    """Yield a temporary folder beside ``target``; on success it is renamed to ``target``.

    An interrupted write leaves no half-written ``target`` and no temporary folder: an exception,
    Ctrl-C, or a SIGTERM (turned into :class:`SystemExit` while the write runs, in the main thread)
    removes it. Without ``overwrite`` an existing ``target`` raises :class:`FileExistsError`
    (results are never silently replaced).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose a new path or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old_handler = _on_sigterm()
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _on_sigterm():
    """Make SIGTERM raise SystemExit (so cleanup runs); returns the previous handler, or None when
    signals cannot be set here (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, _raise)
    except (ValueError, OSError):  # pragma: no cover
        return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def model_digest(model) -> str:
    """A short hash of a model's parameters (for manifests; cheap on the miniature)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = p.detach().reshape(-1)
        if t.numel() > 1_000_000:  # big tensors: the first 1024 values, a strided sample and the sum
            t = torch.cat([t[:1024], t[:: t.numel() // 4096 + 1], t.sum(dtype=torch.float64).reshape(1).to(t.dtype)])
        h.update(t.float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _short(h) -> str:
    return h.hexdigest()[:16]


def tokenizer_digest(tokenizer) -> str | None:
    """A short hash of a tokenizer: class, vocabulary, special tokens and chat template."""
    if tokenizer is None:
        return None
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return _short(h)


def data_digest(data) -> str | None:
    """A short hash of a dataset's rows (a ``datasets.Dataset``, DataFrame or list of dicts)."""
    if data is None:
        return None
    rows = data.to_list() if hasattr(data, "to_list") else data.to_dict("records") if hasattr(data, "to_dict") else data
    return _short(hashlib.sha256(json.dumps(rows, sort_keys=True, default=str, ensure_ascii=False).encode()))


def model_facts(model) -> dict:
    """dtype and attention implementation of ``model`` (manifest fields)."""
    p = next(iter(model.parameters()), None)
    cfg = getattr(model, "config", None)
    return {"dtype": str(p.dtype).replace("torch.", "") if p is not None else None,
            "attn_implementation": getattr(cfg, "_attn_implementation", None)}


def run_manifest(model=None, tokenizer=None, data=None, prefix: str = "", **extra) -> dict:
    """:func:`manifest` plus what identifies the inputs: the model's weight hash
    (:func:`model_digest`), dtype and attention implementation, the tokenizer's hash and each data
    split's hash (``data``: ``{name: dataset}``). ``prefix`` names them (``base_model_digest``...)."""
    out = manifest(**extra) if not prefix else {}
    if model is not None:
        out[f"{prefix}model_digest"] = model_digest(model)
        out.update({f"{prefix}{k}": v for k, v in model_facts(model).items()})
    if tokenizer is not None:
        out[f"{prefix}tokenizer_digest"] = tokenizer_digest(tokenizer)
    if data:
        out["data_digest"] = {k: data_digest(v) for k, v in data.items() if v is not None}
    return out


def manifest(**extra) -> dict:
    """What is needed to reproduce or question a number: versions, device, process count, extras."""

    out = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__}
    for mod in ("transformers", "peft", "accelerate", "datasets", "unlearnkit"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    out["device"] = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    out["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    out["threads"] = torch.get_num_threads()
    out.update(extra)
    return out
