"""Plots and a widget for per-sequence memorization (notebook 03). Nothing here runs a model: the
inputs are tables from :mod:`unlearnkit.memorization` (``memorization_scores``,
``token_match_table``, ``memorization_probe`` rows).

* :func:`plot_memorization_spread`: MA (or any quantity) per sequence against training repetitions,
  with the unseen-data level as a line.
* :func:`plot_ma_histograms`: one histogram of per-sequence MA per model, thresholds drawn.
* :func:`plot_ma_trajectories`: each sequence's own MA along a run (one line per sequence).
* :class:`MemorizationExplorer`: pick a sequence; its tokens coloured by teacher-forced greedy match
  (green) or miss (red), one row per model (before / after each method). Headless: the figure of
  the current state exists at once (``.figure``, ``.png``), also shown as a static PNG.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import pandas as pd

from .plots import _new_figure
from .widgets import figure_png, static_bundle

MATCH, MISS = "#4c9a52", "#c8553d"


def plot_memorization_spread(scores: pd.DataFrame, *, x: str = "repetitions", quantity: str = "ma",
                             unseen: float | None = None, title: str | None = None):
    """Per-sequence ``quantity`` (y, in [0, 1]) against ``x`` (e.g. training copies per epoch), jittered
    points and the mean per level; ``unseen``: a horizontal line at the unseen-data level."""
    d = scores[scores.quantity == quantity] if "quantity" in scores else scores
    fig = _new_figure((6, 3.6))
    ax = fig.add_subplot(111)
    levels = sorted(d[x].unique())
    rng = np.random.default_rng(0)
    for k, lv in enumerate(levels):
        v = d.loc[d[x] == lv, "value"].to_numpy()
        ax.scatter(k + rng.uniform(-0.12, 0.12, v.size), v, s=22, alpha=0.7, color="#3b6ea5")
        ax.plot([k - 0.25, k + 0.25], [v.mean()] * 2, color="black", lw=2)
    if unseen is not None:
        ax.axhline(unseen, color="grey", ls="--", lw=1)
        ax.text(len(levels) - 0.5, unseen, f" unseen level {unseen:.2f}", va="bottom", ha="right", fontsize=8)
    ax.set_xticks(range(len(levels)), [str(lv) for lv in levels])
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(quantity.upper())
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title or f"{quantity.upper()} per sequence vs {x.replace('_', ' ')}")
    return fig


def plot_ma_histograms(ma: pd.DataFrame, *, high: float | None = None, low: float | None = None, bins: int = 10,
                       order=None):
    """One MA histogram per ``model`` (columns ``model``, ``value``), on [0, 1], thresholds as lines."""
    models = list(order or dict.fromkeys(ma["model"]))
    fig = _new_figure((2.6 * len(models), 2.6))
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, m in zip(axes, models):
        v = ma.loc[ma.model == m, "value"].to_numpy(dtype=float)
        ax.hist(v, bins=bins, range=(0, 1), color="#3b6ea5", alpha=0.8)
        for t, ls in ((high, "--"), (low, ":")):
            if t is not None:
                ax.axvline(t, color="black", ls=ls, lw=1)
        n_hi = int((v > high).sum()) if high is not None else None
        ax.set_title(f"{m}" + (f"\n{n_hi}/{v.size} above {high:.2f}" if high is not None else ""), fontsize=9)
        ax.set_xlabel("MA")
    axes[0].set_ylabel("sequences")
    return fig


def plot_ma_trajectories(traj: pd.DataFrame, *, hue: str | None = "repetitions", threshold: float | None = None,
                         title: str | None = None):
    """Each sequence's MA along a run: columns ``step``, ``id``, ``value`` (+ ``hue``, e.g. repetitions)."""
    fig = _new_figure((6, 3.6))
    ax = fig.add_subplot(111)
    levels = sorted(traj[hue].unique()) if hue and hue in traj else [None]
    cmap = {lv: c for lv, c in zip(levels, ["#9ecae1", "#4292c6", "#2171b5", "#08306b", "#000000"] * 4)}
    for _, g in traj.groupby("id"):
        g = g.sort_values("step")
        lv = g[hue].iloc[0] if hue and hue in g else None
        ax.plot(g["step"], g["value"], color=cmap[lv], alpha=0.8, lw=1.2,
                label=f"{hue} {lv}" if lv is not None else None)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1)
    h, lab = ax.get_legend_handles_labels()
    if lab:
        uniq = dict(zip(lab, h))
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("MA")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title or "MA of each forget sequence along the run")
    return fig


def _short(text: str, n: int = 70) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


class MemorizationExplorer:
    """Pick a sequence and see its per-token memorization under each model.

    ``tables``: ``{model name: token_match_table(...)}`` (same data for every model); ``labels``:
    optional ``{id: text}`` for the dropdown. Controls: ``sequence`` (Dropdown of ids). State:
    ``table`` (the selected sequence's rows for every model, with a ``model`` column), ``ma``
    (``{model: MA}``), ``figure``/``png`` (the current drawing).
    """

    def __init__(self, tables: dict, *, labels: dict | None = None, sequence=None, dpi: int = 80):
        if not tables:
            raise ValueError("no tables given: pass {model name: token_match_table(model, tok, data)}")
        self.tables = dict(tables)
        ids = list(dict.fromkeys(next(iter(self.tables.values()))["id"]))
        self.labels = labels or {}
        self.dpi = dpi
        self.sequence = widgets.Dropdown(options=[(f"{_short(self.labels.get(i, i))} (id {i})", i) for i in ids],
                                         value=sequence if sequence in ids else ids[0], description="sequence",
                                         layout=widgets.Layout(width="680px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.info = widgets.HTML()
        self.widget = widgets.VBox([self.sequence, self.image, self.info])
        self.sequence.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self):
        sid = self.sequence.value
        parts = [t[t.id == sid].assign(model=name) for name, t in self.tables.items()]
        self.table = pd.concat(parts, ignore_index=True)
        self.ma = {name: float(g["match"].mean()) for name, g in self.table.groupby("model", sort=False)}
        fig = _new_figure((12, 0.55 * len(self.tables) + 0.8), pyplot=False)
        self._draw(fig)
        self.figure = fig
        self.png = figure_png(fig, self.dpi)
        self.image.value = self.png
        self.info.value = self._html()

    def _draw(self, fig):
        ax = fig.add_subplot(111)
        names = list(self.tables)
        n_tok = int(self.table.groupby("model").size().max())
        for r, name in enumerate(names):
            g = self.table[self.table.model == name].sort_values("position")
            y = len(names) - 1 - r
            for _, row in g.iterrows():
                ax.add_patch(_rect(row.position, y, MATCH if row.match else MISS))
                ax.text(row.position + 0.5, y + 0.5, row.token.strip() or "␣", ha="center", va="center", fontsize=6,
                        color="white")
            ax.text(-0.3, y + 0.5, f"{name}  MA {self.ma[name]:.2f}", ha="right", va="center", fontsize=8)
        ax.set_xlim(0, n_tok)
        ax.set_ylim(0, len(names))
        ax.axis("off")
        ax.set_title(f"sequence {self.sequence.value}: green = greedy next token right (teacher forced), red = wrong",
                     fontsize=9)

    def _html(self) -> str:
        out = []
        for name in self.tables:
            g = self.table[self.table.model == name].sort_values("position")
            spans = "".join(
                f'<span style="background:{MATCH if m else MISS};color:white;padding:0 1px" '
                f'title="greedy: {html.escape(p)}">{html.escape(t)}</span>'
                for t, p, m in zip(g.token, g.predicted, g.match))
            out.append(f"<div><b>{html.escape(str(name))}</b> (MA {self.ma[name]:.2f}): {spans}</div>")
        return "".join(out)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {**static_bundle(self.widget, self.png, include, exclude), "text/plain": repr(self)}

    def __repr__(self) -> str:
        ma = ", ".join(f"{k} {v:.2f}" for k, v in self.ma.items())
        return f"MemorizationExplorer(sequence {self.sequence.value}: MA {ma})"


def _rect(x, y, color):
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.03, y + 0.08), 0.94, 0.84, color=color)
