"""Shared fixtures: the quick miniature world and its tiny target/retain models, built once per
session into the repo's ``.cache/`` (or ``$UNLEARNKIT_CACHE``) and reused by every test."""

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("UNLEARNKIT_CACHE", str(REPO / ".cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOFU_DIR = REPO.parent / "shared" / "data" / "tofu"


@pytest.fixture(scope="session")
def quick_world():
    from unlearnkit import make_world

    return make_world(seed=0, quick=True)


@pytest.fixture(scope="session")
def tiny(quick_world):
    """(model, tokenizer) of the quick world's target model. Do not modify it in tests."""
    from unlearnkit import target_model

    return target_model(quick_world, progress=False)


@pytest.fixture(scope="session")
def tiny_retain(quick_world):
    """(model, tokenizer) of the quick world's retain model (trained without the forget split)."""
    from unlearnkit import retain_model

    return retain_model(quick_world, progress=False)


@pytest.fixture(scope="session")
def tofu_dir():
    if not (TOFU_DIR / "forget01_perturbed.json").exists():
        pytest.skip(f"real TOFU data not found at {TOFU_DIR} (it lives in ../shared/data/tofu beside the repo)")
    return TOFU_DIR


# -- no FutureWarning / DeprecationWarning from the kit's own code ---------------------------------
# Every such warning issued while a frame of the package is on the stack fails the test that raised
# it, except the ones below, raised inside a third-party call whose arguments the kit does not
# choose (each with why). pyproject's filterwarnings cannot express this: a deprecated keyword the
# kit passes to transformers is attributed to transformers' own frame, not to ours.
import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

PKG_DIR = str(REPO / "unlearnkit") + os.sep
NOT_OURS = [
    # peft 0.21's get_peft_model reads model.is_gradient_checkpointing (transformers >= 5.24 renamed it)
    re.compile(r"`is_gradient_checkpointing` is deprecated"),
]
_kit_deprecations: list[str] = []
_warn = warnings.warn


def _kit_frame(depth: int = 2):
    f = sys._getframe(depth)
    while f is not None:
        if f.f_code.co_filename.startswith(PKG_DIR):
            if f.f_code.co_name == "<module>":  # a library warning while the kit imports it: not a call of ours
                return None
            return f"{f.f_code.co_filename[len(str(REPO)) + 1:]}:{f.f_lineno}"
        f = f.f_back
    return None


def _watching_warn(message, category=None, stacklevel=1, source=None, **kw):
    cat = category or (type(message) if isinstance(message, Warning) else UserWarning)
    if issubclass(cat, (FutureWarning, DeprecationWarning)) and not any(p.search(str(message)) for p in NOT_OURS):
        where = _kit_frame()
        if where is not None:
            _kit_deprecations.append(f"{cat.__name__} while unlearnkit ran ({where}): {message}")
    return _warn(message, category, stacklevel + 1, source, **kw)


warnings.warn = _watching_warn


@pytest.fixture(autouse=True)
def no_kit_deprecations():
    """Fails a test during which the kit triggered a FutureWarning or DeprecationWarning."""
    start = len(_kit_deprecations)
    yield
    new = _kit_deprecations[start:]
    if new:
        pytest.fail("the kit triggered deprecation warnings (use the current API):\n" + "\n".join(sorted(set(new))))


# -- the notebook run's total time, printed at the end of the session ---------------------------------
_NOTEBOOK_TIMES = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def notebook_times(pytestconfig):
    """notebook name -> {"papermill": s, "nbval": s, "peak_rss_mb": MB}; tests/test_notebooks.py fills it, the
    session summary prints it."""
    return pytestconfig.stash.setdefault(_NOTEBOOK_TIMES, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    times = config.stash.get(_NOTEBOOK_TIMES, None)
    if not times:
        return
    pm = sum(t.get("papermill", 0) for t in times.values())
    nv = sum(t.get("nbval", 0) for t in times.values())
    terminalreporter.write_sep("-", "notebook time")
    for name, t in times.items():
        terminalreporter.write_line(f"{name}: papermill {t.get('papermill', 0):.0f} s, nbval {t.get('nbval', 0):.0f} s, "
                                    f"peak RSS {t.get('peak_rss_mb', 0):.0f} MB")
    rss = max((t.get("peak_rss_mb", 0), name) for name, t in times.items())
    terminalreporter.write_line(f"total notebook time: {pm + nv:.0f} s for {len(times)} notebooks "
                                f"(papermill {pm:.0f} s + nbval {nv:.0f} s); peak RSS {rss[0]:.0f} MB ({rss[1]})")
