"""Sweeps over notebooks: a grid run with papermill, killed mid-run and resumed; checks before any run.

The notebook swept is ``tests/data/sweep_probe.ipynb``: it multiplies two parameters, sleeps
``wait`` seconds and writes its row, so each run costs a kernel start.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from unlearnkit.cli import main as cli
from unlearnkit.sweep import record_result, sweep_notebook

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "data" / "sweep_probe.ipynb"


def _visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def _rows(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "results.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_sweep_killed_during_third_run_resumes_with_exactly_four_rows(tmp_path):
    """A 2x2 grid in a subprocess, SIGKILLed (with its kernel) during the third run, then rerun."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "unlearnkit.cli", "sweep", str(PROBE), "-p", "a", "1", "2", "-p", "b", "0.5", "3",
           "--set", "wait=4", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    log = open(tmp_path / "sweep.log", "wb")  # a file, not a pipe nobody reads (it could fill and block)
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group (the kernel, in a session of its
    # own, exits by itself once it sees its parent gone: ipykernel polls JPY_PARENT_PID)
    try:
        while True:  # the third run has started: two rows written and a hidden run folder in the making
            assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            assert time.perf_counter() - t0 < 600, "the sweep never reached its third run"
            if _rows(out) == 2 and [p for p in out.iterdir() if p.name.startswith(".") and p.is_dir()]:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # well inside the run (it sleeps 4 s after its kernel starts)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    killed_after = time.perf_counter() - t0
    assert proc.returncode == -signal.SIGKILL
    first = pd.read_csv(out / "results.csv")
    assert len(first) == 2
    assert _visible(out) == sorted([*first.run, "results.csv"]), "a partial run is visible after the kill"
    stamps = {r: (out / r / "run.json").stat().st_mtime for r in first.run}

    t1 = time.perf_counter()
    df = sweep_notebook(PROBE, {"a": [1, 2], "b": [0.5, 3.0]}, out, parameters={"wait": 4}, progress=False)
    resumed = time.perf_counter() - t1
    print(f"killed after {killed_after:.1f} s (2 runs done); the rerun took {resumed:.1f} s for the other 2")
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and len(df) == 4
    assert table.run.is_unique and not table.duplicated(["a", "b"]).any()
    assert sorted(zip(table.a, table.b)) == [(1, 0.5), (1, 3.0), (2, 0.5), (2, 3.0)]
    assert (table["product"] == table.a * table.b).all() and (table.doubled == 2 * table["product"]).all()
    assert list(table.run[:2]) == list(first.run)  # the finished rows kept, in order, not redone
    assert {r: (out / r / "run.json").stat().st_mtime for r in first.run} == stamps
    assert _visible(out) == sorted([*table.run, "results.csv"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "leftovers of the killed run remain"
    for r in table.run:
        nb = json.loads((out / r / "notebook.ipynb").read_text())
        assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    # a third call finds nothing to do
    again = sweep_notebook(PROBE, {"a": [1, 2], "b": [0.5, 3.0]}, out, parameters={"wait": 4}, progress=False)
    assert again.equals(df)


def test_checked_before_any_run(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(ValueError, match=r"no parameter 'aa' \(did you mean 'a'\?\); valid names: a, b, wait, steps"):
        sweep_notebook(PROBE, {"a": [1], "aa": [2]}, out)
    with pytest.raises(ValueError, match=r"a=1.5 \(float\) does not fit its default 1 \(int\)"):
        sweep_notebook(PROBE, {"a": [1, 1.5]}, out)
    with pytest.raises(ValueError, match="steps.*valid range"):
        sweep_notebook(PROBE, {"steps": [1, 0]}, out)
    with pytest.raises(ValueError, match="set by the sweep itself"):
        sweep_notebook(PROBE, {"a": [1]}, out, parameters={"result_path": "x.json"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sweep_notebook(tmp_path / "nope.ipynb", {"a": [1]}, out)
    with pytest.raises(ValueError, match="expected a .ipynb"):
        sweep_notebook(REPO / "notebooks" / "00_tour.py", {"a": [1]}, out)
    with pytest.raises(TypeError, match="grid_points"):
        sweep_notebook(PROBE, "a=1", out)
    bare = tmp_path / "bare.ipynb"
    nb = json.loads(PROBE.read_text())
    for c in nb["cells"]:
        c["metadata"].pop("tags", None)
    bare.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        sweep_notebook(bare, {"a": [1]}, out)
    assert not out.exists(), "nothing may be created before the checks pass"
    with pytest.raises(SystemExit, match="with a notebook"):
        cli(["sweep", str(PROBE), "--methods", "ga", "--out", str(out)])
    assert cli(["sweep", str(PROBE), "-p", "b", "x", "--out", str(out)]) == 2


def test_failed_run_raises_and_keeps_its_notebook(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match=r"failed in cell .*ValueError.*sleep length must be non-negative"):
        sweep_notebook(PROBE, [{"a": 1, "wait": 0.0}, {"a": 2, "wait": -1.0}], out, progress=False)
    failed = list(out.glob("*.failed.ipynb"))
    assert len(failed) == 1 and _rows(out) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    errors = [o for c in json.loads(failed[0].read_text())["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "ValueError"
    df = sweep_notebook(PROBE, [{"a": 1, "wait": 0.0}, {"a": 2, "wait": 0.0}], out, progress=False)
    assert list(df.a) == [1, 2] and list(df["product"]) == [0.5, 1.0]  # the first run was not redone


def test_record_result(tmp_path):
    import numpy as np

    p = tmp_path / "r" / "row.json"
    row = record_result(str(p), forget=np.float32(0.25), n=np.int64(3), name="ga", ok=True)
    assert json.loads(p.read_text()) == row == {"forget": 0.25, "n": 3, "name": "ga", "ok": True}
    assert record_result(None, x=1.0) == {"x": 1.0}
    with pytest.raises(TypeError, match="x=.*must be a number"):
        record_result(str(p), x=[1, 2])


COURSE = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", COURSE, ids=[p.stem for p in COURSE])
def test_course_notebook_publishes_its_result_row(notebook):
    """Every course notebook can be swept (``unlearnkit sweep NOTEBOOK -p ...``) and gives a row of
    numbers, not only its parameters and ``seconds``: its parameters cell declares ``result_path =
    None`` and its last code cell is the one ``record_result(result_path, name=value, ...)`` call,
    whose values are computed in the notebook (no literal number typed in). No notebook is exempt:
    even the tour (00) has a headline, the forget target mass of the method it runs. Read, not run."""
    import ast

    import nbformat

    from unlearnkit.sweep import notebook_parameters

    assert notebook_parameters(notebook).get("result_path", "missing") is None, \
        f"{notebook.name}: its parameters cell must declare result_path = None (the sweep sets it per run)"
    code = [c.source for c in nbformat.read(str(notebook), as_version=4).cells if c.cell_type == "code"]
    calls = [i for i, src in enumerate(code) if "record_result(result_path" in src]
    assert len(calls) == 1, f"{notebook.name}: {len(calls)} cells call record_result(result_path, ...); expected one"
    assert calls[0] == len(code) - 1, f"{notebook.name}: the record_result cell must be the last code cell"
    call = next(n for n in ast.walk(ast.parse(code[-1])) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", getattr(n.func, "id", None)) == "record_result")
    typed = [k.arg for k in call.keywords if isinstance(k.value, ast.Constant) and k.value.value is not None]
    assert not typed, f"{notebook.name}: record_result values typed in, not computed: {typed}"
    assert len(call.keywords) >= 3, f"{notebook.name}: publish the notebook's headline numbers (3 or more)"
    table = (REPO / "README.md").read_text(encoding="utf-8").split("| notebook | its result row's numbers |")[1]
    row = next(line for line in table.splitlines() if line.strip().startswith(f"| {notebook.name[:2]} |"))
    missing = [k.arg for k in call.keywords if k.arg and f"`{k.arg}`" not in row]
    assert not missing, f"{notebook.name}: the README's table of result rows does not list {missing}"
