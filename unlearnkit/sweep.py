"""Sweeps over methods / hyperparameters / seeds that survive interruption.

Each run is written atomically to its own folder ``out/<run-name>/`` (``summary.csv``,
``probes.csv``, ``log.csv``, ``run.json``). A run whose folder exists is complete and is *not*
redone; an interrupted run leaves nothing (only a hidden temporary folder that is removed), so
calling :func:`sweep` again resumes where it stopped. ``out/results.csv`` (all summaries) is
rewritten atomically after every run.

:func:`sweep_notebook` does the same for any notebook with a ``parameters`` cell: papermill runs it
once per grid point, each run's executed notebook and published numbers (:func:`record_result`)
land in their own atomic folder, and ``out/results.csv`` holds one row per finished run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .io import atomic_dir, atomic_write_json, atomic_write_text
from .metrics import evaluate, resolve_metrics, summarize
from .train import check_params, unlearn

#: keyword arguments of ``unlearn`` that a sweep config may set besides hyperparameters
_RUN_ARGS = ("method", "lora", "idk", "prompt_format", "probe_data", "retain_probe_data")


def run_name(config: dict) -> str:
    """A readable, stable folder name for a run config: ``<method>-<hash>``."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return f"{config.get('method', 'run')}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def grid(**axes) -> list[dict]:
    """Cartesian product of keyword lists: ``grid(method=["ga", "npo"], seed=[0, 1])`` -> 4 configs."""

    keys = list(axes)
    vals = [v if isinstance(v, (list, tuple)) else [v] for v in axes.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*vals)]


def sweep(model, tokenizer, forget, retain, configs: list[dict], out: str | Path, *, eval_data=None,
          metrics=("probability", "rouge", "truth_ratio"), reference=None, oracle: bool = False,
          progress: bool = True) -> pd.DataFrame:
    """Run :func:`unlearnkit.unlearn` for each config (dicts of its keyword arguments), evaluate, and
    store each run atomically under ``out``. Finished runs are skipped. Returns all summaries.

    ``reference``: the retain model as ``(model, tokenizer)``, for metrics that compare with it
    (``forget_quality``). ``oracle=True`` also evaluates that retain model itself with the same
    metrics on the same data, once, into ``out/oracle/`` (its rows have ``method="oracle"``): the
    point every method aims for, which :mod:`unlearnkit.viz.leaderboard` draws.

    Every config (method name, hyperparameters) and the metric names are validated before the first
    run. Each summary row carries its run's manifest: ``seed``, ``model_digest`` (the unlearned
    weights), ``base_model_digest``, ``tokenizer_digest``, ``data_digest`` and the whole manifest as
    JSON (``manifest``)."""
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, dict):
            raise TypeError(f"sweep: config {i} must be a dict of unlearn keyword arguments, got {type(cfg).__name__}")
        try:
            check_params(cfg.get("method", "ga"), **{k: v for k, v in cfg.items() if k not in _RUN_ARGS})
        except ValueError as e:
            raise type(e)(f"sweep config {i} ({cfg}): {e}") from None
    resolve_metrics(list(metrics))
    if oracle and not (isinstance(reference, tuple) and len(reference) == 2):
        raise ValueError("sweep: oracle=True evaluates the retain model: pass reference=(retain_model, tokenizer)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    data = eval_data if eval_data is not None else {"forget": forget, **({"retain": retain} if retain is not None else {})}
    if oracle and not (out / "oracle" / "summary.csv").exists():
        table = evaluate(reference[0], reference[1], data, list(metrics), reference=reference, model_name="oracle",
                         progress=False)
        with atomic_dir(out / "oracle", overwrite=True) as tmp:
            summarize(table).assign(method="oracle").to_csv(tmp / "summary.csv", index=False)
    done = 0
    for cfg in tqdm(configs, desc="sweep", disable=not progress):
        name = run_name(cfg)
        if (out / name / "summary.csv").exists():
            continue
        res = unlearn(model, tokenizer, forget, retain, progress=False, **cfg)
        table = evaluate(res.model, tokenizer, data, list(metrics), reference=reference, model_name=name, progress=False)
        summ = summarize(table)
        for k, v in cfg.items():
            summ[k] = v if not isinstance(v, (list, dict)) else json.dumps(v)
        man = {**res.manifest, "evaluate": table.attrs.get("manifest", {})}
        summ = summ.assign(run_seed=res.hparams["seed"], model_digest=man.get("model_digest"),
                           base_model_digest=man.get("base_model_digest"), tokenizer_digest=man.get("tokenizer_digest"),
                           data_digest=json.dumps(man.get("data_digest"), sort_keys=True),
                           manifest=json.dumps(man, sort_keys=True, default=str))
        with atomic_dir(out / name) as tmp:
            summ.to_csv(tmp / "summary.csv", index=False)
            res.probes.to_csv(tmp / "probes.csv", index=False)
            res.log.to_csv(tmp / "log.csv", index=False)
            atomic_write_json(tmp / "run.json", {"config": cfg, "stopped": res.stopped, "manifest": man})
        done += 1
        _write_results(out)
    return _write_results(out)


def load_results(out: str | Path) -> pd.DataFrame:
    """All finished runs' summaries under ``out`` (one tidy table, with a ``run`` column)."""
    frames = [pd.read_csv(p).assign(run=p.parent.name) for p in sorted(Path(out).glob("*/summary.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _write_results(out: Path) -> pd.DataFrame:
    df = load_results(out)
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    return df


# -- sensitivity grids ----------------------------------------------------------------------------

#: the coefficient a method's results hinge on, in order of preference: the first one the objective
#: declares is its "main coefficient" (NPO/SimNPO/DPO: beta; BS-T/BS-S: lam; RMU: steering_coeff;
#: task arithmetic/TAU: c; GradDiff/KL/IDK+NLL/ME+GD: alpha, the retain term's weight)
COEFFICIENT_PREFERENCE = ("lam", "beta", "steering_coeff", "c", "alpha", "gamma")


def main_coefficient(method: str) -> str | None:
    """The name of ``method``'s main coefficient (see :data:`COEFFICIENT_PREFERENCE`), or None
    when the objective has no numeric one (plain GA, ME)."""
    from .objectives import get_objective

    params = get_objective(method).params
    for name in COEFFICIENT_PREFERENCE:
        p = params.get(name)
        if p is not None and p.choices is None and isinstance(p.default, (int, float)) \
                and not isinstance(p.default, bool):
            return name
    return None


def sensitivity_grid(methods, *, lr=(1e-4, 3e-4, 1e-3), steps=(5, 10, 20), factors=(1 / 3, 1.0, 3.0),
                     base: dict | None = None) -> list[dict]:
    """One-at-a-time configs for :func:`sweep`: for each method, a base run (the middle ``lr`` and
    ``steps``, the coefficient at its default) and runs that move one axis at a time: every ``lr``
    (learning rate, AdamW), every ``steps`` (optimizer steps) and the main coefficient times each of
    ``factors`` (clipped into its valid range; duplicates dropped). ``base``: other keyword
    arguments every run gets (e.g. ``probe_every=0``). Validated with :func:`check_params`."""
    from .objectives import get_objective

    if isinstance(methods, str):
        methods = [methods]
    lr, steps = list(lr), list(steps)
    if not lr or not steps or not factors:
        raise ValueError("sensitivity_grid: lr, steps and factors each need at least one value")
    configs = []
    for m in methods:
        obj = get_objective(m)
        mid = {"method": obj.name, "lr": lr[len(lr) // 2], "steps": steps[len(steps) // 2], **(base or {})}
        coef = main_coefficient(m)
        if coef is not None:
            p = obj.params[coef]
            mid[coef] = mid.get(coef, p.default)
        points = [mid] + [{**mid, "lr": v} for v in lr] + [{**mid, "steps": v} for v in steps]
        if coef is not None:
            for f in factors:
                v = float(mid[coef]) * f if mid[coef] else float(f)
                lo = p.low if p.low is not None else -float("inf")
                hi = p.high if p.high is not None else float("inf")
                v = min(max(v, lo), hi)
                points.append({**mid, coef: type(p.default)(round(v, 6)) if isinstance(p.default, float) else v})
        for cfg in points:
            if cfg not in configs:
                configs.append(cfg)
    for cfg in configs:
        check_params(cfg["method"], **{k: v for k, v in cfg.items() if k not in _RUN_ARGS})
    return configs


# -- sweeps over notebooks ------------------------------------------------------------------------
#
# A notebook publishes its result row by declaring ``result_path = None`` in its ``parameters``
# cell and ending with ``record_result(result_path, name=value, ...)``: the sweep passes a path
# per run, the notebook writes its numbers there (a JSON object, atomically), and the row of
# ``results.csv`` is the run's parameters plus those numbers. Run by hand (``result_path=None``)
# the call does nothing.

#: parameters a notebook sweep sets itself (per run), not grid axes
_MANAGED = ("result_path",)


def record_result(result_path, **values) -> dict:
    """Publish a notebook's result row for :func:`sweep_notebook`: write ``values`` (numbers,
    strings or booleans; NumPy scalars are converted) as a JSON object to ``result_path``, atomically.
    ``result_path=None`` (the notebook run by hand) writes nothing. Returns the row."""
    row = {}
    for k, v in values.items():
        if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
            v = v.item()
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise TypeError(f"record_result: value {k}={v!r} must be a number, string, bool or None "
                            f"(got {type(v).__name__}); one row of a table holds scalars")
        row[k] = v
    if result_path is not None:
        atomic_write_json(result_path, row)
    return row


def notebook_parameters(notebook: str | Path) -> dict:
    """The parameters a notebook declares in its cell tagged ``parameters``: ``{name: default}``
    (each top-level ``name = value``; literal defaults as Python values, others as their source
    text). The cell is parsed, not run. (``papermill.inspect_notebook`` silently drops a line whose
    comment it cannot parse, e.g. one holding ``>=``; Python's own parser does not.)"""
    import ast

    import nbformat

    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise ValueError(f"notebook={str(notebook)!r}: expected a .ipynb file (a jupytext .py source: pair it "
                         "first with `jupytext --to ipynb`)")
    if not path.is_file():
        raise FileNotFoundError(f"notebook={str(notebook)!r} does not exist")
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{path} has no cell tagged 'parameters': a sweep can only set declared parameters")
    src = cells[0].source
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise ValueError(f"{path}: its parameters cell is not valid Python ({e.msg}, line {e.lineno})") from None
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[t.id] = ast.get_source_segment(src, node.value)
    return out


def _check_value(nb: Path, name: str, value, default):
    """A value for parameter ``name`` must have its default's kind (None defaults take anything)."""
    if default is None:
        return value
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str) or v is None,
          list: lambda v: isinstance(v, (list, tuple)),
          dict: lambda v: isinstance(v, dict)}.get(type(default))
    if ok is not None and not ok(value):
        raise ValueError(f"{nb.name}: parameter {name}={value!r} ({type(value).__name__}) does not fit its default "
                         f"{default!r} ({type(default).__name__})")
    return float(value) if isinstance(default, float) else value


def check_notebook_grid(notebook: str | Path, configs: list[dict], parameters: dict | None = None) -> dict:
    """Validate a notebook sweep before any run: the notebook exists and has a parameters cell,
    every name is one of its parameters (the error lists them), every value fits its default's
    kind, and loop hyperparameters (``steps``, ``lr``, ``seed``...) are in range
    (:func:`unlearnkit.check_params`). Returns the notebook's declared ``{name: default}``."""
    from .train import LOOP_PARAMS

    nb = Path(notebook)
    declared = notebook_parameters(nb)
    valid = ", ".join(n for n in declared if n not in _MANAGED)
    for i, cfg in enumerate([dict(parameters or {})] + list(configs)):
        where = "fixed parameters" if i == 0 else f"grid point {i - 1} ({cfg})"
        for name, value in cfg.items():
            if name in _MANAGED:
                raise ValueError(f"{where}: {name!r} is set by the sweep itself (one per run), not by you")
            if name not in declared:
                import difflib

                close = difflib.get_close_matches(name, list(declared), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{where}: {nb.name} has no parameter {name!r}{hint}; valid names: {valid}")
            value = _check_value(nb, name, value, declared[name])
            if name in LOOP_PARAMS:
                try:
                    check_params(**{name: value})
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
    return declared


def notebook_run_name(notebook: str | Path, params: dict) -> str:
    """A stable folder name for one notebook run: ``<notebook stem>-<hash of its parameters>``."""
    blob = json.dumps({"notebook": Path(notebook).name, **params}, sort_keys=True, default=str)
    return f"{Path(notebook).stem}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def sweep_notebook(notebook: str | Path, grid_points, out: str | Path, *, parameters: dict | None = None,
                   cwd: str | Path | None = None, kernel_name: str | None = None, timeout: float | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Run ``notebook`` with papermill once per grid point; one executed notebook and one result row per run.

    ``grid_points``: ``{name: [values...]}`` (their product, see :func:`grid`) or a list of
    ``{name: value}`` dicts. ``parameters``: values every run gets (e.g. ``{"quick": True}``).
    Everything is validated before the first run (:func:`check_notebook_grid`).

    Each run is written atomically to ``out/<run>/``: ``notebook.ipynb`` (executed), ``result.json``
    (what the notebook passed to :func:`record_result`, if it declares ``result_path``),
    ``run.json`` (parameters, seconds, finish time) and ``figures/`` (passed as ``figures_dir`` when
    the notebook declares it and you do not set it). After each run ``out/results.csv`` (one row per
    finished run: ``run``, the parameters, the published numbers, ``seconds``) is rewritten
    atomically from the run folders, so a rerun skips finished runs and resumes an interrupted sweep
    (Ctrl-C, SIGKILL) without losing or duplicating a row. A run whose notebook fails raises
    (naming the run), keeping the executed notebook at ``out/<run>.failed.ipynb``.
    ``cwd``: the kernel's working folder (default: the notebook's). ``timeout``: seconds per cell.
    Returns the results table.
    """
    import time

    import papermill as pm

    if isinstance(grid_points, dict):
        configs = grid(**grid_points)
    elif isinstance(grid_points, (list, tuple)) and all(isinstance(c, dict) for c in grid_points):
        configs = [dict(c) for c in grid_points]
    else:
        raise TypeError("sweep_notebook: grid_points must be {name: [values]} or a list of {name: value} dicts, "
                        f"got {type(grid_points).__name__}")
    if not configs:
        raise ValueError("sweep_notebook: the grid is empty")
    nb = Path(notebook)
    declared = check_notebook_grid(nb, configs, parameters)
    fixed = {k: _check_value(nb, k, v, declared[k]) for k, v in (parameters or {}).items()}
    configs = [{k: _check_value(nb, k, v, declared[k]) for k, v in c.items()} for c in configs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    cwd = Path(cwd) if cwd is not None else nb.resolve().parent
    bar = tqdm(configs, desc=f"sweep {nb.stem}", disable=not progress)
    for cfg in bar:
        params = {**fixed, **cfg}
        name = notebook_run_name(nb, params)
        if (out / name / "run.json").exists():
            continue
        bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in cfg.items()), refresh=True)
        failed = out / f"{name}.failed.ipynb"
        with atomic_dir(out / name, overwrite=True) as tmp:
            run_params = dict(params)
            if "result_path" in declared:
                run_params["result_path"] = str(tmp / "result.json")
            if "figures_dir" in declared and "figures_dir" not in params:
                run_params["figures_dir"] = str(tmp / "figures")
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(str(nb), str(tmp / "notebook.ipynb"), parameters=run_params, cwd=str(cwd),
                                    kernel_name=kernel_name, progress_bar=False, execution_timeout=timeout)
            except pm.PapermillExecutionError as e:
                shutil.copyfile(tmp / "notebook.ipynb", failed)
                raise RuntimeError(f"sweep_notebook: run {name} ({cfg}) failed in cell {e.exec_count}: {e.ename}: "
                                   f"{e.evalue}; the executed notebook is {failed}") from None
            seconds = time.perf_counter() - t0
            result = {}
            if "result_path" in declared:
                if not (tmp / "result.json").exists():
                    raise RuntimeError(f"sweep_notebook: run {name} ({cfg}) finished without publishing its row: "
                                       "the notebook must call record_result(result_path, ...)")
                result = json.loads((tmp / "result.json").read_text(encoding="utf-8"))
            atomic_write_json(tmp / "run.json", {"notebook": str(nb), "run": name, "parameters": params,
                                                 "grid": cfg, "result": result, "seconds": round(seconds, 3),
                                                 "finished": time.time()})
        failed.unlink(missing_ok=True)
        _write_notebook_results(out)
    return _write_notebook_results(out)


def load_notebook_results(out: str | Path) -> pd.DataFrame:
    """One row per finished notebook run under ``out`` (in finishing order): ``run``, its parameters,
    the numbers it published, ``seconds``."""
    rows = []
    for p in Path(out).glob("*/run.json"):
        info = json.loads(p.read_text(encoding="utf-8"))
        params = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in info["parameters"].items()}
        rows.append({"run": info["run"], **params, **info["result"], "seconds": info["seconds"],
                     "_finished": info["finished"]})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values("_finished", kind="stable").drop(columns="_finished").reset_index(drop=True)


def _write_notebook_results(out: Path) -> pd.DataFrame:
    df = load_notebook_results(out)
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    return df


def _clean_leftovers(out: Path):
    """Remove what a run killed mid-write left behind (hidden temporary folders and files)."""
    for tmp in out.glob(".*.*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
