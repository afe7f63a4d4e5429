"""Squeezing diagnostics (spec B14 made measurable): where did the target answer's mass go?

Unlearning lowers ``π(target | question)``; softmax renormalization must put that probability mass
somewhere. If it lands on a paraphrase of the target or on the model's own other beliefs, the
fact is *hidden*, not forgotten ("squeezing", BS paper). These functions measure it by comparing
the model **before** (``original``) and **after** (``unlearned``) unlearning.

**Sequence level** (:func:`squeeze_decomposition`). For each question, a set of *distinct*
complete answers is scored under both models by its **sequence probability** (mass)
``π(a | q) = exp(Σ_t log p(a_t | q, a_<t))`` over the answer tokens and the final EOS:

* ``target``: the answer the forget set asks to remove;
* ``paraphrase``: the paraphrased answer(s) (same fact, other words);
* ``perturbed``: the wrong answers;
* ``belief``: the original model's own answers: its greedy answer and ``n_samples`` sampled
  answers (temperature 1; or beam-search answers with ``belief_mode="beam"``, as the BS paper).

Candidates are deduplicated by their token sequence (priority target > paraphrase > perturbed >
belief), so they are disjoint events (each ends with EOS at its own position) and their masses
**sum to at most 1** per question; a ``rest`` row holds ``1 - Σ`` (everything else the model
could say). ``delta = mass_after - mass_before``; ``gained = delta > 0``.

**Token level** (:func:`token_squeeze`). On the target's own prefix (teacher forcing), for the
first ``n_positions`` answer tokens, the next-token probabilities of the union of both models'
top-``top_k`` tokens (and the target token) before and after, each token tagged ``target``,
``paraphrase``, ``belief``, ``perturbed`` (the token continues one of those candidate answers
from the same prefix) or ``other``; a ``rest`` row per position holds the mass outside the listed
tokens. :func:`token_squeeze_summary` reduces it to "where did the mass removed from the target
token go", per tag.

Measured on the quick miniature world (``make_world(0, quick=True)``, its cached tiny target
model, all 10 forget questions, 4 beam-search beliefs; ``tests/test_metrics_suite.py`` checks it),
mean per question after GA with ``lr=1e-4``:

* 10 steps: target mass 0.654 -> 0.053 while the paraphrase rose 0.332 -> 0.922 (``squeezed``
  +0.589, 98% of the removed mass); at the first answer token the target token lost 0.602 and
  the paraphrase's first token gained 0.604.
* 20 steps: target 0.654 -> 0.000, paraphrase 0.332 -> 0.124, ``rest`` 0.010 -> 0.874: the model
  collapsed into babble (``squeezed`` -0.21), yet at the first token the paraphrase's first token
  still gained 0.653 of the 0.655 lost by the target token: the token view keeps showing the
  squeeze after the sequence view stops.

The registered metric ``squeezing`` (needs ``original=(model, tokenizer)``) reports per forget
question ``value`` = the net mass gained by paraphrases and beliefs (``Σ delta`` over those
candidates, probability units in [-1, 1]) plus every group's mass before and after.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data import DEFAULT_FORMAT, encode_pairs, row_ids
from ..models.layers import eval_mode
from ..scoring import generate, score_answers
from .base import evaluate, metric, option

KINDS = ("target", "paraphrase", "perturbed", "belief")


option("squeeze_samples", 4, "squeezing: belief answers drawn from the original model per question", low=0)
option("squeeze_belief_mode", "sample", "squeezing: how belief answers are drawn (temperature-1 samples or beams)",
       choices=("sample", "beam"))
option("squeeze_seed", 0, "squeezing: seed of the belief samples")


def _model_of(m):
    return m[0] if isinstance(m, (tuple, list)) else m


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [x for x in v if isinstance(x, str)]




def belief_answers(model, tokenizer, questions, *, n_samples: int = 4, mode: str = "sample",
                   max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0,
                   batch_size: int = 64) -> list[list[tuple[str, str]]]:
    """The model's own answers per question: ``[(text, source), ...]`` with source ``greedy``,
    ``sample`` (``n_samples`` at ``temperature``) or ``beam`` (``n_samples`` beams). Not deduplicated."""

    model = _model_of(model)
    questions = list(questions)
    greedy = generate(model, tokenizer, questions, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out = [[(g, "greedy")] for g in greedy]
    if n_samples > 0:
        if mode == "sample":
            more = generate(model, tokenizer, questions, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            do_sample=True, temperature=temperature, num_return_sequences=n_samples, seed=seed)
        elif mode == "beam":
            more = generate(model, tokenizer, questions, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            num_beams=max(2, n_samples), num_return_sequences=n_samples)
        else:
            raise ValueError(f"belief_mode={mode!r}; valid: 'sample', 'beam'")
        for i in range(len(questions)):
            out[i] += [(t, mode) for t in more[i * n_samples:(i + 1) * n_samples]]
    return out


def _answer_ids(tokenizer, text: str, fmt=DEFAULT_FORMAT) -> tuple[int, ...]:
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tuple(tokenizer(fmt.answer_prefix + text.strip(), add_special_tokens=False)["input_ids"] + eos)


def squeeze_candidates(original, tokenizer, data, *, beliefs=None, n_samples: int = 4, belief_mode: str = "sample",
                       max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0,
                       batch_size: int = 64) -> pd.DataFrame:
    """Distinct candidate answers per question, scored under the ``original`` model.

    ``data``: rows with ``question`` and ``answer`` (``paraphrased_answer`` and
    ``perturbed_answer`` used where present, a string or a list). ``beliefs``: precomputed
    :func:`belief_answers` output (else generated from ``original``). Returns one row per
    (question, candidate): ``id, question, kind, source, text, n_tokens, logprob_before,
    mass_before`` (sequence probability). Reuse it across checkpoints: it is the "before" half.
    """

    model = _model_of(original)
    qs = list(data["question"])
    cols = data.column_names
    if beliefs is None:
        beliefs = belief_answers(model, tokenizer, qs, n_samples=n_samples, mode=belief_mode,
                                 max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                 batch_size=batch_size)
    ids = row_ids(data)
    rows, lists = [], []
    for i, q in enumerate(qs):
        groups = [("target", "answer", _as_list(data["answer"][i]))]
        if "paraphrased_answer" in cols:
            groups.append(("paraphrase", "paraphrased_answer", _as_list(data["paraphrased_answer"][i])))
        if "perturbed_answer" in cols:
            groups.append(("perturbed", "perturbed_answer", _as_list(data["perturbed_answer"][i])))
        groups.append(("belief", None, beliefs[i]))
        seen, mine = set(), []
        for kind, src, items in groups:
            for it in items:
                text, source = (it if isinstance(it, tuple) else (it, src))
                if not isinstance(text, str) or not text.strip():
                    continue
                key = _answer_ids(tokenizer, text)
                if key in seen:
                    continue
                seen.add(key)
                mine.append(text.strip())
                rows.append({"id": ids[i], "question": q, "kind": kind, "source": source, "text": text.strip()})
        lists.append(mine)
    scored = score_answers(model, tokenizer, qs, lists, batch_size=batch_size)
    lp = np.concatenate([s["logprob"] for s in scored])
    nt = np.concatenate([s["n_tokens"] for s in scored])
    df = pd.DataFrame(rows)
    df["n_tokens"] = nt.astype(int)
    df["logprob_before"] = lp
    df["mass_before"] = np.exp(lp)
    return df


def squeeze_decomposition(original, unlearned, tokenizer, data, *, candidates: pd.DataFrame | None = None,
                          batch_size: int = 64, **candidate_kw) -> pd.DataFrame:
    """Sequence-level mass of each distinct candidate answer before and after unlearning.

    ``original``/``unlearned``: models (or ``(model, tokenizer)`` pairs) sharing ``tokenizer``.
    ``candidates``: a :func:`squeeze_candidates` table to reuse (e.g. across probe checkpoints);
    otherwise built from ``original`` with ``candidate_kw`` (``n_samples``, ``belief_mode``...).
    Returns the candidates plus ``logprob_after``, ``mass_after``, ``delta``, ``gained`` and one
    ``rest`` row per question (``1 - Σ mass``, clipped at 0). Per question, ``mass_before`` and
    ``mass_after`` of the non-rest rows each sum to at most 1 (distinct, disjoint answers).
    """

    if candidates is None:
        candidates = squeeze_candidates(original, tokenizer, data, batch_size=batch_size, **candidate_kw)
    cand = candidates.copy()
    qs, lists, order = [], [], []
    for _, g in cand.groupby("id", sort=False):
        qs.append(g["question"].iloc[0])
        lists.append(list(g["text"]))
        order.append(g.index.to_numpy())
    scored = score_answers(_model_of(unlearned), tokenizer, qs, lists, batch_size=batch_size)
    after = np.zeros(len(cand))
    for idx, s in zip(order, scored):
        after[cand.index.get_indexer(idx)] = s["logprob"]
    cand["logprob_after"] = after
    cand["mass_after"] = np.exp(after)
    rest = []
    for qid, g in cand.groupby("id", sort=False):
        rest.append({"id": qid, "question": g["question"].iloc[0], "kind": "rest", "source": None,
                     "text": "(any other answer)", "n_tokens": 0, "logprob_before": np.nan,
                     "mass_before": max(0.0, 1.0 - float(g["mass_before"].sum())), "logprob_after": np.nan,
                     "mass_after": max(0.0, 1.0 - float(g["mass_after"].sum()))})
    out = pd.concat([cand, pd.DataFrame(rest)], ignore_index=True)
    out["delta"] = out["mass_after"] - out["mass_before"]
    out["gained"] = out["delta"] > 0
    kind_order = {k: i for i, k in enumerate((*KINDS, "rest"))}
    out["_o"] = out["kind"].map(kind_order)
    first = {qid: k for k, qid in enumerate(dict.fromkeys(out["id"]))}
    out["_q"] = out["id"].map(first)
    out = out.sort_values(["_q", "_o"], kind="stable").drop(columns=["_o", "_q"]).reset_index(drop=True)
    return out


def squeeze_summary(decomposition: pd.DataFrame) -> pd.DataFrame:
    """One row per question: each kind's total mass before/after, the removed target mass, and
    ``squeezed`` = net mass gained by paraphrases and beliefs (probability units)."""
    rows = []
    for qid, g in decomposition.groupby("id", sort=False):
        r = {"id": qid}
        for k in (*KINDS, "rest"):
            gk = g[g.kind == k]
            r[f"{k}_before"] = float(gk.mass_before.sum())
            r[f"{k}_after"] = float(gk.mass_after.sum())
        r["n_beliefs"] = int((g.kind == "belief").sum())
        r["removed"] = max(0.0, r["target_before"] - r["target_after"])
        alt = g[g.kind.isin(("paraphrase", "belief"))]
        r["squeezed"] = float(alt.delta.sum())
        r["squeeze_share"] = r["squeezed"] / r["removed"] if r["removed"] > 0 else np.nan
        r["gained_kinds"] = ",".join(sorted(set(g[(g.delta > 0) & (g.kind != "rest")].kind)))
        rows.append(r)
    return pd.DataFrame(rows)


@torch.no_grad()
def _next_token_probs(model, enc, dev, batch_size: int) -> list[torch.Tensor]:
    """Softmax next-token distributions at each answer position: per row ``(T, V)``."""
    out = []
    with eval_mode(model):
        for s in range(0, enc["input_ids"].shape[0], batch_size):
            part = {k: v[s:s + batch_size] for k, v in enc.items()}
            logits = model(input_ids=part["input_ids"].to(dev), attention_mask=part["attention_mask"].to(dev)).logits
            probs = torch.softmax(logits[:, :-1].float(), -1)
            mask = part["labels"][:, 1:] != -100
            for j in range(probs.shape[0]):
                out.append(probs[j][mask[j].to(dev)].cpu())
    return out


def token_squeeze(original, unlearned, tokenizer, data, *, candidates: pd.DataFrame | None = None,
                  n_positions: int = 3, top_k: int = 10, batch_size: int = 64, **candidate_kw) -> pd.DataFrame:
    """Token-level squeeze on the first ``n_positions`` target answer tokens (teacher forcing).

    Returns one row per (question, position, token) with ``token_id``, ``token`` (decoded),
    ``tag`` (target / paraphrase / belief / perturbed / other, or ``rest`` for the mass outside
    the listed tokens), ``p_before``, ``p_after``, ``delta``, ``is_target``. Listed tokens are the
    union of both models' top-``top_k`` and the target token; per position the rows sum to 1
    before and after. ``candidates`` as in :func:`squeeze_decomposition` (tags come from them).
    """
    if candidates is None:
        candidates = squeeze_candidates(original, tokenizer, data, batch_size=batch_size, **candidate_kw)
    qs, ans = list(data["question"]), list(data["answer"])
    ids = row_ids(data)
    enc = encode_pairs(tokenizer, qs, ans)
    m0, m1 = _model_of(original), _model_of(unlearned)
    before = _next_token_probs(m0, enc, next(m0.parameters()).device, batch_size)
    after = _next_token_probs(m1, enc, next(m1.parameters()).device, batch_size)
    prio = {"target": 0, "paraphrase": 1, "belief": 2, "perturbed": 3}
    cand_ids = {}
    for qid, g in candidates.groupby("id", sort=False):
        cand_ids[qid] = sorted(((prio.get(k, 9), k, _answer_ids(tokenizer, t)) for k, t in zip(g.kind, g.text)))
    rows = []
    for i, qid in enumerate(ids):
        target = _answer_ids(tokenizer, ans[i])
        for t in range(min(n_positions, len(target))):
            pb, pa = before[i][t], after[i][t]
            listed = set(torch.topk(pb, min(top_k, pb.numel())).indices.tolist())
            listed |= set(torch.topk(pa, min(top_k, pa.numel())).indices.tolist())
            listed.add(target[t])
            tags = {}
            for _, kind, c in cand_ids.get(qid, []):
                if len(c) > t and c[:t] == target[:t] and c[t] not in tags:
                    tags[c[t]] = kind
            sb = sa = 0.0
            for v in sorted(listed, key=lambda v: -float(pb[v])):
                b, a = float(pb[v]), float(pa[v])
                sb, sa = sb + b, sa + a
                rows.append({"id": qid, "position": t, "token_id": v, "token": tokenizer.decode([v]),
                             "tag": tags.get(v, "other"), "p_before": b, "p_after": a, "delta": a - b,
                             "is_target": v == target[t]})
            rows.append({"id": qid, "position": t, "token_id": -1, "token": "(other tokens)", "tag": "rest",
                         "p_before": max(0.0, 1 - sb), "p_after": max(0.0, 1 - sa),
                         "delta": max(0.0, 1 - sa) - max(0.0, 1 - sb), "is_target": False})
    return pd.DataFrame(rows)


def token_squeeze_summary(token_table: pd.DataFrame) -> pd.DataFrame:
    """Per (question, position): the target token's removed mass and the mass gained by each tag
    (sum of positive ``delta`` over non-target tokens with that tag; ``rest`` included)."""
    rows = []
    for (qid, pos), g in token_table.groupby(["id", "position"], sort=False):
        tgt = g[g.is_target]
        r = {"id": qid, "position": pos, "target_before": float(tgt.p_before.sum()),
             "target_after": float(tgt.p_after.sum())}
        r["removed"] = max(0.0, r["target_before"] - r["target_after"])
        others = g[~g.is_target]
        for tag in ("target", "paraphrase", "belief", "perturbed", "other", "rest"):
            r[f"gain_{tag}"] = float(others[others.tag == tag].delta.clip(lower=0).sum())
        rows.append(r)
    return pd.DataFrame(rows)


@metric("squeezing", suites=("squeeze",), needs=("original_model",), forget_only=True,
        direction="more squeezing: target mass moved onto paraphrases / the model's own beliefs (hidden, not forgotten)",
        formula="Σ over paraphrase+belief answers of [π_after(a|q) - π_before(a|q)], sequence mass incl. EOS",
        source="unlearnkit; squeezing effect of 'LLM Unlearning with LLM Beliefs' (BS paper), spec B14")
def squeezing(ctx, split, data):
    """Per forget question: net mass gained by paraphrases and beliefs (``value``), and every
    group's mass before/after (columns ``<kind>_before`` / ``<kind>_after``). Options:
    ``squeeze_samples`` (4), ``squeeze_belief_mode`` ("sample" | "beam"), ``squeeze_seed`` (0),
    ``max_new_tokens``, ``batch_size``."""
    orig = ctx.original
    omodel, otok = (orig if isinstance(orig, (tuple, list)) else (orig, ctx.tokenizer))
    if len(otok) != len(ctx.tokenizer):
        raise ValueError(f"squeezing: the original model's tokenizer ({len(otok)} tokens) differs from the "
                         f"evaluated model's ({len(ctx.tokenizer)}); they must share one tokenizer")
    key = ("squeeze_candidates", split)
    if key not in ctx.cache:
        ctx.cache[key] = squeeze_candidates(omodel, ctx.tokenizer, data, n_samples=int(ctx.opt("squeeze_samples")),
                                            belief_mode=ctx.opt("squeeze_belief_mode"),
                                            max_new_tokens=ctx.opt("max_new_tokens"),
                                            seed=int(ctx.opt("squeeze_seed")), batch_size=ctx.opt("batch_size"))
    dec = squeeze_decomposition(omodel, ctx.model, ctx.tokenizer, data, candidates=ctx.cache[key],
                                batch_size=ctx.opt("batch_size"))
    summ = squeeze_summary(dec)
    return summ.rename(columns={"squeezed": "value"})[["id", "value", *[c for c in summ.columns
                                                                      if c not in ("id", "squeezed")]]]


def misreport_table(model, tokenizer, data, *, before=None, max_new_tokens: int = 48) -> pd.DataFrame:
    """Per question: the greedy answer of ``model``, its ROUGE-L recall against the original
    answer, and whether it still states the fact (``fact_recall``: the true ``value``, a wrong
    one, a refusal or none), computed with the kit's metrics. ``before``: the model before
    unlearning, to add its answer and ROUGE (columns suffixed ``_before``).

    ``misreported`` marks rows where ROUGE says "mostly gone" (recall < 0.5, below what the model
    scored before if ``before`` is given) while the answer still states the true value.
    """
    def one(m):
        ev = evaluate(m, tokenizer, {"forget": data}, ["rouge", "fact_recall"], progress=False,
                      max_new_tokens=max_new_tokens)
        r = ev[ev.metric == "rouge"].set_index("id")
        f = ev[ev.metric == "fact_recall"].set_index("id")
        return pd.DataFrame({"answer": r["generation"] if "generation" in r else f["generation"],
                             "rouge": r["value"], "states": f["label"]})

    rows = dict(zip(row_ids(data), data))
    now = one(model)
    out = pd.DataFrame({"id": now.index, "question": [rows[i]["question"] for i in now.index],
                        "value": [rows[i].get("value") for i in now.index]})
    if before is not None:
        b = one(before)
        out["answer_before"] = b.loc[now.index, "answer"].to_numpy()
        out["rouge_before"] = b.loc[now.index, "rouge"].to_numpy()
    out["answer"] = now["answer"].to_numpy()
    out["rouge"] = now["rouge"].to_numpy()
    out["states"] = now["states"].to_numpy()
    low = out["rouge"] < 0.5
    if before is not None:
        low &= out["rouge"] < out["rouge_before"]
    out["misreported"] = low & (out["states"] == "true")
    return out
