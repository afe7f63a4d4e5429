"""The leaderboard: every method's runs of a sweep on the forgetting-vs-utility plane, the retain
model as the oracle, methods compared at equal forgetting, and each hyperparameter's effect.

Everything takes the table a sweep writes (``results.csv`` of :func:`unlearnkit.sweep.sweep`, long:
one row per run, split and metric; or of :func:`unlearnkit.sweep.sweep_notebook`, wide: one row per
run) and reshapes it with :func:`leaderboard_table` into one row per run with the columns

* ``forget_probability``: mean probability of the forget answers (lower = more forgotten),
* ``retain_probability``: mean probability of the retain answers (higher = more kept),
* ``forget_quality``: TOFU's KS-test p-value against the retain model (higher = closer to it),
* ``model_utility``: TOFU's harmonic mean of retain / world-facts scores (higher = more kept),

when the sweep measured them, plus the run's hyperparameters. The oracle is the row whose
``method`` is ``"oracle"`` (the retain-only model, evaluated with the same metrics: see
``sweep(..., oracle=True)``). Nothing here runs a model. :class:`SensitivityExplorer` is headless
like the other explorers: building it returns at once with the figure of its current state.
"""

from __future__ import annotations

import html
import json

import ipywidgets as widgets
import numpy as np
import pandas as pd
import seaborn as sns

from ..sweep import main_coefficient
from .plots import _new_figure
from .widgets import figure_png, static_bundle

#: (split, metric) of a long sweep table -> the leaderboard's column
COLUMNS = {("forget", "probability"): "forget_probability", ("retain", "probability"): "retain_probability",
           ("forget", "forget_quality"): "forget_quality", ("retain", "model_utility"): "model_utility"}
#: metrics that make their column whatever their split is called (model utility: ``retain+world_facts``...)
_BY_METRIC = {"forget_quality": "forget_quality", "model_utility": "model_utility"}
#: what each column means, for axis labels
LABELS = {"forget_probability": "forget probability (lower = more forgotten)",
          "retain_probability": "retain probability (higher = more kept)",
          "forget_quality": "forget quality (KS p-value vs retain model, log)",
          "model_utility": "model utility (higher = more kept)"}
#: columns of a sweep table that describe a run but are not hyperparameters
_META = {"run", "model", "split", "metric", "value", "n", "direction", "run_seed", "model_digest",
         "base_model_digest", "tokenizer_digest", "data_digest", "manifest", "seconds", "method", "is_oracle"}
ORACLE = "oracle"
_ORACLE_STYLE = dict(marker="*", s=320, color="#f1c40f", edgecolor="black", zorder=5)


def leaderboard_table(results) -> pd.DataFrame:
    """One row per run: ``run``, ``method``, its hyperparameters and the leaderboard columns
    (:data:`COLUMNS`; those the sweep measured), plus ``is_oracle``. ``results``: a sweep table
    (DataFrame) or the path of its ``results.csv``."""
    df = pd.read_csv(results) if not isinstance(results, pd.DataFrame) else results.copy()
    if df.empty:
        raise ValueError("the sweep table is empty: no finished run yet")
    if {"split", "metric", "value"} <= set(df.columns):  # the function sweep's long table
        if "run" not in df.columns:
            raise ValueError("a long sweep table needs a 'run' column (as results.csv of unlearnkit.sweep.sweep has)")
        column = [COLUMNS.get((s, m), _BY_METRIC.get(m)) for s, m in zip(df.split, df.metric)]
        d = df.assign(column=column).dropna(subset=["column"])
        if d.empty:
            raise ValueError(f"the sweep measured none of {sorted(COLUMNS)} (split, metric); it has "
                             f"{sorted(set(zip(df.split, df.metric)))}")
        wide = d.pivot_table(index="run", columns="column", values="value", sort=False)
        wide.columns.name = None
        hp_cols = [c for c in df.columns if c not in _META] + ["method"]
        first = df.groupby("run", sort=False)[[c for c in hp_cols if c in df.columns]].first()
        table = first.join(wide).reset_index()
    else:
        table = df
        if not set(COLUMNS.values()) & set(table.columns):
            raise ValueError(f"the table has none of the leaderboard columns {sorted(COLUMNS.values())}; "
                             f"columns: {list(table.columns)}")
    if "method" not in table.columns:
        table["method"] = "run"
    table["is_oracle"] = table["method"].astype(str) == ORACLE
    front = ["run", "method"] + [c for c in COLUMNS.values() if c in table.columns] + ["is_oracle"]
    return table[[c for c in front if c in table.columns] + [c for c in table.columns if c not in front]]


def oracle_row(table: pd.DataFrame) -> pd.Series | None:
    """The oracle's row of a :func:`leaderboard_table` (None when the sweep has none)."""
    o = table[table.is_oracle]
    return o.iloc[0] if len(o) else None


def swept_hyperparameters(table: pd.DataFrame, method: str) -> list[str]:
    """The hyperparameters that take more than one value among ``method``'s runs (lr, steps, its
    coefficient...; ``seed`` excluded), in column order."""
    d = table[(table.method == method) & ~table.is_oracle]
    if d.empty:
        raise ValueError(f"no runs of method {method!r}; methods: {table_methods(table)}")
    skip = set(COLUMNS.values()) | _META | {"seed", "is_oracle"}
    return [c for c in d.columns if c not in skip and d[c].dropna().nunique() > 1]


def table_methods(table: pd.DataFrame) -> list[str]:
    """The methods of a :func:`leaderboard_table`, in order of appearance, without the oracle."""
    return list(dict.fromkeys(table.loc[~table.is_oracle, "method"]))


def base_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's base run: the run whose every swept hyperparameter sits at its most common
    value (the centre of a one-at-a-time grid, :func:`unlearnkit.sweep.sensitivity_grid`). Methods
    compared on these rows are compared at equal learning rate and steps. One row per method that has
    such a run (mean over seeds)."""
    rows = []
    for m in table_methods(table):
        d = table[(table.method == m) & ~table.is_oracle]
        modes = {h: d[h].mode().iloc[0] for h in swept_hyperparameters(table, m)}  # over all the method's runs
        for h, v in modes.items():
            d = d[d[h] == v]
        if len(d):
            row = d.iloc[0].copy()
            for c in COLUMNS.values():
                if c in d.columns:
                    row[c] = d[c].mean()
            rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def equal_forgetting_runs(table: pd.DataFrame, forget: str = "forget_probability",
                     utility: str = "retain_probability") -> pd.DataFrame:
    """Methods compared at equal forgetting: the common level is the highest of the methods' lowest
    ``forget`` values (every method reached it); for each method, the run with the best ``utility``
    among those at or below that level. One row per method (``run``, ``method``, ``forget``,
    ``utility``, the run's hyperparameters); ``attrs["level"]`` is the level. Lower ``forget`` is
    more forgotten (probabilities)."""
    t = table[~table.is_oracle].dropna(subset=[forget, utility])
    if t.empty:
        raise ValueError(f"no run has both {forget!r} and {utility!r}")
    level = float(t.groupby("method", sort=False)[forget].min().max())
    rows = []
    for _, g in t.groupby("method", sort=False):
        ok = g[g[forget] <= level + 1e-12]
        rows.append(ok.loc[ok[utility].idxmax()])
    out = pd.DataFrame(rows).reset_index(drop=True)
    out.attrs["level"] = level
    return out


def _colors(names) -> dict:
    return dict(zip(names, sns.color_palette("tab10", n_colors=max(3, len(names)))))


def _front(g: pd.DataFrame, x: str, y: str, lower_x_better: bool) -> pd.DataFrame:
    """The runs no other run beats on both axes (Pareto front), sorted along x."""
    g = g.sort_values(x, ascending=lower_x_better)
    best, keep = -np.inf, []
    for i, r in g.iterrows():
        if r[y] > best:
            keep.append(i)
            best = r[y]
    return g.loc[keep].sort_values(x)


def plot_leaderboard(results, title: str = "Leaderboard: every run of every method"):
    """The trade-off plots of a sweep. Left: forget probability (x, inverted: right = more forgotten)
    vs retain probability (y), every run a dot, each method's Pareto front a line, each method's
    pick at equal forgetting (:func:`equal_forgetting_runs`) a ringed dot and the level a dashed line.
    Right (when measured): forget quality (x, log; right of the dotted p = 0.05 line: indistinguishable
    from the retain model) vs model utility (y). The oracle (retain-only model) is the gold star on
    both. Returns the figure."""
    t = leaderboard_table(results)
    panels = [("forget_probability", "retain_probability"), ("forget_quality", "model_utility")]
    panels = [(x, y) for x, y in panels if {x, y} <= set(t.columns) and t[[x, y]].notna().all(axis=1).any()]
    if not panels:
        raise ValueError("the sweep has neither forget/retain probability nor forget quality/model utility")
    fig = _new_figure((6.5 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = table_methods(t)
    color = _colors(names)
    oracle = oracle_row(t)
    for ax, (x, y) in zip(axes, panels):
        logx = x == "forget_quality"
        for m in names:
            g = t[(t.method == m)].dropna(subset=[x, y])
            if g.empty:
                continue
            ax.scatter(np.clip(g[x], 1e-300, None), g[y], s=22, color=color[m], alpha=0.55)
            f = _front(g, x, y, lower_x_better=not logx)
            ax.plot(np.clip(f[x], 1e-300, None), f[y], color=color[m], lw=1.6, label=m)
        if x == "forget_probability":
            eq = equal_forgetting_runs(t)
            ax.scatter(eq[x], eq["retain_probability"], s=110, facecolor="none",
                       edgecolor=[color[m] for m in eq.method], linewidth=2, zorder=4)
            ax.axvline(eq.attrs["level"], ls="--", color="#555555", lw=1)
            ax.annotate(f"equal forgetting\n({eq.attrs['level']:.3f})", (eq.attrs["level"], 0.02),
                        xycoords=("data", "axes fraction"), fontsize=7, color="#555555", ha="right")
            ax.invert_xaxis()
        if logx:
            ax.set_xscale("log")
            ax.axvline(0.05, ls=":", color="#555555", lw=1)
        if oracle is not None and pd.notna(oracle.get(x)) and pd.notna(oracle.get(y)):
            ax.scatter([max(oracle[x], 1e-300)], [oracle[y]], label="retain model (oracle)", **_ORACLE_STYLE)
        ax.set_xlabel(LABELS[x])
        ax.set_ylabel(LABELS[y])
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def sensitivity_table(results, method: str, hyperparameter: str) -> pd.DataFrame:
    """``method``'s runs as ``hyperparameter`` moves and every other swept hyperparameter stays at
    its most common value (the base run of a one-at-a-time grid, :func:`unlearnkit.sweep.sensitivity_grid`):
    one row per value (mean over seeds), with the leaderboard columns and ``n`` (runs averaged).
    ``attrs["fixed"]``: the values held fixed; ``attrs["oracle"]``: the oracle's columns (or {})."""
    t = leaderboard_table(results)
    hps = swept_hyperparameters(t, method)
    if hyperparameter not in hps:
        raise ValueError(f"{hyperparameter!r} was not swept for method {method!r}; swept: {', '.join(hps) or '(none)'}")
    d = t[(t.method == method) & ~t.is_oracle]
    fixed = {h: d[h].mode(dropna=False).iloc[0] for h in hps if h != hyperparameter}  # over all the method's runs
    for h, v in fixed.items():
        d = d[(d[h] == v) | (d[h].isna() & pd.isna(v))]
    cols = [c for c in COLUMNS.values() if c in d.columns]
    out = d.groupby(hyperparameter)[cols].mean()
    out["n"] = d.groupby(hyperparameter).size()
    out = out.reset_index().sort_values(hyperparameter).reset_index(drop=True)
    o = oracle_row(t)
    out.attrs.update(method=method, hyperparameter=hyperparameter, fixed=fixed,
                     oracle={c: float(o[c]) for c in cols if o is not None and pd.notna(o.get(c))})
    return out


#: the sensitivity view's curves: column -> colour
_CURVES = {"forget_probability": "#c0392b", "retain_probability": "#27ae60", "model_utility": "#2980b9"}


def plot_sensitivity(results, method: str, hyperparameter: str, ax=None):
    """Forget probability, retain probability and model utility (y, in [0, 1]) against one
    hyperparameter of one method (x; log scale for ``lr`` and other ranges over a factor of 10),
    the other swept hyperparameters held fixed (:func:`sensitivity_table`). Dotted lines: the
    retain-only model's values, the target to aim for. Returns the figure."""
    s = sensitivity_table(results, method, hyperparameter)
    if ax is None:
        fig = _new_figure((6, 4))
        ax = fig.add_subplot(111)
    for col, c in _CURVES.items():
        if col in s.columns:
            ax.plot(s[hyperparameter], s[col], marker="o", color=c, label=col.replace("_", " "))
            if col in s.attrs["oracle"]:
                ax.axhline(s.attrs["oracle"][col], color=c, ls=":", lw=1.2)
    if s.attrs["oracle"]:
        ax.plot([], [], color="0.4", ls=":", label="retain model (target)")
    x = s[hyperparameter].astype(float)
    if len(x) > 1 and (x > 0).all() and x.max() / x.min() >= 10:
        ax.set_xscale("log")
    fixed = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in s.attrs["fixed"].items())
    ax.set_title(f"{method}: {hyperparameter}" + (f"  ({fixed})" if fixed else ""), fontsize=9)
    ax.set_xlabel(hyperparameter)
    ax.set_ylabel("value")
    ax.set_ylim(-0.03, 1.05)
    ax.legend(fontsize=7, loc="best")
    return ax.figure


def plot_sensitivity_grid(results, methods=None, hyperparameters=None):
    """The sweep view: one row per method, one panel per swept hyperparameter (``lr``, ``steps``,
    then the method's main coefficient, see :func:`unlearnkit.sweep.main_coefficient`), each drawn
    by :func:`plot_sensitivity`. ``methods``/``hyperparameters`` restrict the rows/columns.
    Returns the figure."""
    t = leaderboard_table(results)
    names = list(methods) if methods is not None else table_methods(t)
    rows = []
    for m in names:
        hps = swept_hyperparameters(t, m)
        coef = main_coefficient(m) if m in _registered() else None
        order = [h for h in ("lr", "steps", coef) if h in hps] + [h for h in hps if h not in ("lr", "steps", coef)]
        if hyperparameters is not None:
            order = [h for h in order if h in hyperparameters]
        rows.append((m, order))
    ncols = max((len(o) for _, o in rows), default=0)
    if not ncols:
        raise ValueError("no method has a swept hyperparameter")
    fig = _new_figure((4.2 * ncols, 3.2 * len(rows)))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, (m, order) in enumerate(rows):
        for j in range(ncols):
            if j < len(order):
                plot_sensitivity(t, m, order[j], ax=axes[i, j])
                if (i, j) != (0, 0):
                    axes[i, j].get_legend().remove()  # one legend, top left: the curves are the same everywhere
            else:
                axes[i, j].set_axis_off()
    fig.suptitle("Hyperparameter sensitivity (dotted: the retain-only model)", fontsize=11)
    fig.tight_layout()
    return fig


def _registered() -> set:
    from ..objectives import list_objectives

    return set(list_objectives())


class SensitivityExplorer:
    """Two dropdowns, method and hyperparameter, over a sweep table: forget and utility against the
    chosen hyperparameter with the retain-only model as the target (:func:`plot_sensitivity`), and
    the numbers in a table below.

    >>> ex = SensitivityExplorer("runs/leaderboard/results.csv")   # doctest: +SKIP
    >>> ex.hyperparameter.value = "lr"                              # what the dropdown does  # doctest: +SKIP
    """

    def __init__(self, results, method: str | None = None, hyperparameter: str | None = None, dpi: int = 80):
        self.results = leaderboard_table(results)
        self.dpi = dpi
        names = [m for m in table_methods(self.results) if swept_hyperparameters(self.results, m)]
        if not names:
            raise ValueError("no method has a swept hyperparameter: sweep at least two values of one")
        if method is not None and method not in names:
            raise ValueError(f"method={method!r} has no swept hyperparameter here; choose one of {names}")
        self.method = widgets.Dropdown(options=names, value=method or names[0], description="method")
        self.hyperparameter = widgets.Dropdown(options=self._hps(self.method.value), description="hyperparameter",
                                               style={"description_width": "auto"})
        if hyperparameter is not None:
            if hyperparameter not in self.hyperparameter.options:
                raise ValueError(f"hyperparameter={hyperparameter!r} was not swept for {self.method.value!r}; "
                                 f"choose one of {list(self.hyperparameter.options)}")
            self.hyperparameter.value = hyperparameter
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.info = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.method, self.hyperparameter]), self.image, self.info])
        self.figure, self.png, self.table = None, b"", None
        self._busy = False
        self.method.observe(self._on_method, names="value")
        self.hyperparameter.observe(lambda change: None if self._busy else self.update(), names="value")
        self.update()

    def _hps(self, method) -> list[str]:
        hps = swept_hyperparameters(self.results, method)
        coef = main_coefficient(method) if method in _registered() else None
        return [h for h in ("lr", "steps", coef) if h in hps] + [h for h in hps if h not in ("lr", "steps", coef)]

    def _on_method(self, change=None):
        """The method changed: the hyperparameter list becomes its swept ones (keeping the current
        one when that method swept it too)."""
        self._busy = True
        try:
            old = self.hyperparameter.value
            hps = self._hps(self.method.value)
            self.hyperparameter.options = hps
            self.hyperparameter.value = old if old in hps else hps[0]
        finally:
            self._busy = False
        self.update()

    def update(self):
        """Recompute the table for the current dropdowns and redraw (the widgets' callback)."""
        m, h = self.method.value, self.hyperparameter.value
        self.table = sensitivity_table(self.results, m, h)
        fig = _new_figure((6.5, 4), pyplot=False)
        plot_sensitivity(self.results, m, h, ax=fig.add_subplot(111))
        self.figure = fig
        self.png = figure_png(fig, self.dpi)
        self.image.value = self.png
        self.info.value = self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0) + \
            (f"<p>retain model (target): {html.escape(json.dumps({k: round(v, 4) for k, v in self.table.attrs['oracle'].items()}))}</p>"
             if self.table.attrs["oracle"] else "")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return static_bundle(self.widget, self.png, include, exclude)

    def __repr__(self) -> str:
        return f"SensitivityExplorer(method={self.method.value!r}, hyperparameter={self.hyperparameter.value!r})"
