"""Resumable sweeps and the command line."""

import pytest

from unlearnkit import sweep as sweep_mod
from unlearnkit.cli import main as cli


def test_interrupted_sweep_resumes_without_redoing(quick_world, tiny, tmp_path, monkeypatch):
    model, tok = tiny
    configs = sweep_mod.grid(method=["ga", "graddiff"], steps=2, probe_every=0)
    out = tmp_path / "sweep"
    real_unlearn = __import__("unlearnkit.train", fromlist=["unlearn"]).unlearn
    calls = []

    def flaky(*a, **kw):
        calls.append(kw["method"])
        if kw["method"] == "graddiff" and len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the sweep during the second run
        return real_unlearn(*a, **kw)

    monkeypatch.setattr("unlearnkit.sweep.unlearn", flaky)  # sweep binds unlearn at import
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.sweep(model, tok, quick_world.forget, quick_world.retain, configs, out, progress=False)
    finished = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(finished) == 1 and finished[0].startswith("ga-")
    mtime = (out / finished[0] / "summary.csv").stat().st_mtime
    df = sweep_mod.sweep(model, tok, quick_world.forget, quick_world.retain, configs, out, progress=False)
    assert calls == ["ga", "graddiff", "graddiff"]  # ga was not redone
    assert (out / finished[0] / "summary.csv").stat().st_mtime == mtime
    assert set(df.method) == {"ga", "graddiff"} and (out / "results.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_list_and_run(tmp_path, capsys, tiny):
    assert cli(["list"]) == 0
    assert "graddiff" in capsys.readouterr().out
    out = tmp_path / "run"
    assert cli(["run", "--quick", "--method", "ga", "--steps", "2", "--set", "probe_every=0", "--out", str(out)]) == 0
    assert (out / "config.json").exists()
    capsys.readouterr()
    assert cli(["run", "--quick", "--method", "graddiff", "--set", "alpha=-1", "--out", str(tmp_path / "bad")]) == 2
    assert "valid range" in capsys.readouterr().err.splitlines()[-1]  # one line, no traceback (--debug shows it)
    with pytest.raises(ValueError, match="valid range"):
        cli(["run", "--quick", "--method", "graddiff", "--set", "alpha=-1", "--out", str(tmp_path / "bad"), "--debug"])
    assert not (tmp_path / "bad").exists()


def test_cli_evaluate_with_options_reference_and_holdout(tmp_path, capsys, tiny, tiny_retain):
    """On the miniature world the retain model and the holdout split come from the world, whatever
    --model is; --set passes validated evaluation options."""
    import pandas as pd

    out = tmp_path / "eval.csv"
    assert cli(["evaluate", "--quick", "--metrics", "forget_quality", "mia_loss", "--set", "max_new_tokens=8",
                "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert {"forget_quality", "mia_loss"} <= set(df.metric)
    assert "forget_vs_holdout" in set(df.split)
    capsys.readouterr()
    assert cli(["evaluate", "--quick", "--metrics", "rouge", "--set", "max_new_tokenz=8"]) == 2
    assert "did you mean max_new_tokens" in capsys.readouterr().err.splitlines()[-1]
    assert (tmp_path / "eval.csv.manifest.json").exists()


def test_cli_sweep_grid_axes_and_oracle(tmp_path, capsys, tiny, tiny_retain):
    """``-p`` axes multiply with --methods/--seeds; --oracle evaluates the retain model once, with
    the same metrics (forget quality included), into out/oracle; a rerun redoes nothing."""
    import pandas as pd

    out = tmp_path / "sweep"
    argv = ["sweep", "--quick", "--methods", "ga", "npo", "-p", "steps", "1", "2", "--set", "probe_every=0",
            "--oracle", "--out", str(out)]
    assert cli(argv) == 0
    df = pd.read_csv(out / "results.csv")
    runs = df[df.method != "oracle"]
    assert sorted(set(zip(runs.method, runs.steps))) == [("ga", 1), ("ga", 2), ("npo", 1), ("npo", 2)]
    oracle = df[df.method == "oracle"].set_index(["split", "metric"]).value
    assert oracle[("forget", "forget_quality")] == pytest.approx(1.0)  # the retain model against itself
    assert {"forget_quality", "model_utility", "probability"} <= set(runs.metric)
    stamp = (out / "oracle" / "summary.csv").stat().st_mtime
    assert cli(argv) == 0
    assert (out / "oracle" / "summary.csv").stat().st_mtime == stamp
    assert len(pd.read_csv(out / "results.csv")) == len(df)
    capsys.readouterr()
    assert cli(["sweep", "--quick", "-p", "stepz", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_sensitivity_grid_and_main_coefficient():
    from unlearnkit.sweep import main_coefficient, sensitivity_grid

    assert {m: main_coefficient(m) for m in ("ga", "npo", "graddiff", "bs_t", "rmu", "tau", "me")} == \
        {"ga": None, "npo": "beta", "graddiff": "alpha", "bs_t": "lam", "rmu": "steering_coeff", "tau": "c",
         "me": None}
    g = sensitivity_grid(["ga", "bs_t"], lr=(1e-4, 3e-4, 1e-3), steps=(4, 8, 16), factors=(1 / 3, 1.0, 3.0),
                         base={"probe_every": 0})
    ga = [c for c in g if c["method"] == "ga"]
    assert ga[0] == {"method": "ga", "lr": 3e-4, "steps": 8, "probe_every": 0}  # the base run first
    assert len(ga) == 5 and len({tuple(sorted(c.items())) for c in g}) == len(g)  # no run twice
    lams = sorted(c["lam"] for c in g if c["method"] == "bs_t" and c["lr"] == 3e-4 and c["steps"] == 8)
    assert lams == [pytest.approx(0.5 / 3, abs=1e-6), 0.5, 1.0]  # 0.5 x 3 clipped to lam's upper bound, 1
    with pytest.raises(KeyError, match="valid choices"):
        sensitivity_grid(["nope"])
    with pytest.raises(ValueError, match="at least one value"):
        sensitivity_grid(["ga"], lr=())
    with pytest.raises(ValueError, match="lr.*valid range"):
        sensitivity_grid(["ga"], lr=(-1.0,))


def test_sweep_oracle_needs_the_reference(quick_world, tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(ValueError, match="oracle=True.*reference=\\(retain_model, tokenizer\\)"):
        sweep_mod.sweep(model, tok, quick_world.forget, quick_world.retain, [{"method": "ga"}], tmp_path / "s",
                        oracle=True)
    assert not (tmp_path / "s").exists()
