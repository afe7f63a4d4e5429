"""Turning question/answer rows into model tensors.

Conventions (spec §0): a prompt ``"Question: {q}\\nAnswer:"`` is followed by the answer
``" {a}"`` and one EOS token. ``labels`` equal ``input_ids`` on answer tokens and the EOS, and
-100 on prompt and padding tokens. Prompt and answer are tokenized separately and concatenated,
so the boundary between them is exact for any tokenizer.

Training tensors are right-padded; generation prompts are left-padded (batched greedy decoding).
Everything is tokenized once per split and then indexed, never re-tokenized per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass(frozen=True)
class PromptFormat:
    """How a question (and its answer) becomes tokens.

    Plain (the default, the miniature's and TOFU's base-model format): ``prefix + question + suffix``
    tokenized with the tokenizer's special tokens, then ``answer_prefix + answer`` and one EOS.

    Chat (``chat=True``): the tokenizer's chat template, as the field's instruct TOFU models were
    fine-tuned: the prompt is the template of ``[system?, user]`` with the generation prompt, the
    answer is what the template of ``[system?, user, assistant]`` adds after it (the answer and the
    end-of-turn token(s)). ``system_prompt`` adds a system message; ``date_string`` is passed to
    templates that print a date (Llama 3). A templated string that already starts with the BOS
    token is tokenized without adding another one.
    """

    prefix: str = "Question: "
    suffix: str = "\nAnswer:"
    answer_prefix: str = " "
    chat: bool = False
    system_prompt: str | None = None
    date_string: str | None = None

    @classmethod
    def of(cls, spec) -> PromptFormat:
        """A format from ``None``/``"plain"`` (default), ``"chat"``, a dict of fields, or a PromptFormat."""
        if spec is None or spec == "plain":
            return DEFAULT_FORMAT
        if spec == "chat":
            return cls(chat=True)
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            bad = sorted(set(spec) - set(cls.__dataclass_fields__))
            if bad:
                raise ValueError(f"prompt_format: unknown field(s) {bad}; valid: {sorted(cls.__dataclass_fields__)}")
            return cls(**spec)
        raise ValueError(f"prompt_format={spec!r}: valid choices are 'plain', 'chat', a dict of PromptFormat fields "
                         "or a PromptFormat")

    def describe(self) -> dict:
        """The format as recorded in manifests."""
        if not self.chat:
            return {"kind": "plain", "prefix": self.prefix, "suffix": self.suffix, "answer_prefix": self.answer_prefix}
        return {"kind": "chat", "system_prompt": self.system_prompt, "date_string": self.date_string}

    def _messages(self, question: str, answer: str | None = None) -> list[dict]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": question})
        if answer is not None:
            msgs.append({"role": "assistant", "content": answer})
        return msgs

    def _template(self, tokenizer, msgs, generation_prompt: bool) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt_format is 'chat' but the tokenizer has no chat template; use the plain format "
                             "or a tokenizer that ships one")
        kw = {"date_string": self.date_string} if self.date_string else {}
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation_prompt, **kw)

    def prompt(self, question: str, tokenizer=None) -> str:
        """The prompt as text."""
        if self.chat:
            return self._template(tokenizer, self._messages(question), True)
        return f"{self.prefix}{question}{self.suffix}"

    def prompt_ids(self, question: str, tokenizer) -> list[int]:
        """The prompt's token ids (one BOS at most: see the class docstring)."""
        return _text_ids(tokenizer, self.prompt(question, tokenizer))

    def prefix_ids(self, question: str, partial: str, tokenizer) -> list[int]:
        """The prompt followed by the first words of an answer (no EOS, no end of turn): what a
        continuation starts from."""
        if not self.chat:
            return self.prompt_ids(question, tokenizer) + _ids(tokenizer, self.answer_prefix + partial.strip(), False)
        return _text_ids(tokenizer, self.prompt(question, tokenizer) + partial.strip())

    def answer_ids(self, question: str, answer: str, tokenizer, eos: bool = True,
                   prompt_ids: list[int] | None = None) -> list[int]:
        """The answer's token ids as they follow :meth:`prompt_ids`: plain, ``answer_prefix + answer``
        (+ EOS); chat, the tokens the template adds after the prompt (answer + end of turn)."""
        if not self.chat:
            end = [tokenizer.eos_token_id] if eos and tokenizer.eos_token_id is not None else []
            return _ids(tokenizer, self.answer_prefix + answer.strip(), special=False) + end
        p = self.prompt_ids(question, tokenizer) if prompt_ids is None else prompt_ids
        full = _text_ids(tokenizer, self._template(tokenizer, self._messages(question, answer.strip()), False))
        if full[:len(p)] != p:
            raise ValueError("the chat template does not render the prompt as a prefix of the whole conversation; "
                             "answers cannot be scored on their own tokens with this template")
        return full[len(p):]


def _text_ids(tokenizer, text: str) -> list[int]:
    bos = getattr(tokenizer, "bos_token", None)
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


DEFAULT_FORMAT = PromptFormat()


def pad(seqs, value: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists as one ``(N, L)`` long tensor padded with ``value`` on the right (or the left),
    ``L`` the longest list, and its attention mask ``(N, L)`` (1 on tokens, 0 on padding)."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(L - len(s), L) if left else slice(0, len(s))
        ids[i, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def row_ids(data) -> list:
    """The ``id`` column of ``data`` (a ``datasets.Dataset`` or a DataFrame), or row positions when
    it has none."""
    cols = getattr(data, "column_names", None)
    cols = list(data.columns) if cols is None else cols
    return list(data["id"]) if "id" in cols else list(range(len(data)))


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def encode_pairs(tokenizer, questions, answers, *, fmt: PromptFormat = DEFAULT_FORMAT,
                 max_length: int | None = None, add_eos: bool = True) -> dict[str, torch.Tensor]:
    """Encode (question, answer) pairs into right-padded training tensors.

    Returns ``input_ids``, ``attention_mask``, ``labels`` (all ``(N, L)`` long) and ``prompt_len``
    ``(N,)``. Labels cover the answer tokens and one EOS; ``L`` is the longest row (or
    ``max_length``; longer rows are truncated from the answer's end).
    """
    questions, answers = list(questions), list(answers)
    if len(questions) != len(answers):
        raise ValueError(f"encode_pairs: {len(questions)} questions but {len(answers)} answers")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (load_model does this)")
    seqs, plens = [], []
    for i, (q, a) in enumerate(zip(questions, answers)):
        if not isinstance(a, str) or not a.strip():
            raise ValueError(f"row {i}: empty answer for question {q!r}")
        p = fmt.prompt_ids(q, tokenizer)
        s = p + fmt.answer_ids(q, a, tokenizer, eos=add_eos, prompt_ids=p)
        if max_length is not None:
            s = s[:max_length]
        seqs.append(s)
        plens.append(min(len(p), len(s)))
    input_ids, attn = pad(seqs, tokenizer.pad_token_id)
    labels = torch.full_like(input_ids, IGNORE)
    for i, (s, pl) in enumerate(zip(seqs, plens)):
        labels[i, pl: len(s)] = torch.tensor(s[pl:], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attn, "labels": labels,
            "prompt_len": torch.tensor(plens, dtype=torch.long)}


def encode_prompts(tokenizer, questions, *, fmt: PromptFormat = DEFAULT_FORMAT) -> dict[str, torch.Tensor]:
    """Left-padded prompt tensors ``input_ids``/``attention_mask`` ``(N, L)`` for batched generation."""
    seqs = [fmt.prompt_ids(q, tokenizer) for q in questions]
    input_ids, attn = pad(seqs, tokenizer.pad_token_id, left=True)
    return {"input_ids": input_ids, "attention_mask": attn}


def trim(part: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop columns that are padding in every row of a right-padded batch (saves compute)."""
    L = int(part["attention_mask"].sum(1).max())
    return {k: (v[:, :L] if v.dim() == 2 and v.shape[1] >= L else v) for k, v in part.items()}


def select(part: dict[str, torch.Tensor], idx) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of every tensor in ``part`` (an encoded split), trimmed to their longest row."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    return trim({k: v[idx] for k, v in part.items()})
