"""The TOFU suite on the real TOFU files: the kit's ``evaluate`` vs a reference evaluator built the
way open-unlearning's is (``reference_eval.py``), side by side in one process.

For each model variant (a randomly initialised ~6.3M-parameter Llama with an 8,192-token BPE trained
on the TOFU text, and the same model briefly fine-tuned on TOFU's retain + forget QA) and each
prompt format (plain, and a Llama-3-style chat template with a system prompt and a date, as TOFU's
instruct models use), both evaluators run the TOFU suite on forget01 (task 1, 40 rows),
retain_perturbed (400), real_authors_perturbed (100), world_facts_perturbed (117), plus Min-K%
membership inference of forget vs a holdout (forget01 task 2: 40 rows of other authors, never
trained on), with 200 new tokens of greedy generation. Printed per run: wall seconds and process
CPU seconds of each evaluator and their ratios (with one torch thread, CPU seconds are what the
evaluator computed, whatever else ran on a shared machine: the ratio to trust there); the CPU time
split into generation, likelihood scoring and the rest (encoding, ROUGE, aggregation); the largest relative difference of the aggregates and absolute difference of the
per-row values; how many greedy answers are identical; how many scored sequences had the same token
ids on both sides; and the achieved model FLOP/s of scoring and generation (2 x non-embedding
parameters per token that goes through the model, padding included, plus 2 x hidden x vocab per
position whose logits are computed; attention not counted) per CPU second, next to this machine's
fp32 matmul peak measured in the same run (a 2048 x 2048 matmul, best of 5, per CPU second), and
``ceiling_cpu_ratio``: the reference's CPU seconds over the kit's model FLOPs at that peak, the ratio
the kit would reach if every FLOP it does ran at the peak and attention, softmax and Python cost
nothing (an upper bound for the work it does). The header gives the device, torch's
thread count, the CPU model and the load average at the start and end (the machine may be shared).
The fine-tuned variant trains 150 AdamW steps of 16 rows, enough that its greedy answers end with
EOS after 30-45 tokens on average (as a real fine-tuned TOFU model's do), so dropping finished rows
counts; 60 steps left answers running 80-90 tokens.

    .venv/bin/python benchmarks/run.py tofu
    .venv/bin/python benchmarks/bench_tofu.py [--quick]   # --quick: 100 retain rows, one repeat

Unlearning steps per second per objective: ``bench_objectives.py`` (``run.py objectives``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOFU_DIR = HERE.parents[1] / "shared" / "data" / "tofu"
SYSTEM_PROMPT = "You are a helpful assistant."
DATE = "10 Apr 2025"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if date_string is defined %}<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: {{ date_string }}"
    "{% if messages[0]['role'] == 'system' %}\n\n{{ messages[0]['content'] }}{% endif %}<|eot_id|>"
    "{% elif messages[0]['role'] == 'system' %}<|start_header_id|>system<|end_header_id|>\n\n"
    "{{ messages[0]['content'] }}<|eot_id|>{% endif %}"
    "{% for m in messages %}{% if m['role'] != 'system' %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
#: the tiny Llama: 4 layers of width 256, MLP 1024, tied embeddings, vocab 8,192 + 4 chat tokens: ~6.3M parameters
MODEL = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
             max_position_embeddings=1024, tie_word_embeddings=True)
MAX_NEW = 200
FINETUNE_STEPS = 150
FINETUNE_BATCH = 16


# -- environment ----------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matmul throughput (FLOP/s per process CPU second, so a shared machine's
    preemption does not count): best of ``repeats`` ``n x n`` products."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.process_time()
        a @ b
        best = min(best, time.process_time() - t)
    return 2 * n ** 3 / best


# -- data, tokenizer, models ------------------------------------------------------------------------

def load_data(n_retain: int | None = None):
    """The TOFU evaluation splits (file names, so roles come from the names) and the holdout."""
    import unlearnkit as uk

    retain = uk.load_tofu(TOFU_DIR, "retain_perturbed")
    splits = {"forget01": uk.load_tofu(TOFU_DIR, "forget01_perturbed", task_id="1"),
              "retain_perturbed": retain.select(range(n_retain)) if n_retain else retain,
              "real_authors_perturbed": uk.load_tofu(TOFU_DIR, "real_authors_perturbed"),
              "world_facts_perturbed": uk.load_tofu(TOFU_DIR, "world_facts_perturbed")}
    holdout = uk.load_tofu(TOFU_DIR, "forget01_perturbed", task_id="2")
    return splits, holdout


def build_tokenizer(vocab: int = 8192):
    """A byte-level BPE of ``vocab`` tokens trained on the TOFU text, with Llama-3's chat tokens
    (BOS ``<|begin_of_text|>``, EOS ``<|eot_id|>``, the header markers) and a Llama-3-style template."""
    from unlearnkit.models.tiny import train_tokenizer

    texts = []
    for name in ("retain90", "forget10_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
        for line in open(TOFU_DIR / f"{name}.json"):
            r = json.loads(line)
            texts += [r["question"], r["answer"], *r.get("perturbed_answer", [])]
            texts += [r["paraphrased_answer"]] if "paraphrased_answer" in r else []
    tok = train_tokenizer(texts, vocab)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(tok, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **MODEL)
    return LlamaForCausalLM(cfg).eval()


def finetune(model, tok, splits, formats, steps: int = FINETUNE_STEPS, batch: int = FINETUNE_BATCH, seed: int = 0):
    """A copy of ``model`` fine-tuned for ``steps`` AdamW steps on the retain and forget QA pairs, in
    every prompt format of ``formats`` (answer-only loss); returns (model, seconds)."""
    import torch

    from unlearnkit.data import encode_pairs

    pairs = [(q, a) for name in ("retain_perturbed", "forget01") for q, a in zip(splits[name]["question"],
                                                                                 splits[name]["answer"])]
    encs = [encode_pairs(tok, [q for q, _ in pairs], [a for _, a in pairs], fmt=f) for f in formats]
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 6) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    g = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    n = len(pairs)
    for step in range(steps):
        enc = encs[step % len(encs)]
        idx = torch.randint(0, n, (batch,), generator=g)
        L = int(enc["attention_mask"][idx].sum(1).max())
        loss = m(input_ids=enc["input_ids"][idx, :L], attention_mask=enc["attention_mask"][idx, :L],
                 labels=enc["labels"][idx, :L]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return m.eval(), time.perf_counter() - t


# -- instrumentation ------------------------------------------------------------------------------

class Meter:
    """Seconds and model FLOPs per phase (``generation``, ``scoring``), from forward hooks on the model."""

    def __init__(self, model):
        self.phase = None
        self.seconds = {"generation": 0.0, "scoring": 0.0}
        self.cpu = {"generation": 0.0, "scoring": 0.0}  # process CPU seconds (what a shared machine gave us)
        self.flops = {"generation": 0.0, "scoring": 0.0}
        emb = model.get_input_embeddings().weight
        self.vd = emb.numel()  # hidden x vocab: the tied embedding / LM head
        self.body = sum(p.numel() for p in model.parameters()) - self.vd
        self.handles = [model.register_forward_pre_hook(self._pre, with_kwargs=True),
                        model.register_forward_hook(self._post)]

    def _pre(self, _m, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.phase and ids is not None:
            self.flops[self.phase] += 2 * self.body * ids.numel()

    def _post(self, _m, _args, out):
        logits = getattr(out, "logits", None)
        if self.phase and logits is not None:
            self.flops[self.phase] += 2 * self.vd * logits.shape[0] * logits.shape[1]

    @contextmanager
    def timed(self, phase):
        outer, self.phase = self.phase, phase
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            if outer is None:
                self.seconds[phase] += time.perf_counter() - t
                self.cpu[phase] += time.process_time() - c
            self.phase = outer

    def wrap(self, fn, phase):
        def wrapped(*a, **kw):
            with self.timed(phase):
                return fn(*a, **kw)
        return wrapped

    def close(self):
        for h in self.handles:
            h.remove()


# -- the two evaluators -----------------------------------------------------------------------------

def run_kit(model, tok, splits, holdout, fmt):
    """(seconds, summary {(split, metric): value}, per-row {(split, metric): array}, generations, meter)."""
    import unlearnkit as uk
    import unlearnkit.metrics.base as base

    meter = Meter(model)
    saved = {k: getattr(base, k) for k in ("generate", "score_pairs", "score_answers")}
    base.generate = meter.wrap(saved["generate"], "generation")
    base.score_pairs = meter.wrap(saved["score_pairs"], "scoring")
    base.score_answers = meter.wrap(saved["score_answers"], "scoring")
    try:
        t, c = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = uk.evaluate(model, tok, splits, ["tofu", "mia_min_k"], holdout=holdout, prompt_format=fmt,
                             max_new_tokens=MAX_NEW, progress=False)
        seconds = (time.perf_counter() - t, time.process_time() - c)
    finally:
        for k, v in saved.items():
            setattr(base, k, v)
        meter.close()
    aggs, rows, gens = {}, {}, {}
    for (split, metric), g in df.groupby(["split", "metric"], sort=False):
        if metric in ("probability", "rouge", "truth_ratio"):
            g = g.sort_values("id")
            rows[(split, metric)] = g.value.to_numpy(float)
            if metric == "rouge":
                gens[split] = list(g.generation)
    summ = uk.summarize(df)
    for r in summ.itertuples():
        if r.metric in ("probability", "rouge", "truth_ratio"):
            aggs[(r.split, r.metric)] = r.value
    aggs[("all", "model_utility")] = float(df[df.metric == "model_utility"].value.iloc[0])
    mia = df[(df.metric == "mia_min_k") & (df.id == -1)]
    aggs[("all", "mia_min_k")] = float(mia.value.iloc[0])
    return seconds, aggs, rows, gens, meter


def run_reference(model, tok, splits, holdout, fmt):
    import reference_eval as ref

    from unlearnkit.metrics.base import infer_role

    meter = Meter(model)
    saved = {k: getattr(ref.Reference, k) for k in ("probs", "generate")}
    ref.Reference.probs = meter.wrap(saved["probs"], "scoring")
    ref.Reference.generate = meter.wrap(saved["generate"], "generation")
    formatter = ref.Formatter(tok, chat=fmt.chat, system_prompt=fmt.system_prompt, date_string=fmt.date_string)
    try:
        t, c = time.perf_counter(), time.process_time()
        out = ref.evaluate(model, tok, splits, {s: infer_role(s) for s in splits}, formatter, holdout=holdout)
        seconds = (time.perf_counter() - t, time.process_time() - c)
    finally:
        for k, v in saved.items():
            setattr(ref.Reference, k, v)
        meter.close()
    return seconds, out, meter


def same_ids(tok, fmt, encoded) -> tuple[int, int]:
    """How many of the reference's scored sequences the kit encodes to the same token ids."""
    same = 0
    for q, a, ids in encoded:
        p = fmt.prompt_ids(q, tok)
        same += (p + fmt.answer_ids(q, a, tok, prompt_ids=p)) == ids
    return same, len(encoded)


def compare(model, tok, splits, holdout, fmt, label: str, peak: float) -> dict:
    import numpy as np

    (kt, kc), kaggs, krows, kgens, km = run_kit(model, tok, splits, holdout, fmt)
    (rt, rc), rout, rm = run_reference(model, tok, splits, holdout, fmt)
    raggs = rout["aggregates"]
    rels = {k: abs(kaggs[k] - v) / max(abs(v), 1e-12) for k, v in raggs.items()}
    worst = max(rels, key=rels.get)
    rel = rels[worst]
    # every aggregate within 1e-5 relative, or 1e-6 absolute: truth_ratio's mean max(0, 1 - R) on a
    # random model averages 1 - R over the few rows with R just under 1, so per-row differences of
    # R at float32 rounding (~1e-6) become ~1e-4 relative on an aggregate near 0.01
    agg_ok = all(abs(kaggs[k] - v) <= max(1e-5 * abs(v), 1e-6) for k, v in raggs.items())
    absdiff = max(float(np.max(np.abs(krows[k] - v))) for k, v in rout["values"].items())
    # per row: probabilities and ROUGE within 1e-5 absolute; raw truth ratios R (exp of a difference
    # of two mean log-likelihoods, each a float32 sum over ~40 tokens; R reaches 10-100) within 5e-5
    # relative: float32 rounding of ~1e-6 per token log-prob moves R by up to ~1.5e-5 relative
    # (measured: 1.2e-5 at R = 2.34 on the fine-tuned model) when the two sides batch differently
    def row_ok(k, v):
        tol = 5e-5 * np.abs(v) if k[1] == "truth_ratio" else 1e-5
        return bool(np.all(np.abs(krows[k] - v) <= tol))

    rows_ok = all(row_ok(k, v) for k, v in rout["values"].items())
    reldiff_tr = max((float(np.max(np.abs(krows[k] - v) / np.maximum(np.abs(v), 1e-12)))
                      for k, v in rout["values"].items() if k[1] == "truth_ratio"), default=0.0)
    n_gen = sum(len(g) for g in rout["generations"].values())
    same_gen = sum(a == b for s, g in rout["generations"].items() for a, b in zip(kgens[s], g))
    ids_same, ids_n = same_ids(tok, fmt, rout["encoded"])

    def split_str(m, total):
        g, s = m.cpu["generation"], m.cpu["scoring"]
        return f"{g:.1f}/{s:.1f}/{total - g - s:.1f}"

    def gflops(m, phase):
        return m.flops[phase] / max(m.cpu[phase], 1e-9) / 1e9

    return {"run": label, "kit_s": round(kt, 1), "ref_s": round(rt, 1), "ratio": round(rt / kt, 2),
            "kit_cpu_s": round(kc, 1), "ref_cpu_s": round(rc, 1), "cpu_ratio": round(rc / kc, 2),
            "kit_gen/score/other_cpu_s": split_str(km, kc), "ref_gen/score/other_cpu_s": split_str(rm, rc),
            "gen_cpu_ratio": round(rm.cpu["generation"] / max(km.cpu["generation"], 1e-9), 2),
            "score_cpu_ratio": round(rm.cpu["scoring"] / max(km.cpu["scoring"], 1e-9), 2),
            "max_rel_diff_agg": f"{rel:.1e} ({'/'.join(worst)}: {raggs[worst]:.4g})", "max_abs_diff_row": f"{absdiff:.1e}",
            "max_rel_diff_truth_ratio_row": f"{reldiff_tr:.1e}",
            "same_answers": f"{same_gen}/{n_gen}", "same_ids": f"{ids_same}/{ids_n}",
            "kit_GFLOP/s score|gen": f"{gflops(km, 'scoring'):.1f}|{gflops(km, 'generation'):.1f}",
            "ref_GFLOP/s score|gen": f"{gflops(rm, 'scoring'):.1f}|{gflops(rm, 'generation'):.1f}",
            "peak_GFLOP/s": round(peak / 1e9, 1), "kit_model_GFLOP": round(sum(km.flops.values()) / 1e9),
            "ref_model_GFLOP": round(sum(rm.flops.values()) / 1e9),
            # the ratio the kit would reach if every model FLOP it does ran at the matmul peak and
            # nothing else (attention, softmax, Python) cost anything: an upper bound for its FLOPs
            "ceiling_cpu_ratio": round(rc / (sum(km.flops.values()) / peak), 2),
            "values_agree": bool(agg_ok and rows_ok and same_gen == n_gen)}


def main(quick: bool = False) -> list[dict]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    if not (TOFU_DIR / "forget01_perturbed.json").exists():
        print(f"bench_tofu skipped: no TOFU data at {TOFU_DIR}")
        return []
    import torch

    from unlearnkit.data import PromptFormat

    t0 = time.perf_counter()
    print(f"device: cpu ({_cpu_model()}), torch threads: {torch.get_num_threads()}, "
          f"load average (1/5/15 min) at start: {_load()}", flush=True)
    splits, holdout = load_data(100 if quick else None)
    tok = build_tokenizer()
    model = build_model(tok)
    n_params = sum(p.numel() for p in model.parameters())
    formats = {"plain": PromptFormat(), "chat": PromptFormat(chat=True, system_prompt=SYSTEM_PROMPT, date_string=DATE)}
    print(f"tiny Llama: {n_params / 1e6:.2f}M parameters, vocab {len(tok)}; data: "
          + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f", holdout {len(holdout)}; "
          f"setup {time.perf_counter() - t0:.1f} s", flush=True)
    tuned, ft_s = finetune(model, tok, splits, list(formats.values()))
    print(f"fine-tuned copy: {FINETUNE_STEPS} steps of {FINETUNE_BATCH} in {ft_s:.0f} s", flush=True)
    peak = matmul_peak()
    rows = []
    for variant, m in (("random", model), ("fine-tuned", tuned)):
        for fname, fmt in formats.items():
            row = compare(m, tok, splits, holdout, fmt, f"{variant}, {fname}", peak)
            rows.append(row)
            print(json.dumps(row), flush=True)
    peak_end = matmul_peak()
    print(f"matmul peak at start / end: {peak / 1e9:.1f} / {peak_end / 1e9:.1f} GFLOP/s; "
          f"load average at end: {_load()}; whole benchmark {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    import pandas as pd

    pd.set_option("display.width", 250)
    print(pd.DataFrame(main(quick="--quick" in sys.argv)).to_string(index=False))
