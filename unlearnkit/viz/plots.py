"""Static plots (matplotlib/seaborn) of unlearning results; every function returns the Figure.

All functions take the kit's tidy tables (``UnlearnResult.probes``, :func:`unlearnkit.summarize`
output) and never reshape user data in place.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

#: colours shared by every plot and widget: one per kind of answer
PALETTE = {"target": "#d62728", "paraphrase": "#1f77b4", "perturbed": "#7f7f7f", "belief": "#2ca02c",
           "initial_belief": "#9467bd", "other": "#c7c7c7", "entropy": "#ff7f0e"}
LABELS = {"target": "target answer", "paraphrase": "paraphrased answer", "perturbed": "perturbed (wrong) answers",
          "belief": "current greedy answer", "initial_belief": "greedy answer before unlearning",
          "entropy": "predictive entropy"}


def setup():
    """Seaborn theme for every kit figure (call once per notebook)."""
    import seaborn as sns

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
    across probe questions."""
    import seaborn as sns

    d = probes[(probes.split == split) & probes.quantity.isin(quantities)]
    ncols = 2 if entropy else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    sns.lineplot(data=d, x="step", y="value", hue="quantity", hue_order=[q for q in quantities if q in set(d.quantity)],
                 palette=PALETTE, ax=ax, errorbar=("ci", 95))
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
    import seaborn as sns

    d = summary[summary.metric.isin(metrics) & summary.split.isin(splits)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sns.barplot(data=d[d.metric == m], x="split", y="value", hue="model", order=[s for s in splits if s in set(d.split)],
                    ax=ax)
        ax.set(xlabel="", ylabel=m, ylim=(0, 1.05), title=m)
        ax.legend(fontsize=8, title=None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
