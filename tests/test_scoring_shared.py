"""Scoring shares every shared prefix: the chat header (BOS, system prompt, date) once per call, each
question's prompt once for all its answers; the values equal whole-sequence scoring to ~1e-5. And
``evaluate`` scores each distinct (question, answer) pair at most once across the TOFU metrics."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from test_chat_format import llama3_chat_tokenizer

import unlearnkit.metrics.base as base
from unlearnkit import evaluate
from unlearnkit.data import PromptFormat
from unlearnkit.scoring import MIN_SHARED_HEADER, common_header, score_answers, score_pairs

CHAT = PromptFormat(chat=True, system_prompt="You are a helpful assistant that answers briefly.",
                    date_string="26 Jul 2024")


@pytest.fixture(scope="module")
def chat_llama(tiny, tmp_path_factory):
    """A random tiny Llama (RoPE, grouped-query attention) with a Llama-3-style chat tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama3_chat_tokenizer(tiny[1], tmp_path_factory.mktemp("chat_tok_shared"))
    tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


@contextmanager
def _token_count(model):
    """``{"tokens": n}``: token positions (padding included) of every forward of ``model`` inside the block."""
    count = {"tokens": 0}

    def hook(_m, args, kwargs):
        count["tokens"] += int(kwargs["input_ids"].numel())

    h = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield count
    finally:
        h.remove()


def _close(a: dict, b: dict, keys=("logprob", "mean_nll", "prob", "entropy")):
    assert np.array_equal(a["n_tokens"], b["n_tokens"])
    for k in keys:
        if k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


def test_chat_header_is_shared_and_values_equal(chat_llama, quick_world):
    model, tok = chat_llama
    rows = quick_world.split("forget")
    qs = list(rows["question"])[:12]
    lists = [[a, "I do not know.", f"{a} Maybe."] for a in list(rows["answer"])[:12]]
    header = common_header([CHAT.prompt_ids(q, tok) for q in qs])
    assert header >= MIN_SHARED_HEADER
    with _token_count(model) as count:
        shared = score_answers(model, tok, qs, lists, fmt=CHAT, entropy=True, batch_size=8)
        shared_tokens, count["tokens"] = count["tokens"], 0
        whole = score_answers(model, tok, qs, lists, fmt=CHAT, entropy=True, batch_size=8, prefix_share=False)
        whole_tokens = count["tokens"]
    for a, b in zip(shared, whole):
        _close(a, b)
    # the header went through the model once, not once per question or per answer
    assert whole_tokens - shared_tokens >= header * (sum(map(len, lists)) - 1)
    p_shared = score_pairs(model, tok, qs, [x[0] for x in lists], fmt=CHAT, token_stats=True, batch_size=5)
    p_whole = score_pairs(model, tok, qs, [x[0] for x in lists], fmt=CHAT, token_stats=True, prefix_share=False)
    _close(p_shared, p_whole)
    for k in ("token_logprobs", "token_mu"):
        for x, y in zip(p_shared[k], p_whole[k]):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    # sigma = sqrt(E[log^2 p] - mu^2) cancels two numbers near 81 in float32 (a random model is close
    # to uniform over ~900 tokens, sigma ~0.16), so the last-bit differences of the logits show at 1e-3
    for x, y in zip(p_shared["token_sigma"], p_whole["token_sigma"]):
        np.testing.assert_allclose(x, y, rtol=2e-3)


def test_common_header():
    assert common_header([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_header([[1, 2, 3], [1, 2, 3]]) == 2  # each prompt keeps one token of its own
    assert common_header([]) == 0


def test_evaluate_scores_each_pair_once(chat_llama, quick_world, monkeypatch):
    """Across probability, truth ratio, model utility (and the options normalisation on world_facts)
    and membership inference (which reads the forget answers' per-token log-probs), no
    (question, answer) is scored twice."""
    model, tok = chat_llama
    seen = []

    def record(fn, lists):
        def wrapped(m, t, questions, answers, **kw):
            for q, a in zip(questions, answers):
                for x in (a if lists else [a]):
                    seen.append((q, x))
            return fn(m, t, questions, answers, **kw)
        return wrapped

    monkeypatch.setattr(base, "score_pairs", record(base.score_pairs, False))
    monkeypatch.setattr(base, "score_answers", record(base.score_answers, True))
    data = {s: quick_world.split(s).select(range(6)) for s in ("forget", "retain", "world_facts", "holdout")}
    df = evaluate(model, tok, data, ["tofu", "mia_min_k", "mia_min_k_plus_plus"], progress=False, prompt_format=CHAT,
                  max_new_tokens=4)
    assert {"probability", "truth_ratio", "mia_min_k", "mia_min_k_plus_plus"} <= set(df.metric)
    assert seen and len(seen) == len(set(seen)), "a (question, answer) pair was scored twice"


@pytest.mark.parametrize("fmt", [PromptFormat(), CHAT], ids=["plain", "chat"])
def test_answers_common_prefix_runs_once_with_the_prompt(chat_llama, fmt):
    """Answers of one question that begin alike (TOFU's paraphrased and perturbed answers) share
    those tokens: they go through the model once, with the prompt. Every score equals whole-sequence
    scoring, per token too, including an answer that is a prefix of another, two identical answers,
    and a question with one answer."""
    from unlearnkit.scoring import _shared_answer_prefixes

    model, tok = chat_llama
    base_a = "The author's father was a celebrated chef and his mother"
    qs = ["Who were the parents of Jaime Vasquez?", "Where was Ada Lin born?", "What genre does Bo write?"]
    lists = [[f"{base_a} a journalist.", f"{base_a} a lawyer.", f"{base_a} was a doctor in Lima.", base_a],
             ["She was born in Oslo.", "She was born in Oslo."],
             ["Mostly science fiction."]]
    flat = [(i, fmt.answer_ids(q, a, tok)) for i, (q, al) in enumerate(zip(qs, lists)) for a in al]
    prefixes = _shared_answer_prefixes(flat, len(qs))
    assert len(prefixes[0]) >= 8 and prefixes[2] == []
    assert len(prefixes[1]) == len(flat[4][1]) - 1  # identical answers keep their last token (EOS) apart
    with _token_count(model) as count:
        shared = score_answers(model, tok, qs, lists, fmt=fmt, token_stats=True, entropy=True, batch_size=3)
        shared_tokens, count["tokens"] = count["tokens"], 0
        whole = score_answers(model, tok, qs, lists, fmt=fmt, token_stats=True, entropy=True, prefix_share=False)
        whole_tokens = count["tokens"]
    for a, b in zip(shared, whole):
        _close(a, b)
        for k in ("token_logprobs", "token_entropy", "token_mu"):
            for x, y in zip(a[k], b[k]):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    assert shared_tokens < whole_tokens - 3 * len(prefixes[0])
