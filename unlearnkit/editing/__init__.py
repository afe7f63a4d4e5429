"""Weight-space methods: operators on a model's weights rather than losses.

* :mod:`~unlearnkit.editing.task_vectors`: task vectors, their negation and scaling (TA / TAU);
  torch only, so objectives may import it.
* :mod:`~unlearnkit.editing.uipe`: UIPE's parameter extrapolation, post hoc or around any objective.
* :mod:`~unlearnkit.editing.alphaedit`: preserved-key statistics, null-space projectors, the
  AlphaEdit closed form and sequential :class:`EditState`; :mod:`~unlearnkit.editing.unl_token`:
  the unlearning token; :mod:`~unlearnkit.editing.unierase`: UniErase (:func:`unierase`).

Names load on first use (PEP 562): ``from unlearnkit.editing import uipe`` imports the UIPE
module, which needs the training loop, while ``objectives`` can import ``task_vectors`` without
pulling the loop in (that would be an import cycle: the loop imports the objectives).
"""

import importlib

_HOME = {
    **{n: "task_vectors" for n in ("snapshot", "task_vector", "negate", "scale", "add_scaled", "apply_task_vector")},
    **{n: "uipe" for n in ("DEFAULT_ALPHAS", "check_alpha", "extrapolate_state", "extrapolations", "summarize_sweep",
                           "uipe", "uipe_sweep", "unlearn_uipe")},
    **{n: "alphaedit" for n in ("EDIT_PARAMS", "EditRequest", "EditState", "PreservedStats", "Projector",
                                "alphaedit_delta", "apply_alphaedit", "corpus_texts", "find_projection",
                                "key_second_moment", "make_requests", "preserved_stats", "projection_weight",
                                "projector", "subject_token_index")},
    **{n: "unierase" for n in ("UNIERASE_PARAMS", "EditResult", "auto_layers", "changed_parameters", "guess_subject",
                               "neighbour_sets", "refusal_check", "subjects_for", "unierase")},
    **{n: "unl_token" for n in ("UNL_PARAMS", "add_unlearning_token", "train_unlearning_token")},
}
__all__ = sorted(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'unlearnkit.editing' has no attribute {name!r}")
    module = importlib.import_module(f".{_HOME[name]}", __name__)
    # bind the module's names here: importing a submodule binds it as an attribute of this package,
    # which would hide the function of the same name (editing.uipe, editing.unierase)
    globals().update({n: getattr(module, n) for n, home in _HOME.items() if home == _HOME[name]})
    return globals()[name]


def __dir__():
    return __all__
