# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The leaderboard: every method, swept, against the retain model
#
# One run of one method says little: with another learning rate or a few more steps, the same
# objective forgets more and keeps less. A fair comparison looks at **many runs of every method**
# on the plane that matters, forgetting against utility, and compares methods **at equal
# forgetting**, not at equal steps. This is how TOFU (Maini et al., 2024) plots its baselines
# (forget quality against model utility) and how shared leaderboards such as OpenUnlearning rank
# methods.
#
# In this notebook you will
#
# 1. run (or load) a **sweep**: every method, with its learning rate, its number of steps and its
#    main coefficient (NPO's β, GradDiff's α, BS-T's λ...) moved one at a time; each run is saved
#    on its own, so an interrupted sweep resumes where it stopped;
# 2. draw the **leaderboard**: every run of every method on the forgetting-vs-utility plane, with
#    the **retain model** (trained without the forget set: the model unlearning tries to become) as
#    the oracle, and the methods compared at equal forgetting;
# 3. look at **hyperparameter sensitivity**: how forgetting and utility move with each knob, with
#    the retain model as the line to aim for, as a static grid and as a widget.
#
# The same sweep runs from the command line (`unlearnkit sweep --methods ga npo -p lr 1e-4 3e-4
# --oracle --quick --out runs/sweep`), and any notebook can be swept the same way (`unlearnkit sweep
# notebooks/01_squeezing_and_beliefs.ipynb -p lr 1e-4 3e-4 --out runs/s01`). Every number, table and
# sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value, or -y for the lists). quick=True shrinks everything for CI.
quick = False
seed = 0
results = None                      # a sweep's results.csv to read; None: run the sweep below
runs_dir = "runs/07_leaderboard"    # where the sweep's runs are saved (a rerun resumes from there)
methods = ["ga", "graddiff", "npo", "simnpo", "me_gd", "idk_nll", "bs_t"]  # names from uk.list_objectives()
lrs = [1e-4, 3e-4, 1e-3]            # learning rates swept (AdamW); the middle one is the base run's
steps = [5, 10, 20]                 # numbers of unlearning steps swept; the middle one is the base run's
factors = [0.33, 1.0, 3.0]          # each method's main coefficient: its default times these
figures_dir = "figures"             # where PNG figures are written (None: do not save)
result_path = None                 # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import time
from pathlib import Path

import pandas as pd

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit.sweep import main_coefficient, run_name, sensitivity_grid, sweep

viz.setup()
pd.set_option("display.width", 160)
for v in lrs:
    uk.check_params(lr=v)  # papermill values, checked
for v in steps:
    uk.check_params(steps=v)
methods = [uk.get_objective(m).name for m in methods]  # unknown names: an error listing the valid ones
if quick:  # CI: five methods, fewer steps, on the quick world (about 35 runs of a few seconds)
    methods, steps = methods[:5], [4, 8, 16]
print("main coefficient of each method:", {m: main_coefficient(m) for m in methods})

# %% [markdown]
# ## 1. The sweep
#
# For each method, a **base run** (the middle learning rate and number of steps, the coefficient at
# its default) and runs that move **one knob at a time**. Every run is unlearned from the same
# target model and evaluated on the same data with the same metrics:
#
# * **forget probability**: the mean probability of the forget answers (lower = more forgotten);
# * **retain probability**: the same on the retain questions (higher = more kept);
# * **forget quality**: TOFU's KS-test p-value comparing the model's truth ratios on the forget set
#   with the retain model's (1 = indistinguishable from it);
# * **model utility**: TOFU's harmonic mean of probability, ROUGE and truth ratio on the retain
#   split and world facts.
#
# The retain model is evaluated once with the same metrics: the **oracle** point. Each run lands in
# its own folder under `runs_dir`, written all at once; rerunning this cell skips finished runs
# (delete the folder to start over, e.g. after changing the kit).

# %%
if results is None:
    world = uk.make_world(seed=seed, quick=quick)
    model, tok = uk.target_model(world, progress=False)
    reference = uk.retain_model(world, progress=False)
    configs = sensitivity_grid(methods, lr=lrs, steps=steps, factors=factors,
                               base={"probe_every": 0, "seed": seed})
    out = Path(runs_dir) / ("quick" if quick else "full") / f"seed{seed}"
    done_before = sum((out / run_name(c) / "summary.csv").exists() for c in configs)
    t0 = time.perf_counter()
    table = sweep(model, tok, world.forget, world.retain, configs, out, reference=reference, oracle=True,
                  eval_data={"forget": world.forget, "retain": world.retain, "world_facts": world.world_facts},
                  metrics=("probability", "forget_quality", "model_utility"), progress=not quick)
    table = table[table.run.isin({run_name(c) for c in configs} | {"oracle"})]  # this grid's runs only
    print(f"{len(configs)} runs ({done_before} already done in {out}); this cell took "
          f"{time.perf_counter() - t0:.0f} s")
else:
    table = pd.read_csv(results)
    print(f"read {results}")
board = viz.leaderboard_table(table)
print(f"{(~board.is_oracle).sum()} runs of {len(viz.leaderboard.table_methods(board))} methods"
      f"{', and the oracle' if board.is_oracle.any() else ' (no oracle: sweep with oracle=True to add it)'}")
board.loc[:, board.nunique(dropna=False) > 1].drop(columns="run").round(4).head(12)  # constant columns hidden

# %% [markdown]
# ## 2. The leaderboard
#
# Left: forget probability (the x axis runs right towards *more forgotten*) against retain
# probability. Each dot is a run; each method's line is its **Pareto front**, the runs no other run
# of that method beats on both axes. The gold star is the retain model: forgotten (it never saw the
# forget set) and fully useful. The best method is the one whose front comes closest to it.
#
# Right: TOFU's axes, forget quality (log scale; right of the dotted line at p = 0.05 a KS test
# cannot tell the model from the retain model) against model utility.

# %%
fig = viz.plot_leaderboard(board)
viz.save(fig, "07_leaderboard", figures_dir)

# %% [markdown]
# ### At equal steps, or at equal forgetting?
#
# The base runs share the learning rate and the number of steps. But at equal steps, a method that
# keeps more utility may simply have **forgotten less**: "gentler" and "weaker" look the same. The
# fair question is *how much utility does each method keep once it has forgotten as much as the
# others?* The **equal-forgetting level** is the highest of the methods' lowest forget
# probabilities (every method reached it); each method is represented by its most useful run at or
# below it (the ringed dots above).

# %%
runs = board[~board.is_oracle]
oracle = viz.leaderboard.oracle_row(board)
equal_steps = viz.base_runs(board).set_index("method")[["forget_probability", "retain_probability"]]
eq = viz.equal_forgetting_runs(board).set_index("method")[["forget_probability", "retain_probability"]]
compare = pd.concat([equal_steps.add_suffix(" (equal steps)"), eq.add_suffix(" (equal forgetting)")], axis=1)
best_steps = compare["retain_probability (equal steps)"].idxmax()
best_eq = compare["retain_probability (equal forgetting)"].idxmax()
print(f"At equal steps, {best_steps} keeps the most retain probability "
      f"({compare.loc[best_steps, 'retain_probability (equal steps)']:.3f}), but its forget probability is "
      f"{compare.loc[best_steps, 'forget_probability (equal steps)']:.3f}, the "
      f"{'highest' if compare['forget_probability (equal steps)'].idxmax() == best_steps else 'not the highest'} "
      "of the base runs.")
print(f"At equal forgetting (forget probability <= {eq.attrs['level']:.3f}), {best_eq} keeps the most: "
      f"{compare.loc[best_eq, 'retain_probability (equal forgetting)']:.3f}"
      + (f", against the retain model's {oracle.retain_probability:.3f} (which forgot down to "
         f"{oracle.forget_probability:.3f})." if oracle is not None else "."))
if best_steps != best_eq:
    print(f"The ranking changes: at equal steps {best_steps} looked best only because it had forgotten less.")
compare.round(3)

# %% [markdown]
# ## 3. Hyperparameter sensitivity
#
# Each panel moves one knob of one method, the others held at the base run. Red: forget
# probability; green: retain probability; blue: model utility. The dotted lines are the retain
# model's values: the target. A good knob moves red down towards its dotted line while green and blue
# stay on theirs.

# %%
fig = viz.plot_sensitivity_grid(board)
viz.save(fig, "07_sensitivity", figures_dir)

# %%
spread = []
for m in viz.leaderboard.table_methods(board):
    for h in viz.leaderboard.swept_hyperparameters(board, m):
        s = viz.sensitivity_table(board, m, h)
        spread.append({"method": m, "hyperparameter": h, "values": len(s),
                       "forget probability range": s.forget_probability.max() - s.forget_probability.min(),
                       "retain probability range": s.retain_probability.max() - s.retain_probability.min()})
spread = pd.DataFrame(spread)
for m, g in spread.groupby("method", sort=False):
    top = g.loc[g["forget probability range"].idxmax()]
    coef = main_coefficient(m)
    c = g[g.hyperparameter == coef]
    print(f"{m}: {top.hyperparameter} moves forgetting most (forget probability over a range of "
          f"{top['forget probability range']:.3f})"
          + (f"; its coefficient {coef} moves it by {c['forget probability range'].iloc[0]:.3f}" if len(c) else ""))
spread.round(3)

# %% [markdown]
# ### Explore: pick a method and a knob
#
# The **sensitivity explorer** draws one panel at a time, with the numbers underneath. Try NPO's
# `beta`, then its `lr`: which of the two is the knob that matters on this model?

# %% tags=["nbval-ignore-output"]
explorer = viz.SensitivityExplorer(board)
viz.save(explorer.figure, "07_sensitivity_explorer", figures_dir)
explorer

# %% [markdown]
# ## 4. Check yourself
#
# What must hold whatever the sweep: one row per run, every probability in [0, 1], every
# equal-forgetting pick at or below the level, and the oracle's forget quality 1 against itself. Runs
# that forget *more* than the retain model are counted: that is over-forgetting, not success. Rerun with other grids, e.g. `papermill -y '{lrs: [3e-4, 1e-3, 3e-3]}'`,
# or point `results` at the `results.csv` of your own `unlearnkit sweep ... --oracle`.

# %%
assert board.run.is_unique, "one row per run"
assert runs[["forget_probability", "retain_probability"]].stack().between(0, 1).all()
assert (viz.equal_forgetting_runs(board).forget_probability <= viz.equal_forgetting_runs(board).attrs["level"] + 1e-12).all()
if oracle is not None:
    assert oracle.forget_quality > 0.99, "the retain model is indistinguishable from itself"
    over = runs[runs.forget_probability < oracle.forget_probability]
    print(f"{len(over)} of {len(runs)} runs pushed the forget answers below the retain model's probability "
          f"({oracle.forget_probability:.3f}): over-forgetting, which a membership test could notice too"
          + (f" (e.g. {over.iloc[0].method}, retain probability {over.iloc[0].retain_probability:.3f})." if len(over)
             else "."))
print("All checks hold.")

# %% [markdown]
# ## 5. The papers' claims, as this course run measured them
#
# Every notebook records the headline claims of the paper it follows, with the verdict its own
# numbers give (`unlearnkit.claims`). Run the whole course with one `figures_dir` (`make book` does)
# and this table gathers them; claims no notebook measured in that folder say so.

# %%
claims.table(figures_dir)[["notebook", "paper", "claim", "verdict", "numbers"]]

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
uk.record_result(result_path, runs=len(runs), equal_forgetting_level=eq.attrs["level"],
                 best_at_equal_steps=best_steps, best_at_equal_forgetting=best_eq,
                 best_retain_at_equal_forgetting=compare.loc[best_eq, "retain_probability (equal forgetting)"],
                 oracle_forget_probability=None if oracle is None else oracle.forget_probability,
                 oracle_retain_probability=None if oracle is None else oracle.retain_probability,
                 over_forgetting_runs=None if oracle is None else len(over))

# %% [markdown]
# ## Summary
#
# * One run of one method is one point; a method is a **cloud of runs**, and its Pareto front is
#   what it can do on this model.
# * Compare methods **at equal forgetting**: at equal steps, the method that looks gentlest may simply
#   have forgotten least.
# * The **retain model** is the target on every axis: forgetting *more* than it (a forget probability
#   below its own) is over-forgetting, which a membership test can notice as well as under-forgetting.
# * A method's own coefficient is only one of its knobs: section 3 measured how far the learning rate
#   and the number of steps move it too. Tune all of them, and report them.
#
# This is the last notebook of the course. To compare your own method, register it
# (`unlearnkit.objectives.objective`), sweep it with `unlearnkit sweep --methods yours ga npo --oracle
# ...`, and point `results` here at the table.
