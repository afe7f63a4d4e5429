"""UniErase: unlearning by an unlearning token plus an AlphaEdit edit (spec ``methods.md`` A17).

:func:`unierase` runs both stages on a copy of the model and returns an :class:`EditResult` (an
:class:`unlearnkit.train.UnlearnResult`, so the evaluation, widgets and notebooks treat it like any
objective's result):

1. **Stage I** (:mod:`.unl_token`): a new special token ``<unl>`` whose input embedding makes the
   model answer "I don't know" (only that row is trained).
2. **Stage II** (:mod:`.alphaedit`): one request per forget question (prompt = the formatted
   question, subject = the person it asks about, target = ``<unl>``, encoded without a leading
   space), edited into the MLP output projections of ``layers`` with AlphaEdit, the update projected
   onto the null space of the keys of a preserved corpus (retain split + world facts).

After the edit a forget question's first answer token is ``<unl>``, and the token then triggers the
refusal learned in stage I; other questions' keys lie (mostly) in the preserved span, which the
update leaves unchanged. ``res.manifest`` records the edited layers, the projectors' ranks, the
fraction of parameters changed (a count of the weights that differ) and the final target
probabilities.

What the miniature shows (quick world, ``refusal_people=8``, 3 rounds; ``tests/test_editing.py``):
every forget question's first answer token becomes ``<unl>`` (100%), no forget answer states its
fact any more, and the retain answers are untouched (retain probes' greedy answers 100% the
original's, ROUGE kept); but the text after ``<unl>`` is a clean refusal only in a minority of
cases (10-20% by :func:`unlearnkit.metrics.is_refusal`, 0% as an exact bank sentence): one
128-dim embedding row steers the tiny model only partly into its refusal mode (stage I alone, with
``<unl>`` forced, gives about 3 in 10 clean refusals), and the edit, which moves the residual at
the prompt's last position by about its own norm, garbles the continuation further. The paper's
">= 90% refusals" is therefore *not* reproduced on the miniature; the edit's own claims (token
first, retain kept, a few matrices changed) are.

The miniature note: a 1M-parameter model trained only on facts has no "I don't know" to steer
into. Worlds made with ``refusal_people > 0`` train the tiny models to refuse questions about
unknown people (as instruction-tuned LLMs do), and that is the forgetting space the token uses; on a
world without it stage I has to teach a refusal through one embedding row, which the tiny model
does poorly (the test suite measures the knob-on world).

Subjects (:func:`subjects_for`): a ``subject`` field if present, else the miniature's ``person``
field, else (TOFU-format data) the heuristic :func:`guess_subject` (the longest run of capitalized
words that is not the question word), or an error with ``subject="field"``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..data import DEFAULT_FORMAT
from ..idk import load_idk
from ..io import manifest as run_manifest
from ..io import model_digest
from ..models.layers import check_layer, decoder_layers, unwrap
from ..models.tiny import cache_root
from ..probes import probe
from ..registry import Param, resolve_params
from ..scoring import generate
from ..train import UnlearnResult
from ..validate import check_qa
from .alphaedit import (
    EDIT_PARAMS,
    EditState,
    apply_alphaedit,
    corpus_texts,
    find_projection,
    make_requests,
    preserved_stats,
    projection_weight,
)
from .unl_token import UNL_PARAMS, train_unlearning_token

#: UniErase's own parameters (the token stage's are :data:`UNL_PARAMS`, prefixed ``unl_``; the edit's
#: are :data:`EDIT_PARAMS`)
UNIERASE_PARAMS = {
    "layers": Param(None, "decoder layers whose MLP output projection is edited (None: early-middle layers, "
                    "see auto_layers)"),
    "null_space": Param("energy:0.05", "null-space rule of the projector: 'threshold:<eigenvalue>', "
                        "'energy:<fraction of trace>' or 'rank:<fraction of d0>' (see alphaedit.projector)"),
    "rounds": Param(1, "sequential rounds: the forget requests are split into this many batches, edited one "
                    "after the other with the sequential key memory", low=1),
    "probe_size": Param(8, "forget (and retain) rows in the probe set", low=1),
    "max_new_tokens": Param(32, "generation length of probes and checks (tokens)", low=1),
    "subject": Param("auto", "where subjects come from: 'auto' (subject field, person field, else the "
                     "capitalized-span heuristic) or 'field' (a subject/person field is required)",
                     choices=("auto", "field")),
    "token": Param("<unl>", "the unlearning token's text"),
}


def auto_layers(n_layers: int) -> list[int]:
    """Early-middle layers, as the reference's [4..8] of 32: from ``n/8`` to ``n/4`` (at least layer 1,
    and two layers where the model has at least 4): ``[1, 2]`` for the 4-layer tiny models."""
    lo = max(1, round(n_layers / 8))
    hi = max(lo + (1 if n_layers >= 4 else 0), round(n_layers / 4))
    return list(range(lo, min(hi, n_layers - 1) + 1))


def parse_null_space(rule: str) -> dict:
    """``'energy:0.02'`` -> ``{'energy': 0.02}`` (also ``threshold:``, ``rank:``)."""
    names = {"threshold": "threshold", "energy": "energy", "rank": "rank_fraction"}
    m = re.fullmatch(r"\s*(threshold|energy|rank)\s*:\s*([0-9.eE+-]+)\s*", str(rule))
    if not m:
        raise ValueError(f"null_space={rule!r}: expected 'threshold:<value>', 'energy:<fraction in (0,1]>' or "
                         "'rank:<fraction in (0,1]>'")
    return {names[m.group(1)]: float(m.group(2))}


_QWORDS = {"What", "Who", "Where", "When", "Which", "Why", "How", "Is", "Are", "Did", "Does", "Do", "Can",
           "Could", "Has", "Have", "In", "Name", "The", "A", "An", "Was", "Were", "Tell", "Please"}


def guess_subject(question: str) -> str | None:
    """The longest run of capitalized words in ``question`` (sentence-initial question words such
    as What/Who/In are skipped; hyphens and apostrophes inside names are kept). None if there is none.

    >>> guess_subject("What genre is Basil Mahfouz Al-Kuwaiti known for?")
    'Basil Mahfouz Al-Kuwaiti'
    """
    words = re.findall(r"[A-Za-z][\w'\-.]*", question)
    best, cur = [], []
    for i, w in enumerate(words):
        cap = w[0].isupper() and not (i == 0 and w in _QWORDS) and w not in _QWORDS
        if cap:
            cur.append(w.rstrip("."))
        else:
            cur = []
        if len(" ".join(cur)) > len(" ".join(best)):
            best = list(cur)
    if not best:
        return None
    span = " ".join(best)
    return span if span in question else best[-1]


def subjects_for(data, mode: str = "auto") -> list[str]:
    """One subject per row of ``data`` (a ``datasets.Dataset`` or DataFrame with ``question``).

    ``subject`` field first, then ``person`` (the miniature world: the person, or the city of a
    world fact); with ``mode="auto"`` otherwise :func:`guess_subject`. Raises ``ValueError`` naming
    the row when no subject can be found, or when a subject does not occur in its question.
    """
    cols = set(getattr(data, "column_names", None) or getattr(data, "columns", []))
    qs = list(data["question"])
    if "subject" in cols:
        subs = list(data["subject"])
    elif "person" in cols:
        subs = list(data["person"])
    elif mode == "field":
        raise ValueError("the data has no 'subject' (or 'person') field and subject='field' forbids guessing; "
                         f"its fields are {sorted(cols)}. Add a subject per question (the entity the edit keys on)")
    else:
        subs = [guess_subject(q) for q in qs]
    for i, (q, s) in enumerate(zip(qs, subs)):
        if not s:
            raise ValueError(f"row {i}: no subject found in question {q!r}; add a 'subject' field")
        if s not in q:
            raise ValueError(f"row {i}: subject {s!r} does not occur in its question {q!r}")
    return subs


def changed_parameters(before, after) -> dict:
    """Count the weights of ``after`` that differ from ``before`` (parameters matched by name; rows
    beyond ``before``'s shape, e.g. a new token's embedding, count as changed). Tied tensors count
    once. Returns ``n_changed``, ``n_params`` (of ``after``), ``fraction_changed`` and ``by_param``
    (name -> count, only the changed ones)."""
    b = dict(unwrap(before).named_parameters())
    n_changed, n_params, by = 0, 0, {}
    for name, p in unwrap(after).named_parameters():
        n_params += p.numel()
        q = b.get(name)
        if q is None:
            c = p.numel()
        elif q.shape == p.shape:
            c = int((p.detach() != q.detach()).sum())
        else:
            sl = tuple(slice(0, s) for s in q.shape)
            c = int((p.detach()[sl] != q.detach()).sum()) + (p.numel() - q.numel())
        if c:
            by[name] = c
        n_changed += c
    return {"n_changed": n_changed, "n_params": n_params, "fraction_changed": n_changed / max(1, n_params),
            "by_param": by}


@torch.no_grad()
def refusal_check(model, tokenizer, questions, token_id: int, *, idk=None, max_new_tokens: int = 32,
                  fmt=DEFAULT_FORMAT, judge=None) -> pd.DataFrame:
    """Greedy answers to ``questions``: does the first token equal the unlearning token, and is the
    text after it a refusal (a sentence of the IDK bank, case- and punctuation-insensitive)?

    Columns: ``question``, ``first_is_token`` (bool), ``refusal`` (bool), ``text`` (decoded answer,
    special tokens dropped). ``judge``: another refusal test ``judge(text) -> bool`` (e.g.
    :func:`unlearnkit.metrics.is_refusal`, which also counts refusal patterns such as "no idea"); the
    default is stricter: the answer is, or contains, an exact bank sentence.
    """

    bank = {_norm(s) for s in load_idk(idk)}
    texts, ids = generate(model, tokenizer, list(questions), max_new_tokens=max_new_tokens, fmt=fmt, return_ids=True)
    rows = []
    for q, t, i in zip(questions, texts, ids):
        ref = judge(t) if judge is not None else (
            _norm(t) in bank or any(_norm(s) in bank for s in re.split(r"(?<=[.!?])\s+", t) if s))
        rows.append({"question": q, "first_is_token": bool(i) and i[0] == token_id, "refusal": bool(ref), "text": t})
    return pd.DataFrame(rows)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", s.lower()).strip()


@dataclass
class EditResult(UnlearnResult):
    """:class:`UnlearnResult` of an editing method, plus ``edits`` (one row per request and round,
    see :func:`unlearnkit.editing.apply_alphaedit`), ``rounds`` (one row per round: forget refusal
    rate, retain greedy answers unchanged...), the sequential ``state`` and the ``token_id``.
    ``probes`` carry ``step`` = round (0 = before any edit)."""

    edits: pd.DataFrame = field(default_factory=pd.DataFrame)
    rounds: pd.DataFrame = field(default_factory=pd.DataFrame)
    state: EditState | None = None
    token_id: int | None = None

    def save(self, path, overwrite: bool = False):
        out = super().save(path, overwrite=overwrite)
        self.edits.to_csv(out / "edits.csv", index=False)
        self.rounds.to_csv(out / "rounds.csv", index=False)
        return out

    def __repr__(self) -> str:
        f = self.manifest.get("fraction_changed", float("nan"))
        return (f"EditResult(method={self.method!r}, layers={self.manifest.get('edited_layers')}, rounds="
                f"{len(self.rounds) - 1 if len(self.rounds) else 0}, requests={len(self.edits)}, "
                f"fraction of parameters changed={f:.4%})")


#: edit parameters whose UniErase default differs from :data:`EDIT_PARAMS` (the reference's), because
#: the miniature needs it (measured on the quick world, 4-layer tiny Llama): the tiny model's first
#: answer token copies the subject's first name, and no delta at any subject token (layers 0-2, norm
#: up to 85, 40 Adam steps) lowered the NLL of a new first token below 15 nats, while at the prompt's
#: last token v* reaches p(<unl>) ~0.95; keys there have ~2-5% of their energy in the null space, so
#: the ridge term must be small against k^T P k (~2) and the clamp looser than 0.75 ||h||.
MINIATURE_EDIT_DEFAULTS = {"fact_token": "last", "l2": 0.1, "clamp_norm_factor": 2.0}


def _split_params(params: dict):
    own = {k: v for k, v in params.items() if k in UNIERASE_PARAMS}
    unl = {k[4:]: v for k, v in params.items() if k.startswith("unl_")}
    edit = {**MINIATURE_EDIT_DEFAULTS, **{k: v for k, v in params.items() if k in EDIT_PARAMS}}
    bad = sorted(set(params) - set(own) - {f"unl_{k}" for k in unl} - set(edit))
    if bad:
        valid = sorted(UNIERASE_PARAMS) + sorted(EDIT_PARAMS) + [f"unl_{k}" for k in UNL_PARAMS]
        raise ValueError(f"unierase: unknown parameter(s) {bad}; valid: {', '.join(valid)}")
    return (resolve_params("unierase", UNIERASE_PARAMS, own), resolve_params("unierase unl_", UNL_PARAMS, unl),
            resolve_params("unierase", EDIT_PARAMS, edit))


def unierase(model, tokenizer, forget, retain=None, *, preserved=None, inplace: bool = False, cache_dir=None,
             idk=None, locality=None, probe_data=None, retain_probe_data=None, progress: bool = False,
             **params) -> EditResult:
    """Unlearn ``forget`` by UniErase: an unlearning token, then AlphaEdit requests mapping each forget
    question's first answer token to it. Returns an :class:`EditResult`.

    ``forget``/``retain``: TOFU-format datasets (``question``, ``answer``; subjects from
    ``subject``/``person`` or the heuristic, see :func:`subjects_for`). ``preserved``: extra datasets
    (e.g. the world facts) whose keys, with ``retain``'s, form the preserved corpus of the
    projector. ``locality``: a dataset whose original outputs are cached before the first round
    (default: the retain probe rows). ``inplace=False``: the caller's model and tokenizer are left
    untouched (deep copies are edited). ``cache_dir``: where the key statistics are cached (default:
    the kit's model cache). ``params``: :data:`UNIERASE_PARAMS`, :data:`EDIT_PARAMS` and the token
    stage's :data:`UNL_PARAMS` prefixed ``unl_`` (e.g. ``unl_epochs=20``), all validated before any work.
    """
    t0 = time.perf_counter()
    hp, unl_hp, edit_hp = _split_params(params)
    forget = check_qa("forget", forget)
    if retain is not None:
        retain = check_qa("retain", retain)
    n_layers = len(decoder_layers(model))
    layers = auto_layers(n_layers) if hp["layers"] is None else [check_layer(model, li) for li in hp["layers"]]
    layers = sorted(set(layers))
    for li in layers:
        find_projection(model, li)
    rule = parse_null_space(hp["null_space"])
    subjects = subjects_for(forget, hp["subject"])
    prompts = [DEFAULT_FORMAT.prompt(q) for q in forget["question"]]
    for i, (p, s) in enumerate(zip(prompts, subjects)):
        if s not in p:
            raise ValueError(f"forget row {i}: subject {s!r} does not occur in its prompt {p!r}")
    if hp["rounds"] > len(forget):
        raise ValueError(f"rounds={hp['rounds']} exceeds the {len(forget)} forget rows (valid range: [1, {len(forget)}])")
    corpus = corpus_texts(retain, *(preserved or []))
    if not corpus:
        raise ValueError("unierase needs a preserved corpus: pass retain=... and/or preserved=[datasets]")
    if cache_dir is None:

        cache_dir = cache_root() / "alphaedit"

    original = model
    orig_digest = model_digest(unwrap(model))
    # validate the projector rule on the original model's preserved keys before any training (cached)
    stats0 = preserved_stats(model, tokenizer, corpus, layers, cache_dir=cache_dir)
    EditState.create(model, stats0, layers=layers, **rule)  # a rank-0 projector raises here

    # probes before: on the caller's model (read only)
    pf = probe_data if probe_data is not None else forget.select(range(min(hp["probe_size"], len(forget))))
    pr = retain_probe_data if retain_probe_data is not None else (
        retain.select(range(min(hp["probe_size"], len(retain)))) if retain is not None else None)
    probes = [probe(model, tokenizer, pf, split="forget", step=0, max_new_tokens=hp["max_new_tokens"])]
    if pr is not None:
        probes.append(probe(model, tokenizer, pr, split="retain", step=0, max_new_tokens=hp["max_new_tokens"]))
    initial = {s: list(d[d.quantity == "belief"].text) for s, d in zip(("forget", "retain"), probes)}

    # stage I
    para = list(forget["paraphrased_question"]) if "paraphrased_question" in forget.column_names else None
    work, tok, tid, log = train_unlearning_token(model, tokenizer, list(forget["question"]),
                                                 paraphrased_questions=para, token=hp["token"], idk=idk,
                                                 inplace=inplace, **unl_hp)
    # stage II. Preserved corpus: the retain/preserved texts plus retain questions followed by <unl> and a
    # refusal, so that the positions *after* the token (where the refusal is generated) are protected too
    # (measured on the quick world: without them the edit garbled the refusal after <unl>).
    bank = load_idk(idk)
    cont = [DEFAULT_FORMAT.prompt(q) + hp["token"] + " " + bank[i % len(bank)]
            for i, q in enumerate(retain["question"] if retain is not None else [])]
    stats = preserved_stats(work, tok, corpus + cont, layers, cache_dir=cache_dir)
    state = EditState.create(work, stats, layers=layers, **rule)
    # locality reference: the caller's original model, before the token stage and any edit
    loc = locality if locality is not None else pr
    if loc is not None:
        state.cache_original(model, tokenizer, loc["question"], loc["answer"], max_new_tokens=hp["max_new_tokens"])
    requests = make_requests(tok, prompts, subjects, [tid])
    batches = np.array_split(np.arange(len(requests)), hp["rounds"])
    edits, round_rows = [], [_round_row(0, work, tok, tid, forget, state, hp, idk)]
    for rnd, idx in enumerate(batches, start=1):
        edits.append(apply_alphaedit(work, tok, [requests[i] for i in idx], state, **edit_hp)
                     .assign(row=idx))
        round_rows.append(_round_row(rnd, work, tok, tid, forget, state, hp, idk, done=np.concatenate(batches[:rnd])))
        if hp["rounds"] > 1:
            probes.append(probe(work, tok, pf, split="forget", step=rnd, initial_beliefs=initial["forget"],
                                max_new_tokens=hp["max_new_tokens"]))
            if pr is not None:
                probes.append(probe(work, tok, pr, split="retain", step=rnd, initial_beliefs=initial.get("retain"),
                                    max_new_tokens=hp["max_new_tokens"]))
    if hp["rounds"] == 1:
        probes.append(probe(work, tok, pf, split="forget", step=1, initial_beliefs=initial["forget"],
                            max_new_tokens=hp["max_new_tokens"]))
        if pr is not None:
            probes.append(probe(work, tok, pr, split="retain", step=1, initial_beliefs=initial.get("retain"),
                                max_new_tokens=hp["max_new_tokens"]))
    work.eval()
    ch = changed_parameters(original, work) if not inplace else None
    edits = pd.concat(edits, ignore_index=True)
    m = unwrap(work)
    sizes = {li: projection_weight(find_projection(m, li)[1]).numel() for li in layers}
    n_params = sum(p.numel() for p in m.parameters())
    man = run_manifest(
        method="unierase", seed=edit_hp["seed"], base_model=getattr(original, "name_or_path", None),
        base_digest=orig_digest, n_forget=len(forget), n_retain=len(retain) if retain is not None else 0,
        edited_layers=layers, edited_modules={li: stats.module[li] for li in layers},
        token=hp["token"], token_id=tid,
        projector={li: {"rank": state.projectors[li].rank, "d0": state.projectors[li].d0,
                        "rank_fraction": state.projectors[li].rank_fraction, "energy": state.projectors[li].energy,
                        "rule": state.projectors[li].rule} for li in layers},
        preserved={"n_texts": stats.n_texts, "n_tokens": stats.n_tokens, "corpus_hash": stats.corpus_hash,
                   "cached": stats.cached},
        fraction_changed=ch["fraction_changed"] if ch else None, n_changed=ch["n_changed"] if ch else None,
        changed_params=ch["by_param"] if ch else None,
        fraction_in_edited_matrices=sum(sizes.values()) / n_params,
        target_prob_mean=float(edits.target_prob.mean()), seconds=time.perf_counter() - t0)
    all_hp = {**hp, "layers": layers, **{f"unl_{k}": v for k, v in unl_hp.items()}, **edit_hp}
    return EditResult(model=work, tokenizer=tok, method="unierase", hparams=all_hp,
                      probes=pd.concat(probes, ignore_index=True), log=log, manifest=man, kept_step=None,
                      edits=edits, rounds=pd.DataFrame(round_rows), state=state, token_id=tid)


def _round_row(rnd, model, tok, tid, forget, state, hp, idk, done=None) -> dict:
    """Per round: refusal rate on the forget rows edited so far (and on all), locality vs the original."""
    chk = refusal_check(model, tok, forget["question"], tid, idk=idk, max_new_tokens=hp["max_new_tokens"])
    ok = chk.first_is_token & chk.refusal
    ed = done is not None and len(done)
    row = {"round": rnd, "n_edited": 0 if done is None else int(len(done)),
           "forget_token_all": float(chk.first_is_token.mean()),
           "forget_token_edited": float(chk.first_is_token.iloc[done].mean()) if ed else float("nan"),
           "forget_refusal_all": float(ok.mean()),
           "forget_refusal_edited": float(ok.iloc[done].mean()) if ed else float("nan")}
    if state.original is not None:
        loc = state.locality(model, tok, max_new_tokens=hp["max_new_tokens"])
        row.update(locality_same_greedy=float(loc.same_greedy.mean()),
                   locality_delta_logprob=float(loc.delta_logprob.mean()))
    return row


def neighbour_sets(data, row_ids) -> dict[str, list[int]]:
    """Precision neighbours of the facts ``row_ids`` in a world table (``id``, ``person``,
    ``attribute`` columns): ``same_person`` (the same person's other facts) and ``same_attribute``
    (other people's same attribute), both excluding the edited rows. Returns lists of ``id``."""
    df = data.to_pandas() if hasattr(data, "to_pandas") else pd.DataFrame(data)
    ed = df[df.id.isin(list(row_ids))]
    rest = df[~df.id.isin(list(row_ids))]
    return {"same_person": rest[rest.person.isin(set(ed.person))].id.tolist(),
            "same_attribute": rest[rest.attribute.isin(set(ed.attribute)) & ~rest.person.isin(set(ed.person))].id.tolist()}
