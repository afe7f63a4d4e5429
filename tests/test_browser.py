"""A real browser drives the squeeze explorer and the entropy explorer in JupyterLab.

The tests start JupyterLab on a free loopback port (no token) over a temporary copy of the
notebooks folder in which the squeezing notebook (01) and the entropy notebook (02) run with their
quick parameters, open each notebook in headless Chromium (Debian's ``/usr/bin/chromium``, driven
by Playwright's Python package: browsers cannot be downloaded here), run the cells up to the
explorer, move its step slider with the keyboard, and check that the rendered figure and table
change (and come back when the slider does). Screenshots go to ``test-artifacts/``.

Without chromium the test skips (locally) or fails (when the ``CI`` environment variable is set):
``make browser-deps`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("UNLEARNKIT_CHROMIUM", "/usr/bin/chromium"))  # Debian's package
NOTEBOOK = "01_squeezing_and_beliefs.ipynb"
ENTROPY_NOTEBOOK = "02_entropy_and_answer_preservation.ipynb"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _missing(what: str):
    msg = f"{what}; run `make browser-deps` (apt-get install -y chromium) to run the browser test"
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI is set: the browser test must run)")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed (pip install -e '.[dev]')")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick_copy(src: Path, dst: Path, figures: Path, widget: str = "SqueezeExplorer(") -> int:
    """Copy the notebook with its parameters cell switched to quick mode; return the index of the
    cell that builds the explorer (``widget``)."""
    nb = json.loads(src.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert params, f"{src.name} has no cell tagged 'parameters'"
    code = "".join(params[0]["source"])
    assert "quick = False" in code, "the parameters cell should default to quick = False"
    code = code.replace("quick = False", "quick = True")
    code = code.replace('figures_dir = "figures"', f"figures_dir = {str(figures)!r}")
    params[0]["source"] = code
    dst.write_text(json.dumps(nb, indent=1))
    return next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
                and widget in "".join(c["source"]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny, tiny_retain):
    """JupyterLab on 127.0.0.1:<free port>, no token, serving a quick copy of the notebooks."""
    root = tmp_path_factory.mktemp("lab")
    nbdir = root / "notebooks"
    nbdir.mkdir()
    for p in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(p, nbdir / p.name)
    explorer_cell = _quick_copy(REPO / "notebooks" / NOTEBOOK, nbdir / NOTEBOOK, root / "figures")
    entropy_cell = _quick_copy(REPO / "notebooks" / ENTROPY_NOTEBOOK, nbdir / ENTROPY_NOTEBOOK, root / "figures",
                               "EntropyExplorer(")
    port = _free_port()
    env = {**os.environ, "UNLEARNKIT_CACHE": os.environ.get("UNLEARNKIT_CACHE", str(REPO / ".cache")),
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1",
           "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(root / "config"),
           "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    env.pop("MPLBACKEND", None)
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
            time.sleep(1)
        yield {"url": url, "root": root, "explorer_cell": explorer_cell, "entropy_cell": entropy_cell}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
CURRENT = """(name) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!w && !!w.context && w.context.path.endsWith(name);
}"""
CHANGED = "([sel, old]) => { const e = document.querySelector(sel); return !!e && e.innerHTML !== old; }"


def _drive_explorer(playwright_api, lab, notebook: str, cell: int, info_sel: str, name: str):
    """Open ``notebook``, run it up to the explorer built in cell ``cell``, move the step slider one
    step back and forth; the table (``info_sel``) and the figure change, then come back."""
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # a workspace of its own, reset: JupyterLab would otherwise restore the notebooks an
            # earlier test opened, and the commands below would run in whichever one is current
            page.goto(f"{lab['url']}/lab/workspaces/{name}/tree/notebooks/{notebook}?reset", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function(CURRENT, arg=notebook, timeout=120_000)
            page.wait_for_function(KERNEL_IDLE, timeout=180_000)
            news = page.get_by_role("button", name="No", exact=True)  # "notified about Jupyter news?" toast
            if news.count():
                news.first.click()
            # make the explorer's cell active, run every cell above it, then the cell itself
            page.evaluate("""(i) => {
                const nb = window.jupyterapp.shell.currentWidget.content;
                nb.activeCellIndex = i;
                nb.mode = 'command';
            }""", cell)
            # dispatched, not awaited: the kernel runs them in order, and the waits below have timeouts
            # (and a screenshot) where an awaited command could hang until the test's own timeout
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-above'); }")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell'); }")
            slider = page.locator(".jp-OutputArea .widget-slider").first
            slider.wait_for(timeout=600_000)
            info = page.locator(f".jp-OutputArea {info_sel}").first
            info.wait_for(timeout=60_000)
            image = page.locator(".jp-OutputArea .widget-image").first
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            before_html, before_src = info.inner_html(), image.get_attribute("src")
            assert before_src, "the explorer's figure is not shown"
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"browser_{name}_before.png"))
            handle.focus()
            page.keyboard.press("ArrowLeft")  # the explorer opens at the last step: one step back
            page.wait_for_function(CHANGED, arg=[f".jp-OutputArea {info_sel}", before_html], timeout=120_000)
            moved_html = info.inner_html()
            page.wait_for_function("([sel, old]) => document.querySelector(sel).getAttribute('src') !== old",
                                   arg=[".jp-OutputArea .widget-image", before_src], timeout=60_000)
            handle.focus()
            page.keyboard.press("ArrowRight")  # and forward again: back to the first view
            page.wait_for_function(CHANGED, arg=[f".jp-OutputArea {info_sel}", moved_html], timeout=120_000)
            assert info.inner_html() == before_html
            image.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"browser_{name}.png"))
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t]
            assert not tracebacks, tracebacks[:2]
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"browser_{name}_failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_squeeze_explorer_slider_in_jupyterlab(playwright_api, lab):
    _drive_explorer(playwright_api, lab, NOTEBOOK, lab["explorer_cell"], ".uk-squeeze", "squeeze_explorer")


def test_entropy_explorer_slider_in_jupyterlab(playwright_api, lab):
    _drive_explorer(playwright_api, lab, ENTROPY_NOTEBOOK, lab["entropy_cell"], ".uk-entropy", "entropy_explorer")
