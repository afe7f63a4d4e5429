"""Memorization metrics, the extraction attack, task vectors and SGA/TA/TAU (issue 12).

Pure functions are checked against hand-computed values; the model-level checks run on a
2-layer random Llama built in the test (fast) and, where marked, on the cached memorization world.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnkit import memorization as M
from unlearnkit.editing import apply_task_vector, negate, scale, snapshot, task_vector

# -- pure functions, hand-computed ---------------------------------------------------------------


def test_em_es_ma_hand_computed():
    target = [4, 8, 15, 16, 23, 42]
    preds = [4, 0, 15, 16, 23, 42]  # one miss at t=1: 5/6 right; matching suffix starts at k*=2
    assert M.exact_memorization(preds, target) == pytest.approx(5 / 6)
    assert M.memorization_accuracy(preds, target) == pytest.approx(5 / 6)
    assert M.extraction_strength(preds, target) == pytest.approx(1 - 2 / 6)
    assert M.extraction_strength(target, target) == 1.0  # k* = 0
    # no matching suffix (last token wrong): 0, not OpenUnlearning's 1/T
    assert M.extraction_strength([4, 8, 15, 16, 23, 0], target) == 0.0
    assert M.exact_memorization([0] * 6, target) == 0.0
    with pytest.raises(ValueError, match="preds has 2 tokens but target has 6"):
        M.exact_memorization([1, 2], target)
    with pytest.raises(ValueError, match="target is empty"):
        M.memorization_accuracy([], [])


def test_ngram_overlap_and_el_hand_computed():
    x = [1, 2, 3, 4, 5]
    # n = 2, T = 5: prefixes t = 1, 2, 3 (T - n = 3)
    conts = {1: [2, 3, 9, 9],   # ref bigrams (2,3),(3,4),(4,5); hyp (2,3),(3,9),(9,9): 1/3
             2: [3, 4, 5],      # verbatim: 2/2
             3: [7, 7]}         # ref (4,5): 0/1
    assert M.ngram_overlap(conts[1], x[1:], 2) == pytest.approx(1 / 3)
    assert M.extraction_likelihood(x, conts, n=2) == pytest.approx((1 / 3 + 1 + 0) / 3)
    # continuations longer than T - t are cut: the extra tokens cannot add matches
    assert M.extraction_likelihood(x, {1: [2, 3, 4, 5, 2, 3], 2: [3, 4, 5], 3: [4, 5]}, n=2) == 1.0
    # repeated hypothesis n-grams count with repetition (Jang's list count)
    assert M.ngram_overlap([1, 1, 1], [1, 1, 2], 2) == pytest.approx(2 / 2)
    # a sequence not longer than n has no reference n-gram: undefined (NaN), not 0
    assert math.isnan(M.extraction_likelihood([1, 2, 3], {}, n=3))
    assert math.isnan(M.extraction_likelihood([1, 2], {}, n=5))
    assert M.extraction_likelihood([1, 2], {1: [2]}, n=1) == 1.0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_n_below_one_names_parameter(bad):
    with pytest.raises(ValueError, match=r"n=.*valid range: integers >= 1"):
        M.extraction_likelihood([1, 2, 3], {}, n=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_thresholds_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"high=.*valid range: \[0, 1\]"):
        M.outlier_summary([0.5], high=bad)
    with pytest.raises(ValueError, match=r"el_threshold=.*valid range: \[0, 1\]"):
        M.extraction_attack(None, None, None, el_threshold=bad)


def test_outlier_summary_one_and_two_sided():
    ma = [0.05, 0.15, 0.4, 0.6, 0.9]
    s = M.outlier_summary(ma, high=0.6)  # one-sided, strict
    assert s["total"] == s["n_high"] == 1 and s["std"] == pytest.approx(np.std(ma))
    s2 = M.outlier_summary(ma, high=0.6, low=0.15)  # the authors' code: >= 0.60 plus <= 0.15
    assert (s2["n_high"], s2["n_low"], s2["total"]) == (2, 2, 4)
    with pytest.raises(ValueError, match="values is empty"):
        M.outlier_summary([], high=0.5)


# -- task vectors ---------------------------------------------------------------------------------


def _tiny_llama(seed=0, layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def test_task_vector_arithmetic_and_c_zero_is_exact():
    m = _tiny_llama()
    theta_s = snapshot(m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    theta_t = snapshot(m)
    tau = task_vector(m, theta_s)
    n0 = next(iter(tau))
    assert torch.allclose(tau[n0], theta_t[n0] - theta_s[n0])
    assert torch.equal(negate(tau)[n0], -tau[n0]) and torch.allclose(scale(tau, 3)[n0], 3 * tau[n0])
    apply_task_vector(m, theta_s, -3.0)  # theta_s - 3 tau
    assert torch.allclose(dict(m.named_parameters())[n0], theta_s[n0] - 3 * tau[n0], atol=1e-6)
    apply_task_vector(m, theta_s, 0.0)  # c = 0: the snapshot, bit for bit
    assert all(torch.equal(p, theta_s[n]) for n, p in m.named_parameters())
    with pytest.raises(ValueError, match="differ in parameter names"):
        task_vector(m, {"x": torch.zeros(1)})


# -- objectives on hand-built batches ---------------------------------------------------------------


class _Tok:
    """A character tokenizer for the toy model: ids 3.. for 'a'..; pad 0, bos 1, eos 2."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        ids = [3 + (ord(ch) % 29) for ch in text]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(97 + (i - 3) % 26) for i in ids if i > 2)


def _ctx(hp, data, tok):
    from unlearnkit.objectives import ObjectiveContext

    return ObjectiveContext(hp=hp, tokenizer=tok, raw={"forget": data}, state={})


def _forget_data(n=4):
    from datasets import Dataset

    return Dataset.from_dict({"id": list(range(n)), "question": [f"q{i}" for i in range(n)],
                              "answer": [f"record number {i} of the toy" for i in range(n)]})


def test_sga_updates_only_sequences_above_threshold():
    """MA is injected per sequence; SGA must update only rows >= mem_threshold, plus each batch's max."""
    from unlearnkit.data import encode_pairs
    from unlearnkit.objectives import get_objective

    tok, data, model = _Tok(), _forget_data(4), _tiny_llama()
    obj = get_objective("sga")
    hp = obj.resolve(mem_threshold=0.5, ma_threshold=0.0)
    ctx = _ctx(hp, data, tok)
    obj.setup(model, ctx)
    assert ctx.state["ma"].shape == (4,) and ctx.state["updates"].tolist() == [0, 0, 0, 0]
    enc = encode_pairs(tok, data["question"], data["answer"])
    enc["index"] = torch.arange(4)
    ctx.state["ma"] = np.array([0.9, 0.2, 0.6, 0.1])  # rows 0 and 2 above 0.5
    ctx.state["seen"] = -10**9  # no re-scoring during this test
    for step, idx in enumerate([[0, 1], [2, 3], [1, 3], [0, 2]]):
        ctx.step = step
        batch = {"forget": {k: v[idx] for k, v in enc.items()}}
        loss, parts = obj(model, batch, ctx)
        assert torch.isfinite(loss) and loss.requires_grad
    # [0,1] -> 0; [2,3] -> 2; [1,3]: none above, the batch's most memorized (1) always; [0,2] -> both
    assert ctx.state["updates"].tolist() == [2, 1, 2, 0]
    assert "stop" not in ctx.state


def test_sga_stop_rule_and_empty_forget():
    from unlearnkit.data import encode_pairs
    from unlearnkit.objectives import get_objective

    tok, data, model = _Tok(), _forget_data(2), _tiny_llama()
    obj = get_objective("sga")
    ctx = _ctx(obj.resolve(ma_threshold=1.0), data, tok)  # any MA < 1 stops at once
    obj.setup(model, ctx)
    enc = encode_pairs(tok, data["question"], data["answer"])
    enc["index"] = torch.arange(2)
    loss, parts = obj(model, {"forget": enc}, ctx)
    assert "ma_threshold=1.0" in ctx.state["stop"] and float(loss.detach()) == 0.0 and ctx.state["updates"].sum() == 0
    with pytest.raises(ValueError, match=r"ma_threshold=1.5.*valid range: \[0, 1\]"):
        obj.resolve(ma_threshold=1.5)
    with pytest.raises(ValueError, match=r"mem_threshold=-0.2.*valid range: \[0, 1\]"):
        obj.resolve(mem_threshold=-0.2)
    with pytest.raises(ValueError, match="forget set is empty"):
        obj.setup(model, _ctx(obj.resolve(), data.select([]), tok))
    with pytest.raises(ValueError, match=r"parameter c=0.5.*valid range: \[-inf, 0\]|c=0.5.*\(-inf, 0\]"):
        get_objective("tau").resolve(c=0.5)


def test_encode_and_attack_bad_inputs():
    tok, data = _Tok(), _forget_data(2)
    with pytest.raises(ValueError, match="data is empty"):
        M.encode_sequences(tok, data.select([]))
    with pytest.raises(ValueError, match=r"prefix_len=500 leaves nothing.*valid range: \[0, "):
        M.extraction_attack(_tiny_llama(), tok, data, prefix_len=500)
    with pytest.raises(ValueError, match=r"el_n=0.*valid range"):
        M.extraction_attack(_tiny_llama(), tok, data, el_n=0)


def test_model_level_scores_agree_with_pure_functions():
    """memorization_scores on a toy model equals the pure functions applied to its own predictions."""
    tok, data, model = _Tok(), _forget_data(3), _tiny_llama()
    seqs = M.encode_sequences(tok, data)
    preds = M.teacher_forced_predictions(model, seqs)
    # reference: one forward per row, no padding
    for (c, s), p in zip(seqs, preds):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([c + s])).logits[0]
        ref = logits[len(c) - 1:len(c) - 1 + len(s)].argmax(-1).numpy()
        assert np.array_equal(p, ref)
    df = M.memorization_scores(model, tok, data, el_n=3)
    wide = df.pivot(index="id", columns="quantity", values="value")
    for i, ((_, s), p) in enumerate(zip(seqs, preds)):
        assert wide.loc[i, "ma"] == pytest.approx(M.memorization_accuracy(p, s))
        assert wide.loc[i, "es"] == pytest.approx(M.extraction_strength(p, s))
    # EL: greedy continuation of every prefix, checked against one-at-a-time greedy decoding for row 0
    c, s = seqs[0]
    conts = M.greedy_continuations(model, tok, seqs, 3)[0]
    for t in (1, len(s) - 3):
        ids = c + s[:t]
        for _ in range(len(s) - t):
            with torch.no_grad():
                ids = ids + [int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())]
        gen = ids[len(c) + t:]
        if 2 in gen:
            gen = gen[:gen.index(2)]
        assert conts[t] == gen
    assert wide.loc[0, "el"] == pytest.approx(M.extraction_likelihood(s, conts, 3))
    probe = M.memorization_probe(model, tok, data, step=5, split="forget")
    assert list(probe.columns) == ["step", "split", "id", "quantity", "value"] and (probe.quantity == "ma").all()
    assert np.allclose(probe.value, wide["ma"].to_numpy())


# -- exercises of notebook 03 ---------------------------------------------------------------------------


def test_exercise_memorization_accuracy(capsys):
    from unlearnkit import exercises as ex

    def stub(preds, target):
        raise NotImplementedError

    assert ex.check_memorization_accuracy(ex.reference("memorization_accuracy"))
    assert not ex.check_memorization_accuracy(stub)
    assert "not done yet" in capsys.readouterr().out
    with pytest.raises(ex.ExerciseError, match="number"):
        ex.check_memorization_accuracy(lambda p, t: sum(a == b for a, b in zip(p, t)))
    with pytest.raises(ex.ExerciseError, match="wrong"):
        ex.check_memorization_accuracy(lambda p, t: sum(a != b for a, b in zip(p, t)) / len(t))
    with pytest.raises(ex.ExerciseError, match="T-1"):
        ex.check_memorization_accuracy(lambda p, t: sum(a == b for a, b in zip(p, t)) / max(1, len(t) - 1))


def test_exercise_extractable(capsys):
    from unlearnkit import exercises as ex

    rec = pd.DataFrame({"id": [3, 5, 8], "recovered": [True, False, True]})
    assert ex.reference("extractable", rec) == [3, 8]
    assert ex.check_extractable(rec, [8, 3])
    assert not ex.check_extractable(rec, ...)
    with pytest.raises(ex.ExerciseError, match=r"still recovers \[8\].*\[5\] are not"):
        ex.check_extractable(rec, [3, 5])
    assert "_extractable" in ex.solution("extractable")


def test_explorer_renders_headless():
    from unlearnkit.viz import MemorizationExplorer

    t = pd.DataFrame({"id": [0, 0, 1], "position": [0, 1, 0], "token": ["a", "b", "c"], "predicted": ["a", "x", "c"],
                      "match": [True, False, True]})
    e = MemorizationExplorer({"before": t, "after": t.assign(match=False)})
    assert e.png and e.ma == {"before": 0.5, "after": 0.0}
    e.sequence.value = 1
    assert e.ma["before"] == 1.0 and "MA 1.00" in e.info.value
