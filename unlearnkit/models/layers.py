"""Finding and reading a causal LM's decoder layers through peft and DDP/accelerate wrappers
(RMU's activations, and the edit methods' MLP projections)."""

from __future__ import annotations

import contextlib

import torch


class _StopForward(Exception):
    pass


def unwrap(model):
    """The bare HF model under DDP/accelerate wrappers and a peft wrapper (LoRA layers stay in place)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module  # DDP / accelerate wrappers
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # peft: LoRA layers are injected in place, hooks still see them
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama/Mistral/Qwen ``model.layers``, GPT-2
    ``transformer.h``, GPT-NeoX ``gpt_neox.layers``...), through peft and DDP wrappers."""
    m = unwrap(model)
    for path in ("model.layers", "layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                 "transformer.layers"):
        obj = m
        for a in path.split("."):
            obj = getattr(obj, a, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise TypeError(f"could not find the decoder layers of {type(m).__name__} (looked for model.layers, "
                    "transformer.h, gpt_neox.layers...)")


def check_layer(model, layer: int) -> int:
    """``layer`` as a valid index into :func:`decoder_layers` (negative counts from the end)."""
    n = len(decoder_layers(model))
    if not -n <= layer < n:
        raise ValueError(f"layer={layer} is out of range: the model has {n} decoder layers "
                         f"(valid range: [{-n}, {n - 1}], negative counts from the end)")
    return layer % n


def layer_output(model, part: dict[str, torch.Tensor], layer: int, stop: bool = True) -> torch.Tensor:
    """Residual-stream output of decoder layer ``layer`` (the module ``layers[layer]``): ``(B, L, d)``.

    Captured with a forward hook, as RMU's official code does (for the last layer this differs from
    ``hidden_states[-1]``, which HF takes *after* the final norm). With ``stop`` the forward stops
    right after that layer: later layers and the LM head cost nothing. Under DDP (a wrapped
    ``DistributedDataParallel`` model) the forward always runs to the end: DDP prepares its gradient
    all-reduce after the forward returns, so a forward stopped by an exception would leave the
    replicas unsynchronised.
    """
    stop = stop and not isinstance(model, torch.nn.parallel.DistributedDataParallel)
    layers = decoder_layers(model)
    layer = check_layer(model, layer)
    box = {}

    def hook(module, args, out):
        box["h"] = out[0] if isinstance(out, (tuple, list)) else out
        if stop:
            raise _StopForward

    handle = layers[layer].register_forward_hook(hook)
    try:
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"])
    except _StopForward:
        pass
    finally:
        handle.remove()
    return box["h"]


@contextlib.contextmanager
def eval_mode(model):
    """``model.eval()`` inside the block, the caller's train/eval mode restored after (also on error)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)
