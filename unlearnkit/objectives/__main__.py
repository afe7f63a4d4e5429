"""Write (or check) the objectives' reference page: ``python -m unlearnkit.objectives [PATH] [--check]``.

PATH defaults to ``docs/objectives.md`` beside the package. ``--check`` writes nothing and exits 1
when the file differs from what the registry generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import render_markdown

DEFAULT = Path(__file__).resolve().parents[2] / "docs" / "objectives.md"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    path = Path(args[0]) if args else DEFAULT
    text = render_markdown()
    if check:
        ok = path.exists() and path.read_text(encoding="utf-8") == text
        print(f"{path}: {'up to date' if ok else 'OUT OF DATE: run python -m unlearnkit.objectives'}")
        return 0 if ok else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
