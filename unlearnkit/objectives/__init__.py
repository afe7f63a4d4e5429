"""Unlearning objectives: one module per family, one signature, one registry.

``list_objectives()`` gives every name; ``get_objective(name)`` the entry with its documented
hyperparameters; :func:`reference_table` / :func:`render_markdown` the reference page
(``docs/objectives.md``, rewritten by ``python -m unlearnkit.docs``). Importing this package
registers everything.

Families: ``gradient`` (ga, graddiff, kl), ``preference`` (npo, simnpo, dpo, idk_dpo), ``refusal``
(idk_nll, idk_ap), ``representation`` (rmu), ``distill`` (undial), ``entropy`` (me, me_gd),
``beliefs`` (bs_t, bs_s), ``memorization`` (sga, task_arithmetic, tau).
"""

from . import beliefs, distill, entropy, gradient, memorization, preference, refusal, representation  # noqa: F401  (registers)
from .base import (
                   OBJECTIVES,
                   Objective,
                   ObjectiveContext,
                   Requirements,
                   forward,
                   get_objective,
                   list_objectives,
                   nll,
                   objective,
                   seq_logprob,
                   seq_mean_nll,
                   token_logprobs,
)
from .docs import reference_table, render_markdown
from .reference import AdapterReference, CachedReference

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "Requirements", "forward", "get_objective",
           "list_objectives", "nll", "objective", "seq_logprob", "seq_mean_nll", "token_logprobs",
           "AdapterReference", "CachedReference", "reference_table", "render_markdown"]
