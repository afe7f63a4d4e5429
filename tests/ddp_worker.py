"""Run by tests/test_distributed.py as 2 CPU processes (gloo; each builds accelerate's Accelerator
inside unlearn, as under `accelerate launch` on GPUs): every registered objective for a few steps
on a random tiny Llama; rank 0 writes what it saw.

usage: torchrun --nproc_per_node 2 tests/ddp_worker.py TOKENIZER_DIR OUT_DIR
"""

import json
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import unlearnkit as uk

STEPS, BATCH = 2, 2
EXTRA = {"rmu": {"layer": 1}}  # the random model has 2 decoder layers (RMU defaults to layer 7)


def random_model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=96,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return LlamaForCausalLM(cfg)


def flat(model):
    return torch.cat([p.detach().float().flatten() for _, p in sorted(model.named_parameters())])


def main(tok_dir, out_dir):
    warnings.simplefilter("ignore")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    world = uk.make_world(seed=0, quick=True)
    forget, retain = world.forget.select(range(8)), world.retain.select(range(8))
    model = random_model(tok)
    out = Path(out_dir)
    report = {}
    for name in uk.list_objectives():
        res = uk.unlearn(model, tok, forget, retain, method=name, steps=STEPS, batch_size=BATCH, retain_batch_size=BATCH,
                         probe_every=0, progress=False, seed=0,
                         output_dir=out / f"run_{name}" if name == "ga" else None, **EXTRA.get(name, {}))
        w = flat(res.model)
        both = [torch.zeros_like(w) for _ in range(dist.get_world_size())]
        dist.all_gather(both, w)
        moved = float((w - flat(model)).abs().max())
        report[name] = {"rank_diff": float((both[0] - both[1]).abs().max()), "moved": moved, "steps": len(res.log),
                        "stopped": res.stopped}
        if name == "ga" and dist.get_rank() == 0:
            torch.save(w, out / "ga_weights.pt")
    if dist.get_rank() == 0:
        (out / "report.json").write_text(json.dumps({"world_size": dist.get_world_size(), "objectives": report}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
