"""Property tests (hypothesis) on the metrics and the data layer: bounds, invariances, no crash on
arbitrary Unicode. Few examples each (CPU time is scarce); the properties, not the counts, matter."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit.data import IGNORE, encode_pairs
from unlearnkit.losses import token_logprobs
from unlearnkit.metrics.closer_look import token_entropy_value
from unlearnkit.metrics.mia import mia_auc
from unlearnkit.metrics.muse import rouge_l_f1
from unlearnkit.metrics.tofu import aggregate_truth_ratio, rouge_recall, truth_ratio_raw

FEW = settings(max_examples=25, deadline=None)
words = st.lists(st.sampled_from(["oslo", "ann", "born", "in", "the", "a", "writer", "1970", "rome"]), max_size=12)
text = words.map(" ".join)
finite = st.floats(-50, 50, allow_nan=False)


@FEW
@given(st.lists(st.tuples(text, text), min_size=1, max_size=5))
def test_rouge_in_unit_interval(pairs):
    refs, gens = zip(*pairs)
    for v in (rouge_recall(refs, gens), rouge_l_f1(refs, gens)):
        assert np.all((v >= 0) & (v <= 1))


@FEW
@given(st.lists(finite, min_size=1, max_size=20), st.lists(finite, min_size=1, max_size=20))
def test_auc_in_unit_interval(m, h):
    assert 0.0 <= mia_auc(m, h) <= 1.0


@FEW
@given(st.lists(st.tuples(st.floats(0, 20), st.lists(st.floats(0, 20), min_size=1, max_size=5)), min_size=1,
                max_size=6), st.randoms(use_true_random=False))
def test_truth_ratio_invariant_under_permuting_perturbed_answers(rows, rnd):
    para = np.array([p for p, _ in rows])
    pert = [list(q) for _, q in rows]
    shuffled = [rnd.sample(q, len(q)) for q in pert]
    a, b = truth_ratio_raw(para, pert), truth_ratio_raw(para, shuffled)
    assert np.allclose(a, b, rtol=1e-12)
    for split in ("forget", "retain"):
        v = aggregate_truth_ratio(split, a)
        assert 0.0 <= v <= 1.0 or math.isnan(v)


@FEW
@given(st.lists(st.sampled_from(list("abcdefg")), max_size=30), st.randoms(use_true_random=False))
def test_token_entropy_bounded_and_permutation_invariant(tokens, rnd):
    v = token_entropy_value(tokens)
    assert 0.0 <= v <= 1.0 + 1e-12
    assert math.isclose(v, token_entropy_value(rnd.sample(tokens, len(tokens))), abs_tol=1e-12)


@FEW
@given(st.integers(1, 3), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_sequence_probability_in_unit_interval(b, length, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, length, 11, generator=g) * 10
    labels = torch.randint(0, 11, (b, length), generator=g)
    labels[:, 0] = IGNORE
    lp, mask = token_logprobs(logits, labels)
    p = lp.sum(-1).exp()
    assert torch.all((p >= 0) & (p <= 1))


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=0, max_size=40), st.text(min_size=1, max_size=40).filter(lambda s: s.strip()))
def test_encode_pairs_on_arbitrary_unicode(tiny, q, a):
    _, tok = tiny
    enc = encode_pairs(tok, [q], [a])
    n = int(enc["attention_mask"].sum())
    assert enc["input_ids"].shape == enc["labels"].shape
    assert 0 < int(enc["prompt_len"][0]) < n  # some prompt, some answer
    assert (enc["labels"][0, n - 1] == tok.eos_token_id) and bool((enc["labels"][0, :int(enc["prompt_len"][0])] == IGNORE).all())
