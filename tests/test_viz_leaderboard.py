"""The leaderboard and the sensitivity view: tables computed right, one mark per run, the oracle
drawn, the widget's dropdowns driving the figure; on a hand-made sweep table and on a real one."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from unlearnkit import viz
from unlearnkit.viz import leaderboard as lb


def long_table() -> pd.DataFrame:
    """A function-sweep table (long) of two methods, one-at-a-time around a base run, and the oracle.

    GA: forget probability falls with lr and steps, and retain probability with it; NPO keeps more
    retain probability at the same forgetting and has beta swept."""
    runs = []
    for lr, steps, f, r in ((1e-4, 8, 0.8, 0.95), (3e-4, 8, 0.4, 0.85), (1e-3, 8, 0.05, 0.5), (3e-4, 4, 0.6, 0.9),
                            (3e-4, 16, 0.1, 0.7)):
        runs.append(dict(method="ga", lr=lr, steps=steps, beta=np.nan, f=f, r=r, fq=0.1, mu=r - 0.05))
    for lr, steps, beta, f, r in ((1e-4, 8, 0.1, 0.85, 0.96), (3e-4, 8, 0.1, 0.45, 0.93), (1e-3, 8, 0.1, 0.08, 0.8),
                                  (3e-4, 8, 0.03, 0.5, 0.94), (3e-4, 8, 0.3, 0.3, 0.9), (3e-4, 16, 0.1, 0.15, 0.88)):
        runs.append(dict(method="npo", lr=lr, steps=steps, beta=beta, f=f, r=r, fq=0.4, mu=r - 0.04))
    rows = []
    for i, run in enumerate(runs):
        name = f"{run['method']}-{i:02d}"
        for split, metric, v in (("forget", "probability", run["f"]), ("retain", "probability", run["r"]),
                                 ("forget", "forget_quality", run["fq"]),
                                 ("retain+world_facts", "model_utility", run["mu"])):
            rows.append({"model": name, "split": split, "metric": metric, "value": v, "n": 10, "direction": "",
                         "method": run["method"], "lr": run["lr"], "steps": run["steps"], "beta": run["beta"],
                         "run_seed": 0, "manifest": "{}", "run": name})
    for split, metric, v in (("forget", "probability", 0.01), ("retain", "probability", 0.97),
                             ("forget", "forget_quality", 1.0), ("retain+world_facts", "model_utility", 0.93)):
        rows.append({"model": "oracle", "split": split, "metric": metric, "value": v, "n": 10, "direction": "",
                     "method": "oracle", "run": "oracle"})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_leaderboard_table_one_row_per_run_with_oracle(tmp_path):
    df = long_table()
    df.to_csv(tmp_path / "results.csv", index=False)
    t = lb.leaderboard_table(tmp_path / "results.csv")  # a path works too
    assert len(t) == 12 and t.run.is_unique and t.is_oracle.sum() == 1
    assert list(t.columns[:7]) == ["run", "method", "forget_probability", "retain_probability", "forget_quality",
                                   "model_utility", "is_oracle"]
    row = t.set_index("run").loc["npo-09"]
    assert (row.forget_probability, row.retain_probability, row.beta, row.model_utility) == (0.3, 0.9, 0.3, 0.86)
    assert lb.oracle_row(t).forget_quality == 1.0
    assert lb.table_methods(t) == ["ga", "npo"]
    assert lb.swept_hyperparameters(t, "ga") == ["lr", "steps"]
    assert lb.swept_hyperparameters(t, "npo") == ["lr", "steps", "beta"]
    with pytest.raises(ValueError, match="no runs of method 'rmu'; methods: \\['ga', 'npo'\\]"):
        lb.swept_hyperparameters(t, "rmu")
    with pytest.raises(ValueError, match="none of"):
        lb.leaderboard_table(df.assign(metric="rouge"))
    with pytest.raises(ValueError, match="empty"):
        lb.leaderboard_table(df.iloc[:0])
    # a notebook sweep's wide table passes through
    wide = pd.DataFrame({"run": ["a", "b"], "lr": [1e-4, 3e-4], "forget_probability": [0.5, 0.2],
                         "retain_probability": [0.9, 0.8]})
    w = lb.leaderboard_table(wide)
    assert list(w.method) == ["run", "run"] and not w.is_oracle.any()


def test_equal_forgetting_picks_the_best_utility_at_the_common_level():
    t = lb.leaderboard_table(long_table())
    eq = lb.equal_forgetting_runs(t).set_index("method")
    # GA reaches 0.05, NPO only 0.08: the common level is 0.08; GA's runs at or below it: lr 1e-3 (0.05)
    assert eq.attrs["level"] == pytest.approx(0.08)
    assert eq.loc["ga", "forget_probability"] == 0.05 and eq.loc["ga", "retain_probability"] == 0.5
    assert eq.loc["npo", "forget_probability"] == 0.08 and eq.loc["npo", "retain_probability"] == 0.8
    assert (eq.forget_probability <= eq.attrs["level"] + 1e-12).all()


def test_base_runs_are_the_grid_centres():
    t = lb.leaderboard_table(long_table())
    b = viz.base_runs(t).set_index("method")
    assert list(b.index) == ["ga", "npo"]  # not the oracle
    assert (b.loc["ga", "lr"], b.loc["ga", "steps"], b.loc["ga", "forget_probability"]) == (3e-4, 8, 0.4)
    # NPO has three runs at lr 3e-4 and 8 steps (beta 0.03, 0.1, 0.3): the base is beta's common value
    assert (b.loc["npo", "beta"], b.loc["npo", "forget_probability"]) == (0.1, 0.45)


def test_plot_leaderboard_marks_every_run_and_the_oracle():
    t = lb.leaderboard_table(long_table())
    fig = viz.plot_leaderboard(t)
    left, right = fig.axes
    assert left.xaxis_inverted() and right.get_xscale() == "log"
    for ax, (x, y) in ((left, ("forget_probability", "retain_probability")), (right, ("forget_quality", "model_utility"))):
        dots = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) and
                               c.get_sizes()[0] < 50])  # the runs (small dots), method by method
        runs = t[~t.is_oracle]
        assert len(dots) == len(runs)
        assert sorted(map(tuple, np.round(dots, 6))) == sorted(zip(runs[x].round(6), runs[y].round(6)))
        star = [c for c in ax.collections if c.get_sizes()[0] == 320]
        assert len(star) == 1 and tuple(star[0].get_offsets()[0]) == (lb.oracle_row(t)[x], lb.oracle_row(t)[y])
        assert "retain model (oracle)" in [x.get_text() for x in ax.get_legend().get_texts()]
        assert ax.get_xlabel() and ax.get_ylabel()
    rings = [c for c in left.collections if c.get_sizes()[0] == 110][0].get_offsets()
    assert sorted(map(tuple, rings)) == [(0.05, 0.5), (0.08, 0.8)]


def test_sensitivity_table_holds_the_others_at_the_base_run():
    t = lb.leaderboard_table(long_table())
    s = lb.sensitivity_table(t, "npo", "lr")
    assert list(s.lr) == [1e-4, 3e-4, 1e-3] and list(s.forget_probability) == [0.85, 0.45, 0.08]
    assert s.attrs["fixed"] == {"steps": 8, "beta": 0.1} and list(s.n) == [1, 1, 1]
    assert s.attrs["oracle"]["retain_probability"] == 0.97
    b = lb.sensitivity_table(t, "npo", "beta")
    assert list(b.beta) == [0.03, 0.1, 0.3] and list(b.retain_probability) == [0.94, 0.93, 0.9]
    with pytest.raises(ValueError, match="'beta' was not swept for method 'ga'; swept: lr, steps"):
        lb.sensitivity_table(t, "ga", "beta")


def test_plot_sensitivity_and_the_grid():
    t = lb.leaderboard_table(long_table())
    fig = viz.plot_sensitivity(t, "npo", "lr")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["forget probability"].get_ydata(), [0.85, 0.45, 0.08])
    targets = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_ydata())]
    assert sorted(targets) == [0.01, 0.93, 0.97]  # the oracle's forget, utility and retain values
    assert "steps=8" in ax.get_title() and "beta=0.1" in ax.get_title()
    grid = viz.plot_sensitivity_grid(t)
    visible = [a for a in grid.axes if a.axison]
    assert [a.get_xlabel() for a in visible] == ["lr", "steps", "lr", "steps", "beta"]  # GA: no coefficient


def test_sensitivity_explorer_dropdowns_drive_the_figure():
    ex = viz.SensitivityExplorer(long_table())
    assert ex.method.options == ("ga", "npo") and ex.hyperparameter.options == ("lr", "steps")
    assert ex.png.startswith(b"\x89PNG") and ex.image.value == ex.png and "<table" in ex.info.value
    png0 = ex.png
    ex.method.value = "npo"
    assert ex.hyperparameter.options == ("lr", "steps", "beta") and ex.hyperparameter.value == "lr"
    assert list(ex.table.forget_probability) == [0.85, 0.45, 0.08] and ex.png != png0
    ex.hyperparameter.value = "beta"
    assert list(ex.table.beta) == [0.03, 0.1, 0.3]
    np.testing.assert_allclose([ln for ln in ex.figure.axes[0].get_lines()
                                if ln.get_label() == "retain probability"][0].get_ydata(), [0.94, 0.93, 0.9])
    ex.method.value = "ga"  # beta was not swept for GA: back to its first hyperparameter
    assert ex.hyperparameter.value == "lr" and ex.table.attrs["method"] == "ga"
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    with pytest.raises(ValueError, match="choose one of"):
        viz.SensitivityExplorer(long_table(), method="npo", hyperparameter="alpha")


@pytest.mark.slow
def test_on_a_real_sweep_with_its_oracle(tmp_path, quick_world, tiny, tiny_retain):
    from unlearnkit.sweep import sensitivity_grid, sweep

    model, tok = tiny
    configs = sensitivity_grid(["ga", "npo"], lr=(1e-4, 1e-3), steps=(2,), factors=(1.0, 3.0),
                               base={"probe_every": 0})
    assert len(configs) == 5  # GA: 2 lr; NPO: 2 lr + beta x3 (beta x1 is the base run)
    sweep(model, tok, quick_world.forget, quick_world.retain, configs, tmp_path / "s",
          metrics=("probability", "forget_quality", "model_utility"), reference=tiny_retain, oracle=True,
          progress=False)
    t = lb.leaderboard_table(tmp_path / "s" / "results.csv")
    assert len(t) == 6 and t.is_oracle.sum() == 1
    o = lb.oracle_row(t)
    assert o.forget_quality == pytest.approx(1.0) and o.forget_probability < t[~t.is_oracle].forget_probability.min()
    ga = lb.sensitivity_table(t, "ga", "lr")
    assert ga.forget_probability.iloc[1] < ga.forget_probability.iloc[0]  # a higher lr forgets more in 2 steps
    fig = viz.plot_leaderboard(t)
    assert len(fig.axes) == 2
    ex = viz.SensitivityExplorer(t, method="npo", hyperparameter="beta")
    assert list(ex.table.beta) == [0.1, 0.3]
