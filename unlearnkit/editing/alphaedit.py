"""AlphaEdit: MEMIT-style closed-form edits of MLP output projections, constrained to the null space
of preserved keys (spec ``methods.md`` A17c; the editing core of UniErase, A17).

What is edited: the MLP output projection ``W`` (``d1 x d0``) of a few decoder layers
(``mlp.down_proj`` in Llama/Mistral/Qwen, ``mlp.c_proj`` in GPT-2; found by name). A **key** is the
``d0``-dim input of ``W`` at one token; a **value** is the layer's ``d1``-dim residual output.

1. :func:`key_second_moment` runs the model over a corpus and accumulates the **uncentered** second
   moment ``C = (1/N) sum_k k k^T`` of the keys over every non-padding token (fp64 accumulation).
2. :func:`projector` eigendecomposes ``C`` and builds ``P = U_hat U_hat^T`` onto the directions whose
   eigenvalue is below a threshold given as an absolute value, an energy fraction or a rank
   fraction; ``rank(P)`` is always reported, and a threshold that leaves rank 0 raises.
   :func:`preserved_projectors` does both for several layers and caches the eigendecomposition on
   disk, keyed by the model's digest, the corpus hash and the module names.
3. :func:`alphaedit_delta` is the closed form: ``X = solve(P (K1 K1^T + C_prev) + l2 I, P K1 R^T)``,
   ``Delta W = X^T``. Since ``(P A + l2 I)^{-1} P = P (A P + l2 I)^{-1}``, ``Delta W k = 0`` exactly
   for every key ``k`` with ``P k = 0`` (the preserved span): the null-space property.
4. :func:`apply_alphaedit` edits a model in place for a list of :class:`EditRequest`
   (prompt, subject, target): target values ``v*`` are optimized at the last edited layer (NLL of
   the target + KL on "{subject} is a" + a norm penalty, with the clamp; seeded context prefixes),
   then the layers are updated in order with the residual spread over the remaining layers.
   Sequential editing carries an explicit :class:`EditState` (earlier edits' ``K K^T`` per layer,
   the projectors, and the *original* model's outputs on a locality set, cached before the first
   round) instead of a module-level cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import DEFAULT_FORMAT
from ..io import model_digest
from ..models.layers import check_layer, decoder_layers, unwrap
from ..registry import Param, resolve_params
from ..scoring import generate, generate_from_ids, score_pairs

#: module names (inside a decoder layer) of the MLP output projection, tried in order
PROJECTION_NAMES = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "mlp.fc_out")

#: hyperparameters of :func:`apply_alphaedit` (A17c defaults, lr scaled to small models)
EDIT_PARAMS = {
    "v_steps": Param(25, "Adam steps of the target-value optimization (per request)", low=1),
    "v_lr": Param(0.5, "learning rate of the target-value delta (0.1 Llama3-8B, 0.5 GPT-2-XL)", low=0.0,
                  low_open=True),
    "v_weight_decay": Param(0.5, "weight of ||delta|| / ||h||^2 in the target-value loss", low=0.0),
    "kl_factor": Param(0.0625, "weight of the KL term on '{subject} is a' in the target-value loss", low=0.0),
    "clamp_norm_factor": Param(0.75, "clamp ||delta|| <= factor * ||h|| after each step", low=0.0, low_open=True),
    "stop_loss": Param(0.05, "stop the target optimization once the target NLL (nats per token) is below this",
                       low=0.0),
    "l2": Param(10.0, "ridge term of the closed-form solve (AlphaEdit's L2)", low=0.0),
    "n_prefixes": Param(2, "context prefixes sampled from the model (plus the bare prompt)", low=0),
    "prefix_tokens": Param(5, "length of each sampled context prefix (tokens)", low=1),
    "seed": Param(0, "seed of the prefix sampling (an edit with the same seed is repeatable)"),
    "fact_token": Param("subject_last", "where keys are read and v* is placed: 'subject_last' (MEMIT's and "
                        "UniErase's, the last token of the subject) or 'last' (the prompt's last token, MEMIT's "
                        "other option)", choices=("subject_last", "last")),
}


# -- finding the projection ---------------------------------------------------------------------

def find_projection(model, layer: int, module: str | None = None) -> tuple[str, torch.nn.Module]:
    """The MLP output projection of decoder layer ``layer``: ``(name inside the layer, module)``.

    ``module``: a name inside the layer (e.g. ``"mlp.down_proj"``); default: the first of
    :data:`PROJECTION_NAMES` present. Raises ``ValueError`` for a layer out of range, and
    ``TypeError`` listing the layer's modules when no projection is found.
    """
    layer = check_layer(model, layer)
    block = decoder_layers(model)[layer]
    names = dict(block.named_modules())
    for cand in ([module] if module else PROJECTION_NAMES):
        if cand in names and hasattr(names[cand], "weight"):
            return cand, names[cand]
    found = ", ".join(n for n in names if n) or "(none)"
    want = repr(module) if module else " or ".join(PROJECTION_NAMES)
    raise TypeError(f"decoder layer {layer} of {type(unwrap(model)).__name__} has no MLP output projection "
                    f"{want}; its modules are: {found}. Pass module='<name>' to choose one.")


def _is_conv1d(mod) -> bool:
    """GPT-2's ``Conv1D`` stores its weight as (in, out); ``nn.Linear`` as (out, in)."""
    return type(mod).__name__ == "Conv1D"


def projection_weight(mod) -> torch.Tensor:
    """The projection's weight as ``(d1 out, d0 in)`` (a view for Linear, a transposed view for Conv1D)."""
    return mod.weight.T if _is_conv1d(mod) else mod.weight


def _dims(mod) -> tuple[int, int]:
    w = projection_weight(mod)
    return int(w.shape[0]), int(w.shape[1])


# -- subjects -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EditRequest:
    """One edit: ``prompt`` (the full text before the target, e.g. a formatted question), the
    ``subject`` (a substring of ``prompt``; its last token is where keys and values are read) and
    the ``target`` token ids (``target_ids``; ``target`` is its text, for tables)."""

    prompt: str
    subject: str
    target_ids: tuple[int, ...]
    target: str = ""

    def __post_init__(self):
        if not self.target_ids:
            raise ValueError(f"EditRequest for {self.prompt!r}: target_ids is empty")


def make_requests(tokenizer, prompts, subjects, target, *, leading_space: bool = False) -> list[EditRequest]:
    """Requests mapping each prompt to the same ``target`` (a string, or a list of token ids).

    A string target is tokenized without special tokens (with a leading space if
    ``leading_space``, as MEMIT does for words; UniErase's unlearning token has none).
    """
    prompts, subjects = list(prompts), list(subjects)
    if len(prompts) != len(subjects):
        raise ValueError(f"make_requests: {len(prompts)} prompts but {len(subjects)} subjects")
    if isinstance(target, str):
        ids = tuple(tokenizer((" " if leading_space else "") + target, add_special_tokens=False)["input_ids"])
        text = target
    else:
        ids = tuple(int(t) for t in target)
        text = tokenizer.decode(list(ids))
    reqs = [EditRequest(p, s, ids, text) for p, s in zip(prompts, subjects)]
    check_requests(reqs)
    return reqs


def check_requests(requests) -> None:
    """Each subject must occur in its prompt (raises ``ValueError`` naming the request)."""
    if not requests:
        raise ValueError("requests: empty list (nothing to edit)")
    for i, r in enumerate(requests):
        if not r.subject or r.subject not in r.prompt:
            raise ValueError(f"request {i}: subject {r.subject!r} does not occur in its prompt {r.prompt!r}; "
                             "the edit reads the key at the subject's last token, so the subject must be a "
                             "substring of the prompt")


def subject_token_index(tokenizer, text: str, subject: str, start: int = 0) -> int:
    """Index of the last token of the first occurrence of ``subject`` in ``text`` at or after
    character ``start`` (``text`` tokenized with special tokens, as the model sees it)."""
    c = text.find(subject, start)
    if c < 0:
        raise ValueError(f"subject {subject!r} does not occur in {text!r}")
    end = c + len(subject)
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True) if getattr(
        tokenizer, "is_fast", False) else None
    if enc is not None:
        for i, (a, b) in enumerate(enc["offset_mapping"]):
            if a < end <= b or (b >= end and a < end):
                return i
        raise ValueError(f"could not locate the token ending subject {subject!r} in {text!r}")
    return len(tokenizer(text[:end], add_special_tokens=True)["input_ids"]) - 1


# -- preserved-key statistics and the projector -------------------------------------------------

def corpus_texts(*datasets, fmt=DEFAULT_FORMAT) -> list[str]:
    """Preserved-knowledge texts from QA datasets: ``prompt + " " + answer`` per row (the kit's format)."""
    out = []
    for d in datasets:
        if d is None:
            continue
        out += [fmt.prompt(q) + fmt.answer_prefix + a for q, a in zip(d["question"], d["answer"])]
    return out


def _capture_keys(model, layers: list[int], module: str | None):
    """Register forward pre-hooks that store each projection's input; returns (box, handles, names)."""
    box, handles, names = {}, [], {}
    for li in layers:
        name, mod = find_projection(model, li, module)
        names[li] = name

        def pre(m, args, li=li):
            box[li] = args[0]

        handles.append(mod.register_forward_pre_hook(pre))
    return box, handles, names


@torch.no_grad()
def key_second_moment(model, tokenizer, texts, layers, *, module: str | None = None, batch_size: int = 32,
                      max_length: int = 256) -> tuple[dict[int, torch.Tensor], int]:
    """Uncentered second moment of the keys of each layer in ``layers`` over ``texts``.

    Returns ``({layer: C (d0, d0) float64}, N)`` with ``C = (1/N) sum k k^T`` over the ``N``
    non-padding tokens of all texts (right-padded batches, special tokens included).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("key_second_moment: the corpus is empty")
    layers = [check_layer(model, li) for li in layers]
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    box, handles, _ = _capture_keys(model, layers, module)
    sums: dict[int, torch.Tensor] = {}
    n = 0
    try:
        for s in range(0, len(texts), batch_size):
            enc = tokenizer(texts[s:s + batch_size], add_special_tokens=True, padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            mask = enc["attention_mask"].to(dev).bool()
            model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev))
            for li in layers:
                k = box[li][mask].double()
                sums[li] = sums.get(li, 0) + k.T @ k
            n += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {li: (sums[li] / n).cpu() for li in layers}, n


@dataclass
class Projector:
    """``P`` (``(d0, d0)`` float32) onto the low-energy directions of the preserved keys, with
    ``rank`` (= number of kept directions), ``d0``, the eigenvalue ``cutoff`` (largest kept eigenvalue)
    and ``energy`` (share of ``trace C`` in the kept directions)."""

    P: torch.Tensor
    rank: int
    d0: int
    cutoff: float
    energy: float
    rule: str

    @property
    def rank_fraction(self) -> float:
        return self.rank / self.d0


def projector(C=None, *, threshold: float | None = None, energy: float | None = None,
              rank_fraction: float | None = None, eig=None) -> Projector:
    """Null-space projector of a key second moment ``C`` (``(d0, d0)``), or of its
    eigendecomposition ``eig = (eigenvalues ascending (d0,), eigenvectors (d0, d0))``.

    Give exactly one rule: ``threshold`` keeps directions with eigenvalue < threshold (AlphaEdit's
    ``nullspace_threshold``, 2e-2 in the reference configs; it depends on the scale of the keys),
    ``energy`` in (0, 1] keeps the smallest directions whose eigenvalues sum to at most that share
    of ``trace C``, ``rank_fraction`` in (0, 1] keeps ``round(rank_fraction * d0)`` smallest
    directions (``1.0`` gives ``P = I``). A rule that keeps no direction raises ``ValueError``
    (rank 0 would make every edit a silent no-op).
    """
    rules = {k: v for k, v in (("threshold", threshold), ("energy", energy), ("rank_fraction", rank_fraction))
             if v is not None}
    if len(rules) != 1:
        raise ValueError(f"projector: give exactly one of threshold, energy, rank_fraction (got {sorted(rules) or 'none'})")
    (rule, value), = rules.items()
    if rule == "threshold" and not value > 0:
        raise ValueError(f"threshold={value} must be > 0 (an eigenvalue bound)")
    if rule in ("energy", "rank_fraction") and not 0 < value <= 1:
        raise ValueError(f"{rule}={value} must lie in (0, 1]")
    if eig is None:
        if C is None:
            raise ValueError("projector: pass C or eig")
        evals, evecs = torch.linalg.eigh(torch.as_tensor(C, dtype=torch.float64))
    else:
        evals, evecs = (torch.as_tensor(x, dtype=torch.float64) for x in eig)
    evals = evals.clamp_min(0)
    d0 = int(evals.numel())
    total = float(evals.sum()) or 1.0
    if rule == "threshold":
        k = int((evals < value).sum())
    elif rule == "energy":
        k = int((torch.cumsum(evals, 0) <= value * total + 1e-12 * total).sum())
    else:
        k = int(round(value * d0))
    if k == 0:
        raise ValueError(f"{rule}={value} leaves the projector P with rank 0 (no null-space direction): every "
                         f"edit would be a no-op. Eigenvalues of C range over [{float(evals[0]):.3g}, "
                         f"{float(evals[-1]):.3g}] (d0={d0}); choose a larger {rule}")
    U = evecs[:, :k]
    P = (U @ U.T).float()
    return Projector(P=P, rank=k, d0=d0, cutoff=float(evals[k - 1]), energy=float(evals[:k].sum()) / total,
                     rule=f"{rule}={value}")


def _corpus_hash(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _save_tensors(path: Path, tensors: dict, meta: dict):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"meta": json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_tensors(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        return {k: f.get_tensor(k) for k in f.keys()}, meta


@dataclass
class PreservedStats:
    """Eigendecompositions of the preserved-key second moments, per layer, and where they came from.

    ``eig[layer] = (eigenvalues ascending (d0,), eigenvectors (d0, d0))`` float64; ``n_tokens``: N;
    ``n_texts``, ``corpus_hash``, ``model_digest``, ``module`` (name per layer), ``cached``: whether
    they were read from disk.
    """

    eig: dict
    n_tokens: int
    n_texts: int
    corpus_hash: str
    model_digest: str
    module: dict
    cached: bool = False

    def projectors(self, **rule) -> dict[int, Projector]:
        """One :class:`Projector` per layer with the same rule (``threshold=``/``energy=``/``rank_fraction=``)."""
        return {li: projector(eig=e, **rule) for li, e in self.eig.items()}


def preserved_stats(model, tokenizer, texts, layers, *, module: str | None = None, cache_dir=None,
                    batch_size: int = 32) -> PreservedStats:
    """Key statistics of ``layers`` over ``texts`` (see :func:`key_second_moment`), eigendecomposed.

    With ``cache_dir`` the result is stored in ``cache_dir/alphaedit-<key>.safetensors`` (atomic
    write) with key = hash(model digest, corpus hash, layers, module names), and read back next time
    (``cached=True``): the statistics depend only on the base model and the corpus.
    """
    texts = list(texts)
    layers = sorted({check_layer(model, li) for li in layers})
    names = {li: find_projection(model, li, module)[0] for li in layers}
    digest, chash = model_digest(unwrap(model)), _corpus_hash(texts)
    key = hashlib.sha256(json.dumps({"m": digest, "c": chash, "l": layers, "n": names},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"alphaedit-{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.exists():
        t, meta = _load_tensors(path)
        eig = {li: (t[f"evals.{li}"], t[f"evecs.{li}"]) for li in layers}
        return PreservedStats(eig, meta["n_tokens"], meta["n_texts"], chash, digest, names, cached=True)
    C, n = key_second_moment(model, tokenizer, texts, layers, module=module, batch_size=batch_size)
    eig = {li: tuple(torch.linalg.eigh(C[li])) for li in layers}
    if path is not None:
        tensors = {}
        for li, (ev, U) in eig.items():
            tensors[f"evals.{li}"], tensors[f"evecs.{li}"] = ev, U
        _save_tensors(path, tensors, {"n_tokens": n, "n_texts": len(texts), "corpus_hash": chash,
                                      "model_digest": digest, "layers": layers, "module": names})
    return PreservedStats(eig, n, len(texts), chash, digest, names)


# -- the closed form ----------------------------------------------------------------------------

def alphaedit_delta(K1: torch.Tensor, R: torch.Tensor, P: torch.Tensor | None = None,
                    C_prev: torch.Tensor | None = None, l2: float = 10.0) -> torch.Tensor:
    """AlphaEdit's weight update ``Delta W`` (``(d1, d0)``) for new keys ``K1`` (``(d0, n)``) and
    residuals ``R`` (``(d1, n)``): ``X = solve(P (K1 K1^T + C_prev) + l2 I, P K1 R^T)``, ``Delta W = X^T``.

    ``P``: null-space projector (``(d0, d0)``; None = identity, which gives MEMIT's ridge solution
    ``R K1^T (K1 K1^T + C_prev + l2 I)^{-1}``). ``C_prev``: ``sum K K^T`` of earlier edits (sequential
    editing). Computed in float64, returned in ``K1``'s dtype.
    """
    K1d, Rd = K1.double(), R.double()
    d0 = K1d.shape[0]
    if Rd.shape[1] != K1d.shape[1]:
        raise ValueError(f"alphaedit_delta: {K1d.shape[1]} keys but {Rd.shape[1]} residual columns")
    Pd = torch.eye(d0, dtype=torch.float64) if P is None else P.double().to(K1d.device)
    A = K1d @ K1d.T
    if C_prev is not None:
        A = A + C_prev.double().to(K1d.device)
    X = torch.linalg.solve(Pd @ A + l2 * torch.eye(d0, dtype=torch.float64, device=K1d.device), Pd @ K1d @ Rd.T)
    return X.T.to(K1.dtype)


# -- sequential state ---------------------------------------------------------------------------

@dataclass
class EditState:
    """What sequential AlphaEdit carries between rounds (an explicit object, never a module global).

    ``layers``: edited decoder layers (ascending). ``projectors``: ``{layer: Projector}``.
    ``C_prev``: ``{layer: sum K K^T (d0, d0) float64}`` over the keys of every earlier edit.
    ``module``: projection name inside a layer (None: found by name). ``rounds``: one dict per
    applied round. ``original``: the unedited model's greedy answers and answer log-probs on a
    locality set (see :meth:`cache_original`), so locality is measured against the *original* model.
    """

    layers: list[int]
    projectors: dict
    module: str | None = None
    C_prev: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)
    original: dict | None = None

    @classmethod
    def create(cls, model, stats: PreservedStats | None = None, *, layers=None, module: str | None = None,
               **rule) -> EditState:
        """A fresh state for ``model``: projectors from ``stats`` with ``rule``
        (``threshold=``/``energy=``/``rank_fraction=``), or identity projectors (plain MEMIT-style
        ridge updates) when ``stats`` is None."""
        if stats is not None:
            layers = sorted(stats.eig) if layers is None else sorted(check_layer(model, li) for li in layers)
            missing = [li for li in layers if li not in stats.eig]
            if missing:
                raise ValueError(f"layers {missing} have no preserved statistics (stats cover {sorted(stats.eig)})")
            projs = {li: projector(eig=stats.eig[li], **rule) for li in layers}
        else:
            if layers is None:
                raise ValueError("EditState.create: pass stats or layers")
            layers = sorted({check_layer(model, li) for li in layers})
            projs = {}
            for li in layers:
                d1, d0 = _dims(find_projection(model, li, module)[1])
                projs[li] = Projector(torch.eye(d0), d0, d0, float("inf"), 1.0, "identity")
        for li in layers:
            find_projection(model, li, module)
        return cls(layers=layers, projectors=projs, module=module)

    def cache_original(self, model, tokenizer, questions, answers, *, max_new_tokens: int = 32):
        """Record the original model's greedy answers and answer log-probs on a locality set.
        Call before the first round; a second call keeps the first record (the original model)."""

        if self.original is not None:
            return self.original
        if self.rounds:
            raise RuntimeError("cache_original after an edit round would record an already-edited model; "
                               "call it before the first apply_alphaedit")
        qs, ans = list(questions), list(answers)
        self.original = {"question": qs, "answer": ans,
                         "greedy": generate(model, tokenizer, qs, max_new_tokens=max_new_tokens),
                         "logprob": score_pairs(model, tokenizer, qs, ans)["logprob"]}
        return self.original

    def locality(self, model, tokenizer, *, max_new_tokens: int = 32) -> pd.DataFrame:
        """Per locality question: original vs current greedy answer (``same_greedy``) and the change in
        answer log-prob (nats), measured against the cached *original* model."""

        if self.original is None:
            raise RuntimeError("no original outputs cached: call state.cache_original(...) before editing")
        o = self.original
        now = generate(model, tokenizer, o["question"], max_new_tokens=max_new_tokens)
        lp = score_pairs(model, tokenizer, o["question"], o["answer"])["logprob"]
        return pd.DataFrame({"round": len(self.rounds), "question": o["question"], "original": o["greedy"],
                             "current": now, "same_greedy": [a == b for a, b in zip(o["greedy"], now)],
                             "delta_logprob": lp - o["logprob"]})


# -- computing keys and values ------------------------------------------------------------------

def _context_prefixes(model, tokenizer, n: int, length: int, seed: int) -> list[str]:
    """MEMIT's context templates: ``n`` short texts sampled from the model (seeded), each followed by
    a space; the bare prompt ("") comes first."""
    if n == 0:
        return [""]

    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else [tokenizer.eos_token_id]
    outs = generate_from_ids(model, tokenizer, [bos] * n, max_new_tokens=length, do_sample=True, seed=seed)
    return [""] + [(o.replace("\n", " ").strip() + " ") if o.strip() else "" for o in outs]


def _lookup(tokenizer, text, subject, start, fact_token):
    if fact_token == "last":
        return len(tokenizer(text, add_special_tokens=True)["input_ids"]) - 1
    return subject_token_index(tokenizer, text, subject, start=start)


def _encode_contexts(tokenizer, requests, prefixes, fact_token="subject_last"):
    """Right-padded rows ``prefix + prompt + target[:-1]`` for every (request, prefix); per row the
    subject's last-token index, the target positions and ids."""
    rows, look, tpos, tids, owner = [], [], [], [], []
    for ri, r in enumerate(requests):
        for pre in prefixes:
            text = pre + r.prompt
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            li = _lookup(tokenizer, text, r.subject, len(pre), fact_token)
            tgt = list(r.target_ids)
            rows.append(ids + tgt[:-1])
            look.append(li)
            tpos.append(list(range(len(ids) - 1, len(ids) - 1 + len(tgt))))
            tids.append(tgt)
            owner.append(ri)
    return _pad(tokenizer, rows), look, tpos, tids, owner


def _pad(tokenizer, rows):
    L = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": att}


@torch.no_grad()
def _keys_and_values(model, enc, look, layer: int, value_layer: int, module):
    """Keys (inputs of ``layer``'s projection) and values (residual output of ``value_layer``) at the
    lookup positions: ``(n, d0)``, ``(n, d1)``."""
    dev = next(model.parameters()).device
    box, handles, _ = _capture_keys(model, [layer], module)
    out = {}

    def hook(m, args, o):
        out["h"] = o[0] if isinstance(o, (tuple, list)) else o

    handles.append(decoder_layers(model)[value_layer].register_forward_hook(hook))
    try:
        model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev))
    finally:
        for h in handles:
            h.remove()
    idx = torch.arange(len(look), device=dev)
    lk = torch.tensor(look, device=dev)
    return box[layer][idx, lk].float(), out["h"][idx, lk].float()


def _optimize_value(model, tokenizer, r: EditRequest, prefixes, value_layer: int, hp: dict):
    """MEMIT's target value ``v*`` for one request at ``value_layer``: returns (v* (d1,), info dict)."""
    dev = next(model.parameters()).device
    enc, look, tpos, tids, _ = _encode_contexts(tokenizer, [r], prefixes, hp["fact_token"])
    kl_text = f"{r.subject} is a"
    kl_ids = tokenizer(kl_text, add_special_tokens=True)["input_ids"]
    kl_look = _lookup(tokenizer, kl_text, r.subject, 0, hp["fact_token"])
    n_ctx = enc["input_ids"].shape[0]
    L = max(enc["input_ids"].shape[1], len(kl_ids))
    allenc = _pad(tokenizer, [row[:int(m.sum())].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"])]
                  + [kl_ids])
    allenc = {k: v[:, :L].to(dev) for k, v in allenc.items()}
    looks = torch.tensor(look + [kl_look], device=dev)
    rows = torch.arange(len(looks), device=dev)

    params = [p for p in model.parameters()]
    req = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    was = model.training
    model.eval()
    block = decoder_layers(model)[value_layer]
    state = {"delta": None, "h0": None}
    d1 = None

    def hook(m, args, o):
        h = o[0] if isinstance(o, (tuple, list)) else o
        if state["h0"] is None:
            state["h0"] = h[0, looks[0]].detach().clone()
        if state["delta"] is not None:
            h = h.clone()
            h[rows, looks] = h[rows, looks] + state["delta"]
        return (h,) + tuple(o[1:]) if isinstance(o, (tuple, list)) else h

    handle = block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(**allenc).logits
            init_kl = torch.log_softmax(logits[-1, kl_look].float(), -1)
        h0 = state["h0"]
        d1 = h0.numel()
        delta = torch.zeros(d1, device=dev, requires_grad=True)
        state["delta"] = delta
        opt = torch.optim.Adam([delta], lr=hp["v_lr"])
        max_norm = hp["clamp_norm_factor"] * h0.norm()
        tp = [torch.tensor(t, device=dev) for t in tpos]
        ti = [torch.tensor(t, device=dev) for t in tids]
        nll_v = float("nan")
        steps = 0
        for steps in range(1, hp["v_steps"] + 1):  # noqa: B007  (steps taken, reported after the loop)
            opt.zero_grad()
            logits = model(**allenc).logits.float()
            logp = torch.log_softmax(logits, -1)
            nll = torch.stack([-logp[i, tp[i], ti[i]].mean() for i in range(n_ctx)]).mean()
            kl = torch.nn.functional.kl_div(torch.log_softmax(logits[-1, kl_look], -1), init_kl, log_target=True,
                                            reduction="sum")
            wd = hp["v_weight_decay"] * delta.norm() / h0.norm() ** 2
            loss = nll + hp["kl_factor"] * kl + wd
            nll_v = float(nll.detach())
            if nll_v < hp["stop_loss"]:
                break
            loss.backward()
            opt.step()
            with torch.no_grad():
                nrm = delta.norm()
                if nrm > max_norm:
                    delta.mul_(max_norm / nrm)
        with torch.no_grad():
            logits = model(**allenc).logits.float()
            logp = torch.log_softmax(logits, -1)
            final_nll = float(torch.stack([-logp[i, tp[i], ti[i]].mean() for i in range(n_ctx)]).mean())
        v = (h0 + delta).detach()
        info = {"target_prob_v": float(np.exp(-final_nll)), "v_steps_run": steps,
                "delta_norm": float(delta.detach().norm()), "h_norm": float(h0.norm())}
    finally:
        handle.remove()
        for p, q in zip(params, req):
            p.requires_grad_(q)
        model.train(was)
    return v, info


def apply_alphaedit(model, tokenizer, requests, state: EditState, **params) -> pd.DataFrame:
    """Apply one round of AlphaEdit to ``model`` **in place** (the projections of ``state.layers``).

    ``requests``: :class:`EditRequest` list (see :func:`make_requests`). ``params``: see
    :data:`EDIT_PARAMS` (validated before any work). For each request, ``v*`` is optimized at the
    last edited layer; then, layer by layer in ascending order, keys ``K1`` (averaged over the
    context prefixes) and the current values at the last layer give ``R = (v* - value) / (layers
    left)``, and ``Delta W = alphaedit_delta(K1, R, P, C_prev, l2)`` is added. Keys are recomputed on
    the updated model before each layer; after the round, this round's ``K K^T`` join ``state.C_prev``.
    Returns one row per request: ``round``, ``prompt``, ``subject``, ``target``, ``target_prob_v``
    (target probability with ``v*`` patched in: the optimization's reach), ``target_prob``
    (probability of the target's first token after the edit, bare prompt), ``delta_norm``, ``h_norm``.
    """
    hp = resolve_params("alphaedit", EDIT_PARAMS, params)
    requests = list(requests)
    check_requests(requests)
    layers = state.layers
    last = layers[-1]
    was = model.training
    model.eval()
    prefixes = _context_prefixes(model, tokenizer, hp["n_prefixes"], hp["prefix_tokens"], hp["seed"])
    rows, vs = [], []
    for r in requests:
        v, info = _optimize_value(model, tokenizer, r, prefixes, last, hp)
        vs.append(v)
        rows.append(info)
    V = torch.stack(vs)  # (n, d1)
    enc_all, look_all, _, _, owner = _encode_contexts(tokenizer, requests, prefixes, hp["fact_token"])
    enc_bare, look_bare, _, _, _ = _encode_contexts(tokenizer, requests, [""], hp["fact_token"])
    own = torch.tensor(owner)
    n = len(requests)
    dev = next(model.parameters()).device
    norms = {}
    for i, li in enumerate(layers):
        keys, _ = _keys_and_values(model, enc_all, look_all, li, last, state.module)
        K1 = torch.zeros(n, keys.shape[1], device=keys.device).index_add_(0, own.to(keys.device), keys)
        K1 = (K1 / torch.bincount(own, minlength=n).to(keys.device).unsqueeze(1)).T  # (d0, n)
        _, cur = _keys_and_values(model, enc_bare, look_bare, li, last, state.module)
        R = (V.to(cur.device) - cur).T / (len(layers) - i)  # (d1, n)
        P = state.projectors[li].P.to(dev)
        dW = alphaedit_delta(K1, R, P, state.C_prev.get(li), hp["l2"])
        _, mod = find_projection(model, li, state.module)
        with torch.no_grad():
            W = projection_weight(mod)
            W.add_(dW.to(W.dtype))
        norms[li] = float(dW.norm())
    for li in layers:  # this round's keys join the sequential memory (on the edited model, as the reference)
        keys, _ = _keys_and_values(model, enc_all, look_all, li, last, state.module)
        K1 = torch.zeros(n, keys.shape[1], device=keys.device).index_add_(0, own.to(keys.device), keys)
        K1 = (K1 / torch.bincount(own, minlength=n).to(keys.device).unsqueeze(1)).double().cpu()
        state.C_prev[li] = state.C_prev.get(li, torch.zeros(K1.shape[1], K1.shape[1], dtype=torch.float64)) + K1.T @ K1
    # first target token's probability after the edit, bare prompts
    with torch.no_grad():
        ids = [tokenizer(r.prompt, add_special_tokens=True)["input_ids"] for r in requests]
        enc = _pad(tokenizer, ids)
        logits = model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev)).logits
        last_pos = torch.tensor([len(x) - 1 for x in ids], device=dev)
        p = torch.softmax(logits[torch.arange(n, device=dev), last_pos].float(), -1)
        tp = [float(p[j, r.target_ids[0]]) for j, r in enumerate(requests)]
    model.train(was)
    rnd = len(state.rounds) + 1
    state.rounds.append({"round": rnd, "n_requests": n, "update_norm": norms, "hparams": hp})
    return pd.DataFrame([{"round": rnd, "prompt": r.prompt, "subject": r.subject, "target": r.target,
                          "target_prob": tp[j], **rows[j]} for j, r in enumerate(requests)])
