"""Load TOFU-format question/answer data from a path (JSON, JSONL or parquet) or the hub.

TOFU rows have ``question`` and ``answer``; ``*_perturbed`` files add ``paraphrased_answer`` and a
list ``perturbed_answer``; Real Authors / World Facts rows add ``original_answer``. Rows are
validated at the boundary: a missing field or an empty answer raises :class:`DataError` naming the
file and the row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, load_dataset

REQUIRED = ("question", "answer")


class DataError(ValueError):
    """Bad input data; the message names the file, the row and the field."""


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":

        try:
            return pd.read_parquet(path).to_dict("records")
        except Exception as e:
            raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at position {e.start}); re-save it as UTF-8") from None
    stripped = text.lstrip()
    if suffix == ".json" and stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if stripped.startswith("{"):  # maybe JSON lines in a .json file
                return _json_lines(path, text)
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict):  # {"data": [...]} (HF datasets' JSON layout) or one list under one key
            lists = {k: v for k, v in data.items() if isinstance(v, list)}
            if "data" not in lists and "question" in data:  # one row
                return [data]
            key = "data" if "data" in lists else next(iter(lists)) if len(lists) == 1 else None
            if key is None:
                raise DataError(f"{path}: a JSON object without a 'data' list of rows (keys: {', '.join(data)})")
            data = data[key]
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of objects")
        return data
    return _json_lines(path, text)


def _json_lines(path: Path, text: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def validate_rows(rows: list[dict], source: str, required: tuple[str, ...] = REQUIRED) -> list[dict]:
    """Check every row has non-empty string ``question``/``answer`` (and list-typed perturbations)."""
    if not rows:
        raise DataError(f"{source}: no rows")
    for i, r in enumerate(rows):
        for k, v in r.items():  # parquet (pandas) returns list columns as numpy arrays
            if isinstance(v, np.ndarray):
                r[k] = v.tolist()
        for f in required:
            if f not in r:
                raise DataError(f"{source}, row {i}: missing field {f!r} (fields present: {', '.join(sorted(r))})")
            v = r[f]
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{source}, row {i}: field {f!r} is empty or not a string: {v!r}")
        if "perturbed_answer" in r:
            p = r["perturbed_answer"]
            if isinstance(p, str):
                r["perturbed_answer"] = [p]
            elif not isinstance(p, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in p) or not p:
                raise DataError(f"{source}, row {i}: 'perturbed_answer' must be a non-empty list of strings")
            else:
                r["perturbed_answer"] = list(p)
    return rows


#: text fields a metric may read: each must hold a non-empty string in every row where it exists
TEXT_FIELDS = ("question", "answer", "paraphrased_answer", "paraphrased_question", "text")


def check_dataset(data, source: str) -> None:
    """Check the known fields of a ``datasets.Dataset`` wherever they are present: the
    :data:`TEXT_FIELDS` non-empty strings, ``perturbed_answer`` a non-empty list of non-empty
    strings. Raises :class:`DataError` naming ``source``, the row (and its ``id``) and the field."""
    cols = set(data.column_names)
    ids = data["id"] if "id" in cols else None

    def where(i):
        return f"{source}, row {i}" + (f" (id {ids[i]!r})" if ids is not None else "")

    for f in TEXT_FIELDS:
        if f in cols:
            for i, v in enumerate(data[f]):
                if not isinstance(v, str) or not v.strip():
                    raise DataError(f"{where(i)}: field {f!r} is empty or not a string: {v!r}")
    if "perturbed_answer" in cols:
        for i, p in enumerate(data["perturbed_answer"]):
            if not isinstance(p, (list, tuple)) or not p or not all(isinstance(x, str) and x.strip() for x in p):
                raise DataError(f"{where(i)}: field 'perturbed_answer' must be a non-empty list of non-empty "
                                f"strings, got {p!r}")


def load_tofu(path_or_name: str | Path, split: str | None = None, *, task_id: str | None = None):
    """Load TOFU-format data as a ``datasets.Dataset``.

    ``path_or_name``: a file, a folder (then ``split`` names the file, e.g. ``"forget01_perturbed"``),
    or a hub dataset name such as ``"locuslab/TOFU"`` (then ``split`` is its config name; needs hub
    access). ``task_id`` keeps the rows of one task group (the closer-look continual setting).
    """

    p = Path(path_or_name).expanduser()
    if p.is_dir():
        if split is None:
            files = sorted(x.name for x in p.iterdir() if x.suffix in (".json", ".jsonl", ".parquet"))
            raise DataError(f"{p} is a folder: pass split=<file stem>; found: {', '.join(files)}")
        cands = [p / f"{split}{ext}" for ext in (".json", ".jsonl", ".parquet")]
        found = [c for c in cands if c.exists()]
        if not found:
            stems = sorted({x.stem for x in p.iterdir() if x.suffix in (".json", ".jsonl", ".parquet")})
            raise DataError(f"{p}: no file for split {split!r}; available splits: {', '.join(stems)}")
        p = found[0]
    if p.is_file():
        rows = validate_rows(_read_rows(p), str(p))
    elif "/" in str(path_or_name) and not str(path_or_name).startswith((".", "/", "~")):
        try:

            ds = load_dataset(str(path_or_name), split or "forget10", split="train")
        except Exception as e:  # offline, or no such dataset
            raise DataError(f"could not load {path_or_name!r} (split {split!r}) from the hub or a path: {e}") from None
        rows = validate_rows([dict(r) for r in ds], f"{path_or_name}:{split}")
    else:
        raise FileNotFoundError(f"no TOFU data at {p}: not a file or folder")
    if task_id is not None:
        rows = [r for r in rows if str(r.get("task_id")) == str(task_id)]
        if not rows:
            raise DataError(f"{p}: no rows with task_id={task_id!r}")
    for i, r in enumerate(rows):
        r.setdefault("id", i)
    return Dataset.from_list(rows)


def qa_dataset(questions: list[str], answers: list[str], **columns):
    """A generic QA ``Dataset`` from Python lists (validated like files)."""

    questions, answers = list(questions), list(answers)
    for name, col in {"answers": answers, **columns}.items():
        if len(col) != len(questions):
            raise DataError(f"qa_dataset: {len(questions)} questions but {len(col)} {name}; every column needs one "
                            "value per question")
    rows = [{"question": q, "answer": a, **{k: v[i] for k, v in columns.items()}} for i, (q, a) in enumerate(zip(questions, answers))]
    validate_rows(rows, "qa_dataset")
    for i, r in enumerate(rows):
        r.setdefault("id", i)
    return Dataset.from_list(rows)
