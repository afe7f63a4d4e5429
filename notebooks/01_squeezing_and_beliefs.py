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
# # 01 · Probability squeezing, and objectives that know the model's beliefs
#
# Unlearning lowers the probability of the answer it is shown. But a language model's probabilities
# over all possible answers add up to one: the mass taken from the target answer **must go
# somewhere**. If it lands on a *paraphrase* of the same fact, or on another answer the model already
# believed, the fact is hidden from the metric, not forgotten. This is the **squeezing effect**.
#
# In this notebook you will
#
# 1. watch gradient ascent (GA) squeeze the miniature model's answers, step by step, with the
#    **squeeze explorer** widget;
# 2. try the belief-aware objectives **BS-T** and **BS-S**, which also push down the model's own
#    high-likelihood answers, and compare where their mass goes;
# 3. see, computed on the spot, how a metric that compares with the original answer (ROUGE,
#    probability) can call a fact forgotten while the model still states it.
#
# Every number, table and sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value). quick=True shrinks everything for CI.
quick = False
seed = 0
steps = 30                         # unlearning steps of each objective
lr = 1e-4                          # learning rate (AdamW)
probe_every = 2                    # record probes every k steps
probe_size = 8                     # forget questions probed along the way
methods = ["ga", "bs_t", "bs_s"]   # objectives to compare (names from unlearnkit.list_objectives())
bs_lam = 0.5                       # BS-T / BS-S: share of the model's own beliefs in what is pushed down; 0 is plain GA
figures_dir = "figures"            # where PNG figures are written (None: do not save)
result_path = None                 # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import pandas as pd

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex

viz.setup()
pd.set_option("display.max_colwidth", 70)
p = uk.check_params(steps=steps, lr=lr, seed=seed, probe_every=probe_every, probe_size=probe_size)  # papermill values, checked
steps, lr, seed, probe_every, probe_size = p["steps"], p["lr"], p["seed"], p["probe_every"], p["probe_size"]
max_new_tokens = 48
if quick:  # CI: fewer steps and probes, shorter generations
    steps, probe_every, probe_size, max_new_tokens = min(steps, 12), max(probe_every, 2), min(probe_size, 4), 24
run = dict(steps=steps, lr=lr, probe_every=probe_every, probe_size=probe_size, max_new_tokens=max_new_tokens,
           seed=seed, progress=False)

# %% [markdown]
# ## 1. The miniature world and its model
#
# Each fictitious person has a few facts. Each fact is a question with an **answer** (phrasing A), a
# **paraphrased answer** (phrasing B, the same fact in other words) and **perturbed answers** (phrasing
# A with a wrong value). The tiny model was trained on both phrasings, so the paraphrase is a real,
# likely alternative: somewhere for the mass to go.

# %%
world = uk.make_world(seed=seed, quick=quick)
model, tok = uk.target_model(world, progress=False)
forget, retain = world.forget, world.retain
forget.to_pandas()[["id", "question", "answer", "paraphrased_answer"]].head(probe_size)

# %% [markdown]
# ## 2. Gradient ascent, probed at every step
#
# GA maximizes the loss of the forget answers. `unlearn` trains a copy of the model and, every
# `probe_every` steps, records on the first `probe_size` forget questions the probability mass of the
# target answer, the paraphrase, the perturbed answers and the model's own greedy answers.

# %%
results = {"GA": uk.unlearn(model, tok, forget, retain, method="ga", **run)}
ga = results["GA"]
fig = viz.plot_trajectory(ga.probes, split="forget", quantities=("target", "paraphrase", "perturbed"))
viz.save(fig, "01_ga_trajectory", figures_dir)

# %%
sq = ga.squeeze_summary("forget")
t, p = sq.loc["target"], sq.loc["paraphrase"]
print(ga.squeeze_story("forget"))
claims.record("squeeze", figures_dir, setting="quick" if quick else "", target_before=t.start, target_after=t.end,
              paraphrase_before=p.start, paraphrase_after=p.peak)
sq.round(3)

# %% [markdown]
# ## 3. Look closer: the squeeze explorer
#
# Pick a forget question and move the **step** slider. The top panel shows, before unlearning (hatched)
# and at the chosen step (solid), the mass of
#
# * the **target** answer, the **paraphrase**, and all **perturbed** (wrong) answers together,
# * the model's **greedy answer before** unlearning and its **greedy answer now**,
# * **everything else**: one minus the mass of every *distinct* answer above. When the greedy answer
#   *is* the target or the paraphrase (dotted bar, "= paraphrase"), its mass is counted once.
#
# The lower panels go down to single tokens: at the first answer positions (teacher-forced on the
# target), the most likely next tokens before and now, coloured by the answer each token would
# continue. Watch the first token: is the mass leaving the target's first word moving onto the
# paraphrase's first word?

# %% tags=["nbval-ignore-output"]
explorer = viz.SqueezeExplorer(results, forget)
viz.save(explorer.figure, "01_squeeze_explorer_ga", figures_dir)
explorer

# %%
first = explorer.table.set_index("kind")
print(f"Question: {explorer.table.attrs['question']}  (step {explorer.step.value})")
for kind in ("target", "paraphrase", "belief", "other"):
    r = first.loc[kind]
    print(f"  {viz.LABELS.get(kind, kind):32s} {r.before:6.3f} -> {r.after:6.3f}   {r.text}")

# %% [markdown]
# ### Exercise 1 · When does the paraphrase overtake the target?
#
# > Difficulty ●○○○○ · ~3 min
#
# Using the explorer (or `ga.summary()`), find the **first probe step** at which the *mean* mass of
# the paraphrase, over the probed questions, is larger than the mean mass of the target. Write
# `None` if it never happens.

# %% exercise="crossover"
crossover_step = ...  # your answer: a step number, or None

# %%
ex.check_crossover(ga, crossover_step)


# %% [markdown]
# ### Exercise 2 · Counting each answer once
#
# > Difficulty ●●○○○ · ~5 min
#
# The explorer's "everything else" bar is `1 - Σ` over the masses of the **distinct** answers. Write
# `rest_mass(answers)`: `answers` is a list of `(text, mass)` pairs in which the same sentence can
# appear twice (the greedy answer may be the paraphrase, perhaps with different spacing). Count each
# distinct text once, and never return less than 0.

# %% exercise="rest_mass"
def rest_mass(answers):
    """Mass on everything else: 1 - the sum over distinct answer texts, at least 0."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ex.check_rest_mass(rest_mass)

# %% [markdown]
# ## 4. Objectives that know the model's beliefs: BS-T and BS-S
#
# The squeeze happens because GA only pushes down the *one* answer it is shown. The belief-space
# objectives add a second term that also pushes down what the model itself finds likely:
#
# * **BS-T** (token level): at each answer position, the model's top-k next tokens;
# * **BS-S** (sequence level): whole answers sampled from the model (regenerated every few steps).
#
# Both are trained below with the same steps and learning rate as GA, on the same model, with
# `bs_lam` (the belief share λ; λ = 0 is plain GA). Do they keep the mass from flowing into the
# paraphrase?

# %%
names = {"ga": "GA", "bs_t": "BS-T", "bs_s": "BS-S"}
for m in methods:
    if names.get(m, m) not in results:
        extra = {"lam": bs_lam} if m in ("bs_t", "bs_s") else {}
        results[names.get(m, m)] = uk.unlearn(model, tok, forget, retain, method=m, **run, **extra)
fig = viz.plot_method_trajectories(results, quantities=("target", "paraphrase", "belief"))
viz.save(fig, "01_objectives_trajectories", figures_dir)

# %%
fig = viz.plot_where_mass_goes(results, forget)
viz.save(fig, "01_where_mass_goes", figures_dir)
ends = viz.mass_table(results, forget)  # mean mass of each kind of answer at each run's last step
ends.round(3)

# %%
best = ends["paraphrase"].idxmin()
print(f"At the last step the paraphrase holds the least mass under {best} ({ends.loc[best, 'paraphrase']:.3f}); "
      f"under GA it holds {ends.loc['GA', 'paraphrase']:.3f}.")
for name in ends.index:
    if name != "GA":
        d = ends.loc[name, "paraphrase"] - ends.loc["GA", "paraphrase"]
        print(f"  {name}: {d:+.3f} paraphrase mass vs GA, target {ends.loc[name, 'target']:.3f} "
              f"(GA {ends.loc['GA', 'target']:.3f})")

# %% [markdown]
# ### The same comparison at equal forgetting
#
# The table above compares the objectives after the **same number of steps**. If BS-T or BS-S also
# lowered the target less, "less squeezing" and "less unlearning" cannot be told apart. So read each
# run as a path instead: target mass (how much was forgotten) on the x axis, paraphrase mass (how
# much was squeezed) on the y axis, and compare the objectives where their paths cross the same
# target mass (the dashed lines: down to the lowest target mass *every* objective reached).

# %%
fig = viz.plot_equal_forgetting(results, x="target", y="paraphrase")
viz.save(fig, "01_equal_forgetting", figures_dir)
fair = viz.at_equal_forgetting(results, x="target", y="paraphrase")
fair.pivot(index="level", columns="method", values="paraphrase").round(3)

# %%
deepest = fair[fair.level == fair.level.min()].set_index("method")
print(f"At target mass {deepest.level.iloc[0]:.3f}, reached by every objective, the paraphrase holds: "
      + ", ".join(f"{m} {v:.3f} (step {s:.1f})" for m, v, s in zip(deepest.index, deepest.paraphrase, deepest.step)))
if {"GA", "BS-T", "BS-S"} <= set(deepest.index):
    claims.record("beliefs_squeeze_less", figures_dir, setting=f"target mass {deepest.level.iloc[0]:.2f}",
                  ga=deepest.loc["GA", "paraphrase"], bs_t=deepest.loc["BS-T", "paraphrase"],
                  bs_s=deepest.loc["BS-S", "paraphrase"])

# %% [markdown]
# Read the numbers above before you believe the method's name: whether the beliefs' term stops the
# squeeze depends on λ, on the learning rate and on how far apart the two phrasings start. Switch
# between the objectives in the explorer (the buttons at the top) and compare, question by question
# and step by step, where the mass goes; in the token panels, see how much of the paraphrase's first
# token survives. Then rerun with another `bs_lam` (e.g. `papermill -p bs_lam 0.9`).

# %% tags=["nbval-ignore-output"]
compare = viz.SqueezeExplorer(results, forget)
viz.save(compare.figure, "01_squeeze_explorer_compare", figures_dir)
compare

# %% [markdown]
# ## 5. Why ROUGE (and the target's probability) can misreport
#
# TOFU-style metrics compare the model with the **original answer**: ROUGE-L recall of the greedy
# answer against it, and the probability of that exact answer. A model that now says the fact *in
# other words* scores low on both, as if it had forgotten. The miniature world knows every fact's
# value, so we can also ask the direct question: **does the answer still state the fact?**
# (`fact_recall`: the true value, a wrong value, a refusal, collapsed babble, or none).

# %%
table = uk.metrics.misreport_table(ga.model, tok, forget, before=model, max_new_tokens=max_new_tokens)
fooled = table[table.misreported]
print(f"{len(fooled)} of {len(table)} forget questions: ROUGE fell below 0.5 after GA while the answer "
      "still states the true value.")
table[["question", "value", "answer_before", "answer", "rouge_before", "rouge", "states"]]

# %%
if len(fooled):
    r = fooled.iloc[0]
    print(f"Q: {r.question}\n  before: {r.answer_before!r} (ROUGE {r.rouge_before:.2f})\n"
          f"  after GA: {r.answer!r} (ROUGE {r.rouge:.2f}), and it still says {r.value!r}.")
else:
    print("No such case in this run: every answer whose ROUGE fell also lost the fact.")

# %% [markdown]
# The same comparison for every model, on the whole forget split. `truth_ratio` (forget: closer to 1
# = the model cannot tell the true answer from wrong ones) is computed on the **paraphrased** answer
# against the perturbed ones, so a squeeze into the paraphrase does not fool it the way it fools the
# target's probability and ROUGE: compare the columns.

# %%
metrics = ["probability", "rouge", "truth_ratio", "fact_recall"]
frames = [uk.evaluate(model, tok, {"forget": forget}, metrics, model_name="before", progress=False,
                      max_new_tokens=max_new_tokens)]
frames += [uk.evaluate(r.model, tok, {"forget": forget}, metrics, model_name=name, progress=False,
                       max_new_tokens=max_new_tokens) for name, r in results.items()]
summary = uk.summarize(pd.concat(frames))
fig = viz.plot_metric_table(summary, title="Forget split: what each metric says")
viz.save(fig, "01_metric_table", figures_dir)
wide = summary.pivot_table(index="model", columns="metric", values="value", sort=False)
wide.round(3)

# %%
for name in results:
    w = wide.loc[name]
    says_gone = w["rouge"] < 0.5 * wide.loc["before", "rouge"]
    print(f"{name:5s}: ROUGE {wide.loc['before', 'rouge']:.2f} -> {w['rouge']:.2f}"
          f"{' (looks forgotten)' if says_gone else ''}; fact still stated in {w['fact_recall']:.0%} of answers; "
          f"truth ratio {wide.loc['before', 'truth_ratio']:.3f} -> {w['truth_ratio']:.3f}")


# %% [markdown]
# ### Exercise 3 · Does the answer still state the fact?
#
# > Difficulty ●●○○○ · ~5 min
#
# Write `states_fact(answer, value)`: `True` if the generated `answer` states `value`, in any
# phrasing and any letter case, as a whole word (`"19985"` does not state `"1998"`).

# %% exercise="states_fact"
def states_fact(answer, value):
    """True if the answer states the value (case-insensitive, whole word)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ex.check_states_fact(states_fact)

# %% [markdown]
# ## 6. Check yourself
#
# The cell below checks what this run did. Change `lr`, `steps` or `methods` in the parameters cell
# (or `papermill -p lr 3e-4`) and see which statements still hold.

# %%
assert sq.loc["target", "end"] < sq.loc["target", "start"], "GA did not lower the target's mass"
assert (ends.sum(axis=1) <= 1 + 1e-6).all(), "each distinct answer must be counted once"
print(f"GA: target {sq.loc['target', 'start']:.3f} -> {sq.loc['target', 'end']:.3f}; "
      f"paraphrase peak {sq.loc['paraphrase', 'peak']:.3f}; misreported by ROUGE: {len(fooled)} of {len(table)}")

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
uk.record_result(result_path, ga_target_before=sq.loc["target", "start"], ga_target_after=sq.loc["target", "end"],
                 ga_paraphrase_peak=sq.loc["paraphrase", "peak"], equal_forgetting_level=deepest.level.iloc[0],
                 **{f"paraphrase_at_equal_forgetting_{n.lower().replace('-', '_')}": v
                    for n, v in deepest.paraphrase.items()},  # GA, BS-T, BS-S: the beliefs claim's numbers
                 rouge_misreported_share=len(fooled) / len(table))


# %% [markdown]
# ## Summary
#
# * Probabilities add up to one: the mass GA takes from the target goes somewhere. Where it went in
#   this run (the paraphrase, the perturbed answers, anything else) is measured in sections 2 and 3.
# * BS-T and BS-S also push down what the model itself believes. Whether they squeeze less must be
#   read **at equal forgetting**, not after equal steps (section 4); the claim's verdict on this run
#   is printed there.
# * A metric that compares with the original answer (ROUGE, its probability) can call a fact
#   forgotten while the answer still states it (section 5).
# * Exercises: when the paraphrase overtakes the target; counting each answer once; does the answer
#   still state the fact?
#
# **Next:** [02 · Entropy and answer preservation](02_entropy_and_answer_preservation.ipynb)
