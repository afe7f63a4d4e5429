"""Widgets that replay recorded probes: where the probability mass went, and how sure the model is.

Both explorers take ``{name: UnlearnResult}`` (objectives trained on the same model; a single
result is fine) and the probe data (the forget rows, for the answers' texts), and offer an
objective switch, a question dropdown and a slider over the recorded probe steps.

Headless by design: building one returns at once and already holds the figure of its current
state (``self.figure``, a matplotlib ``Figure`` never registered with pyplot) and its PNG (in
``self.image``, an ``ipywidgets.Image``); the notebook output carries the live widget and a static
PNG fallback, so executed notebooks (papermill, nbval, nbviewer) show it. Callbacks are plain
methods (:meth:`update`), and the tables behind the figure are attributes, so tests set
``explorer.step.value`` and read ``explorer.table`` or the figure's bars.
"""

from __future__ import annotations

import base64
import html
import io

import ipywidgets as widgets
import numpy as np

from .plots import (
    LABELS,
    SHORT,
    _new_figure,
    plot_answer_distribution,
    plot_entropy_strip,
    plot_token_view,
)
from .tables import answer_distribution, entropy_view, moving_positions, probe_steps, rows_by_id, token_view


def _as_results(results) -> dict:
    if isinstance(results, dict):
        if not results:
            raise ValueError("no results given: pass {name: UnlearnResult, ...}")
        return dict(results)
    if hasattr(results, "probes"):
        return {getattr(results, "method", "run"): results}
    raise TypeError(f"expected an UnlearnResult or a dict of them, got {type(results).__name__}")


def _short(text: str, n: int = 60) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"



def figure_png(fig, dpi: int) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def static_bundle(widget, png: bytes, include=None, exclude=None) -> dict:
    """A widget's display bundle plus its current figure as a static PNG, for renderers without a
    widget manager (nbviewer, GitHub, an executed notebook opened later). Every explorer uses it."""
    bundle = widget._repr_mimebundle_(include=include, exclude=exclude) or {}
    if isinstance(bundle, tuple):
        bundle = bundle[0]
    bundle = dict(bundle)
    bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle

class _Explorer:
    """Common controls (objective, question, step), rendering and display."""

    figsize = (11, 4)

    def __init__(self, results, data, *, split: str = "forget", question=None, step=None, method=None,
                 dpi: int = 80):
        self.results = _as_results(results)
        for name, res in self.results.items():
            if res.probes is None or len(res.probes) == 0:
                raise ValueError(f"result {name!r} has no probes: run unlearn(..., probe_every=1 or more)")
        self.split = split
        self.dpi = dpi
        self.rows = rows_by_id(data)
        self.data = data
        self.figure = None
        self.png = b""
        self._busy = False
        names = list(self.results)
        self.method = widgets.ToggleButtons(options=names, value=method or names[0], description="objective",
                                            style={"button_width": "auto"})
        if len(names) == 1:
            self.method.layout.display = "none"
        ids = self._question_ids(self.method.value)
        if not ids:
            raise ValueError("none of the probe questions is in the data given (rows are matched on 'id'); pass "
                             "the data the probes were recorded on (by default the first forget rows)")
        self.question = widgets.Dropdown(options=[(self._label(q), q) for q in ids],
                                         value=question if question in ids else ids[0], description="question",
                                         layout=widgets.Layout(width="640px"))
        steps = probe_steps(self.results[self.method.value].probes, split)
        self.step = widgets.SelectionSlider(options=[(str(s), s) for s in steps],
                                            value=step if step in steps else steps[-1], description="step",
                                            continuous_update=False, layout=widgets.Layout(width="640px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.info = widgets.HTML()
        self.widget = widgets.VBox([self.method, self.question, self.step, self.image, self.info])
        self.method.observe(self._on_method, names="value")
        self.question.observe(self._on_change, names="value")
        self.step.observe(self._on_change, names="value")
        self.update()

    # -- state -----------------------------------------------------------------------------------
    @property
    def result(self):
        """The :class:`~unlearnkit.train.UnlearnResult` of the selected objective."""
        return self.results[self.method.value]

    def _question_ids(self, name):
        p = self.results[name].probes
        return [q for q in dict.fromkeys(p.loc[p.split == self.split, "id"]) if q in self.rows]

    def _label(self, qid) -> str:
        return f"{_short(self.rows[qid].get('question', qid))}  (id {qid})"

    def _on_method(self, change=None):
        """The objective changed: the slider takes that run's recorded steps (keeping the step if
        it was recorded there, else the nearest one), the question list its probe questions."""
        self._busy = True
        try:
            steps = probe_steps(self.result.probes, self.split)
            old = self.step.value
            self.step.options = [(str(s), s) for s in steps]
            self.step.value = min(steps, key=lambda s: (abs(s - old), s))
            ids = self._question_ids(self.method.value)
            if list(ids) != [v for _, v in self.question.options]:
                q = self.question.value
                self.question.options = [(self._label(i), i) for i in ids]
                self.question.value = q if q in ids else ids[0]
        finally:
            self._busy = False
        self.update()

    def _on_change(self, change=None):
        if not self._busy:
            self.update()

    def select(self, method=None, question=None, step=None):
        """Set any of the controls at once (one redraw), as a user would; returns ``self``."""
        self._busy = True
        try:
            if method is not None:
                self.method.value = method
            if question is not None:
                self.question.value = question
            if step is not None:
                self.step.value = step
        finally:
            self._busy = False
        self._on_method()
        return self

    # -- drawing ---------------------------------------------------------------------------------
    def update(self, change=None):
        """Recompute the tables for the current controls and redraw (the widgets' callback)."""
        self._compute()
        fig = _new_figure(self.figsize, pyplot=False)
        self._draw(fig)
        self.figure = fig
        self.png = figure_png(fig, self.dpi)
        self.image.value = self.png
        self.info.value = self._info_html()

    def _compute(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, fig):  # pragma: no cover - abstract
        raise NotImplementedError

    def _info_html(self) -> str:
        return ""

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The live widget, plus the current figure as a static PNG fallback for renderers
        without a widget manager (nbviewer, GitHub, an executed notebook opened later)."""
        return static_bundle(self.widget, self.png, include, exclude)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(objective={self.method.value!r}, question={self.question.value!r}, "
                f"step={self.step.value})")


class SqueezeExplorer(_Explorer):
    """Where did the target answer's probability mass go? Pick an objective, a forget question and
    a probe step: the left/top panel shows the mass of the target, the paraphrase, the perturbed
    answers, the greedy answer before unlearning and the current greedy answer, and "everything
    else", before vs at that step (:func:`~unlearnkit.viz.tables.answer_distribution`: duplicated
    answers counted once); the lower panels show the top next tokens at the answer's first
    answer tokens, before vs at that step, coloured by the answer each token continues
    (:func:`~unlearnkit.viz.tables.token_view`). ``positions``: ``"auto"`` (position 0, where
    the phrasing is chosen, and those where the target token's probability moved:
    :func:`~unlearnkit.viz.tables.moving_positions`, at most ``max_positions``), a number n (the
    first n) or a list; ``top_k`` tokens per position and step.

    >>> ex = SqueezeExplorer({"GA": ga, "NPO": npo}, world.forget)   # doctest: +SKIP
    >>> ex                      # displays the widget        # doctest: +SKIP
    >>> ex.step.value = 4; ex.table                                  # doctest: +SKIP

    Attributes: ``table`` (the sequence-level table drawn), ``token_table`` (None when the run
    recorded no token probes), ``figure``.
    """

    def __init__(self, results, data, *, top_k: int = 5, positions: int | list[int] | str = "auto",
                 max_positions: int = 3, **kw):
        self.top_k, self.positions, self.max_positions = top_k, positions, max_positions
        self.table = self.token_table = None
        super().__init__(results, data, **kw)

    @property
    def figsize(self):
        return (12, 7.6) if self._has_tokens() else (9, 4.2)

    def _has_tokens(self) -> bool:
        tp = self.result.token_probes
        return tp is not None and len(tp) > 0 and "kind" in tp.columns

    def _compute(self):
        q, s = self.question.value, self.step.value
        self.table = answer_distribution(self.result.probes, self.data, q, s, split=self.split)
        if not self._has_tokens():
            self.token_table = None
            return
        pos = self.positions
        if pos == "auto":  # stable along the slider: decided on the whole run
            pos = moving_positions(self.result, q, max_positions=self.max_positions, split=self.split)
        self.token_table = token_view(self.result, self.data, q, s, top_k=self.top_k, positions=pos, split=self.split)

    def _draw(self, fig):
        if self.token_table is None:
            ax = fig.add_subplot()
            plot_answer_distribution(self.table, ax, title=self._title())
            fig.tight_layout()
            return
        npos = max(1, self.token_table.position.nunique())
        gs = fig.add_gridspec(2, npos, height_ratios=[1, 1.05], hspace=0.55, wspace=0.45)
        plot_answer_distribution(self.table, fig.add_subplot(gs[0, :]), title=self._title())
        axes = [fig.add_subplot(gs[1, j]) for j in range(npos)]
        plot_token_view(self.token_table, axes, fig=fig)
        fig.subplots_adjust(bottom=0.14, top=0.93, left=0.08, right=0.98)

    def _title(self) -> str:
        q = self.rows[self.question.value].get("question", "")
        return f"{self.method.value}, step {self.step.value}: {q}"

    def _info_html(self) -> str:
        rows = []
        for r in self.table.itertuples():
            b = "not scored" if np.isnan(r.before) else f"{r.before:.3f}"
            same = f" <i>(= {r.same_as}, counted once)</i>" if isinstance(r.same_as, str) else ""
            rows.append(f"<tr><td>{html.escape(LABELS.get(r.kind, SHORT.get(r.kind, r.kind)))}</td>"
                        f"<td>{html.escape(_short(r.text, 90))}{same}</td><td>{b}</td><td>{r.after:.3f}</td></tr>")
        head = (f"<tr><th>answer</th><th>text</th><th>mass at step {self.table.attrs['before_step']}</th>"
                f"<th>mass at step {self.step.value}</th></tr>")
        return ("<table class='uk-squeeze' style='font-size:12px'>" + head + "".join(rows) + "</table>")


class EntropyExplorer(_Explorer):
    """How sure is the model, token by token? The greedy answer to a forget question before
    unlearning and at the chosen step, each token coloured by the predictive entropy (nats) of the
    distribution it was drawn from, with two summaries beside it: the **token entropy** of the
    answer (normalized unigram entropy, spec B7: low = repetitive, degenerate output) and the
    **mean predictive entropy** of its tokens (high = the model is unsure what to say).

    Attribute ``view``: :func:`~unlearnkit.viz.tables.entropy_view` of the current state.
    """

    figsize = (12, 4.2)

    def __init__(self, results, data, **kw):
        self.view = None
        for name, res in _as_results(results).items():
            tp = res.token_probes
            if tp is None or len(tp) == 0 or "kind" not in tp.columns:
                raise ValueError(f"result {name!r} has no token probes: run unlearn(..., token_probes=True)")
        super().__init__(results, data, **kw)

    def _compute(self):
        tp = self.result.token_probes
        q = self.question.value
        self.view = entropy_view(self.result, q, self.step.value, split=self.split)
        g = tp[(tp.split == self.split) & (tp.id == q) & (tp.kind == "greedy")]
        self.vmax = max(1.0, float(g.entropy.max()) if len(g) else 1.0)

    def _draw(self, fig):
        v = self.view
        gs = fig.add_gridspec(1, 4, width_ratios=[6, 1.1, 1.1, 0.15], wspace=0.6)
        ax = fig.add_subplot(gs[0, 0])
        sm = plot_entropy_strip([(f"before (step {v['before']['step']})", v["before"]["tokens"]),
                                 (f"{self.method.value} at step {v['after']['step']}", v["after"]["tokens"])],
                                ax, vmax=self.vmax)
        q = self.rows[self.question.value].get("question", "")
        ax.set_title(_short(q, 80), fontsize=10, loc="left")
        for j, (key, label, top) in enumerate((("token_entropy", "token entropy\n(B7, 0-1)", 1.05),
                                               ("mean_entropy", "mean predictive\nentropy (nats)", None))):
            bx = fig.add_subplot(gs[0, 1 + j])
            vals = [v["before"][key], v["after"][key]]
            bars = bx.bar([0, 1], vals, color=["#bbbbbb", "#ff7f0e"], edgecolor="black", linewidth=0.5)
            bars[0].set_hatch("///")
            for b, val in zip(bars, vals):
                bx.text(b.get_x() + b.get_width() / 2, val, f"{val:.2f}", ha="center", va="bottom", fontsize=8)
            bx.set_xticks([0, 1], ["before", f"step {v['after']['step']}"], fontsize=8)
            bx.set_ylim(0, top if top else max(1.0, max(vals) * 1.25, self.vmax))
            bx.set_ylabel(label, fontsize=8)
            bx.set_xlabel("greedy answer", fontsize=8)
        cax = fig.add_subplot(gs[0, 3])
        fig.colorbar(sm, cax=cax).set_label("predictive entropy (nats)", fontsize=8)
        fig.subplots_adjust(left=0.02, right=0.95, bottom=0.15, top=0.88)

    def _info_html(self) -> str:
        v = self.view
        rows = "".join(f"<tr><td>{k} (step {v[k]['step']})</td><td>{html.escape(_short(v[k]['text'], 100))}</td>"
                       f"<td>{v[k]['token_entropy']:.3f}</td><td>{v[k]['mean_entropy']:.3f}</td></tr>"
                       for k in ("before", "after"))
        return ("<table class='uk-entropy' style='font-size:12px'><tr><th></th><th>greedy answer</th>"
                "<th>token entropy</th><th>mean predictive entropy (nats)</th></tr>" + rows + "</table>")
