"""A thin command line over the same functions the notebooks call.

    unlearnkit list                                  # objectives, metrics, suites
    unlearnkit run --method npo --set beta=0.1 --steps 20 --quick --out runs/npo
    unlearnkit evaluate --model runs/npo --metrics tofu mia --quick --set max_new_tokens=32
    unlearnkit evaluate --model path/to/hf-model --reference path/to/retain-model --tofu ../shared/data/tofu
    unlearnkit sweep --methods ga npo --seeds 0 1 -p lr 1e-4 3e-4 --quick --out runs/sweep   # resumable
    unlearnkit sweep notebooks/01_squeezing_and_beliefs.ipynb -p lr 1e-4 3e-4 -p steps 10 20 --quick --out runs/s01

``sweep`` takes a grid: each ``-p NAME V1 V2 ...`` is one axis (a single value: fixed for every run;
the notebook comes before the first ``-p``, which takes every word after it).
Without a notebook it unlearns and evaluates (``--methods`` x ``--seeds`` x the ``-p`` axes: loop and
objective hyperparameters); with a notebook it runs papermill once per grid point (``-p`` names: the
notebook's parameters; ``--quick`` sets ``quick=True``). Both write ``--out/results.csv``, one atomic
folder per run, and a rerun resumes without redoing or duplicating runs.

Multi-GPU: ``accelerate launch -m unlearnkit.cli run ...`` (the loop is built on accelerate).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _sets(pairs) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"--set expects name=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


# The package is imported inside the commands: `unlearnkit --help` and argument errors then answer
# without importing torch and transformers (several seconds on a laptop).

def _data(args):
    import unlearnkit as uk

    if args.tofu:  # TOFU's evaluation set: the forget split, retain, real authors, world facts (, holdout)
        data = {args.forget_split: uk.load_tofu(args.tofu, args.forget_split),
                "retain_perturbed": uk.load_tofu(args.tofu, "retain_perturbed")}
        for name in ("real_authors_perturbed", "world_facts_perturbed", args.holdout_split):
            if name and any((Path(args.tofu) / f"{name}{ext}").exists() for ext in (".json", ".jsonl", ".parquet")):
                data[name] = uk.load_tofu(args.tofu, name)
        return None, data
    world = uk.make_world(seed=args.world_seed, quick=args.quick)
    return world, {"forget": world.forget, "retain": world.retain, "world_facts": world.world_facts}


def _model(args, world):
    import unlearnkit as uk

    if args.model:
        return uk.load_model(args.model)
    if world is None:
        raise SystemExit("--model is required with --tofu (the tiny model only knows the miniature world)")
    return uk.target_model(world)


def _axes(params) -> dict:
    """``-p NAME V1 V2`` options -> ``{NAME: [V1, V2]}`` (values read as Python literals)."""
    axes = {}
    for p in params or []:
        if len(p) < 2:
            raise SystemExit(f"-p expects a name and at least one value, got {' '.join(p)!r}")
        if p[0] in axes:
            raise SystemExit(f"-p {p[0]} is given twice: put all its values in one -p")
        axes[p[0]] = [_value(v) for v in p[1:]]
    return axes


def _sweep_notebook(args, axes) -> int:
    if args.methods or args.seeds or args.oracle or args.model or args.tofu or args.chat_template:
        raise SystemExit("with a notebook, set everything with -p (e.g. -p seed 0 1) and --set; --methods, --seeds, "
                         "--oracle, --model, --tofu and --chat-template are for sweeps without a notebook")
    from unlearnkit.sweep import grid, sweep_notebook

    fixed = _sets(args.set)
    if args.quick:
        fixed["quick"] = True
    df = sweep_notebook(args.notebook, grid(**axes) if axes else [{}], args.out, parameters=fixed)
    print(df.to_string(index=False))
    return 0


def main(argv=None) -> int:
    """The command line; an ordinary user error (bad name, value, file or destination) prints one
    line ``unlearnkit: error: ...`` and returns 2; ``--debug`` shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except (ValueError, TypeError, KeyError, LookupError, OSError) as e:
        if debug:
            raise
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"unlearnkit: error: {type(e).__name__}: {' '.join(msg.split())} (--debug shows the traceback)",
              file=sys.stderr)
        return 2


def _main(argv) -> int:
    ap = argparse.ArgumentParser(prog="unlearnkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", help="HF model folder or hub name (default: the tiny target model)")
    common.add_argument("--tofu", help="folder of TOFU-format files (default: the miniature world)")
    common.add_argument("--forget-split", default="forget01_perturbed")
    common.add_argument("--quick", action="store_true", help="the small world used by tests")
    common.add_argument("--world-seed", type=int, default=0)
    common.add_argument("--holdout-split", default=None,
                        help="with --tofu: a holdout file (e.g. holdout01_perturbed) for membership inference")
    common.add_argument("--chat-template", action="store_true",
                        help="format prompts with the tokenizer's chat template (instruct models; default: plain)")
    common.add_argument("--system-prompt", help="with --chat-template: a system message")
    common.add_argument("--date-string", help="with --chat-template: the date templates such as Llama 3's print")
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: one line)")
    sub.add_parser("list", help="registered objectives, metrics and suites")
    r = sub.add_parser("run", parents=[common], help="unlearn, evaluate and save")
    r.add_argument("--method", default="ga")
    r.add_argument("--steps", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--seed", type=int)
    r.add_argument("--lora", action="store_true")
    r.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="objective / loop hyperparameters")
    r.add_argument("--out", required=True, help="new folder for the unlearned model and results")
    r.add_argument("--overwrite", action="store_true", help="replace --out if it exists (checked before training)")
    r.add_argument("--merge-lora", action="store_true", help="with --lora: save the merged model (default: the "
                                                              "adapter, with its base recorded; both reload)")
    e = sub.add_parser("evaluate", parents=[common], help="evaluate a model")
    e.add_argument("--metrics", nargs="+", default=["tofu"], help="metric and suite names (unlearnkit list)")
    e.add_argument("--reference", help="the retain model (HF folder) for forget quality, PrivLeak and the reference "
                                       "attack (default on the miniature world: its retain model)")
    e.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="evaluation options (docs/metrics.md, Options)")
    e.add_argument("--out", help="CSV file for the tidy table (its manifest: <out>.manifest.json)")
    s = sub.add_parser("sweep", parents=[common], help="resumable sweep over methods, hyperparameters and seeds, "
                                                        "or over a notebook's parameters (papermill)")
    s.add_argument("notebook", nargs="?", help="a .ipynb with a 'parameters' cell, given before any -p "
                                               "(default: sweep unlearn itself)")
    s.add_argument("-p", "--param", nargs="+", action="append", metavar=("NAME", "VALUE"), default=[],
                   help="a grid axis: -p lr 1e-4 3e-4 (repeat for more axes; one value: fixed)")
    s.add_argument("--methods", nargs="+", help="without a notebook: objectives to sweep (default: ga)")
    s.add_argument("--seeds", nargs="+", type=int, help="without a notebook: seeds to sweep (default: 0)")
    s.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="fixed values for every run")
    s.add_argument("--oracle", action="store_true", help="without a notebook: also evaluate the retain model "
                                                         "(out/oracle), the leaderboard's target point")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import unlearnkit as uk

    if args.cmd == "list":
        from unlearnkit.metrics import SUITES

        print("objectives:", ", ".join(uk.list_objectives()))
        print("metrics:   ", ", ".join(uk.list_metrics()))
        print("suites:    ", ", ".join(SUITES))
        return 0
    if (args.system_prompt or args.date_string) and not args.chat_template:
        raise SystemExit("--system-prompt and --date-string need --chat-template")
    from unlearnkit.validate import check_destination

    if args.cmd == "run":  # everything the run needs, checked before loading anything
        check_destination(args.out, args.overwrite, what="--out")
        uk.check_params(args.method, **_sets(args.set))
    if args.cmd == "evaluate":
        uk.metrics.resolve_metrics(args.metrics)
    if args.cmd == "sweep":
        axes = _axes(args.param)
        if args.notebook:
            return _sweep_notebook(args, axes)
        args.methods, args.seeds = args.methods or ["ga"], args.seeds or [0]
        for m in args.methods:
            for cfg in uk.sweep.grid(**axes) or [{}]:
                uk.check_params(m, **{**_sets(args.set), **cfg})
    fmt = uk.data.PromptFormat(chat=True, system_prompt=args.system_prompt, date_string=args.date_string) \
        if args.chat_template else None
    world, data = _data(args)
    model, tok = _model(args, world)
    forget_name = next(s for s in data if uk.metrics.infer_role(s) == "forget")
    retain_name = next((s for s in data if uk.metrics.infer_role(s) == "retain"), None)
    if args.cmd == "run":
        hp = _sets(args.set)
        for k in ("steps", "lr", "seed"):
            if getattr(args, k) is not None:
                hp[k] = getattr(args, k)
        res = uk.unlearn(model, tok, data[forget_name], data.get(retain_name), method=args.method,
                         lora=args.lora or None, prompt_format=fmt, **hp)
        res.save(args.out, overwrite=args.overwrite, merge_lora=args.merge_lora)
        print(res)
        print(uk.summarize(uk.evaluate(res.model, tok, data, ["probability", "rouge"], prompt_format=fmt))
              .to_string(index=False))
        return 0
    if args.cmd == "evaluate":
        if args.reference:
            ref = uk.load_model(args.reference)
        else:
            ref = uk.retain_model(world) if world is not None else None
        holdout = world.split("holdout") if world is not None else None
        df = uk.evaluate(model, tok, data, args.metrics, reference=ref, holdout=holdout, prompt_format=fmt,
                         **_sets(args.set))
        if args.out:
            from unlearnkit.io import atomic_write_json, atomic_write_text

            atomic_write_text(args.out, df.to_csv(index=False))
            atomic_write_json(f"{args.out}.manifest.json", df.attrs)
        print(uk.summarize(df).to_string(index=False))
        return 0
    if args.cmd == "sweep":
        from unlearnkit.sweep import grid, sweep

        configs = [{**c, **_sets(args.set)} for c in grid(method=args.methods, seed=args.seeds, **axes)]
        if args.oracle and world is None:
            raise SystemExit("--oracle needs the miniature world (its retain model); with --tofu it is not known")
        reference = uk.retain_model(world, progress=False) if world is not None else None
        metrics = ("probability", "rouge", "truth_ratio") + (("forget_quality", "model_utility") if reference else ())
        df = sweep(model, tok, data[forget_name], data.get(retain_name), configs, args.out, metrics=metrics,
                   reference=reference, oracle=args.oracle)
        print(df.to_string(index=False))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
