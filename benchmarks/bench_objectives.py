"""Objectives: what a reference model costs, and how fast each objective trains.

1. **Reference without a copy.** Peak memory of NPO under LoRA with the reference taken from the
   same weights with the adapter disabled (:class:`AdapterReference`, the kit's way) against a
   deep-copied reference model (the common way), measured side by side: each variant runs in a
   fresh subprocess (peak RSS, ``ru_maxrss``) on a randomly initialised Llama of ~155M parameters
   built from a config (no download), so the model's memory dominates. Reported as a ratio,
   target <= 0.6. Two figures: the peak RSS of the whole process, and the peak above the
   process's memory just before the model is built (the interpreter and libraries, the same in
   both variants).
2. **Speed.** Optimizer steps per second of every registered objective on the quick miniature
   world (full fine-tuning and LoRA), measured as ``(t(N steps) - t(1 step)) / (N - 1)`` so that
   setup (copy, encoding, reference caching) is not counted.

    .venv/bin/python benchmarks/bench_objectives.py          # prints both tables
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MEM_TARGET = 0.6

#: ~155M parameters (620 MiB in fp32): embeddings 2 x 32000 x 1024 (untied) + 7 layers of 12.8M
BIG = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=7, num_attention_heads=16,
           num_key_value_heads=16, max_position_embeddings=256, tie_word_embeddings=False)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _memory_child(variant: str, steps: int, seq_len: int, batch: int) -> dict:
    """One NPO+LoRA run on the big random Llama; ``variant`` in {"adapter", "deepcopy"}."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearnkit.models import wrap_lora
    from unlearnkit.objectives import AdapterReference, ObjectiveContext, get_objective
    from unlearnkit.objectives.reference import _Base, _quantity

    class DeepCopyReference(_Base):
        """The usual way: a frozen deep copy of the model before unlearning."""

        live = True

        def __init__(self, model):
            self.model = copy.deepcopy(model).eval().requires_grad_(False)

        @torch.no_grad()
        def get(self, name, part, kind):
            return _quantity(self.model, part, kind)

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    base_mib = _rss_mib()
    model = LlamaForCausalLM(LlamaConfig(**BIG))
    n_params = sum(p.numel() for p in model.parameters())
    copy_ref = DeepCopyReference(model) if variant == "deepcopy" else None
    model = wrap_lora(model, True)
    ref = AdapterReference(model) if variant == "adapter" else copy_ref
    obj = get_objective("npo")
    hp = obj.resolve(alpha=0.0)  # forget term only: the reference is what differs between variants
    ctx = ObjectiveContext(hp=hp, ref=ref)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, BIG["vocab_size"], (batch, seq_len), generator=g)
    labels = ids.clone()
    labels[:, : seq_len // 2] = -100
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "index": torch.arange(batch)}
    model.train()
    t = time.perf_counter()
    for step in range(steps):
        ctx.step = step
        loss, _ = obj(model, {"forget": part}, ctx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    secs = time.perf_counter() - t
    return {"variant": variant, "params_M": n_params / 1e6, "weights_MiB": n_params * 4 / 2**20, "base_MiB": base_mib, "peak_MiB": _peak_mib(),
            "s_per_step": secs / steps, "final_loss": float(loss.detach())}


def memory_ratio(steps: int = 2, seq_len: int = 32, batch: int = 2) -> list[dict]:
    """Run both variants in fresh subprocesses; rows per variant plus the ratio rows."""
    out = []
    for variant in ("adapter", "deepcopy"):
        # two malloc arenas: less allocator slack in the RSS, the same for both variants
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", MALLOC_ARENA_MAX="2",
                   OMP_WAIT_POLICY="PASSIVE")
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", variant, str(steps),
                            str(seq_len), str(batch)], capture_output=True, text=True, env=env, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"memory subprocess ({variant}) failed:\n{p.stderr[-3000:]}")
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    a, d = out
    net = lambda r: r["peak_MiB"] - r["base_MiB"]  # noqa: E731
    rows = [{"figure": f"npo+LoRA peak RSS, reference = {r['variant']} ({r['params_M']:.0f}M-param Llama)",
             "measured": f"{r['peak_MiB']:.0f} MiB (above start: {net(r):.0f} MiB; {r['s_per_step']:.2f} s/step)",
             "target": "", "ratio_to_target": float("nan")} for r in out]
    rows.append({"figure": "memory the reference itself costs: deep copy minus disabled adapter, in model weights",
                 "measured": f"{d['peak_MiB'] - a['peak_MiB']:.0f} MiB = {(d['peak_MiB'] - a['peak_MiB']) / a['weights_MiB']:.2f} "
                             f"x the {a['weights_MiB']:.0f} MiB of weights (disabled adapter: 0)",
                 "target": "", "ratio_to_target": float("nan")})
    rows.append({"figure": "peak RSS ratio adapter-disabled / deep-copied reference (whole process)",
                 "measured": f"{a['peak_MiB'] / d['peak_MiB']:.3f}", "target": f"<= {MEM_TARGET}",
                 "ratio_to_target": a["peak_MiB"] / d["peak_MiB"] / MEM_TARGET})
    rows.append({"figure": "peak RSS ratio adapter-disabled / deep-copied reference (above the pre-model baseline)",
                 "measured": f"{net(a) / net(d):.3f}", "target": f"<= {MEM_TARGET}",
                 "ratio_to_target": net(a) / net(d) / MEM_TARGET})
    return rows


def _kwargs(name: str) -> dict:
    return {"rmu": {"layer": 2}}.get(name, {})


def speed(n_steps: int = 8, lora_too: bool = True, threads: int = 1, repeats: int = 2) -> list[dict]:
    """Steps per second of every registered objective on the quick world (after setup).

    One thread by default: the miniature's matrices are tiny (hidden 128), and on a busy 2-core
    machine two OpenMP threads spin-wait on each other (a 2-step LoRA run took 21 s vs 1.4 s).
    """
    import warnings

    import torch

    import unlearnkit as uk

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    world = uk.make_world(0, quick=True)
    model, tok = uk.target_model(world, progress=False)
    with warnings.catch_warnings():  # one-time costs (first forward, allocator, peft import) off the clock
        warnings.simplefilter("ignore")
        for lora in (False, True):
            uk.unlearn(model, tok, world.forget, world.retain, method="graddiff", steps=2, probe_every=0,
                       token_probes=False, progress=False, lora=lora)
    rows = []
    for name in uk.list_objectives():
        row = {"objective": name}
        for mode in ("full", "lora") if lora_too else ("full",):
            times = {1: math.inf, n_steps: math.inf}
            for _ in range(repeats):  # the fastest of a few runs: the least disturbed by other processes
                for n in times:
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        uk.unlearn(model, tok, world.forget, world.retain, method=name, steps=n, probe_every=0,
                                   token_probes=False, progress=False, lora=(mode == "lora"), **_kwargs(name))
                    times[n] = min(times[n], time.perf_counter() - t)
            per = (times[n_steps] - times[1]) / (n_steps - 1)
            row[f"{mode} steps/s"] = round(1 / per, 1) if per > 0 else float("nan")  # nan: timing noise won
            row[f"{mode} setup s"] = round(times[1] - per, 2)
        rows.append(row)
    torch.set_num_threads(old_threads)
    return rows


def main(quick: bool = False) -> list[dict]:
    """Print the speed table; return the memory rows (figure / measured / target / ratio_to_target)."""
    import pandas as pd

    t = time.perf_counter()
    sp = speed(n_steps=4 if quick else 8, lora_too=not quick, repeats=1 if quick else 2)
    print("Steps per second on the quick miniature world (0.94M-param Llama, batch 8 forget + 8 retain, 1 thread; "
          "objective defaults, rmu at layer 2):")
    print(pd.DataFrame(sp).to_string(index=False), flush=True)
    print(f"({time.perf_counter() - t:.0f} s)", flush=True)
    return memory_ratio()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        print(json.dumps(_memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    else:
        import pandas as pd

        print(pd.DataFrame(main("--quick" in sys.argv)).to_string(index=False))
