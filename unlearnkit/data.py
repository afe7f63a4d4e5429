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
    """How a question becomes a prompt. ``chat=True`` uses the tokenizer's chat template instead."""

    prefix: str = "Question: "
    suffix: str = "\nAnswer:"
    answer_prefix: str = " "
    chat: bool = False

    def prompt(self, question: str, tokenizer=None) -> str:
        if self.chat and tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True)
        return f"{self.prefix}{question}{self.suffix}"


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
    """The ``id`` column of ``data`` (a ``datasets.Dataset``), or row positions when it has none."""
    return list(data["id"]) if "id" in data.column_names else list(range(len(data)))


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
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    seqs, plens = [], []
    for i, (q, a) in enumerate(zip(questions, answers)):
        if not isinstance(a, str) or not a.strip():
            raise ValueError(f"row {i}: empty answer for question {q!r}")
        p = _ids(tokenizer, fmt.prompt(q, tokenizer), special=True)
        ans = _ids(tokenizer, fmt.answer_prefix + a.strip(), special=False) + eos
        s = p + ans
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
    seqs = [_ids(tokenizer, fmt.prompt(q, tokenizer), special=True) for q in questions]
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
