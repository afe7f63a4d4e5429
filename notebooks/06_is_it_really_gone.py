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
# # 06 · Is it really gone? Membership inference and robustness attacks
#
# An unlearned model that no longer *says* a fact may still *know* it. This notebook puts unlearned
# models through the tests researchers use to tell the two apart, and compares each with the
# **retain model**: the model trained without the forget set. That model is the gold standard of
# forgetting. Anything that separates an unlearned model from it is a trace of what was meant to be
# gone.
#
# * **Membership inference (MIA)**: can an attacker tell the forget rows from rows the model never
#   saw (a *holdout* split of never-trained people) using the model's losses alone? This is
#   summarized as an AUC: 1 means they are perfectly separable (still "members"), 0.5 means no better
#   than chance, as for the retain model. **PrivLeak** (MUSE) puts the AUC relative to the retain
#   model's: 0 is ideal, large negative values mean the forget set still leaks.
# * **Robustness attacks**: does the knowledge come back after a few fine-tuning steps on *other*
#   rows (**relearning**), after rounding the weights to 4 bits (**quantization**), when the question
#   is rephrased (**paraphrase probe**), or when the first words of the answer are given
#   (**prefix probe**)?
#
# Every number and sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value, or -y for the dicts). quick=True shrinks everything for CI.
quick = False
seed = 0
steps = 30                          # unlearning steps of each objective
lrs = {"ga": 3e-4, "npo": 3e-4}     # objective -> learning rate
max_new_tokens = 32                 # length of the greedy answers the metrics read
figures_dir = "figures"             # where PNG figures are written (None: do not save)
result_path = None                 # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import pandas as pd

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex

viz.setup()
pd.set_option("display.max_colwidth", 60)
p = uk.check_params(steps=steps, seed=seed, max_new_tokens=max_new_tokens)  # papermill values, checked
steps, seed, max_new_tokens = p["steps"], p["seed"], p["max_new_tokens"]
if quick:  # CI: fewer steps (the quick world's tiny model forgets, and collapses, much faster)
    steps = min(steps, 8)
names = {"ga": "GA", "npo": "NPO"}

# %% [markdown]
# ## 1. The world, the target model and the retain model
#
# The **holdout** split holds people that no model was trained on: the attacker's yardstick for
# "never seen".

# %%
world = uk.make_world(seed=seed, quick=quick)
model, tok = uk.target_model(world, progress=False)
retain_model, _ = uk.retain_model(world, progress=False)
forget, holdout = world.forget, world.split("holdout")
print(f"{len(forget)} forget questions, {len(holdout)} holdout questions (never trained on), "
      f"{len(world.retain)} retain questions")

# %%
results = {names.get(m, m): uk.unlearn(model, tok, forget, world.retain, method=m, steps=steps, lr=lr, seed=seed,
                                        probe_every=0, progress=False)
           for m, lr in lrs.items()}
models = {"target": model, "retain": retain_model, **{name: r.model for name, r in results.items()}}
for r in results.values():
    print(r)

# %% [markdown]
# ## 2. Membership inference
#
# Each attack gives every row a score that is **higher when the row looks less like training
# data**: the mean loss of its answer tokens (**LOSS**), that loss divided by the text's zlib
# compressed size (**zlib**), minus the mean of its 40% least likely tokens (**Min-K%**), the same on
# calibrated log-probs (**Min-K%++**), the loss minus the retain model's loss (**reference**), and the
# size of the gradient it would cause (**GradNorm**). The AUC asks how well a threshold on the
# score separates forget rows (members) from holdout rows.

# %%
data = {"forget": forget}
mia = pd.concat([uk.evaluate(m, tok, data, ["mia", "privleak"], holdout=holdout, reference=(retain_model, tok),
                             model_name=name, progress=False) for name, m in models.items()], ignore_index=True)
summary = uk.summarize(mia)
aucs = summary[summary.split == "forget_vs_holdout"].pivot_table(index="model", columns="metric", values="value",
                                                                 sort=False)
aucs.round(3)

# %%
fig = viz.plot_mia_scores(mia, "mia_min_k")
viz.save(fig, "06_mia_scores", figures_dir)

# %%
auc = aucs["mia_min_k"]
print(f"Min-K% AUC, forget vs holdout: target {auc['target']:.2f}, retain model {auc['retain']:.2f}, "
      + ", ".join(f"{n} {auc[n]:.2f}" for n in results) + ".")
for n in results:
    gap = auc[n] - auc["retain"]
    if abs(gap) <= ex.AUC_LIKE_RETAIN:  # (the margin the exercise below judges by)
        verdict = "about as separable as for the retain model: by this attack the forget rows look unseen"
    elif gap > 0:
        verdict = "more separable than for the retain model: the forget rows still look like training data"
    else:
        verdict = ("*less* than chance-like: the forget rows now look less likely than never-seen rows, "
                   "which is a trace of unlearning too (over-unlearning)")
    print(f"  {n}: {gap:+.2f} against the retain model, {verdict}. PrivLeak {aucs.loc[n, 'privleak']:+.1f}.")


# %% [markdown]
# ### Exercise 1 · Min-K%
#
# > Difficulty ●●○○○ · ~5 min
#
# Write `min_k(token_logprobs, k)`: sort the token log-probs (lowest first), keep the
# `n = max(1, int(k * T))` lowest of the `T`, and return **minus** their mean. A row whose rarest
# tokens are still likely scores low: it looks like a member.

# %% exercise="min_k"
def min_k(token_logprobs, k=0.4):
    """Min-K% membership score (nats): higher = looks less like training data."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ex.check_min_k(min_k)

# %% [markdown]
# ### Exercise 2 · Closest to the gold standard
#
# > Difficulty ●○○○○ · ~2 min
#
# From the AUC table, which **unlearned** model (not `target`, not `retain`) has the Min-K% AUC
# closest to the retain model's? Give its name as it appears in the table.

# %% exercise="closest_to_retain"
closest = ...  # a model name from the AUC table, e.g. "GA"

# %%
ex.check_closest_to_retain(summary, closest)

# %% [markdown]
# ## 3. Robustness attacks: removed or hidden?
#
# Each attack is measured on the forget questions, before and under the attack, for every model.
# The relearning attack fine-tunes a copy for a few steps on a quarter of the forget rows and scores
# the *other* rows. If their answers come back, the knowledge was suppressed, not erased. The retain
# model shows what relearning does to a model that never knew those facts.

# %% [markdown]
# ### Exercise 3 · Predict, then measure
#
# > Difficulty ●○○○○ · ~2 min
#
# Before running the attacks: will relearning raise the probability of GA's held-back forget
# answers **more** than it raises the retain model's (a model that never saw those facts)? Write
# down `True` or `False`, then run the attacks.

# %% exercise="relearning_prediction"
prediction = ...  # True or False

# %%
robust = pd.concat([uk.evaluate(m, tok, data, ["robustness", "rouge", "collapse"], model_name=name, progress=False,
                                max_new_tokens=max_new_tokens) for name, m in models.items()], ignore_index=True)
attacks = viz.attack_table(robust)
fig = viz.plot_attacks(attacks)
viz.save(fig, "06_attacks", figures_dir)
attacks.round(3)

# %%
att = attacks.set_index(["model", "attack"])
rel = "relearning (a few steps on other rows)"
for n in results:
    r, base = att.loc[(n, rel)], att.loc[("retain", rel)]
    ratio = r.after / max(r.before, 1e-12)
    print(f"{n}: relearning moves the held-back answers' probability from {r.before:.3f} to {r.after:.3f} "
          f"({ratio:.1f}x); the retain model, which never knew them, goes from {base.before:.3f} to {base.after:.3f}.")
    for kind in ("paraphrased question", "answer prefix given"):
        p, q = att.loc[(n, kind)], att.loc[("retain", kind)]
        more = "more than" if p.after > q.after + 0.05 else "about as much as" if abs(p.after - q.after) <= 0.05 else "less than"
        print(f"   {kind}: ROUGE-L recall {p.after:.2f}, {more} the retain model ({q.after:.2f}).")
first = next(iter(results))
relearn_claim = claims.record("relearning_returns", figures_dir, setting=first + (", quick" if quick else ""),
                              before=att.loc[(first, rel)].before, after=att.loc[(first, rel)].after,
                              retain_after=att.loc[("retain", rel)].after)

# %%
ex.check_relearning_prediction(attacks, prediction)

# %% [markdown]
# A low score is not always forgetting. The **collapse** detector flags answers that repeat
# themselves or are empty: output that every ROUGE-based score reads as "forgotten".

# %%
col = robust[robust.metric == "collapse"].groupby("model", sort=False).value.mean()
for n, v in col.items():
    print(f"{n}: {v:.0%} of the forget answers collapsed")
if col.get("retain", 0) > 0:
    print(f"Even the retain model, which never met these people, babbles on {col['retain']:.0%} of the questions "
          "about them: a tiny model's answers about unknown names can degenerate. Compare the unlearned models "
          "with it, not with zero.")
samples = robust[(robust.metric == "collapse") & (robust.model.isin(list(results)))]
samples.groupby("model", sort=False).head(3)[["model", "generation", "value"]]

# %% [markdown]
# ### Exercise 4 · Break it: bring GA's answers back
#
# > Difficulty ●●●○○ · ~10 min
#
# Be the attacker. Write `relearn_attack(model, tok, rows)`: return a **copy** of `model`
# fine-tuned on `rows`, a quarter of the forget questions with their answers. The other forget rows
# are held back: your attack never sees them. The check scores the held-back answers on GA's model
# before and after your attack, and passes when at least half of the probability that unlearning
# removed comes back. `uk.metrics.finetune_copy(model, tok, questions, answers, steps=..., lr=...)`
# does the fine-tuning; the steps and the learning rate are yours to choose.

# %%
relearn_idx, held_idx = uk.metrics.relearn_split(len(forget), fraction=0.25, seed=seed)
rows, held_out = forget.select(relearn_idx.tolist()), forget.select(held_idx.tolist())
print(f"the attack sees {len(rows)} forget rows; {len(held_out)} are held back")

# %% exercise="relearn_attack"
def relearn_attack(model, tok, rows):
    """A copy of ``model`` fine-tuned on ``rows`` (question/answer pairs)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ex.check_relearn_attack(models["GA"], model, tok, rows, held_out, relearn_attack)

# %% [markdown]
# ## 4. Check yourself
#
# What must hold whatever the run: AUCs lie in [0, 1]; the target model, trained on the forget
# rows, separates them from the holdout at least as well as the retain model; the attacks report a
# value for every model. Rerun with other learning rates, e.g.
# `papermill -y '{lrs: {ga: 1e-4, npo: 1e-4}}'`, and watch the traces grow.

# %%
assert aucs.drop(columns="privleak").stack().between(0, 1).all(), "AUCs lie in [0, 1]"
assert auc["target"] >= auc["retain"], "the target model knows its forget rows"
assert set(attacks.model) == set(models), "every model went through every attack"
print("All checks hold.")

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
uk.record_result(result_path, min_k_auc_retain=auc["retain"],
                 **{f"min_k_auc_{m}": auc[names.get(m, m)] for m in lrs},
                 **{f"privleak_{m}": aucs.loc[names.get(m, m), "privleak"] for m in lrs},
                 relearn_before=att.loc[(first, rel)].before, relearn_after=att.loc[(first, rel)].after,  # first method
                 relearn_claim=relearn_claim.verdict)


# %% [markdown]
# ## Summary
#
# * Membership inference asks whether the unlearned model still treats the forget rows as seen;
#   the retain model, never trained on them, is the gold standard to compare with, not zero.
# * Relearning, paraphrased questions and answer prefixes test whether the knowledge was removed or
#   only hidden; collapse flags answers that every ROUGE-based score misreads as forgotten.
# * Exercises: Min-K% from its formula; which model is closest to the gold standard; predict what
#   relearning brings back, then break GA with a relearning attack of your own.
#
# **Next:** [07 · The leaderboard](07_leaderboard.ipynb)
