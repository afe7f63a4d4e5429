"""Checks at the public boundary, run before any work starts.

Every public entry point (``unlearn``, ``evaluate``, ``load_*``, ``sweep``, the CLI, notebook
parameter cells) calls these first, so a bad input costs no training time and the error names the
parameter, file, row, field or id, and the valid choices.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import pandas as pd
from datasets import Dataset

from .data import DEFAULT_FORMAT, PromptFormat, row_ids
from .world.loaders import DataError, check_dataset


def unknown_names(owner: str, given, namespaces: dict[str, list[str]]) -> None:
    """Raise :class:`ValueError` for names in ``given`` that no namespace defines, with a
    did-you-mean over *all* namespaces (``{"loop": [...], "objective 'ga'": [...]}``)."""
    valid = [n for names in namespaces.values() for n in names]
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    hints = []
    for u in unknown:
        close = difflib.get_close_matches(u, valid, n=1, cutoff=0.6) or _ALIASES.get(u, [])[:1]
        hints.append(f"{u!r} (did you mean {close[0]!r}?)" if close else repr(u))
    listing = "; ".join(f"{', '.join(names)} ({ns})" if names else f"none for {ns}" for ns, names in namespaces.items())
    raise ValueError(f"{owner}: unknown parameter(s) {', '.join(hints)}; valid parameters: {listing}")


#: common names from other libraries that mean one of ours
_ALIASES = {"learning_rate": ["lr"], "num_steps": ["steps"], "max_steps": ["steps"], "epochs": ["steps"],
            "per_device_train_batch_size": ["batch_size"], "random_seed": ["seed"], "clip": ["max_grad_norm"],
            "grad_clip": ["max_grad_norm"]}


def check_destination(path, overwrite: bool = False, what: str = "output_dir") -> Path | None:
    """Check, before any work, that ``path`` can receive a result: it must not exist (unless
    ``overwrite``) and its nearest existing parent must be a writable folder."""
    if path is None:
        return None
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite={overwrite!r} must be True or False")
    p = Path(path).expanduser()
    if p.exists() and not overwrite:
        raise FileExistsError(f"{what}={str(p)!r} exists; choose a new path or pass overwrite=True "
                              "(CLI: --overwrite); nothing was trained")
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"{what}={str(p)!r} is a file, not a folder")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{what}={str(p)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}={str(p)!r}: folder {str(parent)!r} is not writable; nothing was trained")
    return p


def as_dataset(name: str, data):
    """``data`` as a ``datasets.Dataset``: a Dataset passes, a pandas DataFrame or a list of dicts
    is converted; anything else raises :class:`TypeError` naming ``name`` and the type."""
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, pd.DataFrame):
        return Dataset.from_pandas(data.reset_index(drop=True), preserve_index=False)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return Dataset.from_list(data)
    raise TypeError(f"{name} data must be a datasets.Dataset, a pandas DataFrame or a list of dicts with "
                    f"'question' and 'answer'; got {type(data).__name__}")


def check_ids(name: str, data) -> None:
    """Duplicate ``id`` values raise :class:`DataError` naming them (metrics key rows by id)."""
    if data is None or "id" not in data.column_names:
        return
    s = pd.Series(list(data["id"]))
    dup = s[s.duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{name}: duplicate id(s) {dup[:10]}{' ...' if len(dup) > 10 else ''}; ids must be "
                        "unique within a split (metrics key rows by id)")


def check_qa(name: str, data, required=("question", "answer")):
    """Convert (see :func:`as_dataset`) and check a QA split: required fields present, non-empty,
    every known text field a non-empty string (``question=None`` is refused), ids unique."""
    data = as_dataset(name, data)
    if data is None:
        return None
    cols = list(data.column_names)
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(f"{name} data lacks field(s) {missing}; it has {sorted(cols) or '(no columns)'}")
    if len(data) == 0:
        raise DataError(f"{name} data is empty")
    check_dataset(data, f"{name} data")
    check_ids(f"{name} data", data)
    return data


def context_length(model) -> int | None:
    """The model's number of positions (``max_position_embeddings`` / ``n_positions``), if it has one."""
    cfg = getattr(model, "config", None)
    for k in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, k, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_vocab(model, tokenizer) -> None:
    """The tokenizer's ids must index the model's embedding matrix (else a bare ``IndexError`` later)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    n = len(tokenizer)
    if rows is not None and n > rows:
        raise ValueError(f"tokenizer/model vocabulary mismatch: the tokenizer has {n} tokens but the model's "
                         f"embedding has {rows} rows; load the tokenizer saved with this model")


def long_rows(name: str, data, tokenizer, limit: int | None, fmt: PromptFormat = DEFAULT_FORMAT,
              column: str = "answer") -> tuple[list, int]:
    """Ids of the rows whose prompt + ``column`` + EOS exceed ``limit`` tokens, and the longest length."""
    if limit is None or data is None:
        return [], 0
    ids = row_ids(data)
    over, longest = [], 0
    for i, (q, a) in enumerate(zip(data["question"], data[column])):
        p = fmt.prompt_ids(q, tokenizer)
        n = len(p) + len(fmt.answer_ids(q, a, tokenizer, prompt_ids=p))
        longest = max(longest, n)
        if n > limit:
            over.append(ids[i])
    return over, longest


def warn_long(name: str, data, tokenizer, limit, fmt, action: str) -> bool:
    """Warn (once per split) how many rows exceed the context and what is done with them."""
    over, longest = long_rows(name, data, tokenizer, limit, fmt)
    if over:
        warnings.warn(f"{name}: {len(over)} of {len(data)} row(s) exceed the model's context of {limit} positions "
                      f"(ids {over[:10]}{' ...' if len(over) > 10 else ''}; longest {longest} tokens); {action}",
                      UserWarning, stacklevel=3)
    return bool(over)
