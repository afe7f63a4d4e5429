"""Weight-space methods: operators on model weights rather than losses (task arithmetic here;
UniErase and UIPE add their modules beside it). Modules here depend on torch and the base layer
only, so objectives may import them."""

from .task_vectors import add_scaled, apply_task_vector, negate, scale, snapshot, task_vector

__all__ = ["snapshot", "task_vector", "negate", "scale", "add_scaled", "apply_task_vector"]
