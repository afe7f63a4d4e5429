"""Load any Hugging Face causal LM and tokenizer from a path or hub name; wrap with LoRA (peft)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_model_folder(p: Path) -> None:
    """Refuse, naming the path, a folder that cannot hold a loadable model: no config.json, no
    tokenizer files, no weights, a truncated safetensors file, a non-UTF-8 config."""
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"{str(p)!r} is a folder but holds no config.json: not a saved Hugging Face model")
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "generation_config.json"):
        f = p / name
        if f.exists():
            try:
                json.loads(f.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"{f}: not UTF-8 text (byte {e.start}); re-save the file as UTF-8") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not any((p / f).exists() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{str(p)!r} holds no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                                "save the tokenizer beside the model (tokenizer.save_pretrained)")
    shards = sorted(p.glob("*.safetensors"))
    if not shards and not any((p / f).exists() for f in WEIGHT_FILES) and not list(p.glob("*.bin")):
        raise FileNotFoundError(f"{str(p)!r} holds no model weights (model.safetensors, pytorch_model.bin or "
                                "their shards)")
    for f in shards:
        try:
            with safe_open(str(f), framework="pt") as sf:
                sf.keys()
        except Exception as e:
            raise ValueError(f"{f}: unreadable safetensors file, probably truncated or corrupt "
                             f"({type(e).__name__}: {e})") from None


def is_lora(model) -> bool:
    """Whether ``model`` is a peft model (it carries an adapter)."""
    return isinstance(model, PeftModel)


def save_model(model, folder, merge_lora: bool = False) -> None:
    """``save_pretrained`` into ``folder``; a LoRA model as its adapter (``adapter_config.json``
    records the base), or with ``merge_lora`` as a full model with the adapter merged into a copy."""
    if is_lora(model) and merge_lora:
        copy.deepcopy(model).merge_and_unload().save_pretrained(folder)
    else:
        model.save_pretrained(folder)


def _load_adapter(p: Path, dtype, trust_remote_code):
    """A folder with ``adapter_config.json`` and no config.json: load the recorded base, then the adapter."""
    cfg = json.loads((p / "adapter_config.json").read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base or not Path(base).expanduser().exists():
        raise FileNotFoundError(f"{str(p)!r} holds a LoRA adapter whose base model {base!r} is not found; load the "
                                "base with load_model(base) and attach the adapter with peft.PeftModel.from_pretrained, "
                                "or save the result with res.save(path, merge_lora=True)")
    model, tok = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code)
    if any((p / f).exists() for f in TOKENIZER_FILES):
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, str(p))
    model.eval()
    model.name_or_path = str(p)
    return model, tok


def load_model(path_or_name: str | Path, lora=None, *, dtype=None, device: str | None = None,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` from a local folder or a hub name (hub needs network access).

    The tokenizer gets a pad token (EOS if it has none). ``lora``: None, True, a dict of
    ``peft.LoraConfig`` arguments, or a ``LoraConfig``: the model is then wrapped with a fresh
    adapter. Weights load via safetensors where available; ``trust_remote_code`` stays False
    unless asked. A folder saved from a LoRA run (an adapter, no config.json) loads its recorded
    base model and attaches the adapter. A missing path, missing tokenizer files or weights, a
    truncated safetensors file or a non-UTF-8 config raise an error naming the path.
    """

    s = str(path_or_name)
    p = Path(s).expanduser()
    looks_local = p.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1 or "\\" in s
    if looks_local and not p.exists():
        raise FileNotFoundError(f"model path {s!r} does not exist")
    if p.is_dir() and (p / "adapter_config.json").exists() and not (p / "config.json").exists():
        model, tok = _load_adapter(p, dtype, trust_remote_code)
    else:
        if p.is_dir():
            check_model_folder(p)
        try:
            tok = AutoTokenizer.from_pretrained(str(p) if p.exists() else s, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(str(p) if p.exists() else s,
                                                         trust_remote_code=trust_remote_code, dtype=dtype)
        except OSError as e:
            if p.exists():
                raise OSError(f"could not load model {s!r}: {e}") from None
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
