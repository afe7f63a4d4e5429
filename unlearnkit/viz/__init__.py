"""Plots and widgets that make squeezing and entropy visible.

Static plots (:mod:`.plots`) return matplotlib figures; the tables behind them are pure functions
(:mod:`.tables`); the widgets (:mod:`.widgets`) replay the probes recorded by
:func:`unlearnkit.unlearn` and render headless; :mod:`.leaderboard` draws a sweep's runs (trade-off
plots with the retain model as the oracle, hyperparameter sensitivity).
"""

from .editing import RoundsExplorer, plot_rounds
from .leaderboard import (
    SensitivityExplorer,
    base_runs,
    equal_forgetting_runs,
    leaderboard_table,
    plot_leaderboard,
    plot_sensitivity,
    plot_sensitivity_grid,
    sensitivity_table,
)
from .memorization import (
    MemorizationExplorer,
    plot_ma_histograms,
    plot_ma_trajectories,
    plot_memorization_spread,
)
from .plots import (
    LABELS,
    PALETTE,
    plot_answer_distribution,
    plot_attacks,
    plot_entropy_strip,
    plot_equal_forgetting,
    plot_method_trajectories,
    plot_metric_table,
    plot_mia_scores,
    plot_split_bars,
    plot_token_view,
    plot_tradeoff,
    plot_trajectory,
    plot_where_mass_goes,
    save,
    setup,
)
from .tables import (
    answer_distribution,
    at_equal_forgetting,
    attack_table,
    entropy_view,
    forgetting_path,
    greedy_tokens,
    mass_table,
    mean_answer_distribution,
    moving_positions,
    probe_steps,
    tag_tokens,
    token_entropy_value,
    token_view,
    tradeoff_table,
)
from .uipe import AlphaExplorer, alpha_curves, plot_alpha_curve
from .widgets import EntropyExplorer, SqueezeExplorer

__all__ = ["LABELS", "PALETTE", "EntropyExplorer", "SqueezeExplorer", "AlphaExplorer", "alpha_curves", "plot_alpha_curve", "answer_distribution", "attack_table",
           "plot_attacks", "plot_mia_scores", "entropy_view",
           "greedy_tokens", "mass_table", "mean_answer_distribution", "moving_positions", "plot_answer_distribution",
           "plot_entropy_strip", "plot_method_trajectories", "plot_metric_table", "plot_split_bars",
           "plot_token_view", "plot_tradeoff", "plot_trajectory", "plot_where_mass_goes", "probe_steps", "save",
           "setup", "tag_tokens", "token_entropy_value", "token_view", "tradeoff_table",
           "MemorizationExplorer", "plot_memorization_spread", "plot_ma_histograms", "plot_ma_trajectories", "RoundsExplorer", "plot_rounds",
           "at_equal_forgetting", "forgetting_path", "plot_equal_forgetting",
           "SensitivityExplorer", "base_runs", "equal_forgetting_runs", "leaderboard_table", "plot_leaderboard",
           "plot_sensitivity", "plot_sensitivity_grid", "sensitivity_table"]
