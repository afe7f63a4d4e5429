"""MUSE's memorization and privacy metrics (spec B8, B10), on QA rows or plain text.

* ``verbatim_memorization`` (VerbMem): the forget text is cut after a prefix of
  ``verbmem_prefix_frac`` (default 0.5) of its tokens; the model continues the prefix greedily
  for as many tokens as the true continuation has (at most ``verbmem_max_new_tokens`` = 128,
  MUSE's length), and the score is ROUGE-L **F1** of that continuation against the true one. For
  QA rows the text is the training sequence ``"Question: {q}\\nAnswer: {a}"`` (prompt + answer, no
  EOS); for plain-text rows (a ``text`` column) it is the text.
* ``knowledge_memorization`` (KnowMem): ROUGE-L **F1** of the greedy answer against the answer.
  MUSE's protocol prompts with few-shot QA examples (option ``knowmem_icl``: a path to MUSE's
  ``*_qa_icl.json`` or a list of ``{"question", "answer"}`` examples), generates at most
  ``knowmem_max_new_tokens`` (32) tokens and cuts at ``"\n\n"``, ``"\nQuestion"`` or
  ``"Question:"``. Without ``knowmem_icl`` (the default: the tiny miniature models have a
  96-token context, too short for few-shot prompts) it uses the kit's plain prompt and the shared
  greedy answers (``max_new_tokens`` option, default 48).
* ``privleak``: ``(AUC_unl - AUC_retain) / AUC_retain × 100`` in MUSE's AUC orientation
  (``AUC_MUSE = 1 - AUC_OU``) with the Min-K% attack (k = 0.4) on forget vs holdout. 0 = like
  the retain model; large negative = the forget set still leaks membership (under-unlearning);
  large positive = over-unlearning. The retain AUC comes from ``reference=(retain model, tok)``,
  an earlier ``evaluate`` table of the retain model holding ``mia_min_k``, or the ``retain_auc``
  option (OU orientation; OpenUnlearning substitutes 0.5 when it has no retain logs).

ROUGE uses ``rouge-score`` with the Porter stemmer (OpenUnlearning); MUSE's own code has no
stemmer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rouge_score import rouge_scorer

from ..data import DEFAULT_FORMAT, row_ids
from ..scoring import generate_from_ids
from ..world.loaders import DataError
from .base import MissingInputError, metric, option
from .mia import _member_and_holdout, _reference_context, attack_scores, is_text_data, mia_auc

option("verbmem_prefix_frac", 0.5, "verbatim_memorization: fraction of each text's tokens given as the prompt",
       low=0.0, high=1.0, low_open=True, high_open=True)
option("verbmem_max_new_tokens", 128, "verbatim_memorization: longest continuation compared (tokens)", low=1)
option("knowmem_icl", None, "knowledge_memorization: few-shot examples, a JSON path (MUSE *_qa_icl.json) or a list "
       "(default: none, the plain prompt)")
option("knowmem_max_new_tokens", 32, "knowledge_memorization with knowmem_icl: answer length limit (tokens)", low=1)
option("retain_auc", None, "privleak: the retain model's Min-K% AUC (OpenUnlearning orientation), when no retain "
       "model is given", low=0.0, high=1.0)


def rouge_l_f1(references, generations) -> np.ndarray:
    """ROUGE-L F1 of each generation against its reference (``rouge-score``, stemmer on)."""

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([sc.score(r, g)["rougeL"].fmeasure for r, g in zip(references, generations)])


def privleak_value(auc_unlearned: float, auc_retain: float) -> float:
    """MUSE PrivLeak in percent from two AUCs in OpenUnlearning's orientation.

    ``((1 - auc_unlearned) - (1 - auc_retain)) / (1 - auc_retain) * 100``; e.g. a model whose forget
    set is perfectly separable (``auc_unlearned = 1``) against a retain AUC of 0.5 gives -100.
    NaN when the retain model's MUSE AUC is 0 (undefined).
    """
    ref = 1.0 - float(auc_retain)
    if ref <= 0:
        return float("nan")
    return ((1.0 - float(auc_unlearned)) - ref) / ref * 100.0


def split_sequence(ids: list[int], frac: float) -> tuple[list[int], list[int]]:
    """Cut a token list into (prefix, continuation) after ``⌊frac·L + 0.5⌋`` tokens, keeping at
    least one token on each side (``L >= 2``)."""
    L = len(ids)
    if L < 2:
        raise ValueError("a sequence needs at least 2 tokens to be split into prefix and continuation")
    p = min(L - 1, max(1, int(frac * L + 0.5)))
    return ids[:p], ids[p:]


def verbmem_sequences(tokenizer, data, frac: float = 0.5, fmt=DEFAULT_FORMAT):
    """Token prefixes and true continuations (id lists) of each row's text (see the module doc)."""
    prefixes, conts = [], []
    if is_text_data(data):
        seqs = [tokenizer(t, add_special_tokens=True)["input_ids"] for t in data["text"]]
    else:
        seqs = [tokenizer(fmt.prompt(q, tokenizer), add_special_tokens=True)["input_ids"]
                + tokenizer(fmt.answer_prefix + a.strip(), add_special_tokens=False)["input_ids"]
                for q, a in zip(data["question"], data["answer"])]
    for s in seqs:
        p, c = split_sequence(s, frac)
        prefixes.append(p)
        conts.append(c)
    return prefixes, conts


@metric("verbatim_memorization", suites=("muse",), alt_fields=(("text",),),
        direction="more memorized (lower = more forgotten; ideal: the retain model's value)",
        formula="ROUGE-L F1(greedy continuation of the first half of the text, true continuation)",
        source="MUSE (Shi et al. 2024) VerbMem, spec B8")
def verbatim_memorization(ctx, split, data):
    """VerbMem per row (ROUGE-L F1 in [0, 1]). Options: ``verbmem_prefix_frac`` (0.5),
    ``verbmem_max_new_tokens`` (128)."""

    tok = ctx.tokenizer
    prefixes, conts = verbmem_sequences(tok, data, float(ctx.opt("verbmem_prefix_frac")))
    cap = int(ctx.opt("verbmem_max_new_tokens"))
    conts = [c[:cap] for c in conts]
    truth = [tok.decode(c, skip_special_tokens=True).strip() for c in conts]
    gens = generate_from_ids(ctx.model, tok, prefixes, max_new_tokens=[len(c) for c in conts],
                             batch_size=ctx.gen_batch())
    ids = row_ids(data)
    return pd.DataFrame({"id": ids, "value": rouge_l_f1(truth, gens), "prefix": [tok.decode(p) for p in prefixes],
                         "continuation": truth, "generation": gens})


#: where MUSE cuts a few-shot KnowMem answer (the model starts the next example)
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")


def load_icl_examples(icl) -> list[tuple[str, str]]:
    """Few-shot examples as ``(question, answer)`` pairs, from a JSON file (MUSE's ``*_qa_icl.json``:
    a list of ``{"question", "answer"}`` objects, or one object of two equal-length lists) or from
    such a list / list of pairs already in memory. Errors name the file and the example."""

    src = "knowmem_icl"
    if isinstance(icl, (str, Path)):
        path = Path(icl)
        if not path.is_file():
            raise DataError(f"option knowmem_icl: no file {path}")
        try:
            icl = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"option knowmem_icl: {path} is not valid JSON ({e})") from e
        src = str(path)
    if isinstance(icl, dict):
        if not {"question", "answer"} <= set(icl):
            raise DataError(f"{src}: needs 'question' and 'answer', has {sorted(icl)}")
        icl = [{"question": q, "answer": a} for q, a in zip(icl["question"], icl["answer"])]
    out = []
    for i, ex in enumerate(icl):
        if isinstance(ex, dict):
            q, a = ex.get("question"), ex.get("answer")
        elif isinstance(ex, (list, tuple)) and len(ex) == 2:
            q, a = ex
        else:
            raise DataError(f"{src}: example {i} must be a {{'question', 'answer'}} object or a (question, answer) "
                            f"pair, got {ex!r}")
        if not (isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()):
            raise DataError(f"{src}: example {i} needs a non-empty 'question' and 'answer', got {ex!r}")
        out.append((q.strip(), a.strip()))
    if not out:
        raise DataError(f"{src}: no few-shot examples")
    return out


def icl_prompt(examples, question: str, fmt=DEFAULT_FORMAT, tokenizer=None) -> str:
    """MUSE's few-shot prompt: each example as ``prompt + " " + answer`` and a blank line, then the question."""
    shots = "".join(f"{fmt.prompt(q)}{fmt.answer_prefix}{a}\n\n" for q, a in examples)
    return shots + fmt.prompt(question, tokenizer)


def cut_at_stops(text: str, stops=KNOWMEM_STOPS) -> str:
    """``text`` up to the first stop string (stripped). ``cut_at_stops("Paris\n\nQuestion: x") == "Paris"``."""
    cut = min([i for i in (text.find(s) for s in stops) if i >= 0], default=len(text))
    return text[:cut].strip()


def knowmem_generations(ctx, split, data) -> list[str]:
    """The answers KnowMem scores: shared greedy answers, or few-shot ones when ``knowmem_icl`` is set."""
    icl = ctx.opt("knowmem_icl")
    if icl is None:
        return ctx.generations(split, data)
    key = ("knowmem_gen", split)
    if key not in ctx.cache:

        examples = load_icl_examples(icl)
        tok = ctx.tokenizer
        prompts = [tok(icl_prompt(examples, q, tokenizer=tok), add_special_tokens=True)["input_ids"]
                   for q in data["question"]]
        gens = generate_from_ids(ctx.model, tok, prompts, max_new_tokens=int(ctx.opt("knowmem_max_new_tokens")),
                                 batch_size=ctx.gen_batch())
        ctx.cache[key] = [cut_at_stops(g) for g in gens]
    return ctx.cache[key]


@metric("knowledge_memorization", suites=("muse",), generates=lambda ctx: ctx.opt("knowmem_icl") is None,
        direction="more knowledge (forget: lower = more forgotten; retain: utility preserved)",
        formula="ROUGE-L F1(greedy answer, true answer); few-shot prompt with option knowmem_icl",
        source="MUSE (Shi et al. 2024) KnowMem, spec B8")
def knowledge_memorization(ctx, split, data):
    """KnowMem per row (ROUGE-L F1 in [0, 1]). Options: ``knowmem_icl`` (few-shot examples: a JSON
    path or a list; default none: the plain prompt), ``knowmem_max_new_tokens`` (32, few-shot only)."""
    gens = knowmem_generations(ctx, split, data)
    ids = row_ids(data)
    return pd.DataFrame({"id": ids, "value": rouge_l_f1(data["answer"], gens), "generation": gens})


def _retain_auc(ctx, member: str, mdata, hdata) -> float:
    given = ctx.opt("retain_auc")
    if given is not None:
        return float(given)
    ref = ctx.reference
    if isinstance(ref, pd.DataFrame):
        rows = ref[(ref.metric == "mia_min_k") & (ref.split == f"{member}_vs_holdout")]
        if not len(rows):

            raise MissingInputError("metric 'privleak': the reference table has no 'mia_min_k' AUC row "
                                    f"(split {member}_vs_holdout); evaluate the retain model with 'mia_min_k', pass "
                                    "reference=(retain_model, tokenizer), or retain_auc=<float>")
        return float(rows.value.iloc[0])
    rctx = _reference_context(ctx)
    return mia_auc(attack_scores(rctx, member, mdata, "min_k"), attack_scores(rctx, "holdout", hdata, "min_k"))


@metric("privleak", suites=("muse", "mia"), per_example=False, needs=("holdout", "retain_auc"),
        alt_fields=(("text",),),
        direction="0 = like the retain model; negative = forget set still leaks (under-unlearned); positive = over-unlearned",
        formula="(AUC_unl - AUC_ret)/AUC_ret x 100, AUC_MUSE = 1 - AUC_OU of Min-K% (k=0.4), forget vs holdout",
        source="MUSE (Shi et al. 2024) PrivLeak, spec B10; OpenUnlearning privleak")
def privleak(ctx, splits):
    """PrivLeak (percent). Needs a holdout split and the retain model's AUC (see the module doc)."""
    member, mdata, hdata = _member_and_holdout(ctx, splits, "privleak")
    auc_u = mia_auc(attack_scores(ctx, member, mdata, "min_k"), attack_scores(ctx, "holdout", hdata, "min_k"))
    auc_r = _retain_auc(ctx, member, mdata, hdata)
    return pd.DataFrame([{"split": f"{member}_vs_holdout", "id": -1, "value": privleak_value(auc_u, auc_r),
                          "auc": auc_u, "retain_auc": auc_r}])
