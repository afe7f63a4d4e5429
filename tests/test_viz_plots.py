"""The static plots: labelled axes, one line / point / bar per thing plotted."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from unlearnkit import viz

DATA = [{"id": i, "question": f"Q{i}?", "answer": f"A{i}.", "paraphrased_answer": f"P{i}.",
         "perturbed_answer": [f"W{i}."]} for i in range(2)]


def fake_result(decay: float, steps=(0, 2, 4)):
    rows = []
    for s in steps:
        for i in range(2):
            t = 0.6 * decay ** s
            vals = {"target": t, "paraphrase": 0.3 + (0.6 - t) * 0.9, "perturbed": 0.01, "belief": 0.6,
                    "initial_belief": t, "entropy": 0.1 + s * 0.05}
            for q, v in vals.items():
                rows.append({"step": s, "split": "forget", "id": i, "quantity": q, "value": v, "prob_norm": np.nan,
                             "text": (f"A{i}." if s == 0 else f"P{i}.") if q == "belief" else None})
    return SimpleNamespace(probes=pd.DataFrame(rows))


def summary():
    rows = []
    for m, fq, mu in (("target", 1e-5, 0.6), ("GA", 0.02, 0.4), ("NPO", 0.3, 0.5)):
        rows += [{"model": m, "split": "forget", "metric": "forget_quality", "value": fq},
                 {"model": m, "split": "retain+world_facts", "metric": "model_utility", "value": mu},
                 {"model": m, "split": "forget", "metric": "rouge", "value": mu / 2}]
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_method_trajectories_one_line_per_objective():
    res = {"GA": fake_result(0.5), "NPO": fake_result(0.8), "ME": fake_result(0.9)}
    fig = viz.plot_method_trajectories(res, quantities=("target", "paraphrase"))
    assert len(fig.axes) == 3  # two quantities + entropy
    for ax in fig.axes:
        assert len(ax.get_lines()) == 3
        assert ax.get_xlabel() == "unlearning step" and ax.get_ylabel()
    target_ga = fig.axes[0].get_lines()[0]
    assert list(target_ga.get_xdata()) == [0, 2, 4]
    assert target_ga.get_ydata()[-1] == pytest.approx(0.6 * 0.5 ** 4)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["GA", "NPO", "ME"]


def test_where_mass_goes_bars():
    res = {"GA": fake_result(0.5), "NPO": fake_result(0.8)}
    fig = viz.plot_where_mass_goes(res, DATA)
    ax = fig.axes[0]
    assert len(ax.containers) == 3  # before + two objectives
    kinds = [t.get_text() for t in ax.get_xticklabels()]
    assert len(kinds) == len(ax.containers[0]) == 6
    assert ax.containers[1][0].get_height() == pytest.approx(0.6 * 0.5 ** 4)  # GA's target at the last step
    assert ax.get_ylabel() and ax.get_xlabel()


def test_tradeoff_scatter_log_x():
    fig = viz.plot_tradeoff(summary())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.collections) == 3
    offsets = np.vstack([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(offsets[:, 0], [1e-5, 0.02, 0.3])
    np.testing.assert_allclose(offsets[:, 1], [0.6, 0.4, 0.5])
    assert "forget quality" in ax.get_xlabel() and "model utility" in ax.get_ylabel()
    assert any(abs(line.get_xdata()[0] - 0.05) < 1e-12 for line in ax.get_lines())  # the p = 0.05 line


def test_metric_table_one_cell_per_model_and_metric():
    fig = viz.plot_metric_table(summary())
    ax = fig.axes[0]
    img = ax.get_images()[0].get_array()
    assert img.shape == (3, 3)
    texts = {t.get_text() for t in ax.texts}
    assert "1.0e-05" in texts and "0.600" in texts
    assert ax.get_xlabel() and ax.get_ylabel() == "model"
    # colour is per column: the log10 of forget quality ranks NPO highest
    assert img[2, list(ax.get_xticks()).index(0)] == pytest.approx(1.0)


def test_answer_distribution_plot_bar_heights():
    p = fake_result(0.5).probes
    t = viz.answer_distribution(p, DATA, 0, 4)
    fig = viz.plot_answer_distribution(t)
    ax = fig.axes[0]
    assert [b.get_height() for b in ax.containers[1]] == pytest.approx(list(t.after))
    assert ax.get_ylabel() == "sequence probability (mass)" and ax.get_xlabel()
    assert "(= paraphrase)" in " ".join(x.get_text() for x in ax.get_xticklabels())


def test_entropy_strip_boxes_and_colours():
    toks = pd.DataFrame({"token": [" a", " b", "\x01"], "entropy": [0.0, 1.0, 2.0]})
    fig, ax = plt.subplots()
    sm = viz.plot_entropy_strip([("before", toks), ("after", toks.iloc[:2])], ax)
    assert len(ax.patches) == 5
    assert sm.norm.vmax == pytest.approx(2.0)
    assert ax.patches[0].get_facecolor() != ax.patches[2].get_facecolor()
    assert "\\x01" in [t.get_text() for t in ax.texts]  # control characters are escaped, not drawn as boxes
    assert ax.get_xlabel()


def test_save_writes_png(tmp_path):
    fig = viz.plot_tradeoff(summary())
    path = viz.save(fig, "x", tmp_path)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert viz.save(fig, "x", None) is None


def test_split_bars_one_legend_for_all_panels():
    fig = viz.plot_split_bars(summary(), metrics=("rouge", "model_utility"), splits=("forget", "retain+world_facts"))
    assert len(fig.axes) == 2 and all(ax.get_legend() is None for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["target", "GA", "NPO"]
    assert len(fig.axes[0].patches) >= 3 and fig.axes[0].get_ylabel() == "rouge"


def test_attack_bars_and_mia_strips():
    attacks = pd.DataFrame([{"model": m, "attack": a, "measure": "probability", "before": b, "after": b + d,
                             "change": d} for m, b, d in (("retain", 0.0, 0.1), ("GA", 0.2, 0.4))
                            for a in ("relearning", "4-bit weight rounding")])
    fig = viz.plot_attacks(attacks)
    assert len(fig.axes) == 2
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == [0.0, 0.1, 0.2, 0.6]
    plt.close(fig)
    rows = [{"model": m, "split": s, "metric": "mia_min_k", "id": i, "value": v}
            for m in ("target", "GA") for s, v in (("forget", 1.0), ("holdout", 5.0)) for i in range(3)]
    rows += [{"model": "target", "split": "forget_vs_holdout", "metric": "mia_min_k", "id": -1, "value": 1.0},
             {"model": "GA", "split": "forget_vs_holdout", "metric": "mia_min_k", "id": -1, "value": 0.75}]
    fig = viz.plot_mia_scores(pd.DataFrame(rows))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["target\nAUC 1.00", "GA\nAUC 0.75"]
    assert sum(len(c.get_offsets()) for c in fig.axes[1].collections) == 6  # every row drawn
    plt.close(fig)


def test_equal_forgetting_plot_one_path_per_run_and_marks_the_levels():
    from unlearnkit import viz
    fig = viz.plot_equal_forgetting({"GA": fake_result(0.5), "NPO": fake_result(0.8)})
    ax = fig.axes[0]
    assert len([line for line in ax.lines if line.get_label() in ("GA", "NPO")]) == 2
    assert ax.xaxis_inverted()
    assert len(ax.collections) == 2  # the crossings of each run
