"""Evaluation throughput of the TOFU suite: batched + prefix-shared vs one answer per forward.

Both implementations run in the same process, on the same model and rows, one after the other:

* **batched**: ``evaluate(..., "tofu")`` with its defaults: length-sorted batches under a token
  budget, every shared prefix computed once (the chat header, each question's prompt, the tokens
  all of a question's answers begin with), the greedy answers of all splits decoded in one pooled
  call by :mod:`unlearnkit.generation`'s engine;
* **straightforward**: the same call with ``batch_size=1, gen_batch_size=1, prefix_share=False``:
  one (question, answer) pair per forward pass and one question per decoding batch.

Data: the quick miniature world (forget + retain + world_facts, its tiny target model, the retain
model as reference) and real TOFU rows (``forget01_perturbed`` task 1 and ``retain_perturbed``,
subsampled to ``n_tofu`` rows each) scored by the same tiny model. The two tables must agree to
1e-3 (a check that the fast path computes the same numbers). Prints and returns rows with the
measured examples/s and the speed-up ratio.

Each row also counts the token positions that went through the model (padding included, forward
pre-hook) in both runs: ``token_ratio`` = naive / fast is the speed-up available from doing less
work; the rest comes from fuller batches. The comparison with the field's reference evaluator
(open-unlearning's design) is ``bench_tofu.py``; measured figures are in ``RESULTS.md``.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
SUITE = "tofu"


def _count_tokens(models):
    """Attach forward pre-hooks that add up the token positions each forward receives; returns
    (counter dict, remover)."""
    count = {"tokens": 0}

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            count["tokens"] += int(ids.numel())

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in models]
    return count, lambda: [h.remove() for h in handles]


def _timed_eval(model, tok, data, reference, **opts):
    """(seconds, table, token positions through the model and the reference)."""
    import unlearnkit as uk

    count, remove = _count_tokens([model] + ([reference[0]] if reference else []))
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = uk.evaluate(model, tok, data, SUITE, reference=reference, progress=False, **opts)
    finally:
        remove()
    return time.perf_counter() - t, df, count["tokens"]


def _n_rows(data) -> int:
    if isinstance(data, dict):
        return sum(len(d) for d in data.values())
    return sum(len(data.split(s)) for s in ("forget", "retain", "world_facts"))


def _compare(name: str, model, tok, data, reference, repeats: int = 2) -> dict:
    """Best of ``repeats`` interleaved runs of each implementation (a shared machine's load hits both)."""
    import numpy as np

    n = _n_rows(data)
    fast_t = slow_t = float("inf")
    for _ in range(repeats):
        t, fast, fast_tok = _timed_eval(model, tok, data, reference)
        fast_t = min(fast_t, t)
        t, slow, slow_tok = _timed_eval(model, tok, data, reference, batch_size=1, gen_batch_size=1, prefix_share=False)
        slow_t = min(slow_t, t)
    a, b = fast.value.to_numpy(float), slow.value.to_numpy(float)
    same = a.shape == b.shape and bool(np.allclose(a, b, atol=1e-3, equal_nan=True))
    return {"figure": f"{SUITE} suite throughput, {name} ({n} rows)",
            "measured": f"{n / fast_t:.1f} ex/s batched vs {n / slow_t:.1f} ex/s one-per-forward",
            "target": ">= 5x", "ratio_to_target": (slow_t / fast_t) / 5, "speedup": round(slow_t / fast_t, 2),
            "token_ratio": round(slow_tok / max(fast_tok, 1), 2), "same_values": same}


def _prefix_share_only(model, tok, data, repeats: int = 3) -> dict:
    """Scoring the truth ratio's answers (paraphrase + perturbed), both batched: prefix-shared vs flat."""
    from unlearnkit.metrics import score_answers

    lists = [[p, *pt] for p, pt in zip(data["paraphrased_answer"], data["perturbed_answer"])]
    qs = list(data["question"])

    def run(share):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            score_answers(model, tok, qs, lists, prefix_share=share)
            best = min(best, time.perf_counter() - t)
        return best

    run(True)
    shared, flat = run(True), run(False)
    n = sum(len(x) for x in lists)
    return {"figure": f"answer scoring, prefix-shared vs flat, both batched ({n} answers, TOFU rows)",
            "measured": f"{n / shared:.0f} vs {n / flat:.0f} answers/s", "target": "> 1x",
            "ratio_to_target": flat / shared, "speedup": round(flat / shared, 2), "same_values": None}


def _generation_only(model, tok, data, repeats: int = 2) -> dict:
    """Greedy answers to the TOFU questions: batched (left-padded, KV cache) vs one question per call.
    Decoding is one token per forward, overhead-bound on CPU even for long prompts."""
    from unlearnkit.metrics import generate

    qs = list(data["question"])

    def run(bs):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            out = generate(model, tok, qs, batch_size=bs)
            best = min(best, time.perf_counter() - t)
        return best, out

    (fast, a), (slow, b) = run(64), run(1)
    return {"figure": f"greedy generation only, batched vs one question per call ({len(qs)} TOFU questions)",
            "measured": f"{len(qs) / fast:.0f} vs {len(qs) / slow:.0f} questions/s", "target": "> 1x",
            "ratio_to_target": slow / fast, "speedup": round(slow / fast, 2), "same_values": a == b}


def main(n_tofu: int = 40) -> list[dict]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("UNLEARNKIT_CACHE", str(Path(__file__).resolve().parents[1] / ".cache"))
    import unlearnkit as uk

    world = uk.make_world(0, quick=True)
    model, tok = uk.target_model(world, progress=False)
    reference = uk.retain_model(world, progress=False)
    _timed_eval(model, tok, {"forget": world.forget.select(range(2))}, None)  # warm-up
    import torch

    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    rows = [_compare("miniature (quick world)", model, tok, world, reference)]
    if (TOFU_DIR / "forget01_perturbed.json").exists():
        forget = uk.load_tofu(TOFU_DIR, "forget01_perturbed", task_id="1")
        retain = uk.load_tofu(TOFU_DIR, "retain_perturbed")
        data = {"forget": forget.select(range(min(n_tofu, len(forget)))),
                "retain": retain.select(range(min(n_tofu, len(retain))))}
        rows.append(_compare("real TOFU forget01 + retain_perturbed", model, tok, data, reference, repeats=1))
        rows.append(_prefix_share_only(model, tok, data["forget"]))
        rows.append(_generation_only(model, tok, data["forget"]))
    else:
        rows.append({"figure": "real TOFU rows", "measured": f"skipped: no data at {TOFU_DIR}", "target": "",
                     "ratio_to_target": None, "speedup": None, "same_values": None})
    return rows


if __name__ == "__main__":
    import pandas as pd

    print(pd.DataFrame(main()).to_string(index=False))
