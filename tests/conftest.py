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
