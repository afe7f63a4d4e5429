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


def _small_pairs(world, n=96):
    return world.training_pairs()[:n]


def test_builder2_loss_is_builder1_loss(quick_world, tiny):
    """Builder 2 computes the same loss as builder 1 (HF's labels loss over a padded, masked batch):
    no attention mask under right padding, LM head on labelled positions only."""
    from unlearnkit.data import encode_pairs
    from unlearnkit.models.tiny import QUICK_TINY, _llama

    tok = tiny[1]
    pairs = _small_pairs(quick_world, 16)
    enc = encode_pairs(tok, [q for q, _ in pairs], [a for _, a in pairs])
    lengths = enc["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # the batch really is padded
    torch.manual_seed(0)
    model = _llama(tok, QUICK_TINY)
    with torch.no_grad():
        ref = model(**{k: enc[k] for k in ("input_ids", "attention_mask", "labels")}).loss
        y = enc["labels"][:, 1:]
        hidden = model.model(input_ids=enc["input_ids"]).last_hidden_state[:, :-1]
        new = torch.nn.functional.cross_entropy(model.lm_head(hidden[y != -100]), y[y != -100])
    assert torch.allclose(ref, new, rtol=1e-5, atol=1e-6), (ref.item(), new.item())


def test_builder2_is_repeatable_and_keyed_apart(quick_world, tiny):
    """Same seed, same torch build -> the same bits (two short builder-2 trainings); builder-1 configs
    keep their old cache keys while builder 2 gets its own."""
    from unlearnkit.models.tiny import QUICK_TINY, TinyConfig, _batches, _key, train_tiny

    tok = tiny[1]
    cfg = TinyConfig(vocab_size=640, epochs=2, batch_size=16, builder=2)
    a = train_tiny(_small_pairs(quick_world), tok, cfg, progress=False)
    b = train_tiny(_small_pairs(quick_world), tok, cfg, progress=False)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n
    c = train_tiny(_small_pairs(quick_world), tok, TinyConfig(vocab_size=640, epochs=2, batch_size=16, builder=2,
                                                              seed=1), progress=False)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)  # the seed matters
    assert _key(quick_world, QUICK_TINY, "target") == "target-f1a5e14a62d1d05d"  # unchanged by the builder field
    assert _key(quick_world, TinyConfig(vocab_size=640, epochs=70, builder=2), "target") != _key(
        quick_world, QUICK_TINY, "target")
    with pytest.raises(ValueError, match="builder=3"):
        TinyConfig(builder=3)
    # length-sorted batches: every row exactly once per epoch, batches near one length
    lengths = torch.tensor([5, 9, 5, 7, 9, 5, 7, 7, 9, 5, 6, 8])
    g = torch.Generator().manual_seed(0)
    batches = _batches(lengths, torch.randperm(12, generator=g), 3, 4, g)
    assert sorted(torch.cat(batches).tolist()) == list(range(12))
    assert sum(int(lengths[b].max() - lengths[b].min()) for b in batches) <= 4


def test_build_progress_prints_a_line_per_quarter_to_stdout(capsys):
    """Besides the tqdm bar, a build prints one plain stdout line per quarter of its steps (what
    ``make demo`` echoes to the terminal through papermill's ``--log-output``); none when disabled."""
    from unlearnkit.models.tiny import _Progress

    p = _Progress(10, "building target model", True)
    for i in range(10):
        p.update(1.0 / (i + 1))
    p.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "building target model: 10 steps ..."
    assert [ln.split(" steps")[0].rsplit(" ", 1)[1] for ln in lines[1:]] == ["2/10", "5/10", "8/10", "10/10"]
    assert "loss 0.100" in lines[-1]
    q = _Progress(10, "quiet", False)
    for _ in range(10):
        q.update(0.5)
    q.close()
    assert capsys.readouterr().out == ""
