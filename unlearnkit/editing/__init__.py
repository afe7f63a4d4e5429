"""Weight-space methods: operators on a model's weights rather than losses.

* :mod:`~unlearnkit.editing.task_vectors`: task vectors, their negation and scaling (TA / TAU);
  torch only, so objectives may import it.
* :mod:`~unlearnkit.editing.uipe`: UIPE's parameter extrapolation, post hoc or around any objective.

Names load on first use (PEP 562): ``from unlearnkit.editing import uipe`` imports the UIPE
module, which needs the training loop, while ``objectives`` can import ``task_vectors`` without
pulling the loop in (it would be an import cycle: the loop imports the objectives).
"""

import importlib

_HOME = {
    **{n: "task_vectors" for n in ("snapshot", "task_vector", "negate", "scale", "add_scaled", "apply_task_vector")},
    **{n: "uipe" for n in ("DEFAULT_ALPHAS", "check_alpha", "extrapolate_state", "extrapolations", "summarize_sweep",
                           "uipe", "uipe_sweep", "unlearn_uipe")},
}
__all__ = sorted(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'unlearnkit.editing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__():
    return __all__
