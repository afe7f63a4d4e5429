"""Foundation figures next to their targets: tiny model build time, cached reload, answer recall.

Builds into a fresh temporary cache so the build is really measured (not a cache hit). The 60 s
target is issue 16's for the default world on 2 quiet cores (``bench_build.py`` measures it with
the TOFU-sized world and a fresh ``make demo``).
"""

from __future__ import annotations

import os
import tempfile
import time


def main(quick: bool = False) -> list[dict]:
    import numpy as np

    import unlearnkit as uk
    from unlearnkit.metrics import generate, rouge_recall

    rows = []
    old = os.environ.get("UNLEARNKIT_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UNLEARNKIT_CACHE"] = tmp
        try:
            world = uk.make_world(0, quick=quick)
            t = time.perf_counter()
            model, tok = uk.target_model(world, progress=False)
            build = time.perf_counter() - t
            t = time.perf_counter()
            uk.target_model(world, progress=False)
            reload = time.perf_counter() - t
        finally:
            if old is None:
                os.environ.pop("UNLEARNKIT_CACHE", None)
            else:
                os.environ["UNLEARNKIT_CACHE"] = old
    table = world.table[world.table.split != "holdout"]
    gens = generate(model, tok, list(table.question))
    r = rouge_recall(list(table.answer), gens)
    exact = float(np.mean([g == a for g, a in zip(gens, table.answer)]))
    world_name = "quick" if quick else "default"
    rows.append({"figure": f"target model build ({world_name} world, 2 cores)", "measured": f"{build:.1f} s",
                 "target": "<= 60 s", "ratio_to_target": build / 60})
    rows.append({"figure": "cached reload", "measured": f"{reload:.2f} s", "target": "<= 5 s", "ratio_to_target": reload / 5})
    rows.append({"figure": "greedy answers: mean ROUGE-L recall", "measured": f"{r.mean():.3f}", "target": ">= 0.9",
                 "ratio_to_target": r.mean() / 0.9})
    rows.append({"figure": "greedy answers: exact match", "measured": f"{exact:.1%}", "target": ">= 95%",
                 "ratio_to_target": exact / 0.95})
    return rows


if __name__ == "__main__":
    import pandas as pd

    print(pd.DataFrame(main()).to_string(index=False))
