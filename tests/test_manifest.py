"""A manifest on every result: change one input, see the manifest change (issue #15)."""

import copy

import torch

import unlearnkit as uk


def _eval_manifest(model, tok, data, **kw):
    return uk.evaluate(model, tok, data, ["probability"], progress=False, **kw).attrs["manifest"]


def test_evaluate_manifest_follows_each_input(tiny, quick_world):
    model, tok = tiny
    base = _eval_manifest(model, tok, quick_world.forget)
    for key in ("seed", "torch", "transformers", "device", "processes", "dtype", "attn_implementation", "model_digest",
                "tokenizer_digest", "data_digest", "prompt_format", "options"):
        assert key in base or key == "seed", key
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert _eval_manifest(other, tok, quick_world.forget)["model_digest"] != base["model_digest"]
    tok2 = copy.deepcopy(tok)
    tok2.chat_template = "{{ messages[0]['content'] }}"
    assert _eval_manifest(model, tok2, quick_world.forget)["tokenizer_digest"] != base["tokenizer_digest"]
    assert _eval_manifest(model, tok, quick_world.forget.select(range(5)))["data_digest"] != base["data_digest"]
    assert _eval_manifest(model, tok, quick_world.forget, batch_size=2)["options"] != base["options"]
    fmt = {"prefix": "Q: ", "suffix": "\nA:"}
    assert _eval_manifest(model, tok, quick_world.forget, prompt_format=fmt)["prompt_format"] != base["prompt_format"]
    assert _eval_manifest(model, tok, quick_world.forget) == base  # and nothing else moves


def test_unlearn_manifest_follows_seed_batch_and_data(tiny, quick_world):
    model, tok = tiny
    kw = dict(steps=1, probe_every=0, progress=False)
    a = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, **kw).manifest
    assert {"seed", "batch_size", "retain_batch_size", "grad_accumulation", "mixed_precision", "dtype",
            "attn_implementation", "model_digest", "base_model_digest", "tokenizer_digest", "data_digest",
            "prompt_format", "processes", "device"} <= set(a)
    b = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, seed=1, **kw).manifest
    assert b["seed"] != a["seed"] and b["model_digest"] != a["model_digest"]
    c = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, batch_size=2, **kw).manifest
    assert c["batch_size"] == 2 != a["batch_size"]
    d = uk.unlearn(model, tok, quick_world.forget.select(range(5)), quick_world.retain, **kw).manifest
    assert d["data_digest"]["forget"] != a["data_digest"]["forget"]
    assert d["base_model_digest"] == a["base_model_digest"]
