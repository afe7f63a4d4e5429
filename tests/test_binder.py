"""Binder installs what the lock pins: ``binder/requirements.txt`` names its constraints file (the
repo's ``constraints.txt``), every version it pins equals the lock's, torch included (and the
Makefile's), and the package it installs (``-e .``) has every dependency pinned by the lock, at a
version its range accepts. So repo2docker's ``pip install -r binder/requirements.txt`` resolves to
the versions ``make`` and CI install, without a network here to try it."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"


def _lines(path: Path) -> list[str]:
    return [x.split(" #")[0].strip() for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in _lines(path):
        if line.startswith("-"):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{path.name}: {line!r} is not an exact pin"
        out[canonicalize_name(req.name)] = spec[0].version
    return out


def test_binder_requirements_resolve_to_the_lock():
    lines = _lines(BINDER / "requirements.txt")
    constraints = [x.split(None, 1)[1] for x in lines if x.startswith(("-c ", "--constraint "))]
    assert len(constraints) == 1, "binder/requirements.txt must install under the lock: -c ../constraints.txt"
    # pip reads a nested -c relative to the file that names it
    assert (BINDER / constraints[0]).resolve() == (REPO / "constraints.txt").resolve()
    assert "-e ." in lines, "binder installs the package itself (-e .)"
    lock = _pins(REPO / "constraints.txt")
    binder = _pins(BINDER / "requirements.txt")
    assert "torch" in binder, "binder pins torch (the CPU wheel)"
    for name, version in binder.items():
        assert lock.get(name) == version, f"binder pins {name}=={version}, the lock {lock.get(name)}"
    make_torch = re.findall(r'"torch==([^"]+)"', (REPO / "Makefile").read_text())
    assert make_torch and set(make_torch) == {lock["torch"]}, (make_torch, lock["torch"])
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the version CI and Binder run)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in lock, f"{dep.name} (a dependency of the package) is not pinned in constraints.txt"
        assert dep.specifier.contains(lock[name], prereleases=True), f"the lock's {name}=={lock[name]} is outside {dep}"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_launch_link_from_the_git_remote():
    from unlearnkit.course import binder_url

    want = "https://mybinder.org/v2/gh/ann/unlearnkit/HEAD?urlpath=lab/tree/notebooks/00_tour.ipynb"
    for remote in ("https://github.com/ann/unlearnkit.git", "https://github.com/ann/unlearnkit",
                   "git@github.com:ann/unlearnkit.git", "ssh://git@github.com/ann/unlearnkit.git"):
        assert binder_url(remote) == want, remote
    assert binder_url("https://gitlab.com/ann/unlearnkit.git") is None
    assert binder_url("", ref="main") is None
    assert binder_url("git@github.com:ann/u-k.git", ref="v1", notebook="02_x.ipynb").endswith("/ann/u-k/v1?urlpath=lab/"
                                                                                              "tree/notebooks/02_x.ipynb")
