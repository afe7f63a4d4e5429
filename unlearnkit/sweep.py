"""Sweeps over methods / hyperparameters / seeds that survive interruption.

Each run is written atomically to its own folder ``out/<run-name>/`` (``summary.csv``,
``probes.csv``, ``log.csv``, ``run.json``). A run whose folder exists is complete and is *not*
redone; an interrupted run leaves nothing (only a hidden temporary folder that is removed), so
calling :func:`sweep` again resumes where it stopped. ``out/results.csv`` (all summaries) is
rewritten atomically after every run.
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
          metrics=("probability", "rouge", "truth_ratio"), reference=None, progress: bool = True) -> pd.DataFrame:
    """Run :func:`unlearnkit.unlearn` for each config (dicts of its keyword arguments), evaluate, and
    store each run atomically under ``out``. Finished runs are skipped. Returns all summaries.

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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.*"):  # leftovers of a run killed mid-write
        if tmp.is_dir():

            shutil.rmtree(tmp, ignore_errors=True)
    done = 0
    for cfg in tqdm(configs, desc="sweep", disable=not progress):
        name = run_name(cfg)
        if (out / name / "summary.csv").exists():
            continue
        res = unlearn(model, tokenizer, forget, retain, progress=False, **cfg)
        data = eval_data if eval_data is not None else {"forget": forget, **({"retain": retain} if retain is not None else {})}
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
