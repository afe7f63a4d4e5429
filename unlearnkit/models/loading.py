"""Load any Hugging Face causal LM and tokenizer from a path or hub name; wrap with LoRA (peft)."""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def load_model(path_or_name: str | Path, lora=None, *, dtype=None, device: str | None = None,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` from a local folder or a hub name (hub needs network access).

    The tokenizer gets a pad token (EOS if it has none). ``lora``: None, True, a dict of
    ``peft.LoraConfig`` arguments, or a ``LoraConfig``: the model is then wrapped with a fresh
    adapter. Weights load via safetensors where available; ``trust_remote_code`` stays False
    unless asked. A missing path raises :class:`FileNotFoundError` naming it.
    """

    s = str(path_or_name)
    p = Path(s).expanduser()
    looks_local = p.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1 or "\\" in s
    if looks_local and not p.exists():
        raise FileNotFoundError(f"model path {s!r} does not exist")
    if p.exists() and p.is_dir() and not (p / "config.json").exists():
        raise FileNotFoundError(f"{s!r} is a folder but holds no config.json: not a saved Hugging Face model")
    try:
        tok = AutoTokenizer.from_pretrained(str(p) if p.exists() else s, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(p) if p.exists() else s, trust_remote_code=trust_remote_code,
                                                     dtype=dtype)
    except OSError as e:
        raise FileNotFoundError(f"could not load model {s!r}: not a local folder, and the hub is unreachable or "
                                f"has no such model ({e.__class__.__name__})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if device:
        model.to(device)
    model.eval()
    if lora:
        model = wrap_lora(model, lora)
    return model, tok


def default_lora_targets(model) -> list[str]:
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    pref = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj") if t in names]
    return pref or ["c_attn", "c_proj"]


def wrap_lora(model, lora=True):
    """Wrap ``model`` (in place) with a LoRA adapter; returns the ``peft`` model.

    ``lora``: True (r=8, alpha=16, dropout 0, all attention and MLP projections), a dict of
    ``LoraConfig`` arguments, or a ``LoraConfig``.
    """

    if isinstance(lora, LoraConfig):
        cfg = lora
    else:
        kw = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=default_lora_targets(model), task_type="CAUSAL_LM")
        if isinstance(lora, dict):
            kw.update(lora)
        cfg = LoraConfig(**kw)
    return get_peft_model(model, cfg)
