"""Tiny target/retain models: quality, caching, loading any causal LM, LoRA."""

import time

import numpy as np
import pytest
import torch

from unlearnkit import load_model, target_model, wrap_lora
from unlearnkit.metrics import generate, rouge_recall


def test_target_model_reproduces_its_training_answers(quick_world, tiny):
    """Measured on the quick world: ROUGE-L recall 1.00, exact match 100% (target: >= 0.9 / 95%)."""
    model, tok = tiny
    rows = quick_world.table[quick_world.table.split.isin(["forget", "retain", "world_facts"])]
    gens = generate(model, tok, list(rows.question))
    r = rouge_recall(list(rows.answer), gens)
    exact = np.mean([g == a for g, a in zip(gens, rows.answer)])
    assert r.mean() >= 0.9 and exact >= 0.95


def test_retain_model_does_not_know_forget_answers(quick_world, tiny, tiny_retain):
    from unlearnkit.metrics import score_pairs

    f = quick_world.forget
    p_target = score_pairs(tiny[0], tiny[1], f["question"], f["answer"])["prob"].mean()
    p_retain = score_pairs(tiny_retain[0], tiny_retain[1], f["question"], f["answer"])["prob"].mean()
    assert p_target > 0.5 and p_retain < p_target


def test_cached_reload_is_fast_and_identical(quick_world, tiny):
    t = time.perf_counter()
    m2, tok2 = target_model(quick_world, progress=False)
    assert time.perf_counter() - t < 30  # generous: the benchmark reports the real figure (<= 5 s target)
    for (n, a), (_, b) in zip(tiny[0].state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n


def test_load_model_from_path_and_errors(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    m, t = load_model(tmp_path / "m")
    assert t.pad_token_id is not None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_lora_wrapping_trains_only_adapter(tiny):
    import copy

    model = copy.deepcopy(tiny[0])
    peft_model = wrap_lora(model, {"r": 4})
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
