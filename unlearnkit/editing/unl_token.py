"""UniErase stage I: learn an **unlearning token** (spec ``methods.md`` A17, stage I).

A new special token ``<unl>`` is added to (a copy of) the tokenizer and the embedding matrix is
resized (no mean-resizing: the new row is drawn from a seeded normal with the embedding's own
scale). Only the **input embedding row(s) of the new token** are trained: every other parameter is
frozen (``requires_grad=False``) and a gradient hook zeroes the other rows of the embedding, with
Adam and no weight decay, so every other weight stays bit-identical. If the LM head is *untied*, its
new row is a copy of the embedding row made once, then fixed (the reference's ``share=True``);
with tied weights (the tiny models) it is the same row.

Training text: ``prompt(question) + <unl> + " " + IDK phrase + <unl> + EOS``, with labels only
after the first ``<unl>`` (the phrase, the second ``<unl>`` and EOS). **Tied embeddings** (the tiny
models): the output row *is* the trained row, and a second ``<unl>`` label taught it to follow any
sentence (measured on the quick world: 7 of 8 retain answers then ran on past their final period
with ``<unl>`` and refusal fragments); there the second ``<unl>`` is left out, so the row is
only pushed *down* as an output (it is never a label) and the edit alone makes it the first token. The IDK phrase of a question
is ``bank[hash(question) % len(bank)]`` (a stable hash, so runs repeat).

Schedule, scaled to the miniature (the reference: 5 epochs at 1e-3 with batch 16, then 3 epochs at
1e-4 on plain + chat format, then optionally 2 epochs per noisy layer at 1e-4): ``epochs`` at
``lr`` on the questions, then ``epochs2`` at ``lr2`` on the questions plus their paraphrases (the
miniature has no chat template; the paraphrased questions stand in for the second format), then,
with ``noise_layers``, ``noise_epochs`` per layer at ``lr2`` with clamped Gaussian noise on that
layer's MLP output projection at every step (std and clamp ``k * noise_scale``, ``k`` = the mean
absolute weight; the reference uses the plain mean, which can be ~0 or negative), restored after
each step.
"""

from __future__ import annotations

import copy
import hashlib

import pandas as pd
import torch

from ..data import DEFAULT_FORMAT
from ..idk import load_idk
from ..models.layers import check_layer, unwrap
from ..registry import Param, resolve_params
from .alphaedit import find_projection, projection_weight

UNL_PARAMS = {
    "epochs": Param(150, "stage-1 epochs over the questions", low=1),
    "lr": Param(1e-2, "stage-1 learning rate (Adam)", low=0.0, low_open=True),
    "epochs2": Param(30, "stage-2 epochs over questions + paraphrased questions (0 skips)", low=0),
    "lr2": Param(1e-3, "stage-2 (and noise stage) learning rate", low=0.0, low_open=True),
    "batch_size": Param(16, "sequences per step", low=1),
    "noise_layers": Param((), "decoder layers whose MLP output projection gets noise in the robustness stage "
                          "(empty: no robustness stage)"),
    "noise_epochs": Param(2, "robustness-stage epochs per noisy layer", low=0),
    "noise_scale": Param(1.0, "noise std and clamp, in units of the mean absolute weight", low=0.0),
    "seed": Param(0, "seed of the new row's initialisation and the data order"),
}


def stable_hash(text: str) -> int:
    """A hash of ``text`` that does not change between Python processes (unlike ``hash``)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def add_unlearning_token(model, tokenizer, token: str = "<unl>", *, seed: int = 0):
    """Add ``token`` as a special token to ``tokenizer`` and resize ``model``'s embeddings, **in place**.

    Returns the new token id. The new input row is ``N(0, s^2)`` with ``s`` the std of the existing
    rows (seeded); an untied LM head gets a copy of it (once).
    """
    if token in tokenizer.get_vocab():
        raise ValueError(f"token {token!r} is already in the tokenizer's vocabulary; choose another name")
    tokenizer.add_special_tokens({"additional_special_tokens": [token]})
    tid = tokenizer.convert_tokens_to_ids(token)
    m = unwrap(model)
    old = m.get_input_embeddings().weight.shape[0]
    if tid >= old:
        m.resize_token_embeddings(tid + 1, mean_resizing=False)
    emb = m.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s = emb[:old].float().std()
        emb[tid] = (torch.randn(emb.shape[1], generator=g) * s).to(emb.dtype)
        out = m.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():
            out.weight[tid] = emb[tid].to(out.weight.dtype)
    return tid


def unl_texts(tokenizer, questions, tid: int, idk_bank, fmt=DEFAULT_FORMAT, second_label: bool = True):
    """Right-padded ``(input_ids, attention_mask, labels)`` for ``prompt + <unl> IDK <unl> EOS`` rows.

    ``second_label=False``: the second ``<unl>`` is dropped (the phrase is followed by EOS), for tied
    embeddings (see :func:`train_unlearning_token`)."""
    rows, labs = [], []
    for q in questions:
        p = tokenizer(fmt.prompt(q, tokenizer), add_special_tokens=True)["input_ids"]
        phrase = idk_bank[stable_hash(q) % len(idk_bank)]
        a = tokenizer(" " + phrase, add_special_tokens=False)["input_ids"]
        tail = a + ([tid] if second_label else []) + (
            [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        rows.append(p + [tid] + tail)
        labs.append([-100] * (len(p) + 1) + tail)
    L = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    lab = torch.full((len(rows), L), -100, dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labs)):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
        lab[i, :len(lb)] = torch.tensor(lb)
    return ids, att, lab


def _down_proj_weight(model, layer):

    return projection_weight(find_projection(model, layer)[1])


def train_unlearning_token(model, tokenizer, questions, *, paraphrased_questions=None, token: str = "<unl>",
                           idk=None, inplace: bool = False, **params):
    """Stage I of UniErase: returns ``(model, tokenizer, token_id, log)``.

    ``questions``: the questions whose IDK behaviour the token learns (UniErase: the forget
    questions). ``paraphrased_questions``: extra questions for stage 2. ``idk``: refusal bank (None:
    the kit's). ``inplace=False`` (default) works on deep copies of ``model`` and ``tokenizer``.
    ``params``: see :data:`UNL_PARAMS`. ``log``: one row per step (``stage``, ``step``, ``loss``,
    mean NLL per label token in nats).
    """
    hp = resolve_params("unl_token", UNL_PARAMS, params)
    questions = list(questions)
    if not questions:
        raise ValueError("train_unlearning_token: no questions")

    noise_layers = [check_layer(model, li) for li in hp["noise_layers"]]
    for li in noise_layers:
        _down_proj_weight(model, li)
    if not inplace:
        model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
    bank = load_idk(idk)
    tid = add_unlearning_token(model, tokenizer, token, seed=hp["seed"])
    m = unwrap(model)
    dev = next(m.parameters()).device
    emb = m.get_input_embeddings().weight
    out_emb = m.get_output_embeddings()
    tied = out_emb is not None and out_emb.weight.data_ptr() == emb.data_ptr()
    req = {n: p.requires_grad for n, p in m.named_parameters()}
    for p in m.parameters():
        p.requires_grad_(False)
    emb.requires_grad_(True)
    keep = torch.zeros(emb.shape[0], 1, device=emb.device, dtype=emb.dtype)
    keep[tid] = 1
    handle = emb.register_hook(lambda g: g * keep)
    opt = torch.optim.Adam([emb], lr=hp["lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(hp["seed"])
    log = []
    was = m.training
    m.eval()  # no dropout: the token is trained against the model as it is used

    def run(stage, qs, epochs, lr, noise_layer=None):
        for grp in opt.param_groups:
            grp["lr"] = lr
        ids, att, lab = unl_texts(tokenizer, qs, tid, bank, second_label=not tied)
        n = ids.shape[0]
        W = _down_proj_weight(m, noise_layer) if noise_layer is not None else None
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, hp["batch_size"]):
                idx = perm[s:s + hp["batch_size"]]
                L = int(att[idx].sum(1).max())
                saved = None
                if W is not None:
                    with torch.no_grad():
                        saved = W.detach().clone()
                        k = float(W.abs().mean()) * hp["noise_scale"]
                        W.add_((torch.randn(W.shape, generator=gen) * k).clamp(-k, k).to(W.dtype).to(W.device))
                out = m(input_ids=ids[idx, :L].to(dev), attention_mask=att[idx, :L].to(dev), labels=lab[idx, :L].to(dev))
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                if saved is not None:
                    with torch.no_grad():
                        W.copy_(saved)
                log.append({"stage": stage, "step": len(log) + 1, "loss": float(out.loss.detach())})

    try:
        run("token", questions, hp["epochs"], hp["lr"])
        if hp["epochs2"]:
            run("token+paraphrase", questions + list(paraphrased_questions or []), hp["epochs2"], hp["lr2"])
        for li in noise_layers:
            run(f"noise@{li}", questions, hp["noise_epochs"], hp["lr2"], noise_layer=li)
    finally:
        handle.remove()
        for n_, p in m.named_parameters():
            p.requires_grad_(req.get(n_, True))
        m.train(was)
    return model, tokenizer, tid, pd.DataFrame(log)
