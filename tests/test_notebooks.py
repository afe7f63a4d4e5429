"""Every notebook runs headless with papermill (quick parameters), then validates under nbval.

nbval (``--nbval-lax``) re-executes the papermill output, whose injected ``quick=True`` cell keeps
it fast, and fails on any exception, also inside cells whose output papermill would not check.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.ipynb"))
pytestmark = pytest.mark.notebooks


def _widget_errors(nb: dict) -> list[str]:
    """Tracebacks swallowed into widget state (papermill exits 0 on those)."""
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    errs = []
    for model in state.get("state", {}).values():
        for out in model.get("state", {}).get("outputs", []) or []:
            if out.get("output_type") == "error":
                errs.append(f"{out.get('ename')}: {out.get('evalue')}")
    return errs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_papermill_then_nbval(path, tmp_path, tiny, tiny_retain):
    import papermill as pm

    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters={"quick": True, "figures_dir": str(tmp_path / "figures")},
                        cwd=str(NB_DIR), progress_bar=False, kernel_name="python3")
    nb = json.loads(out.read_text())
    assert not _widget_errors(nb)
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    stderr = [("".join(o.get("text", "")))[:300] for c in nb["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr (a warning or a progress bar): {stderr}"
    assert list((tmp_path / "figures").glob("*.png")), "the notebook saved no figure"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                        "--nbval-current-env", "--nbval-cell-timeout=600", str(out)],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
