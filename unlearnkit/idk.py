"""The bank of "I don't know" answers used by IDK-style objectives (a file shipped with the kit)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def load_idk(source=None) -> list[str]:
    """Refusal sentences: the kit's own bank (``source=None``), a list of strings, or a text/JSONL file
    with one sentence per line. Empty banks or empty lines raise, naming the file and line."""
    if source is None:
        text = resources.files("unlearnkit").joinpath("assets/idk.txt").read_text(encoding="utf-8")
        name = "unlearnkit/assets/idk.txt"
    elif isinstance(source, (list, tuple)):
        bank = [str(s).strip() for s in source]
        if not bank or not all(bank):
            raise ValueError("idk: the list of refusal strings is empty or holds an empty string")
        return bank
    else:
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"idk file {p} does not exist")
        text, name = p.read_text(encoding="utf-8"), str(p)
    bank = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith('"') and s.endswith('"'):

            s = json.loads(s)
        bank.append(s)
    if not bank:
        raise ValueError(f"idk file {name} holds no sentences")
    return bank
