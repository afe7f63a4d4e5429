"""The house rules, checked: layers that point one way, no import cycles, a short loop, generated
reference pages that match the registries, notebooks whose text source and .ipynb agree."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "unlearnkit"

#: the layers from the bottom up (README, "How the code is organized"); the longest prefix wins.
#: A module may import from its own layer or below, never from above.
LAYERS = {
    "registry": 0, "io": 0, "data": 0,
    "world": 1, "models": 1, "scoring": 1, "generation": 1, "losses": 1, "idk": 1, "memorization": 1, "editing.task_vectors": 1,
    "validate": 1,
    "probes": 2,
    "objectives": 3, "metrics": 3,
    "train": 4,
    "editing": 5, "viz": 5, "sweep": 5, "exercises": 5, "docs": 5, "claims": 5,
    "cli": 6, "course": 6, "__init__": 6,
}
#: siblings on one layer that must not import each other
APART = [("objectives", "metrics")]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every unlearnkit module ``name`` imports, at the top or inside a function."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("unlearnkit"):
                mod = node.module[len("unlearnkit."):] if node.module != "unlearnkit" else ""
            else:
                continue
            for a in node.names:  # `from . import x` may name a submodule
                found.add(f"{mod}.{a.name}".strip(".") if f"{mod}.{a.name}".strip(".") in _MODS else mod)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("unlearnkit."):] for a in node.names if a.name.startswith("unlearnkit.")}
    return {m or "__init__" for m in found} - {name}


_MODS = _modules()


def _layer(mod: str) -> int:
    keys = [k for k in LAYERS if mod == k or mod.startswith(k + ".")]
    assert keys, f"module unlearnkit.{mod} has no layer in tests/test_house.py LAYERS: add it (and to the README)"
    return LAYERS[max(keys, key=len)]


def test_layers_point_one_way():
    bad = []
    for name, path in _MODS.items():
        for dep in _imports(name, path):
            if _layer(dep) > _layer(name):
                bad.append(f"unlearnkit.{name} (layer {_layer(name)}) imports unlearnkit.{dep} (layer {_layer(dep)})")
            for a, b in APART:
                if {name.split(".")[0], dep.split(".")[0]} == {a, b}:
                    bad.append(f"unlearnkit.{name} imports unlearnkit.{dep}: {a} and {b} stay apart")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {n: {d for d in _imports(n, p) if d in _MODS and not n.startswith(d + ".")} for n, p in _MODS.items()}
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for d in sorted(graph[n]):
            visit(d)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_unlearn_reads_in_one_sitting():
    tree = ast.parse((PKG / "train.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "unlearn")
    body_start = fn.body[1].lineno if isinstance(fn.body[0], ast.Expr) else fn.body[0].lineno  # after the docstring
    assert fn.end_lineno - body_start + 1 <= 100, f"unlearn's body is {fn.end_lineno - body_start + 1} lines"


def test_reference_pages_are_current():
    from unlearnkit.docs import stale_pages

    assert stale_pages() == [], "run python -m unlearnkit.docs"


def test_reference_page_check_command_fails_on_a_stale_page(tmp_path, monkeypatch):
    from unlearnkit import docs

    docs.write_pages(tmp_path)
    assert docs.stale_pages(tmp_path) == []
    (tmp_path / "loop.md").write_text("stale\n", encoding="utf-8")
    assert docs.stale_pages(tmp_path) == ["loop.md"]
    monkeypatch.setattr(docs, "DOCS", tmp_path)
    assert docs.main(["--check"]) == 1


NB_DIR = REPO / "notebooks"
NB_SOURCES = sorted(NB_DIR.glob("[0-9]*.py"))


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_every_notebook_has_a_text_source():
    ipynbs = {p.stem for p in NB_DIR.glob("*.ipynb")}
    assert ipynbs == {p.stem for p in NB_SOURCES}, "each notebooks/NN_name.ipynb pairs with notebooks/NN_name.py"


@pytest.mark.parametrize("src", NB_SOURCES, ids=[p.stem for p in NB_SOURCES])
def test_notebook_pair_in_sync(src):
    """The .ipynb holds exactly the cells of its jupytext source (edit the .py, then `make notebooks`)."""
    import jupytext

    text = jupytext.read(src)
    nb = jupytext.read(src.with_suffix(".ipynb"))
    assert _cells(text) == _cells(nb), f"{src.with_suffix('.ipynb').name} is out of sync: run `make notebooks`"
    assert any("parameters" in c[2] for c in _cells(text)), f"{src.name} has no cell tagged 'parameters'"


def test_out_of_sync_pair_is_caught(tmp_path):
    import jupytext

    src = NB_SOURCES[0]
    edited = src.read_text(encoding="utf-8").replace("# %% [markdown]", "# %% [markdown]\n# an edit\n#", 1)
    (tmp_path / src.name).write_text(edited, encoding="utf-8")
    assert _cells(jupytext.read(tmp_path / src.name)) != _cells(jupytext.read(src.with_suffix(".ipynb")))
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", str(tmp_path / src.name)], check=True)
    assert _cells(jupytext.read(tmp_path / src.name)) == _cells(jupytext.read(tmp_path / (src.stem + ".ipynb")))
    assert json.loads((tmp_path / (src.stem + ".ipynb")).read_text())["cells"]


def test_deprecation_guard_catches_a_deprecated_call_from_the_kit(tiny, monkeypatch):
    """The conftest guard sees a deprecated keyword the kit passes to transformers (here the legacy
    ``past_key_values=``, forced), although transformers attributes the warning to its own frame."""
    import conftest

    from unlearnkit import scoring

    if "cache" not in scoring._forward_params(tiny[0]):
        pytest.skip("this transformers version still takes past_key_values")
    monkeypatch.setattr(scoring, "_cache_name", lambda model: "past_key_values")
    start = len(conftest._kit_deprecations)
    scoring.score_answers(*tiny, ["Where was Ann born?"], [["In Rome.", "In Oslo."]])
    caught = conftest._kit_deprecations[start:]
    del conftest._kit_deprecations[start:]  # expected here: do not fail this test
    assert caught and "past_key_values" in caught[0] and "unlearnkit/scoring.py" in caught[0]


def _pins(path: Path) -> dict:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_lock_pins_every_dependency_exactly():
    """constraints.txt pins every package exactly, and every dependency that pyproject.toml names
    (dev extras included) is among them: an install with -c constraints.txt can resolve only to
    these versions, so two fresh installs resolve identically. Binder installs from the same lock."""
    import tomllib

    lock = REPO / "constraints.txt"
    entries = [ln for ln in lock.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    pins = _pins(lock)
    assert len(pins) == len(entries), "every line of constraints.txt is an exact pin (name==version)"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].strip().lower()) for d in deps}
    assert names - set(pins) == set(), f"not pinned in constraints.txt: {sorted(names - set(pins))}"
    assert pins["torch"] == "2.13.0"
    binder = (REPO / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert "-c ../constraints.txt" in binder and "torch==2.13.0" in binder
    assert "-c constraints.txt" in (REPO / "Makefile").read_text(encoding="utf-8")
