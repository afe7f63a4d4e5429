"""Plots and a widget for editing methods (UniErase): what each sequential round did.

Pure drawing over tables an :class:`unlearnkit.editing.EditResult` already holds (``rounds``:
one row per round; ``probes``: step = round); nothing here runs a model.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import pandas as pd

from .plots import _new_figure
from .widgets import figure_png, static_bundle

ROUND_COLUMNS = {"forget_token_all": "forget: first token <unl> (all rows)",
                 "forget_refusal_all": "forget: <unl> + refusal (all rows)",
                 "forget_refusal_edited": "forget: <unl> + refusal (rows edited so far)",
                 "locality_same_greedy": "locality: greedy answer unchanged"}


def plot_rounds(rounds: pd.DataFrame, ax=None, upto: int | None = None, title: str | None = None):
    """Lines over sequential rounds (x: round, 0 = before any edit) of the refusal rates and the
    share of locality answers unchanged (y: fraction in [0, 1]); rounds after ``upto`` are greyed."""
    if ax is None:
        ax = _new_figure((7, 3.6)).add_subplot(111)
    r = rounds.sort_values("round")
    for col, label in ROUND_COLUMNS.items():
        if col in r:
            ax.plot(r["round"], r[col], marker="o", label=label)
    if upto is not None and upto < r["round"].max():
        ax.axvspan(upto + 0.5, r["round"].max() + 0.5, color="0.85", zorder=0)
    ax.set_xlabel("sequential edit round (0 = before)")
    ax.set_ylabel("fraction of questions")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(list(r["round"]))
    ax.legend(fontsize=8, loc="center right")
    ax.set_title(title or "UniErase, round by round")
    return ax


class RoundsExplorer:
    """Step through the rounds of a sequential edit: the curves up to the chosen round, and the
    probe questions' greedy answers at that round (from ``result.probes``, step = round).

    Headless like the kit's other explorers: built at once, ``self.figure``/``self.png`` hold the
    current state's drawing, ``self.table`` its answers; set ``explorer.round.value`` in tests.
    """

    def __init__(self, result, *, split: str = "forget", round: int | None = None, dpi: int = 80):
        if result.rounds is None or len(result.rounds) == 0:
            raise ValueError("the result has no rounds table (run unlearnkit.editing.unierase)")
        self.result, self.split, self.dpi = result, split, dpi
        rs = sorted(int(x) for x in result.rounds["round"])
        self.round = widgets.SelectionSlider(options=rs, value=rs[-1] if round is None else round,
                                             description="round", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.info = widgets.HTML()
        self.widget = widgets.VBox([self.round, self.image, self.info])
        self.round.observe(self.update, names="value")
        self.update()

    def answers(self, rnd: int) -> pd.DataFrame:
        """Greedy answers of the probe questions at round ``rnd`` (the last probed step <= rnd)."""
        p = self.result.probes
        p = p[(p.split == self.split) & (p.quantity == "belief")]
        steps = sorted(s for s in p.step.unique() if s <= rnd)
        return p[p.step == steps[-1]][["id", "text"]].rename(columns={"text": f"answer at round {rnd}"})

    def update(self, change=None):
        rnd = self.round.value
        fig = _new_figure((7, 3.6), pyplot=False)
        plot_rounds(self.result.rounds, fig.add_subplot(111), upto=rnd, title=f"UniErase after round {rnd}")
        self.figure = fig
        self.png = figure_png(fig, self.dpi)
        self.image.value = self.png
        self.table = self.answers(rnd)
        rows = "".join(f"<tr><td>{r.id}</td><td>{html.escape(str(r[2]))}</td></tr>" for r in self.table.itertuples())
        self.info.value = f"<table><tr><th>id</th><th>greedy answer ({self.split})</th></tr>{rows}</table>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return static_bundle(self.widget, self.png, include, exclude)
