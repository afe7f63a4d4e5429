"""Plots and (later) widgets that make squeezing and entropy visible."""

from .plots import LABELS, PALETTE, plot_split_bars, plot_trajectory, save, setup

__all__ = ["LABELS", "PALETTE", "plot_split_bars", "plot_trajectory", "save", "setup"]
