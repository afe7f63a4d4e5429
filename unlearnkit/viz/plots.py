"""Static plots (matplotlib/seaborn) of unlearning results; every function returns the Figure.

All functions take the kit's tidy tables (``UnlearnResult.probes``, :func:`unlearnkit.summarize`
output) and never reshape user data in place.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .tables import at_equal_forgetting, forgetting_path, mean_answer_distribution, tradeoff_table

#: colours shared by every plot and widget: one per kind of answer
PALETTE = {"target": "#d62728", "paraphrase": "#1f77b4", "perturbed": "#7f7f7f", "belief": "#2ca02c",
           "initial_belief": "#9467bd", "other": "#c7c7c7", "entropy": "#ff7f0e"}
LABELS = {"target": "target answer", "paraphrase": "paraphrased answer", "perturbed": "perturbed (wrong) answers",
          "belief": "current greedy answer", "initial_belief": "greedy answer before unlearning",
          "entropy": "predictive entropy", "other": "everything else"}


def setup():
    """Seaborn theme for every kit figure (call once per notebook)."""

    sns.set_theme(context="notebook", style="whitegrid")


def save(fig, name: str, folder: str | Path | None) -> Path | None:
    """Save ``fig`` as ``folder/name.png`` (150 dpi); no-op when ``folder`` is None."""
    if folder is None:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_trajectory(probes: pd.DataFrame, split: str = "forget",
                    quantities=("target", "paraphrase", "perturbed", "initial_belief"), title: str | None = None,
                    entropy: bool = True):
    """Probe trajectory: mean probability mass of each kind of answer vs step (left) and mean
    predictive entropy at answer positions (right, nats). One line per quantity, shaded 95% CI
    across probe questions. The pre-unlearning greedy answer is dashed: on a model that answers
    its training data verbatim it *is* the target answer, and a solid line would hide the target's."""

    d = probes[(probes.split == split) & probes.quantity.isin(quantities)]
    ncols = 2 if entropy else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    order = [q for q in quantities if q in set(d.quantity)]
    sns.lineplot(data=d, x="step", y="value", hue="quantity", hue_order=order, style="quantity", style_order=order,
                 dashes={q: (4, 2) if q == "initial_belief" else "" for q in order}, palette=PALETTE, ax=ax,
                 errorbar=("ci", 95))
    ax.set(xlabel="unlearning step", ylabel="sequence probability (mass)", ylim=(0, 1.02),
           title=title or f"Where the probability mass goes ({split} questions)")
    handles, labs = ax.get_legend_handles_labels()
    ax.legend(handles, [LABELS.get(x, x) for x in labs], loc="best", fontsize=9)
    if entropy:
        e = probes[(probes.split == split) & (probes.quantity == "entropy")]
        sns.lineplot(data=e, x="step", y="value", color=PALETTE["entropy"], ax=axes[0, 1], errorbar=("ci", 95))
        axes[0, 1].set(xlabel="unlearning step", ylabel="mean predictive entropy (nats)",
                       title=f"Uncertainty at answer positions ({split})")
    fig.tight_layout()
    return fig


def plot_split_bars(summary: pd.DataFrame, metrics=("probability", "rouge"), splits=("forget", "retain", "world_facts"),
                    title: str = "Forgetting vs keeping"):
    """Grouped bars: each metric's aggregate per split, one bar per model (from :func:`summarize`)."""

    d = summary[summary.metric.isin(metrics) & summary.split.isin(splits)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.barplot(data=d[d.metric == m], x="split", y="value", hue="model", order=[s for s in splits if s in set(d.split)],
                    ax=ax)
        ax.set(xlabel="", ylabel=m, ylim=(0, 1.05), title=m)
        handles, labels = ax.get_legend_handles_labels()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    # one legend for all panels, outside them, so that no bar is hidden
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, title="model")
    return fig


# -- squeezing, token and entropy views (drawn by the widgets too) ----------------------------------

#: short tick labels of the kinds of answer in :func:`plot_answer_distribution`
SHORT = {"target": "target", "paraphrase": "paraphrase", "perturbed": "perturbed\n(all wrong)",
         "initial_belief": "greedy answer\nbefore", "belief": "greedy answer\nnow", "other": "everything\nelse"}
#: colours of the token tags of the token-level view
TAG_COLORS = {"target": PALETTE["target"], "paraphrase": PALETTE["paraphrase"], "belief": PALETTE["belief"],
              "perturbed": PALETTE["perturbed"], "other": PALETTE["other"]}
BEFORE_STYLE = {"alpha": 0.35, "hatch": "///", "edgecolor": "#555555", "linewidth": 0.5}


def _new_figure(figsize, pyplot: bool = True):
    """A figure: through pyplot (shown inline by notebooks) or a bare ``Figure`` (widgets: never
    auto-displayed, never counted in pyplot's open figures)."""
    if pyplot:
        return plt.figure(figsize=figsize)

    return Figure(figsize=figsize)


def plot_answer_distribution(table: pd.DataFrame, ax=None, title: str | None = None):
    """Grouped bars from :func:`~unlearnkit.viz.tables.answer_distribution`: each kind of answer's
    mass before (hatched, pale) and at the chosen step (solid). Answers that duplicate another
    (the greedy answer *is* the paraphrase) are drawn hatched and labelled "= paraphrase"; their
    mass is counted once. ``ax.containers[0]`` holds the before bars, ``[1]`` the after bars."""

    if ax is None:
        fig = _new_figure((7, 4))
        ax = fig.add_subplot()
    x = np.arange(len(table))
    colors = [PALETTE.get(k, "#999999") for k in table.kind]
    w = 0.4
    before = table.before.to_numpy(dtype=float)
    after = table.after.to_numpy(dtype=float)
    ax.bar(x - w / 2, np.nan_to_num(before, nan=0.0), w, color=colors, label=f"before (step {table.attrs.get('before_step', 0)})",
           **BEFORE_STYLE)
    bars = ax.bar(x + w / 2, after, w, color=colors, label=f"at step {table.attrs.get('step', '?')}", edgecolor="black",
                  linewidth=0.6)
    for b, counted in zip(bars, table.counted):
        if not counted:
            b.set_hatch("..")
            b.set_alpha(0.6)
    for i, (bv, av) in enumerate(zip(before, after)):
        if np.isnan(bv):
            ax.text(x[i] - w / 2, 0.02, "not\nscored", ha="center", va="bottom", fontsize=7, color="#555555")
        if not np.isnan(av):
            ax.text(x[i] + w / 2, av + 0.015, f"{av:.2f}", ha="center", va="bottom", fontsize=8)
    labels = []
    for k, same in zip(table.kind, table.same_as):
        lab = SHORT.get(k, k)
        labels.append(f"{lab}\n(= {same})" if isinstance(same, str) else lab)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("sequence probability (mass)")
    ax.set_xlabel("kind of answer")
    q = table.attrs.get("question")
    ax.set_title(title or (f"Where the mass goes: {q}" if q else "Where the mass goes"), fontsize=10)

    ax.legend(handles=[Patch(facecolor="#dddddd", label=f"before (step {table.attrs.get('before_step', 0)})",
                             **{k: v for k, v in BEFORE_STYLE.items() if k != "alpha"}),
                       Patch(facecolor="#888888", edgecolor="black", label=f"at step {table.attrs.get('step', '?')}"),
                       Patch(facecolor="white", edgecolor="black", hatch="..", label="duplicate (counted once)")],
              loc="upper center", fontsize=8, ncols=3)
    return ax.figure


def printable(tok: str) -> str:
    """A token as text every font can draw: newlines as ⏎, a token of spaces as ␣, other control
    characters escaped."""
    tok = str(tok).replace("\n", "⏎")
    if tok and not tok.strip(" "):
        tok = "␣" * len(tok)
    return "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" for c in tok)


def _show_token(tok: str) -> str:
    return "'" + printable(tok) + "'"


def plot_token_view(table: pd.DataFrame, axes=None, fig=None):
    """Horizontal bars from :func:`~unlearnkit.viz.tables.token_view`, one panel per answer
    position: each listed next token's probability before (hatched) and at the step (solid),
    coloured by what the token continues (target, paraphrase, belief, perturbed, other)."""

    positions = sorted(table.position.unique())
    if axes is None:
        fig = fig or _new_figure((4 * max(1, len(positions)), 3.6))
        axes = fig.subplots(1, max(1, len(positions)), squeeze=False)[0]
    for ax, pos in zip(axes, positions):
        d = table[table.position == pos].reset_index(drop=True)
        y = np.arange(len(d))
        colors = [TAG_COLORS.get(t, "#999999") for t in d.tag]
        ax.barh(y - 0.2, d.before.fillna(0.0), 0.4, color=colors, **BEFORE_STYLE)
        ax.barh(y + 0.2, d.after.fillna(0.0), 0.4, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_yticks(y, [_show_token(t) for t in d.token], fontsize=8)
        for lab, is_t in zip(ax.get_yticklabels(), d.is_target):
            if is_t:
                lab.set_fontweight("bold")
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("next-token probability", fontsize=9)
        tgt = d.loc[d.is_target, "token"]
        ax.set_title(f"answer token {pos + 1}" + (f" (target {_show_token(tgt.iloc[0])})" if len(tgt) else ""),
                     fontsize=9)
    handles = [Patch(color=TAG_COLORS[t], label=f"continues the {t}" if t != "other" else "other token")
               for t in TAG_COLORS]
    handles += [Patch(facecolor="white", label="before", **{k: v for k, v in BEFORE_STYLE.items() if k != "alpha"}),
                Patch(facecolor="#888888", edgecolor="black", label="at step")]
    (fig or axes[0].figure).legend(handles=handles, loc="lower center", ncols=7, fontsize=8, frameon=False)
    return axes[0].figure


def _layout_tokens(tokens, width: int = 64):
    """(x, line, w) per token for a strip wrapped at ``width`` characters."""
    x, line, out = 0.0, 0, []
    for t in tokens:
        w = max(len(t), 1) + 0.6
        if x > 0 and x + w > width:
            x, line = 0.0, line + 1
        out.append((x, line, w))
        x += w
    return out, line + 1


def plot_entropy_strip(rows: list[tuple[str, pd.DataFrame]], ax=None, vmax: float | None = None, cmap: str = "YlOrRd",
                       width: int = 64):
    """Greedy answers drawn as tokens on a heat row, each coloured by the predictive entropy (nats)
    of the distribution it was drawn from. ``rows``: ``[(label, tokens table), ...]`` with
    :func:`~unlearnkit.viz.tables.greedy_tokens` tables. Returns the ScalarMappable (for a colorbar)."""

    if ax is None:
        fig = _new_figure((9, 3))
        ax = fig.add_subplot()
    vmax = vmax or max([1.0] + [float(t.entropy.max()) for _, t in rows if len(t)])
    norm = mpl.colors.Normalize(0, vmax)
    cm = mpl.colormaps[cmap]
    y = 0.0
    for label, toks in rows:
        ax.text(0, y, label, fontsize=9, fontweight="bold", va="center", ha="left")
        y += 1.0
        strs = [printable(t) for t in toks.token]
        lay, nlines = _layout_tokens(strs, width)
        for (x, line, w), s, e in zip(lay, strs, toks.entropy):
            c = cm(norm(e))
            ax.add_patch(Rectangle((x, y + line - 0.42), w - 0.15, 0.84, facecolor=c, edgecolor="white"))
            lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
            ax.text(x + (w - 0.15) / 2, y + line, s, ha="center", va="center", fontsize=8, family="monospace",
                    color="white" if lum < 0.5 else "black")
        y += nlines + 0.4
    ax.set_xlim(-0.5, width + 1)
    ax.set_ylim(y, -0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("greedy answer, token by token (colour: predictive entropy)", fontsize=9)
    for s in ax.spines.values():
        s.set_visible(False)
    return mpl.cm.ScalarMappable(norm=norm, cmap=cm)


# -- comparing objectives --------------------------------------------------------------------------

def plot_method_trajectories(results: dict, split: str = "forget",
                             quantities=("target", "paraphrase", "belief"), entropy: bool = True,
                             title: str | None = None):
    """Probe trajectories of several objectives on one figure: one panel per quantity (mean
    probability mass over the probe questions vs step), plus mean predictive entropy; one line per
    objective (``results``: ``{name: UnlearnResult}``)."""

    panels = list(quantities) + (["entropy"] if entropy else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    colors = dict(zip(results, sns.color_palette("tab10", n_colors=max(3, len(results)))))
    for ax, q in zip(axes[0], panels):
        for name, res in results.items():
            d = res.probes[(res.probes.split == split) & (res.probes.quantity == q)]
            m = d.groupby("step")["value"].mean()
            ax.plot(m.index, m.to_numpy(), marker="o", markersize=3, color=colors[name], label=name)
        ax.set_xlabel("unlearning step")
        if q == "entropy":
            ax.set_ylabel("mean predictive entropy (nats)")
        else:
            ax.set_ylabel("probability mass")
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(LABELS.get(q, q), fontsize=10)
    axes[0, 0].legend(fontsize=8, title="objective", title_fontsize=8)
    fig.suptitle(title or f"Probe trajectories by objective ({split} questions)")
    fig.tight_layout()
    return fig


def plot_equal_forgetting(results: dict, *, x: str = "target", y: str = "paraphrase", split: str = "forget",
                          y_split: str | None = None, levels=None, title: str | None = None):
    """Each run as a path through (forgetting, side effect) rather than against steps: mean ``x`` on
    the ``split`` probes (x axis, inverted so that forgetting goes to the right) against mean ``y``
    on ``y_split`` (default ``split``). Dashed lines mark the comparison levels of
    :func:`~unlearnkit.viz.tables.at_equal_forgetting`, dots where each run crosses them: at equal
    forgetting, a lower paraphrase mass means less squeezing, a higher retain mass less damage."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = dict(zip(results, sns.color_palette("tab10", n_colors=max(3, len(results)))))
    table = at_equal_forgetting(results, levels, x=x, y=y, split=split, y_split=y_split)
    ycol = table.columns[3]
    for name, res in results.items():
        path = forgetting_path(res, x=x, y=y, split=split, y_split=y_split)
        ax.plot(path.x, path.y, marker="o", markersize=3, color=colors[name], label=name, alpha=0.85)
        hit = table[(table.method == name) & table.reached]
        ax.scatter(hit.level, hit[ycol], s=46, color=colors[name], edgecolor="black", zorder=3)
    for level in table.level.unique():
        ax.axvline(level, color="grey", lw=0.8, ls="--")
    ax.invert_xaxis()
    ax.set_xlabel(f"mean {LABELS.get(x, x)} mass on {split} questions  (forgetting →)")
    ax.set_ylabel(f"mean {LABELS.get(y, y)} {'mass' if y != 'entropy' else '(nats)'} on {y_split or split} questions")
    ax.legend(fontsize=8, title="objective", title_fontsize=8)
    ax.set_title(title or "Compared at equal forgetting", fontsize=10)
    fig.tight_layout()
    return fig


def plot_where_mass_goes(results: dict, data, step="last", split: str = "forget", title: str | None = None):
    """Mean answer distribution over the probe questions (:func:`~unlearnkit.viz.tables.mean_answer_distribution`)
    before unlearning and at ``step`` (default: the last) of each objective, as grouped bars."""


    dists = {name: mean_answer_distribution(res.probes, data, step, split=split) for name, res in results.items()}
    kinds = list(next(iter(dists.values())).kind)
    first = next(iter(dists.values()))
    series = {"before": first.set_index("kind").before}
    series.update({f"{n} (step {d.attrs['step']})": d.set_index("kind").after for n, d in dists.items()})
    fig, ax = plt.subplots(figsize=(min(11, 5 + 0.9 * len(kinds) + 0.4 * len(series)), 4))
    w = 0.8 / len(series)
    x = np.arange(len(kinds))
    colors = ["#bbbbbb"] + sns.color_palette("tab10", n_colors=max(3, len(results)))[:len(results)]
    for i, (name, s) in enumerate(series.items()):
        ax.bar(x - 0.4 + w * (i + 0.5), s.reindex(kinds).fillna(0).to_numpy(), w, label=name, color=colors[i],
               **(BEFORE_STYLE if i == 0 else {"edgecolor": "black", "linewidth": 0.4}))
    ax.set_xticks(x, [SHORT.get(k, k) for k in kinds], fontsize=8)
    ax.set_ylabel("mean probability mass")
    ax.set_xlabel("kind of answer (duplicates counted once)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title or f"Where the forget answers' mass went ({first.attrs['n_questions']} probe questions)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tradeoff(summary: pd.DataFrame, x: str = "forget_quality", y: str = "model_utility",
                  threshold: float | None = 0.05, title: str = "Forgetting vs utility"):
    """The TOFU trade-off scatter: forget quality (KS-test p-value, log x axis) vs model utility,
    one point per model of a :func:`unlearnkit.summarize` table; a dashed line at ``threshold``
    (p = 0.05: indistinguishable from the retain model to the right of it)."""


    t = tradeoff_table(summary, x, y)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = sns.color_palette("tab10", n_colors=max(3, len(t)))
    placed = []  # label positions so far: a label near an earlier one goes below its point instead
    for (_, r), c in zip(t.iterrows(), colors):
        px, py = max(r[x], 1e-300), r[y]
        ax.scatter([px], [py], s=60, color=c, edgecolor="black", label=r["model"], zorder=3)
        near = any(abs(np.log10(px) - np.log10(qx)) < 0.15 and abs(py - qy) < 0.04 for qx, qy in placed)
        ax.annotate(r["model"], (px, py), textcoords="offset points", xytext=(6, -11 if near else 4), fontsize=8)
        placed.append((px, py))
    ax.set_xscale("log")
    if threshold is not None:
        ax.axvline(threshold, ls="--", color="#555555", lw=1)
        ax.text(threshold, ax.get_ylim()[1], f" p = {threshold}", va="top", fontsize=8, color="#555555")
    ax.set_xlabel(f"{x.replace('_', ' ')} (KS-test p-value, log scale; right = more forgotten)")
    ax.set_ylabel(f"{y.replace('_', ' ')} (higher = more kept)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_metric_table(summary: pd.DataFrame, metrics=None, splits=None, title: str = "Metrics by model",
                      log_metrics=("forget_quality",)):
    """A heat table of a :func:`unlearnkit.summarize` table: one row per model, one column per
    (split, metric), cells annotated with the value and coloured per column (min to max across
    models; ``log_metrics`` on a log10 scale)."""

    d = summary
    if metrics is not None:
        d = d[d.metric.isin(metrics)]
    if splits is not None:
        d = d[d.split.isin(splits)]
    d = d.assign(column=d.split.astype(str).str.replace("+", " + ", regex=False) + "\n" + d.metric.astype(str))
    order = list(dict.fromkeys(d.column))
    t = d.pivot_table(index="model", columns="column", values="value", sort=False)[order]
    t = t.reindex(list(dict.fromkeys(d.model)))
    vals = t.to_numpy(dtype=float)
    col = vals.copy()
    for j, c in enumerate(t.columns):
        if c.split("\n")[-1] in log_metrics:
            col[:, j] = np.log10(np.clip(col[:, j], 1e-300, None))
        lo, hi = np.nanmin(col[:, j]), np.nanmax(col[:, j])
        col[:, j] = (col[:, j] - lo) / (hi - lo) if hi > lo else 0.5
    fig, ax = plt.subplots(figsize=(1.5 + 1.35 * len(t.columns), 1.0 + 0.55 * len(t)))
    ax.imshow(col, cmap="Blues", vmin=-0.15, vmax=1.3, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            s = "" if np.isnan(v) else (f"{v:.1e}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}")
            ax.text(j, i, s, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(t.columns)), list(t.columns), fontsize=8)
    ax.set_yticks(range(len(t)), list(t.index), fontsize=9)
    ax.set_xlabel("split / metric (colour: rank within the column)")
    ax.set_ylabel("model")
    ax.set_title(title)
    ax.grid(False)
    fig.tight_layout()
    return fig


# -- is it really gone? ----------------------------------------------------------------------------

def plot_mia_scores(table: pd.DataFrame, metric: str = "mia_min_k", title: str | None = None):
    """Per-example membership scores of ``metric`` (a long :func:`unlearnkit.evaluate` table of
    several models): one panel per model, the member split's rows against the holdout's, the AUC
    in the panel title. Well-separated clouds = the forget rows still look like training data."""

    d = table[(table.metric == metric) & (table.id >= 0)].copy()
    auc = table[(table.metric == metric) & (table.id < 0)].set_index("model").value
    models = list(dict.fromkeys(d.model))
    fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models) + 0.6, 3.6), squeeze=False, sharey=False)
    for ax, m in zip(axes[0], models):
        g = d[d.model == m].assign(kind=lambda x: x.split.where(x.split == "holdout", "member (" + x.split + ")"))
        order = [k for k in dict.fromkeys(g.kind) if k != "holdout"] + ["holdout"]
        sns.stripplot(data=g, x="kind", y="value", order=order, hue="kind", hue_order=order,
                      palette=[PALETTE["target"], PALETTE["perturbed"]], ax=ax, size=4, jitter=0.25, legend=False)
        a = auc.get(m, float("nan"))
        ax.set_title(f"{m}\nAUC {float(a):.2f}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel(f"{metric} score\n(higher = less like a member)" if ax is axes[0, 0] else "")
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title or f"Membership inference ({metric}): forget rows vs never-seen rows")
    fig.tight_layout()
    return fig


def plot_attacks(attacks: pd.DataFrame, title: str = "Does the knowledge come back under attack?"):
    """Before (hatched) vs after (solid) each robustness attack, one panel per attack, one pair of
    bars per model (``attacks``: :func:`~unlearnkit.viz.tables.attack_table`)."""

    kinds = list(dict.fromkeys(attacks.attack))
    models = list(dict.fromkeys(attacks.model))
    colors = dict(zip(models, sns.color_palette("tab10", n_colors=max(3, len(models)))))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.3 * len(kinds), 3.8), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], kinds):
        g = attacks[attacks.attack == k].set_index("model").reindex(models)
        x = np.arange(len(models))
        ax.bar(x - 0.2, np.nan_to_num(g.before.to_numpy(float)), 0.4, color=[colors[m] for m in models], alpha=0.35,
               hatch="//", edgecolor="#555555", label="before")
        ax.bar(x + 0.2, np.nan_to_num(g.after.to_numpy(float)), 0.4, color=[colors[m] for m in models],
               edgecolor="black", label="under attack")
        ax.set_xticks(x, models, fontsize=8, rotation=30)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{k}\n({g.measure.dropna().iloc[0] if g.measure.notna().any() else ''})", fontsize=9)
    axes[0, 0].set_ylabel("forget split, mean")

    fig.legend(handles=[Patch(facecolor="#cccccc", hatch="//", edgecolor="#555555", label="before"),
                        Patch(facecolor="#777777", edgecolor="black", label="under attack")],
               loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
