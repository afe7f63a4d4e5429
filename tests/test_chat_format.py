"""Prompt formats: the tokenizer's chat template (Llama-3 style: BOS inside the template, an
end-of-turn token as EOS, no pad token) gives exactly the token ids ``apply_chat_template``
gives, with one BOS and the end of turn attended; the plain format is unchanged."""

import pytest
import torch

from unlearnkit import evaluate, unlearn
from unlearnkit.data import DEFAULT_FORMAT, PromptFormat, encode_pairs, encode_prompts
from unlearnkit.scoring import generate, score_answers, score_pairs

TEMPLATE = (
    "{{ bos_token }}"
    "{% if date_string is defined %}<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ date_string }}"
    "{% if messages[0]['role'] == 'system' %}\n\n{{ messages[0]['content'] }}{% endif %}<|eot_id|>"
    "{% elif messages[0]['role'] == 'system' %}<|start_header_id|>system<|end_header_id|>\n\n"
    "{{ messages[0]['content'] }}<|eot_id|>{% endif %}"
    "{% for m in messages %}{% if m['role'] != 'system' %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def llama3_chat_tokenizer(base, path):
    """The quick world's BPE ``base`` plus Llama-3's special tokens and :data:`TEMPLATE`
    (BOS <|begin_of_text|>, EOS <|eot_id|>), saved and reloaded under ``path``; no pad token."""
    from transformers import AutoTokenizer

    base.save_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    tok.pad_token = None
    tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def chat_model(tiny, tmp_path_factory):
    """A random tiny Llama whose tokenizer has a Llama-3-style chat template (the quick world's BPE
    plus the template's special tokens; EOS = <|eot_id|>; pad = EOS, as load_model sets it)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama3_chat_tokenizer(tiny[1], tmp_path_factory.mktemp("chat_tok"))
    assert tok.pad_token_id is None
    tok.pad_token = tok.eos_token  # what load_model does for a tokenizer without one
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


Q, A = "Where was Mira Voss born?", "Mira Voss was born in Quito."


def _chat_ids(tok, msgs, gen=False, **kw):
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw)
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("fmt", [PromptFormat(chat=True), PromptFormat(chat=True, system_prompt="Be brief."),
                                 PromptFormat(chat=True, system_prompt="Be brief.", date_string="26 Jul 2024")])
def test_chat_encoding_equals_apply_chat_template(chat_model, fmt):
    _, tok = chat_model
    sys_msgs = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    kw = {"date_string": fmt.date_string} if fmt.date_string else {}
    want_prompt = _chat_ids(tok, sys_msgs + [{"role": "user", "content": Q}], gen=True, **kw)
    want_full = _chat_ids(tok, sys_msgs + [{"role": "user", "content": Q}, {"role": "assistant", "content": A}], **kw)
    enc = encode_pairs(tok, [Q], [A], fmt=fmt)
    ids = enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    assert ids == want_full
    assert ids.count(tok.bos_token_id) == 1  # no double BOS: the template already starts with it
    assert fmt.prompt_ids(Q, tok) == want_prompt
    labelled = enc["labels"][0][enc["labels"][0] != -100].tolist()
    assert labelled == want_full[len(want_prompt):] and labelled[-1] == tok.convert_tokens_to_ids("<|eot_id|>")
    assert enc["attention_mask"][0, len(ids) - 1] == 1  # the end of turn is attended (pad = EOS here)
    prompts = encode_prompts(tok, [Q, "Who?"], fmt=fmt)
    assert prompts["input_ids"][0][prompts["attention_mask"][0].bool()].tolist() == want_prompt


def test_plain_format_unchanged(tiny):
    _, tok = tiny
    enc = encode_pairs(tok, [Q], [A])
    want = tok(f"Question: {Q}\nAnswer:")["input_ids"] + tok(" " + A, add_special_tokens=False)["input_ids"] \
        + [tok.eos_token_id]
    assert enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist() == want
    assert PromptFormat.of(None) is DEFAULT_FORMAT and PromptFormat.of("plain") is DEFAULT_FORMAT


def test_chat_scores_are_the_model_on_the_template_ids(chat_model):
    model, tok = chat_model
    fmt = PromptFormat.of("chat")
    full = _chat_ids(tok, [{"role": "user", "content": Q}, {"role": "assistant", "content": A}])
    n_prompt = len(fmt.prompt_ids(Q, tok))
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([full])).logits[0, :-1].float(), -1)
    want = float(lp[torch.arange(n_prompt - 1, len(full) - 1), torch.tensor(full[n_prompt:])].sum())
    got = score_pairs(model, tok, [Q], [A], fmt=fmt)["logprob"][0]
    assert got == pytest.approx(want, abs=1e-4)
    shared = score_answers(model, tok, [Q], [[A, "In Lima."]], fmt=fmt)[0]["logprob"]
    flat = score_answers(model, tok, [Q], [[A, "In Lima."]], fmt=fmt, prefix_share=False)[0]["logprob"]
    assert shared[0] == pytest.approx(want, abs=1e-4) and shared == pytest.approx(flat, abs=1e-4)
    out = generate(model, tok, [Q], max_new_tokens=3, fmt=fmt)
    assert isinstance(out[0], str)


def test_evaluate_and_unlearn_take_the_chat_format(chat_model):
    from datasets import Dataset

    model, tok = chat_model
    d = Dataset.from_dict({"id": [0, 1], "question": [Q, "Who wrote Red Tide?"],
                           "answer": [A, "Red Tide was written by Ana Ruiz."]})
    plain = evaluate(model, tok, {"forget": d}, ["probability"], progress=False)
    chat = evaluate(model, tok, {"forget": d}, ["probability"], progress=False,
                    prompt_format={"chat": True, "system_prompt": "Be brief."})
    assert chat.attrs["prompt_format"] == {"kind": "chat", "system_prompt": "Be brief.", "date_string": None}
    assert plain.attrs["prompt_format"]["kind"] == "plain"
    assert not (chat.value.to_numpy() == plain.value.to_numpy()).all()  # other tokens, other numbers
    res = unlearn(model, tok, d, method="ga", steps=1, probe_every=1, progress=False, prompt_format="chat")
    assert res.manifest["prompt_format"]["kind"] == "chat"
    assert set(res.probes.quantity) >= {"target", "belief"}


def test_chat_without_a_template_is_a_clear_error(tiny):
    _, tok = tiny
    with pytest.raises(ValueError, match="no chat template"):
        encode_pairs(tok, [Q], [A], fmt=PromptFormat(chat=True))
    with pytest.raises(ValueError, match="valid choices are 'plain', 'chat'"):
        PromptFormat.of("chatml")
    with pytest.raises(ValueError, match="unknown field"):
        PromptFormat.of({"system": "x"})
