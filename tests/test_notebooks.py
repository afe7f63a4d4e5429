"""Every notebook runs headless with papermill (quick parameters), then validates under nbval; the
run is the course's **solution version** (tests/test_course.py says why), so it also asserts that
every exercise check passes. The executed notebooks then make the course site (``make book``'s
pages), checked for error outputs without executing anything again.

nbval (``--nbval-lax``) re-executes the papermill output, whose injected ``quick=True`` cell keeps
it fast, and fails on any exception, also inside cells whose output papermill would not check. The
session ends with a line giving the total notebook time.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnkit import claims, course

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.ipynb"))
pytestmark = pytest.mark.notebooks
BINDER_GB = 2  #: mybinder.org's memory limit per user (its usage guidelines: 1-2 GB)


def _widget_errors(nb: dict) -> list[str]:
    """Tracebacks swallowed into widget state (papermill exits 0 on those)."""
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    errs = []
    for model in state.get("state", {}).values():
        for out in model.get("state", {}).get("outputs", []) or []:
            if out.get("output_type") == "error":
                errs.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errs


def _text(output: dict) -> str:
    t = output.get("text", "")  # a string, or a list of lines as nbformat stores it on disk
    return "".join(t) if isinstance(t, list) else t


def _descendants_hwm_kb(root: int) -> int:
    """The largest peak resident set (``VmHWM``, kB) among the processes below ``root`` (the notebook's
    kernel under nbval). VmHWM belongs to a process's own address space since its ``exec``, so unlike
    ``ru_maxrss`` it does not include the parent's memory at ``fork``."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, pp in parent.items() if pp in frontier} - below
        below |= frontier
    peak = 0
    for pid in below:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


@pytest.fixture(scope="session")
def solution_dir(tmp_path_factory):
    """The solution version of every notebook (built, not executed)."""
    d = tmp_path_factory.mktemp("course") / "solution"
    course.build(NB_DIR, solution=d)
    return d


@pytest.fixture(scope="session")
def executed_dir(tmp_path_factory):
    """Where each notebook that ran through cleanly is copied, for the course site test."""
    return tmp_path_factory.mktemp("executed")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_papermill_then_nbval(path, tmp_path, solution_dir, executed_dir, notebook_times, tiny,
                                       tiny_retain):
    import papermill as pm

    out = tmp_path / path.name
    row = tmp_path / "result.json"  # where the notebook publishes its result row, as under a sweep
    t0 = time.perf_counter()
    pm.execute_notebook(str(solution_dir / path.name), str(out), cwd=str(NB_DIR), progress_bar=False,
                        kernel_name="python3", parameters={"quick": True, "figures_dir": str(tmp_path / "figures"),
                                                           "result_path": str(row)})
    notebook_times[path.stem] = {"papermill": time.perf_counter() - t0}
    nb = json.loads(out.read_text())
    assert not _widget_errors(nb)
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    stderr = [_text(o)[:300] for c in nb["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr (a warning or a progress bar): {stderr}"
    assert list((tmp_path / "figures").glob("*.png")), "the notebook saved no figure"
    assert row.exists() and json.loads(row.read_text()), f"{path.name} published no result row (record_result)"
    claimed = {c.id for c in claims.CLAIMS.values() if path.stem.startswith(c.notebook + "_")}
    recorded = {p.stem for p in (tmp_path / "figures" / "claims").glob("*.json")}
    assert claimed <= recorded, f"{path.name} recorded no verdict for its paper's claims {sorted(claimed - recorded)}"
    for e in course.exercise_cells(nb, path.name):  # the solution version: every check passes
        text = "".join(_text(o) for o in nb["cells"][e.check].get("outputs", []))
        assert re.search(r"^✓ ", text, flags=re.M) and "not done yet" not in text, \
            f"{path.name}: the check of exercise {e.name!r} did not pass on its solution: {text!r}"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    log = tmp_path / "nbval.log"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                              "--nbval-current-env", "--nbval-cell-timeout=600", str(out)],
                             cwd=str(tmp_path), env=env, stdout=f, stderr=subprocess.STDOUT)
        peak_kb = 0
        while p.poll() is None:  # the kernel's own peak (VmHWM); wait4's ru_maxrss would count the
            peak_kb = max(peak_kb, _descendants_hwm_kb(p.pid))  # forked copy of this pytest process too
            time.sleep(0.25)
    notebook_times[path.stem].update(nbval=time.perf_counter() - t0, peak_rss_mb=peak_kb / 1024)
    assert p.returncode == 0, log.read_text()[-5000:]
    assert peak_kb / 1024 ** 2 < BINDER_GB, f"{path.name} peaked at {peak_kb / 1024:.0f} MB"
    shutil.copy(out, executed_dir / path.name)
    if recorded:
        shutil.copytree(tmp_path / "figures" / "claims", executed_dir / "claims", dirs_exist_ok=True)


def test_course_site_from_the_executed_notebooks(executed_dir, tmp_path):
    """``make book``'s site, rendered from the notebooks executed above (nothing runs again): an
    index in course order, one page per notebook, no error output on any page, nothing fetched from
    the network, and every figure and widget image of the notebook on its page."""
    done = sorted(executed_dir.glob("*.ipynb"))
    if len(done) < len(NOTEBOOKS):
        pytest.skip(f"{len(done)} of {len(NOTEBOOKS)} notebooks ran through in this session: the site needs all "
                    "(run tests/test_notebooks.py whole)")
    t0 = time.perf_counter()
    r = course.book(executed_dir, tmp_path / "book")
    took = time.perf_counter() - t0
    assert r["pages"] == ["index.html"] + [p.stem + ".html" for p in NOTEBOOKS] and not r["errors"]
    index = (tmp_path / "book" / "index.html").read_text(encoding="utf-8")
    at = [index.index(f'href="{p.stem}.html"') for p in NOTEBOOKS]
    assert at == sorted(at), "the index lists the notebooks in course order"
    for p in NOTEBOOKS:
        page = (tmp_path / "book" / f"{p.stem}.html").read_text(encoding="utf-8")
        assert not course.page_errors(page) and "Traceback" not in page, p.stem
        assert not course.remote_fetches(page), (p.stem, course.remote_fetches(page))
        nb = json.loads((executed_dir / p.name).read_text())
        pngs = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
        widgets = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                      for c in nb["cells"] for o in c.get("outputs", []))
        shown = page.count('src="data:image/png;base64,')
        assert pngs >= 1 and shown == pngs, f"{p.stem}: {pngs} figures and widget images ({widgets} widgets), {shown} shown"
    verdicts = claims.table(executed_dir)
    assert (verdicts.verdict != "not measured in this run").all(), verdicts[["claim", "verdict"]]
    assert "What the miniature reproduces" in index and (tmp_path / "book" / "claims.md").exists()
    print(f"\ncourse site: {len(r['pages'])} pages in {took:.1f} s; claims: "
          + ", ".join(f"{v} {n}" for v, n in verdicts.verdict.value_counts().items()))


def test_a_parameter_the_notebook_cannot_run_with_stops_it_before_any_work(tmp_path):
    """Notebook 05 compares methods along their probe paths: probe_every=0 is refused in its first code
    cell after the parameters (before the world or a model is built), naming the parameter."""
    import papermill as pm

    src = NB_DIR / "05_unlearning_by_editing.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match=r"probe_every=0: .*set probe_every to 1 or more") as e:
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters={"quick": True, "probe_every": 0},
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    assert e.value.exec_count <= 3, e.value.exec_count  # parameters, injected parameters, imports + checks
