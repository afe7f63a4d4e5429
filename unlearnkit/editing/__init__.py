"""Weight-space methods: edits and extrapolations of a model's parameters (no training loop)."""

from .uipe import (
                   DEFAULT_ALPHAS,
                   check_alpha,
                   extrapolate_state,
                   extrapolations,
                   summarize_sweep,
                   uipe,
                   uipe_sweep,
                   unlearn_uipe,
)

__all__ = ["DEFAULT_ALPHAS", "check_alpha", "extrapolate_state", "extrapolations", "summarize_sweep", "uipe", "uipe_sweep",
           "unlearn_uipe"]
