"""Weight-space unlearning methods (beside :mod:`unlearnkit.objectives`, which are losses).

UniErase (:func:`unierase`): an unlearning token plus an AlphaEdit edit; its reusable pieces:
preserved-key statistics and null-space projectors, the AlphaEdit closed form, sequential
:class:`EditState`, and the unlearning-token stage.
"""

from .alphaedit import (EDIT_PARAMS, EditRequest, EditState, PreservedStats, Projector, alphaedit_delta,
                        apply_alphaedit, corpus_texts, find_projection, key_second_moment, make_requests,
                        preserved_stats, projection_weight, projector, subject_token_index)
from .unierase import (UNIERASE_PARAMS, EditResult, auto_layers, changed_parameters, guess_subject, neighbour_sets,
                       refusal_check, subjects_for, unierase)
from .unl_token import UNL_PARAMS, add_unlearning_token, train_unlearning_token

__all__ = ["EDIT_PARAMS", "EditRequest", "EditState", "PreservedStats", "Projector", "alphaedit_delta",
           "apply_alphaedit", "corpus_texts", "find_projection", "key_second_moment", "make_requests",
           "preserved_stats", "projection_weight", "projector", "subject_token_index", "UNIERASE_PARAMS",
           "EditResult", "auto_layers", "changed_parameters", "guess_subject", "neighbour_sets", "refusal_check",
           "subjects_for", "unierase", "UNL_PARAMS", "add_unlearning_token", "train_unlearning_token"]
