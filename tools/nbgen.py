"""Tiny helper to write a notebook from a list of ("md"|"code", source[, tags]) cells (outputs empty).

Used to (re)generate the notebooks' skeletons; the .ipynb files are the source of truth afterwards.
"""

from __future__ import annotations

import sys

import nbformat


def write(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for c in cells:
        kind, src = c[0], c[1].strip("\n")
        tags = c[2] if len(c) > 2 else []
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from a notebook-building script")
