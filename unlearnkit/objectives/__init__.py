"""Unlearning objectives: one module per family, one signature, one registry.

``list_objectives()`` gives every name; ``get_objective(name)`` the entry with its documented
hyperparameters. Importing this package registers everything.
"""

from . import gradient  # noqa: F401  (registers)
from .base import (OBJECTIVES, Objective, ObjectiveContext, Requirements, forward, get_objective,
                   list_objectives, nll, objective, seq_logprob, seq_mean_nll, token_logprobs)
from .reference import AdapterReference, CachedReference

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "Requirements", "forward", "get_objective",
           "list_objectives", "nll", "objective", "seq_logprob", "seq_mean_nll", "token_logprobs",
           "AdapterReference", "CachedReference"]
