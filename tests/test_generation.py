"""The greedy engine (:mod:`unlearnkit.generation`) gives token for token what ``model.generate(do_sample=False)``
gives on the same prompts: on the miniature's trained tiny model (answers end at EOS at different
steps) and on real TOFU questions with a randomly initialised Llama whose BPE was trained on the TOFU
text (plain and Llama-3-style chat prompts, one ``max_new_tokens`` per row, an EOS the random model
does emit, so rows stop at different steps). Models the engine does not handle go through
``model.generate``."""

import json

import pytest
import torch
from test_chat_format import TEMPLATE as CHAT_TEMPLATE  # the Llama-3-style template of the chat tests
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import Cache

from unlearnkit.data import DEFAULT_FORMAT, PromptFormat
from unlearnkit.data import pad as pad_ids
from unlearnkit.generation import ArenaLayer, greedy_continue, supports
from unlearnkit.scoring import generate, generate_from_ids

CHAT = PromptFormat(chat=True, system_prompt="You are a helpful assistant.", date_string="10 Apr 2025")


def hf_greedy(model, tok, prompts, limits, batch_size, eos=None):
    """``model.generate(do_sample=False)`` on left-padded batches of ``batch_size`` prompts in the given
    order, each row cut at its own limit and before EOS."""
    eos = tok.eos_token_id if eos is None else eos
    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            chunk, lim = prompts[s:s + batch_size], limits[s:s + batch_size]
            ids, mask = pad_ids(chunk, tok.pad_token_id, left=True)
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max(lim),
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
            for row, n in zip(gen[:, ids.shape[1]:].tolist(), lim):
                row = row[:n]
                out.append(row[:row.index(eos)] if eos in row else row)
    return out


def test_miniature_identical_to_hf_generate(tiny, quick_world):
    model, tok = tiny
    qs = [r for s in ("forget", "retain", "world_facts") for r in quick_world.split(s)["question"]][:80]
    prompts = [DEFAULT_FORMAT.prompt_ids(q, tok) for q in qs]
    want = hf_greedy(model, tok, prompts, [48] * len(prompts), batch_size=16)
    got = greedy_continue(model, prompts, 48, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          batch_size=24)
    assert got == want
    lengths = {len(g) for g in got}
    assert len(lengths) > 3 and max(lengths) < 48  # answers end at EOS, at different steps
    # the public entry point takes the engine and decodes the same text as the HF path did
    texts, ids = generate(model, tok, qs, max_new_tokens=48, return_ids=True)
    assert ids == want
    assert texts == [tok.decode(w, skip_special_tokens=True).strip() for w in want]


@pytest.fixture(scope="module")
def tofu_llama(tofu_dir):
    """A random ~0.4M-parameter Llama with a 2,048-token BPE trained on the TOFU text, and the chat
    variant of its tokenizer (Llama-3-style template with system prompt and date)."""
    from unlearnkit.models.tiny import train_tokenizer

    rows = [json.loads(line) for f in ("forget01_perturbed", "retain_perturbed", "real_authors_perturbed")
            for line in open(tofu_dir / f"{f}.json")]
    tok = train_tokenizer([r["question"] for r in rows] + [r["answer"] for r in rows], 2048)
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    questions = [r["question"] for r in rows[::9]][:40]
    return model, tok, questions


def _eos_the_model_emits(model, tok, prompts):
    """A token the random model emits mid-answer in several rows (as EOS it makes rows stop at
    different steps: a random model never emits its real EOS)."""
    runs = hf_greedy(model, tok, prompts, [40] * len(prompts), batch_size=len(prompts), eos=-1)
    counts = {}
    for r in runs:
        for t in set(r[5:35]):
            counts[t] = counts.get(t, 0) + 1
    shared = sorted(counts, key=lambda t: (-counts[t], t))
    return next(t for t in shared if counts[t] < len(prompts))


@pytest.mark.parametrize("fmt", [DEFAULT_FORMAT, CHAT], ids=["plain", "chat"])
def test_tofu_random_llama_identical_to_hf_generate(tofu_llama, fmt):
    model, tok, questions = tofu_llama
    prompts = [fmt.prompt_ids(q, tok) for q in questions]
    g = torch.Generator().manual_seed(1)
    limits = torch.randint(1, 60, (len(prompts),), generator=g).tolist()
    # 1) no stop token: every row runs to its own limit
    want = hf_greedy(model, tok, prompts, limits, batch_size=8, eos=-1)
    got = greedy_continue(model, prompts, limits, eos_token_id=-1, pad_token_id=tok.pad_token_id, batch_size=16)
    assert got == want and [len(x) for x in got] == limits
    # 2) a stop token the model emits: rows stop at EOS or at their limit, at different steps
    eos = _eos_the_model_emits(model, tok, prompts)
    want = hf_greedy(model, tok, prompts, limits, batch_size=8, eos=eos)
    for bs, budget in ((16, None), (40, None), (64, 900)):
        got = greedy_continue(model, prompts, limits, eos_token_id=eos, pad_token_id=tok.pad_token_id, batch_size=bs,
                              max_batch_tokens=budget)
        assert got == want
    stopped_early = [len(w) < n for w, n in zip(want, limits)]
    assert 3 <= sum(stopped_early) < len(limits)
    # 3) each prompt alone (no padding at all) gives the same tokens
    alone = [hf_greedy(model, tok, [p], [n], batch_size=1, eos=eos)[0] for p, n in zip(prompts[:10], limits[:10])]
    assert alone == want[:10]


def test_arena_cache_equals_dynamic_cache(tofu_llama):
    """Growing past its capacity, and rows dropped mid-way, the arena cache gives the same logits."""
    model, tok, questions = tofu_llama
    prompts = [DEFAULT_FORMAT.prompt_ids(q, tok) for q in questions[:4]]
    ids, mask = pad_ids(prompts, tok.pad_token_id, left=True)
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    caches = [DynamicCache(config=model.config), Cache(layers=[ArenaLayer(3) for _ in range(2)])]
    logits = []
    with torch.no_grad():
        for cache in caches:
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            steps, m, p, x = [out.logits], mask, pos[:, -1:], out.logits[:, -1].argmax(-1, keepdim=True)
            for t in range(6):
                if t == 3:  # drop row 1
                    keep = torch.tensor([0, 2, 3])
                    cache.batch_select_indices(keep)
                    m, p, x = m[keep], p[keep], x[keep]
                m, p = torch.cat([m, torch.ones_like(m[:, :1])], 1), p + 1
                out = model(input_ids=x, attention_mask=m, position_ids=p, cache=cache, use_cache=True)
                steps.append(out.logits)
                x = out.logits[:, -1].argmax(-1, keepdim=True)
            logits.append(steps)
    for a, b in zip(*logits):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_models_the_engine_does_not_take_use_generate(tiny):
    """A generation config with a repetition penalty changes greedy decoding: such a model goes
    through ``model.generate`` (and gives its answers)."""
    model, tok = tiny
    assert supports(model)
    from copy import deepcopy

    penalised = deepcopy(model)
    penalised.generation_config.repetition_penalty = 1.3
    assert not supports(penalised)
    prompts = [DEFAULT_FORMAT.prompt_ids(q, tok) for q in ["Where was Mira Voss born?", "Who is Ada?"]]
    assert greedy_continue(penalised, prompts, 12, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id) is None
    _, ids = generate_from_ids(penalised, tok, prompts, max_new_tokens=12, return_ids=True)
    with torch.no_grad():
        inp, att = pad_ids(prompts, tok.pad_token_id, left=True)
        out = penalised.generate(input_ids=inp, attention_mask=att, do_sample=False, max_new_tokens=12,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    want = [r[:r.index(tok.eos_token_id)] if tok.eos_token_id in r else r for r in out[:, inp.shape[1]:].tolist()]
    want = [[t for t in r if t != tok.pad_token_id] for r in want]
    assert ids == want


def test_bad_inputs():
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    with pytest.raises(ValueError, match="max_new_tokens values"):
        greedy_continue(model, [[1, 2]], [3, 4], eos_token_id=2, pad_token_id=0)
    with pytest.raises(ValueError, match="empty prompt"):
        greedy_continue(model, [[]], 3, eos_token_id=2, pad_token_id=0)
    assert greedy_continue(model, [[1, 2], [3]], [0, 2], eos_token_id=None, pad_token_id=0)[0] == []



def test_chat_header_goes_through_the_model_once(tofu_llama):
    """The chat header every prompt shares is computed once per call, not once per prompt, and the
    answers are the same as with every prompt run whole (and as HF generate's, tested above)."""
    from unlearnkit.generation import common_header

    model, tok, questions = tofu_llama
    prompts = [CHAT.prompt_ids(q, tok) for q in questions]
    C = common_header(prompts)
    assert C >= 8
    seen = []
    h = model.register_forward_pre_hook(lambda _m, a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        got = greedy_continue(model, prompts, 20, eos_token_id=-1, pad_token_id=tok.pad_token_id, batch_size=16)
        shared_prefill = sum(r * t for r, t in seen if t > 1)
        seen.clear()
        whole = greedy_continue(model, prompts, 20, eos_token_id=-1, pad_token_id=tok.pad_token_id, batch_size=16,
                                share_header=False)
        whole_prefill = sum(r * t for r, t in seen if t > 1)
    finally:
        h.remove()
    assert got == whole
    assert whole_prefill - shared_prefill >= (len(prompts) - 1) * C
