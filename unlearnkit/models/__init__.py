"""Tiny models of the miniature world (built once, cached), and loading of any causal LM (+LoRA)."""

from .loading import load_model, wrap_lora
from .tiny import (
           QUICK_TINY,
           TinyConfig,
           build_or_load,
           cache_root,
           retain_model,
           target_model,
           train_tokenizer,
)

__all__ = ["load_model", "wrap_lora", "QUICK_TINY", "TinyConfig", "build_or_load", "cache_root", "retain_model",
           "target_model", "train_tokenizer"]
