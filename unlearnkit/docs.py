"""The reference pages, generated from the registries: ``python -m unlearnkit.docs [--check]``.

Writes ``docs/objectives.md`` (every registered objective), ``docs/metrics.md`` (every metric,
suite and evaluation option) and ``docs/loop.md`` (the unlearning loop's own parameters) beside
the package. ``--check`` writes nothing and exits 1 naming the pages that differ from what the
registries generate (the test suite runs the same check).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .io import atomic_write_text
from .metrics.catalog import _cell, _valid_text, metrics_markdown
from .objectives.docs import render_markdown as objectives_markdown
from .train import LOOP_PARAMS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def loop_markdown() -> str:
    """The loop parameters of :func:`unlearnkit.unlearn` as a Markdown page."""
    lines = ["# Unlearning loop parameters", "",
             "Generated from `unlearnkit.train.LOOP_PARAMS` (`python -m unlearnkit.docs`). These keyword arguments "
             "of `unlearn(...)` (and `unlearnkit run --set`) belong to the loop; every other keyword goes to the "
             "objective (see [objectives.md](objectives.md)). A misspelt or out-of-range one raises, naming it.", "",
             "| parameter | default | valid | what it does |", "|---|---|---|---|"]
    for name, p in LOOP_PARAMS.items():
        lines.append("| " + " | ".join(_cell(x) for x in (f"`{name}`", f"`{p.default!r}`", _valid_text(p), p.doc))
                     + " |")
    return "\n".join(lines) + "\n"


#: file name -> generator
PAGES = {"objectives.md": objectives_markdown, "metrics.md": metrics_markdown, "loop.md": loop_markdown}


def stale_pages(folder: Path | None = None) -> list[str]:
    """The pages under ``folder`` (default ``docs/``) that are missing or differ from what the registries generate."""
    folder = Path(folder or DOCS)
    return [name for name, make in PAGES.items()
            if not (folder / name).exists() or (folder / name).read_text(encoding="utf-8") != make()]


def write_pages(folder: Path | None = None) -> list[Path]:
    """Write every page to ``folder`` (default ``docs/``, atomically); returns their paths."""
    folder = Path(folder or DOCS)
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        atomic_write_text(folder / name, make())
    return [folder / name for name in PAGES]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_pages()
        print("reference pages up to date" if not stale else
              f"OUT OF DATE: {', '.join('docs/' + s for s in stale)}; run python -m unlearnkit.docs")
        return 1 if stale else 0
    for p in write_pages():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
