"""Per-sequence memorization: EM, ES, MA, EL_n, the extraction attack and MIAU (spec B11-B13).

Base layer: the metrics (:mod:`unlearnkit.metrics.memorization`) and the objectives that need
per-sequence memorization (SGA, TA, TAU in :mod:`unlearnkit.objectives.memorization`) both use
these functions; this module imports only other base modules.

**What a "sequence" is.** A row with ``question`` and ``answer`` (the world's records: the header
"Write the ID record of ..." and the record text) gives a *context* (the formatted prompt) and a
*sequence* (the answer tokens, no EOS). A row with only ``text`` (MUSE-style plain text) gives the
first token as context and the rest as the sequence. Token ``t`` of the sequence is always predicted
from ``context + sequence[:t]``.

**Pure functions** (token-id lists in, floats out; ``preds[t]`` is the teacher-forced argmax that
predicts ``target[t]``):

* :func:`exact_memorization` (EM, OpenUnlearning): ``(1/T) Σ_t 1[preds_t = target_t]``.
* :func:`extraction_strength` (ES, OpenUnlearning): ``1 - k*/T`` with ``k*`` the smallest index
  whose whole suffix matches; **0 when no suffix matches** (OU's loop returns 1/T there: fixed).
* :func:`memorization_accuracy` (MA, Jang et al. 2023; the Barbulescu paper's per-sequence
  memorization): greedy next-token accuracy. Same arithmetic as EM on the same tokens: on the kit's
  data both score every sequence token, so MA = EM here (OU drops the EOS from EM; our sequences
  carry none; Jang's 200-token sequences have no context, so their first token is not scored, as in
  the kit's ``text`` rows).
* :func:`ngram_overlap` and :func:`extraction_likelihood` (EL_n, Jang et al.):
  ``EL_n = mean_{t=1..T-n} |{g ∈ ngrams_n(gen_t) : g ∈ set(ngrams_n(x_≥t))}| / |ngrams_n(x_≥t)|``
  where ``gen_t`` is the greedy continuation of ``x_<t`` to the sequence's length (``T - t`` new
  tokens); hypothesis n-grams are counted with repetition, as Jang's code. A sequence with ``T <= n``
  has no prefix with a reference n-gram: EL_n is NaN (undefined), not 0.

**Model functions** (batched, no grad): :func:`teacher_forced_predictions`,
:func:`greedy_continuations` (every prefix length of every sequence in one batched, cached
generation), :func:`memorization_scores` (tidy per-sequence EM/ES/MA/EL_n),
:func:`memorization_probe` (per-sequence MA rows for the loop's probe recorder),
:func:`token_matches` (per-token view for the widget), :func:`extraction_attack`, :func:`miau_scores`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from .data import DEFAULT_FORMAT, row_ids
from .scoring import _device, generate_from_ids, score_answers

# -- validation -----------------------------------------------------------------------------------


def check_unit(name: str, value, *, allow_none: bool = False):
    """Raise ``ValueError`` naming ``name`` unless ``value`` lies in [0, 1]."""
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; valid range: [0, 1]") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}={value!r} is out of range; valid range: [0, 1]")
    return v


def check_n(n, name: str = "n") -> int:
    """Raise ``ValueError`` naming ``name`` unless ``n`` is an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}={n!r} is out of range; valid range: integers >= 1")
    return int(n)


def _aligned(preds, target) -> np.ndarray:
    p, t = np.asarray(list(preds)), np.asarray(list(target))
    if t.size == 0:
        raise ValueError("target is empty: a memorization score needs a sequence of >= 1 token")
    if p.shape != t.shape:
        raise ValueError(f"preds has {p.size} tokens but target has {t.size}; preds[t] must predict target[t]")
    return p == t


# -- pure functions ---------------------------------------------------------------------------------


def exact_memorization(preds, target) -> float:
    """EM: share of tokens whose teacher-forced argmax equals the target token (in [0, 1]).

    >>> exact_memorization([5, 7, 1, 9], [5, 7, 2, 9])
    0.75
    """
    return float(_aligned(preds, target).mean())


def extraction_strength(preds, target) -> float:
    """ES: ``1 - k*/T``, ``k*`` the smallest index from which every prediction matches; 0 if the last
    token already misses (no matching suffix).

    >>> extraction_strength([1, 0, 3, 4], [1, 2, 3, 4])  # suffix [3, 4] matches: k* = 2
    0.5
    >>> extraction_strength([1, 2, 3, 0], [1, 2, 3, 4])
    0.0
    """
    m = _aligned(preds, target)
    T = m.size
    if not m[-1]:
        return 0.0
    miss = np.nonzero(~m)[0]
    k = 0 if miss.size == 0 else int(miss[-1]) + 1
    return float(1.0 - k / T)


def memorization_accuracy(preds, target) -> float:
    """MA: greedy next-token accuracy over the sequence (in [0, 1]); see the module docstring.

    >>> memorization_accuracy([3, 3, 3], [3, 4, 3])
    0.6666666666666666
    """
    return float(_aligned(preds, target).mean())


def ngrams(seq, n: int) -> list[tuple]:
    """The ``len(seq) - n + 1`` n-grams of ``seq`` (tuples), in order, with repetition."""
    n = check_n(n)
    seq = list(seq)
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def ngram_overlap(hyp, ref, n: int) -> float:
    """``|{g ∈ ngrams_n(hyp) : g ∈ set(ngrams_n(ref))}| / |ngrams_n(ref)|`` (NaN if ``ref`` has none).

    >>> ngram_overlap([1, 2, 3, 9], [1, 2, 3, 4], 2)  # (1,2), (2,3) of 3 reference bigrams
    0.6666666666666666
    """
    ref_g = ngrams(ref, n)
    if not ref_g:
        return float("nan")
    ref_set = set(ref_g)
    return float(sum(g in ref_set for g in ngrams(hyp, n)) / len(ref_g))


def extraction_likelihood(target, continuations, n: int = 10) -> float:
    """EL_n of one sequence: mean over prefix lengths ``t = 1..T-n`` of ``ngram_overlap(gen_t, target[t:], n)``.

    ``continuations``: a mapping (or list indexed by ``t``) from prefix length ``t`` to the greedy
    continuation of ``target[:t]`` (token ids; only its first ``T - t`` tokens count). NaN when
    ``T <= n`` (no prefix leaves a reference n-gram).

    >>> x = [1, 2, 3, 4]
    >>> extraction_likelihood(x, {1: [2, 3, 4], 2: [3, 0]}, n=2)  # t=1: 2/2, t=2: 0/1
    0.5
    """
    n = check_n(n)
    target = list(target)
    T = len(target)
    if T <= n:
        return float("nan")
    vals = []
    for t in range(1, T - n + 1):
        gen = list(continuations[t])[: T - t]
        vals.append(ngram_overlap(gen, target[t:], n))
    return float(np.mean(vals))


# -- sequences from data ----------------------------------------------------------------------------


def encode_sequences(tokenizer, data, fmt=DEFAULT_FORMAT) -> list[tuple[list[int], list[int]]]:
    """``(context ids, sequence ids)`` per row: prompt + answer tokens (no EOS) for question/answer rows,
    first token + the rest for ``text`` rows. Raises on empty data or rows with no sequence token."""
    n = len(data) if data is not None else 0
    if n == 0:
        raise ValueError("data is empty: memorization needs >= 1 sequence (forget set size valid range: >= 1)")
    cols = set(getattr(data, "column_names", None) or getattr(data, "columns", []))
    out = []
    if {"question", "answer"} <= cols:
        for q, a in zip(data["question"], data["answer"]):
            ctx = tokenizer(fmt.prompt(q, tokenizer), add_special_tokens=True)["input_ids"]
            seq = tokenizer(fmt.answer_prefix + str(a).strip(), add_special_tokens=False)["input_ids"]
            out.append((list(ctx), list(seq)))
    elif "text" in cols:
        for t in data["text"]:
            ids = tokenizer(str(t), add_special_tokens=True)["input_ids"]
            out.append((list(ids[:1]), list(ids[1:])))
    else:
        raise ValueError(f"memorization needs fields ['question', 'answer'] or ['text']; data has {sorted(cols)}")
    for i, (_, s) in enumerate(out):
        if not s:
            raise ValueError(f"row {i}: empty sequence (a memorization score needs >= 1 token)")
    return out


def _fingerprint(model) -> str:
    """A cheap content hash of the weights (changes whenever training changes them)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for p in model.parameters():
            h.update(np.float64(p.detach().double().sum().item()).tobytes())
            h.update(np.float64(p.detach().double().abs().sum().item()).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def teacher_forced_predictions(model, seqs, *, batch_size: int = 64) -> list[np.ndarray]:
    """Argmax next-token predictions for every sequence token (teacher forcing).

    ``seqs``: ``(context, sequence)`` id lists (:func:`encode_sequences`). Returns one int array of
    length ``len(sequence)`` per row; entry ``t`` predicts ``sequence[t]`` from ``context + sequence[:t]``.
    """
    was = model.training
    model.eval()
    dev = _device(model)
    out: list = [None] * len(seqs)
    full = [c + s for c, s in seqs]
    order = sorted(range(len(seqs)), key=lambda i: -len(full[i]))
    try:
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            L = max(len(full[i]) for i in rows)
            ids = torch.zeros((len(rows), L), dtype=torch.long)
            att = torch.zeros((len(rows), L), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, :len(full[i])] = torch.tensor(full[i])
                att[j, :len(full[i])] = 1
            pred = model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits.argmax(-1).cpu()
            for j, i in enumerate(rows):
                c, q = len(seqs[i][0]), len(seqs[i][1])
                out[i] = pred[j, c - 1:c - 1 + q].numpy()
    finally:
        model.train(was)
    return out


_CONT_CACHE: dict = {}


def greedy_continuations(model, tokenizer, seqs, n: int = 10, *, batch_size: int = 64) -> list[dict]:
    """Greedy continuations of every prefix ``t = 1..T-n`` of every sequence (what EL_n needs).

    One batched generation for all prefixes (sorted so each batch decodes similar lengths; each
    continuation is cut at ``T - t`` tokens). Cached by (weights fingerprint, sequences, n): a second
    call on unchanged weights costs nothing. Returns per row a dict ``t -> continuation ids``.
    """
    n = check_n(n)
    key = (_fingerprint(model), tuple(tuple(c + [-1] + s) for c, s in seqs), n)
    if key in _CONT_CACHE:
        return _CONT_CACHE[key]
    jobs = [(i, t) for i, (_, s) in enumerate(seqs) for t in range(1, len(s) - n + 1)]
    jobs.sort(key=lambda j: -(len(seqs[j[0]][1]) - j[1]))
    out = [dict() for _ in seqs]
    if jobs:
        prompts = [seqs[i][0] + seqs[i][1][:t] for i, t in jobs]
        limits = [len(seqs[i][1]) - t for i, t in jobs]
        _, ids = generate_from_ids(model, tokenizer, prompts, max_new_tokens=limits, batch_size=batch_size,
                                   return_ids=True)
        for (i, t), g in zip(jobs, ids):
            out[i][t] = g
    if len(_CONT_CACHE) > 16:
        _CONT_CACHE.clear()
    _CONT_CACHE[key] = out
    return out


# -- per-sequence tables ------------------------------------------------------------------------------


def memorization_scores(model, tokenizer, data, *, el_n: int | None = 10, batch_size: int = 64,
                        quantities=("em", "es", "ma", "el")) -> pd.DataFrame:
    """Tidy per-sequence memorization: one row per (id, quantity) with ``value`` in [0, 1].

    Quantities: ``em``, ``es``, ``ma`` (teacher-forced, one forward per batch) and ``el`` (EL_n,
    ``n = el_n``; one batched generation per prefix length, skipped when ``el_n`` is None). Columns:
    ``id`` (the data's ``id`` column, else the row index), ``quantity``, ``value``, ``n_tokens`` (T).
    """
    seqs = encode_sequences(tokenizer, data)
    bad = set(quantities) - {"em", "es", "ma", "el"}
    if bad:
        raise ValueError(f"quantities {sorted(bad)} unknown; valid: em, es, ma, el")
    ids = row_ids(data)
    preds = teacher_forced_predictions(model, seqs, batch_size=batch_size)
    rows = []
    fns = {"em": exact_memorization, "es": extraction_strength, "ma": memorization_accuracy}
    for q in quantities:
        if q in fns:
            rows += [{"id": i, "quantity": q, "value": fns[q](p, s), "n_tokens": len(s)}
                     for i, p, (_, s) in zip(ids, preds, seqs)]
    if "el" in quantities and el_n is not None:
        el_n = check_n(el_n, "el_n")
        conts = greedy_continuations(model, tokenizer, seqs, el_n, batch_size=batch_size)
        rows += [{"id": i, "quantity": "el", "value": extraction_likelihood(s, c, el_n), "n_tokens": len(s)}
                 for i, c, (_, s) in zip(ids, conts, seqs)]
    return pd.DataFrame(rows, columns=["id", "quantity", "value", "n_tokens"])


def per_sequence_ma(model, tokenizer, data, *, batch_size: int = 64) -> np.ndarray:
    """MA of every row of ``data`` as an array ``(N,)`` (the SGA / TA score)."""
    seqs = encode_sequences(tokenizer, data)
    preds = teacher_forced_predictions(model, seqs, batch_size=batch_size)
    return np.array([memorization_accuracy(p, s) for p, (_, s) in zip(preds, seqs)])


def memorization_probe(model, tokenizer, data, *, step: int, split: str) -> pd.DataFrame:
    """Per-sequence MA rows for the loop's probe recorder: ``step, split, id, quantity="ma", value``."""
    ma = per_sequence_ma(model, tokenizer, data)
    return pd.DataFrame({"step": step, "split": split, "id": row_ids(data), "quantity": "ma", "value": ma})


def token_match_table(model, tokenizer, data, *, batch_size: int = 64) -> pd.DataFrame:
    """The per-token view of every sequence (one batched forward): tidy rows ``id``, ``position``,
    ``token`` (target token text), ``predicted`` (teacher-forced greedy token text), ``match`` (bool).
    The mean of ``match`` per ``id`` is that sequence's MA."""
    seqs = encode_sequences(tokenizer, data)
    preds = teacher_forced_predictions(model, seqs, batch_size=batch_size)
    rows = []
    for i, p, (_, s) in zip(row_ids(data), preds, seqs):
        for t, (a, b) in enumerate(zip(s, p)):
            rows.append({"id": i, "position": t, "token": tokenizer.decode([a]), "predicted": tokenizer.decode([int(b)]),
                         "match": bool(a == b)})
    return pd.DataFrame(rows, columns=["id", "position", "token", "predicted", "match"])


def token_matches(model, tokenizer, data, row: int = 0) -> pd.DataFrame:
    """:func:`token_match_table` of the single row ``row`` (0-based position in ``data``)."""
    n = len(data)
    if not 0 <= row < n:
        raise ValueError(f"row={row} is out of range; valid range: [0, {n - 1}]")
    sub = data.select([row]) if hasattr(data, "select") else data.iloc[[row]]
    return token_match_table(model, tokenizer, sub)


# -- the extraction attack ----------------------------------------------------------------------------


def extraction_attack(model, tokenizer, data, *, prefix_len: int = 8, n_samples: int = 4, temperature: float = 1.0,
                      el_n: int = 4, el_threshold: float = 0.5, seed: int = 0, batch_size: int = 64) -> pd.DataFrame:
    """The attacker knows each sequence's context (the record's header) and its first ``prefix_len``
    tokens, and continues it greedily and with ``n_samples`` samples at ``temperature``.

    One row per (id, decoding): ``decoding`` ("greedy" or "sample"), ``sample`` (0 for greedy),
    ``prefix`` and ``target`` (the true suffix) and ``continuation`` (texts), ``verbatim`` (the
    continuation's first ``T - prefix_len`` tokens equal the suffix), ``el`` (n-gram overlap of the
    continuation with the suffix, n = ``el_n``; NaN when the suffix is shorter than ``el_n``),
    ``recovered`` (verbatim, or ``el >= el_threshold``). :func:`recovered_table` condenses it to one
    row per sequence. Raises, naming the parameter, on a sequence not longer than ``prefix_len``.
    """
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, (int, np.integer)) or prefix_len < 0:
        raise ValueError(f"prefix_len={prefix_len!r} is out of range; valid range: integers >= 0")
    el_n = check_n(el_n, "el_n")
    el_threshold = check_unit("el_threshold", el_threshold)
    if n_samples < 0:
        raise ValueError(f"n_samples={n_samples!r} is out of range; valid range: integers >= 0")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is out of range; valid range: (0, inf)")
    seqs = encode_sequences(tokenizer, data)
    short = [i for i, (_, s) in enumerate(seqs) if len(s) <= prefix_len]
    if short:
        shortest = min(len(seqs[i][1]) for i in short)
        raise ValueError(f"prefix_len={prefix_len} leaves nothing to extract from {len(short)} sequence(s) (row "
                         f"{short[0]}...); valid range: [0, {shortest - 1}] for this data")
    ids = row_ids(data)
    prompts = [c + s[:prefix_len] for c, s in seqs]
    limits = [len(s) - prefix_len for _, s in seqs]
    runs = [("greedy", 0, generate_from_ids(model, tokenizer, prompts, max_new_tokens=limits, batch_size=batch_size,
                                            return_ids=True)[1])]
    if n_samples:
        _, samp = generate_from_ids(model, tokenizer, prompts, max_new_tokens=limits, batch_size=batch_size,
                                    do_sample=True, temperature=temperature, num_return_sequences=n_samples,
                                    seed=seed, return_ids=True)
        for j in range(n_samples):
            runs.append(("sample", j + 1, samp[j::n_samples]))
    rows = []
    for dec, j, conts in runs:
        for i, (_, s), g in zip(ids, seqs, conts):
            suffix = s[prefix_len:]
            g = list(g)[: len(suffix)]
            el = ngram_overlap(g, suffix, el_n)
            verb = g == suffix
            rows.append({"id": i, "decoding": dec, "sample": j, "prefix": tokenizer.decode(s[:prefix_len]).strip(),
                         "target": tokenizer.decode(suffix).strip(), "continuation": tokenizer.decode(g).strip(),
                         "verbatim": verb, "el": el, "recovered": bool(verb or (el == el and el >= el_threshold))})
    return pd.DataFrame(rows)


def recovered_table(attack: pd.DataFrame) -> pd.DataFrame:
    """One row per sequence: ``greedy_verbatim``, ``any_sample_verbatim``, ``best_el`` (max over decodings),
    ``recovered`` (by any decoding), and the greedy continuation next to the true suffix."""
    g = attack[attack.decoding == "greedy"].set_index("id")
    out = pd.DataFrame({
        "target": g["target"], "greedy": g["continuation"], "greedy_verbatim": g["verbatim"],
        "any_sample_verbatim": attack[attack.decoding == "sample"].groupby("id")["verbatim"].any()
        if (attack.decoding == "sample").any() else False,
        "best_el": attack.groupby("id")["el"].max(), "recovered": attack.groupby("id")["recovered"].any()})
    return out.reset_index()


# -- MIAU ---------------------------------------------------------------------------------------------


def miau_scores(model, tokenizer, data, *, normalize: bool = True, batch_size: int = 64) -> pd.DataFrame:
    """The paper's perturbation membership test (DetectGPT-style), on the miniature's own perturbations.

    The paper perturbs each sequence with T5 mask filling; here each record's ``perturbed_answer``
    list holds the same template with *other values drawn from the world's vocabulary* (another code,
    city, passport number...). ``score = ll(x) - mean_j ll(x~_j)`` (``/ std_j`` when ``normalize``),
    ``ll`` = mean token log-likelihood of the record given its header (nats/token). Higher = more
    likely a member. Columns: ``id``, ``value`` (the score), ``ll``, ``ll_perturbed_mean``.
    """
    cols = set(data.column_names)
    if not {"question", "answer", "perturbed_answer"} <= cols:
        raise ValueError(f"miau needs fields question, answer, perturbed_answer; data has {sorted(cols)}")
    if len(data) == 0:
        raise ValueError("data is empty: miau needs >= 1 sequence")
    lists = [[a, *p] for a, p in zip(data["answer"], data["perturbed_answer"])]
    # the flat path (no shared-prefix KV cache): the records are short, and it passes no cache object
    res = score_answers(model, tokenizer, data["question"], lists, batch_size=batch_size, prefix_share=False)
    rows = []
    for i, r in zip(row_ids(data), res):
        ll = r["logprob"] / np.maximum(r["n_tokens"], 1)
        pert = ll[1:]
        sc = ll[0] - pert.mean()
        if normalize and len(pert) > 1:
            sc = sc / max(pert.std(ddof=1), 1e-6)
        rows.append({"id": i, "value": float(sc), "ll": float(ll[0]), "ll_perturbed_mean": float(pert.mean())})
    return pd.DataFrame(rows)


# -- outliers -----------------------------------------------------------------------------------------


def outlier_summary(values, *, high: float, low: float | None = None, inclusive: bool | None = None) -> dict:
    """The Barbulescu unlearning-quality count on per-sequence memorization ``values`` (e.g. MA).

    One-sided (``low=None``, the kit's default rule, spec B13): ``n_high = #(v > high)``, sequences
    still memorized above the unseen-data level. Two-sided (``low`` given, the authors' analysis
    code): ``n_high = #(v >= high)``, ``n_low = #(v <= low)``, ``total = n_high + n_low``.
    ``inclusive`` overrides the comparison for ``high`` (default: strict one-sided, ``>=`` two-sided).
    Also ``std`` (population std of the values), ``n``.
    """
    high = check_unit("high", high)
    low = check_unit("low", low, allow_none=True)
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("values is empty: the outlier count needs >= 1 sequence")
    inc = (low is not None) if inclusive is None else bool(inclusive)
    n_high = int((v >= high).sum() if inc else (v > high).sum())
    out = {"n_high": n_high, "std": float(v.std()), "high": high, "n": int(v.size)}
    if low is not None:
        n_low = int((v <= low).sum())
        out.update(n_low=n_low, low=low, total=n_high + n_low)
    else:
        out["total"] = n_high
    return out
