# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · To each sequence its own: memorization-aware unlearning
#
# Language models memorize some training sequences verbatim and others hardly at all. Barbulescu &
# Triantafillou (ICML 2024) argue that an unlearning method judged by the **average** memorization of
# the forget set can stop while a few sequences are **still extractable**, and that methods which
# treat each sequence by its own memorization close that gap:
#
# * **SGA** (selective gradient ascent) only pushes down the sequences still memorized above a threshold;
# * **TA** (task arithmetic) re-fits the forget set and subtracts what that re-fitting adds;
# * **TAU** is TA started from SGA.
#
# In this notebook you will
#
# 1. measure the miniature model's memorization of free-text records it saw 1, 3, 9 or 27 times in training;
# 2. run gradient ascent (GA) until the forget set's *average* memorization reaches the level of text
#    the model never saw, then count the sequences still above that level and attack them;
# 3. run SGA, TA and TAU to the same stopping rule and compare, at the retain utility each keeps;
# 4. look at single sequences, token by token, before and after each method.
#
# Every number and sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value). quick=True shrinks everything for CI.
quick = False
seed = 0
lr = 1e-4                 # learning rate of every method (AdamW)
max_steps = 200           # upper bound on unlearning steps (each method stops on its own rule)
batch_size = 4            # forget records per step (an epoch is 16 / batch_size steps)
el_n = 4                  # n of EL_n (the paper uses 10 on 200-token sequences; records here are ~20 tokens)
prefix_len = 4            # record tokens the attacker knows (besides the record's header)
n_samples = 4             # sampled continuations per record in the attack (besides the greedy one)
figures_dir = "figures"   # where PNG figures are written (None: do not save)
result_path = None        # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import pandas as pd
from IPython.display import Markdown, display

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex
from unlearnkit import memorization as mem
from unlearnkit.objectives.memorization import last_run, ma_history

viz.setup()
pd.set_option("display.max_colwidth", 80)
if quick:  # CI: fewer attack samples (the methods stop on their own rules, in 40-90 steps here)
    n_samples = min(n_samples, 2)
run = dict(lr=lr, steps=max_steps, batch_size=batch_size, probe_every=0, seed=seed, progress=False)

# %% [markdown]
# ## 1. Records the model saw 1 to 27 times
#
# The memorization world gives every fictitious person four free-text **records** (a short biography,
# a private note, an ID number, an address). During training the target model saw each record 1, 3, 9
# or 27 times in all, spread over the epochs (`WorldConfig.repetitions`); every person has one record
# at each level, while each question/answer fact was seen about 160 times. The
# records of the *holdout* people were never trained on: they are **unseen text of the same kind**, and
# the model's memorization of them is the level an unlearned sequence should come down to.

# %%
# the quick memorization world in both modes: its model (built once, cached) already shows the spread
world = uk.make_world(seed=seed, quick=True, memorization=True)
model, tok = uk.target_model(world, progress=False)
forget, retain_rec, unseen = world.forget_records, world.retain_records, world.holdout_records
forget.to_pandas()[["id", "kind", "repetitions", "question", "answer"]].head(8)

# %% [markdown]
# **Memorization accuracy (MA)** of a sequence is the share of its tokens that the model's greedy
# next-token guess gets right when it is shown the true tokens before (teacher forcing). **EL_n**
# (extraction likelihood) lets the model *generate* from every prefix and counts how many of the true
# n-grams come out. Both are per sequence, in [0, 1].

# %%
def scored(m, data, name):
    s = mem.memorization_scores(m, tok, data, el_n=el_n)
    info = data.to_pandas()[["id", "kind", "repetitions"]]
    return s.merge(info, on="id").assign(model=name)

before = pd.concat([scored(model, forget, "target").assign(split="forget"),
                    scored(model, retain_rec, "target").assign(split="retain"),
                    scored(model, unseen, "target").assign(split="unseen")], ignore_index=True)
unseen_ma = before.query("split == 'unseen' and quantity == 'ma'").value.mean()
unseen_el = before.query("split == 'unseen' and quantity == 'el'").value.mean()
seen = before[(before.split != "unseen")]
spread = seen.pivot_table(index="repetitions", columns="quantity", values="value", aggfunc="mean")
spread.round(3)

# %%
fig = viz.plot_memorization_spread(seen, quantity="ma", unseen=unseen_ma,
                                   title="MA of each trained record vs times seen in training")
viz.save(fig, "03_memorization_spread", figures_dir)
lo, hi = spread["ma"].iloc[0], spread["ma"].iloc[-1]
verbatim = int((seen.query("quantity == 'ma'").value == 1.0).sum())
n_seen = int((seen.quantity == "ma").sum())
display(Markdown(
    f"Records seen once in training reach a mean MA of **{lo:.2f}**, records seen "
    f"{spread.index[-1]} times reach **{hi:.2f}**; {verbatim} of {n_seen} trained records are reproduced "
    f"verbatim under teacher forcing (MA = 1). On never-seen records of the same kind the model reaches "
    f"MA **{unseen_ma:.2f}** (EL_{el_n} {unseen_el:.2f}): the templates are easy to guess, the values are not. "
    f"That unseen level is our threshold: a forget record above it is still memorized."))

# %% [markdown]
# ### Exercise 1: MA by hand
#
# `preds[t]` is the model's greedy guess for token `t` given the true tokens before it. Write the
# memorization accuracy of the sequence.

# %% exercise="memorization_accuracy"
def memorization_accuracy(preds, target):
    raise NotImplementedError  # your code here

# %%
ex.check_memorization_accuracy(memorization_accuracy)

# %% [markdown]
# ## 2. Gradient ascent, stopped on the average
#
# The paper's GA baseline runs gradient ascent on the forget set and re-scores every sequence's MA
# after each epoch; it stops when the forget set's **mean** MA falls below the threshold (here: the
# unseen level). In the kit that is the `sga` objective with `mem_threshold=0` (every sequence is
# updated); per-sequence MA along the run is kept in the run's store (`ma_history()`).

# %%
methods = {
    "GA": ("sga", dict(mem_threshold=0.0, ma_threshold=unseen_ma)),
    "SGA": ("sga", dict(mem_threshold=0.70, ma_threshold=unseen_ma)),
    "TA": ("task_arithmetic", dict(ma_threshold=unseen_ma)),
    "TAU": ("tau", dict(ma_threshold=unseen_ma)),
}
results, stores = {}, {}

def run_method(name):
    method, hp = methods[name]
    res = uk.unlearn(model, tok, forget, method=method, **run, **hp)
    results[name], stores[name] = res, last_run()
    return res

ga = run_method("GA")
print(f"GA: {len(ga.log)} steps; {ga.stopped or 'ran all steps without reaching the threshold'}")

# %%
def outliers(m):
    t = uk.evaluate(m, tok, {"forget": forget}, metrics=["memorization_outliers"], holdout=unseen,
                    original=(model, tok), progress=False)
    return t[t.id == -1].iloc[0]

o_ga = outliers(ga.model)
ma_ga = mem.per_sequence_ma(ga.model, tok, forget)
display(Markdown(f"After GA the forget set's mean MA is **{ma_ga.mean():.2f}** (threshold {unseen_ma:.2f}). "
                 f"But {o_ga.statement}."))

# %% [markdown]
# ### Exercise 2: which records does GA leave extractable?
#
# The attacker knows each forget record's header and its first `prefix_len` tokens, and lets the model
# continue (greedily, and `n_samples` times by sampling). A record counts as **recovered** if a
# continuation is verbatim, or if its n-gram overlap with the true rest is at least 0.5. Before running
# the attack, look at the MA after GA and the records' repetitions, and predict the ids it recovers.

# %%
after_ga = pd.DataFrame({"id": forget["id"], "kind": forget["kind"], "repetitions": forget["repetitions"],
                         "MA before": mem.per_sequence_ma(model, tok, forget), "MA after GA": ma_ga})
after_ga.sort_values("MA after GA", ascending=False).round(2)

# %% exercise="extractable"
extractable = ...  # your prediction: a list of record ids, e.g. [3, 17]

# %%
def attack(m):
    a = mem.extraction_attack(m, tok, forget, prefix_len=prefix_len, n_samples=n_samples, el_n=el_n, seed=seed)
    return mem.recovered_table(a)

rec = {"target": attack(model), "GA": attack(ga.model)}

# %%
ex.check_extractable(rec["GA"], extractable)

# %%
r = rec["GA"]
display(Markdown(f"The attack recovers **{int(r.recovered.sum())}** of {len(r)} forget records from the target "
                 f"model's GA copy (it recovered {int(rec['target'].recovered.sum())} from the target model)."))
if r.recovered.sum() == 0:
    print(f"With {prefix_len} known tokens the attack recovers nothing after GA: the records GA leaves above the "
          "line are still partly memorized (their MA is teacher-forced), but no longer extractable from a short "
          "prefix. On the miniature, MA finds what this attack misses.")
r[r.recovered][["id", "target", "greedy", "best_el"]]

# %% [markdown]
# ## 3. SGA, TA and TAU to the same threshold
#
# * **SGA** updates, in each batch, only the records whose MA is still above `mem_threshold` (0.70, the
#   paper's), and always the batch's most memorized one.
# * **TA** runs GA until the mean MA < 0.9, snapshots the weights θ_s, then *fine-tunes* on the forget
#   set; at every epoch it evaluates θ_s + c (θ_t − θ_s) with c = −3 and stops once that edited model's
#   mean MA is below the threshold. **TAU** does the same from SGA (switch at 0.5, c = −1).

# %%
for name in ("SGA", "TA", "TAU"):
    res = run_method(name)
    print(f"{name}: {len(res.log)} steps; {res.stopped or 'ran all steps'}")

# %%
def utility(m):
    t = uk.evaluate(m, tok, {"retain": world.retain}, metrics=["probability"], progress=False)
    return float(t.value.mean())

models = {"target": model, **{k: v.model for k, v in results.items()}}
rows = []
for name, m in models.items():
    o = outliers(m)
    if name not in rec:
        rec[name] = attack(m)
    rows.append({"model": name, "steps": len(results[name].log) if name in results else 0,
                 "forget mean MA": mem.per_sequence_ma(m, tok, forget).mean(), "above unseen MA": int(o.value),
                 "std MA": o["std"], "recovered by attack": int(rec[name].recovered.sum()),
                 "retain records MA": mem.per_sequence_ma(m, tok, retain_rec).mean(),
                 "retain QA probability": utility(m)})
summary = pd.DataFrame(rows).set_index("model")
summary.round(3)

# %%
ma_all = pd.concat([pd.DataFrame({"model": n, "value": mem.per_sequence_ma(m, tok, forget)}) for n, m in models.items()])
fig = viz.plot_ma_histograms(ma_all, high=unseen_ma)
viz.save(fig, "03_ma_histograms", figures_dir)

# %%
u = summary.drop(index="target")
best = u["above unseen MA"].idxmin()
ga_n, best_n = int(u.loc["GA", "above unseen MA"]), int(u.loc[best, "above unseen MA"])
if best_n < ga_n:
    claim = (f"**{best}** leaves {best_n} forget records above the unseen level against GA's {ga_n}, "
             f"with retain QA probability {u.loc[best, 'retain QA probability']:.3f} vs GA's "
             f"{u.loc['GA', 'retain QA probability']:.3f}.")
else:
    claim = (f"On this run no method leaves fewer records above the unseen level than GA ({ga_n}): the miniature "
             "does not reproduce the paper's gap here.")
worse = [k for k in u.index if k != "GA" and u.loc[k, "above unseen MA"] > ga_n]
if worse:
    claim += (f" {' and '.join(worse)} leave *more* records above the line than GA: they stop as soon as the mean "
              "of the (edited) model crosses it, and on the miniature that happens while several records are still "
              "above, so here the miniature reproduces the gap for the methods listed above it, not for these.")
n_above = u["above unseen MA"].astype(int)
claims.record("sga_fewer_outliers", figures_dir, setting="quick" if quick else "", ga_outliers=n_above.get("GA"), sga_outliers=n_above.get("SGA"))
claims.record("tau_fewer_outliers", figures_dir, setting="quick" if quick else "", ga_outliers=n_above.get("GA"), ta_outliers=n_above.get("TA"),
              tau_outliers=n_above.get("TAU"))
display(Markdown(claim + " Per method: " + "; ".join(
    f"{k}: {int(v['above unseen MA'])} above, {int(v['recovered by attack'])} recovered, {int(v.steps)} steps"
    for k, v in u.iterrows()) + "."))

# %% [markdown]
# ### Each sequence's own trajectory
#
# The objectives re-score every forget record after each epoch. GA pushes all records at once; SGA
# leaves a record alone once it is below 0.70 and keeps pushing the rest.

# %%
reps = dict(zip(forget["id"], forget["repetitions"]))
hist = {k: ma_history(st).assign(repetitions=lambda d: d.id.map(reps)) for k, st in stores.items()}
fig = viz.plot_ma_trajectories(hist["GA"][hist["GA"].model == "training"], threshold=unseen_ma,
                               title="GA: MA of each forget record")
viz.save(fig, "03_trajectories_ga", figures_dir)
fig = viz.plot_ma_trajectories(hist["SGA"][hist["SGA"].model == "training"], threshold=unseen_ma,
                               title="SGA: MA of each forget record")
viz.save(fig, "03_trajectories_sga", figures_dir)
upd = pd.DataFrame({"id": stores["SGA"]["ids"], "SGA updates": stores["SGA"]["updates"],
                    "GA updates": stores["GA"]["updates"]}).assign(repetitions=lambda d: d.id.map(reps))
upd.groupby("repetitions")[["GA updates", "SGA updates"]].mean().round(1)

# %% [markdown]
# ## 4. One sequence, token by token
#
# Pick a forget record. Each row is a model; a token is green when the model's greedy guess for it
# (given the true tokens before) is right, red when it is not. The row's share of green is its MA.

# %%
tables = {name: mem.token_match_table(m, tok, forget) for name, m in models.items()}
first = int(after_ga.sort_values("MA after GA", ascending=False).id.iloc[0])
explorer = viz.MemorizationExplorer(tables, labels=dict(zip(forget["id"], forget["answer"])), sequence=first)
viz.save(explorer.figure, "03_token_explorer", figures_dir)
explorer

# %%
print(f"Record {first}: " + ", ".join(f"{k} MA {v:.2f}" for k, v in explorer.ma.items()))

# %% [markdown]
# ## 5. Membership: the perturbation test (MIAU)
#
# The paper's MIAU compares a sequence's likelihood with that of perturbed copies (T5 mask filling).
# The miniature has no T5; each record's perturbations are **the same template with other values from
# the world's own vocabulary** (another code, passport number, street...). A high score says "member".

# %%
miau = pd.DataFrame([{"model": n, "forget": mem.miau_scores(m, tok, forget).value.mean(),
                      "unseen": mem.miau_scores(m, tok, unseen).value.mean()} for n, m in models.items()])
miau = miau.assign(gap=lambda d: d.forget - d.unseen).set_index("model")
display(Markdown("Mean MIAU score on forget minus unseen records (0: indistinguishable): " + "; ".join(
    f"{k} {v:.2f}" for k, v in miau.gap.items()) + "."))
miau.round(2)

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
uk.record_result(result_path, unseen_ma=unseen_ma,
                 **{f"{k.lower()}_above_unseen": int(v) for k, v in u["above unseen MA"].items()},  # GA, SGA, TA, TAU
                 ga_recovered_by_attack=int(u.loc["GA", "recovered by attack"]),
                 ga_retain_probability=u.loc["GA", "retain QA probability"],
                 sga_retain_probability=u.loc["SGA", "retain QA probability"])


# %% [markdown]
# ## Summary
#
# * Records seen more often are memorized more: per-sequence memorization (MA, EL_n) spreads them out.
# * Gradient ascent stopped on the *average* leaves the most memorized records extractable; SGA, TA
#   and TAU stop on each record's own memorization. Which of them closes the gap on the miniature is
#   measured and recorded above; the paper's claim and this run's verdict may differ.
# * Exercises: MA by hand; which records GA leaves extractable.
#
# **Next:** [04 · Related knowledge and UIPE](04_related_knowledge.ipynb)
