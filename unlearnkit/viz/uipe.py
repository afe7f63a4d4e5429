"""UIPE's α trade-off: forgetting on direct and indirect probes against utility, as a plot and a slider.

Both take the tidy table of :func:`unlearnkit.editing.uipe_sweep` (one row per alpha, split and
metric); nothing here runs a model. :class:`AlphaExplorer` is headless like the other explorers:
building it returns at once with the figure of its current state (``self.figure``) and its PNG.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import pandas as pd

from .plots import _new_figure
from .widgets import figure_png, static_bundle

#: (split, metric) -> curve label, the curves drawn by default
CURVES = {("forget", "fact_recall"): "direct probes: fact recall (forget)",
          ("indirect", "related_recall"): "indirect probes: related recall",
          ("retain", "probability"): "utility: retain probability"}
_COLORS = {("forget", "fact_recall"): "#c0392b", ("indirect", "related_recall"): "#8e44ad",
           ("retain", "probability"): "#27ae60"}


def alpha_curves(table: pd.DataFrame, curves=None) -> pd.DataFrame:
    """Wide table: one row per alpha, one column per curve label (values of the sweep's aggregates)."""
    curves = CURVES if curves is None else curves
    cols = {}
    for (split, metric), label in curves.items():
        d = table[(table.split == split) & (table.metric == metric)]
        if len(d):
            cols[label] = d.groupby("alpha")["value"].mean()
    if not cols:
        raise ValueError(f"the table has none of the curves {list(curves)} (split, metric); columns: "
                         f"{sorted(set(zip(table.split, table.metric)))}")
    return pd.DataFrame(cols).sort_index()


def plot_alpha_curve(table: pd.DataFrame, alpha: float | None = None, ax=None, curves=None,
                     baselines: dict | None = None, title: str | None = None):
    """Each curve against α (x: α, the extrapolation coefficient; y: metric value in [0, 1]).

    ``alpha``: a vertical marker at that α. ``baselines``: ``{name: {curve label: value}}`` drawn
    as short horizontal ticks at the right edge (other objectives without UIPE). Returns the figure.
    """
    wide = alpha_curves(table, curves)
    if ax is None:
        fig = _new_figure((7, 4))
        ax = fig.add_subplot(111)
    fig = ax.figure
    curves = CURVES if curves is None else curves
    color = {label: _COLORS.get(key) for key, label in curves.items()}
    for label in wide.columns:
        ax.plot(wide.index, wide[label], marker="o", label=label, color=color.get(label))
    if baselines:
        x = wide.index.max()
        for name, vals in baselines.items():
            for label, v in vals.items():
                if label in wide.columns:
                    ax.plot([x * 1.02, x * 1.08], [v, v], color=color.get(label), lw=3, alpha=0.6)
                    ax.annotate(name, (x * 1.08, v), fontsize=7, va="center", color=color.get(label))
    if alpha is not None:
        ax.axvline(alpha, color="0.3", ls="--", lw=1)
        ax.annotate(f"α = {alpha:g}", (alpha, 1.02), ha="center", fontsize=8, xycoords=("data", "axes fraction"))
    ax.set_xlabel("α (θ_UIPE = θ_u + α(θ_u − θ₀))")
    ax.set_ylabel("value")
    ax.set_ylim(-0.03, 1.05)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "UIPE: forgetting vs utility along α", fontsize=10)
    return fig


class AlphaExplorer:
    """A slider over the swept α: the curves with a marker at the chosen α, and (with ``examples``,
    the sweep's ``per_example=True`` table) each indirect probe's greedy answer at that α.

    >>> ex = AlphaExplorer(table, examples)    # returns at once; ex.figure is the current state
    >>> ex.alpha.value = 0.5                    # what the slider does   # doctest: +SKIP
    """

    def __init__(self, table: pd.DataFrame, examples: pd.DataFrame | None = None, alpha: float | None = None,
                 baselines: dict | None = None, dpi: int = 80):
        self.table, self.examples, self.baselines, self.dpi = table, examples, baselines, dpi
        alphas = sorted(set(float(a) for a in table.alpha))
        if not alphas:
            raise ValueError("the sweep table is empty")
        self.alpha = widgets.SelectionSlider(options=[(f"{a:g}", a) for a in alphas],
                                             value=min(alphas, key=lambda a: abs(a - alpha)) if alpha is not None
                                             else alphas[0], description="α", continuous_update=False,
                                             layout=widgets.Layout(width="500px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.info = widgets.HTML()
        self.widget = widgets.VBox([self.alpha, self.image, self.info])
        self.figure, self.png = None, b""
        self.alpha.observe(lambda change: self.update(), names="value")
        self.update()

    def answers(self) -> pd.DataFrame:
        """The indirect probes at the current α: question id, label and greedy answer."""
        if self.examples is None:
            return pd.DataFrame()
        e = self.examples
        e = e[(e.metric == "related_recall") & (e.alpha == self.alpha.value)]
        cols = [c for c in ("id", "person", "attribute", "value", "label", "generation") if c in e.columns]
        return e[cols].rename(columns={"value": "recalled"}).reset_index(drop=True)

    def update(self):
        fig = _new_figure((7, 4), pyplot=False)
        plot_alpha_curve(self.table, self.alpha.value, ax=fig.add_subplot(111), baselines=self.baselines)
        self.figure = fig
        self.png = figure_png(fig, self.dpi)
        self.image.value = self.png
        row = alpha_curves(self.table).loc[self.alpha.value]
        lines = "".join(f"<li>{html.escape(k)}: {v:.3f}</li>" for k, v in row.items())
        a = self.answers()
        tbl = ""
        if len(a):
            tbl = "<table>" + "".join(f"<tr><td>{html.escape(str(r.get('person', '')))}</td><td>"
                                      f"{html.escape(str(r.get('attribute', '')))}</td><td>{html.escape(str(r['label']))}"
                                      f"</td><td>{html.escape(str(r['generation']))}</td></tr>"
                                      for r in a.to_dict("records")) + "</table>"
        self.info.value = f"<b>α = {self.alpha.value:g}</b><ul>{lines}</ul>{tbl}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return static_bundle(self.widget, self.png, include, exclude)

    def __repr__(self) -> str:
        return f"AlphaExplorer(alpha={self.alpha.value:g}, alphas={[a for _, a in self.alpha.options]})"
