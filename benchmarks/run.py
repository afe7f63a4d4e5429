"""Run every benchmark in this folder and print its figures side by side with their targets.

    .venv/bin/python benchmarks/run.py            # all
    .venv/bin/python benchmarks/run.py foundation # only bench_foundation.py

Each ``bench_*.py`` module has ``main()`` returning rows (dicts) or printing its own table.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    names = [p.stem for p in sorted(HERE.glob("bench_*.py"))]
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv or n in argv]
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t = time.perf_counter()
        rows = importlib.import_module(name).main()
        if rows:
            print(pd.DataFrame(rows).to_string(index=False))
        print(f"({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
