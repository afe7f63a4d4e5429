"""unlearnkit: a Jupyter-first teaching and analysis kit for machine unlearning in LLMs.

Public API::

    world = make_world(seed=0)                       # miniature world: .forget, .retain, .world_facts
    model, tok = target_model(world)                 # tiny Llama trained on it (cached)
    res = unlearn(model, tok, world.forget, world.retain, method="ga", steps=30)
    evaluate(res.model, tok, world, metrics=["probability", "rouge"])
    list_objectives(), list_metrics()
    sweep_notebook("notebooks/01_squeezing_and_beliefs.ipynb", {"lr": [1e-4, 3e-4]}, "runs/s01")
"""

__version__ = "0.1.0"

from .metrics import evaluate, list_metrics, summarize
from .models import load_model, retain_model, target_model, wrap_lora
from .objectives import get_objective, list_objectives
from .probes import probe, token_probe
from .sweep import record_result, sweep_notebook
from .train import UnlearnResult, check_params, unlearn
from .world import World, WorldConfig, load_tofu, make_world

__all__ = ["__version__", "make_world", "World", "WorldConfig", "load_tofu", "target_model", "retain_model",
           "load_model", "wrap_lora", "unlearn", "UnlearnResult", "check_params", "probe", "token_probe", "evaluate", "summarize",
           "list_objectives", "get_objective", "list_metrics", "sweep_notebook", "record_result"]
