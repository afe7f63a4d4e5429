"""Scoring primitives: the prefix-shared path computes the same numbers as the flat one, the
token statistics are right, and generation from token ids agrees with generation from questions."""

import numpy as np
import pytest
import torch

from unlearnkit.metrics import generate, generate_from_ids, score_answers, score_pairs, score_texts
from unlearnkit.scoring import _batches


def _lists(data):
    return [[a, p, *pt] for a, p, pt in zip(data["answer"], data["paraphrased_answer"], data["perturbed_answer"])]


@pytest.mark.parametrize("batch_size", [64, 5, 1])
def test_prefix_shared_equals_flat(quick_world, tiny, batch_size):
    model, tok = tiny
    d = quick_world.forget
    lists = _lists(d)
    shared = score_answers(model, tok, d["question"], lists, batch_size=batch_size, entropy=True, token_stats=True)
    flat = score_answers(model, tok, d["question"], lists, prefix_share=False, entropy=True, token_stats=True)
    for s, f, lst in zip(shared, flat, lists):
        assert len(s["logprob"]) == len(lst)
        assert np.array_equal(s["n_tokens"], f["n_tokens"])
        assert np.allclose(s["logprob"], f["logprob"], atol=1e-4)
        assert np.allclose(s["entropy"], f["entropy"], atol=1e-4)
        for a, b in zip(s["token_sigma"], f["token_sigma"]):
            assert np.allclose(a, b, atol=1e-4)


def test_prefix_shared_on_real_tofu_rows(tofu_dir, tiny):
    from unlearnkit import load_tofu

    model, tok = tiny
    d = load_tofu(tofu_dir, "forget01_perturbed").select(range(3))
    lists = _lists(d)
    shared = score_answers(model, tok, d["question"], lists, max_batch_tokens=600)  # forces split questions
    flat = score_answers(model, tok, d["question"], lists, prefix_share=False, batch_size=1)
    for s, f in zip(shared, flat):
        assert np.allclose(s["logprob"], f["logprob"], atol=2e-3, rtol=1e-5)


def test_token_level_quantities_by_hand(quick_world, tiny):
    model, tok = tiny
    q, a = quick_world.forget["question"][0], quick_world.forget["answer"][0]
    s = score_pairs(model, tok, [q], [a], token_stats=True, entropy=True)
    prompt = tok(f"Question: {q}\nAnswer:")["input_ids"]
    ans = tok(" " + a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + ans])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(ans) - 1)
    lp = logp[pos, torch.tensor(ans)].double().numpy()
    assert s["n_tokens"][0] == len(ans)
    assert np.allclose(s["token_logprobs"][0], lp, atol=1e-5)
    assert s["logprob"][0] == pytest.approx(lp.sum(), abs=1e-4)
    p = logp[pos].exp()
    mu = (p * logp[pos]).sum(-1)
    assert np.allclose(s["token_mu"][0], mu.numpy(), atol=1e-5)
    assert np.allclose(s["token_sigma"][0], ((p * logp[pos] ** 2).sum(-1) - mu ** 2).clamp_min(1e-6).sqrt().numpy(),
                       atol=1e-4)
    assert s["entropy"][0] == pytest.approx(float(-mu.mean()), abs=1e-4)
    t = score_texts(model, tok, [a])
    assert t["n_tokens"][0] == len(tok(a)["input_ids"]) - 1


def test_generate_from_ids_matches_generate(quick_world, tiny):
    model, tok = tiny
    qs = list(quick_world.forget["question"][:4])
    prompts = [tok(f"Question: {q}\nAnswer:")["input_ids"] for q in qs]
    assert generate_from_ids(model, tok, prompts, max_new_tokens=20) == generate(model, tok, qs, max_new_tokens=20)
    short = generate_from_ids(model, tok, prompts, max_new_tokens=[1, 2, 3, 20], return_ids=True)[1]
    assert [len(x) for x in short[:3]] == [1, 2, 3]


def test_token_budget_batches():
    assert _batches([100, 90, 10, 10, 10], 64, 200) == [(0, 2), (2, 5)]
    assert _batches([500, 10], 64, 200) == [(0, 1), (1, 2)]  # one row at least
    assert _batches([5] * 10, 4, None) == [(0, 4), (4, 8), (8, 10)]
