"""Atomic writes and the run manifest that travels with every result."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False):
    """Yield a temporary folder beside ``target``; on success it is renamed to ``target``.

    An interrupted write leaves no half-written ``target``. Without ``overwrite`` an existing
    ``target`` raises :class:`FileExistsError` (results are never silently replaced).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose a new path or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
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
        t = p.detach().float().cpu().contiguous()
        h.update(t.numpy().tobytes()[:4096] if t.numel() > 1_000_000 else t.numpy().tobytes())
    return h.hexdigest()[:16]


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
