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
# # 02 · Entropy and answer preservation: untargeted vs targeted unlearning
#
# "A Closer Look at Machine Unlearning for LLMs" sorts unlearning objectives into two families:
#
# * **untargeted**: push the model *away* from the forget answers without saying what to answer
#   instead: gradient ascent (**GA**), **NPO**, and maximizing the entropy of the prediction (**ME**);
# * **targeted**: train the model *towards* a chosen answer, a refusal such as "I don't know."
#   (**IDK**), and IDK with **answer preservation** (**IDK+AP**), which also asks the model to keep
#   answering the retain questions.
#
# Each family fails in its own way. Untargeted objectives can leave the model babbling: output that
# repeats itself, which a ROUGE score reads as "forgotten". Targeted ones can teach the model to
# refuse everything, retain questions included. This notebook measures both with three metrics that
# look at what the model *says*:
#
# * **token entropy** (normalized unigram entropy of the generated tokens, in [0, 1]; low =
#   repetitive, degenerate output);
# * **cosine similarity** between the embeddings of the generated and the true answer;
# * **fact recall**: does the answer still state the fact's value (the miniature world knows it)?
#
# and, token by token, with the **entropy explorer**: how unsure is the model of each word it says?
#
# Every number and sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value, or -y for the dicts). quick=True shrinks everything for CI.
quick = False
seed = 0
steps = 30                 # unlearning steps of each objective
lrs = {"ga": 3e-4, "npo": 3e-4, "me": 3e-4, "idk_nll": 2e-3, "idk_ap": 2e-3}  # objective -> learning rate
idk = ["I don't know."]    # refusals the targeted objectives train towards (None: the kit's bank of 60)
ap_gd = 0.0                # IDK+AP: weight of an extra plain retain NLL (0 in the paper)
probe_every = 2            # record probes every k steps
probe_size = 8             # forget questions probed along the way
retain_size = 40           # retain questions evaluated (the whole retain split: None)
figures_dir = "figures"    # where PNG figures are written (None: do not save)
result_path = None         # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import numpy as np
import pandas as pd
from IPython.display import display

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex

viz.setup()
pd.set_option("display.max_colwidth", 60)
p = uk.check_params(steps=steps, seed=seed, probe_every=probe_every, probe_size=probe_size)  # papermill values, checked
steps, seed, probe_every, probe_size = p["steps"], p["seed"], p["probe_every"], p["probe_size"]
max_new_tokens = 48
if quick:  # CI: fewer steps and probes, shorter generations
    steps, probe_every, probe_size, max_new_tokens = min(steps, 20), max(probe_every, 5), min(probe_size, 4), 24
    retain_size = min(retain_size or 20, 20)
names = {"ga": "GA", "npo": "NPO", "me": "ME", "idk_nll": "IDK", "idk_ap": "IDK+AP"}

# %% [markdown]
# ## 1. The world, the model, and the data we evaluate on
#
# The forget split holds the facts to remove; a slice of the retain split checks that the other
# people's facts survive.

# %%
world = uk.make_world(seed=seed, quick=quick)
model, tok = uk.target_model(world, progress=False)
forget = world.forget
retain = world.retain if retain_size is None else world.retain.select(range(min(retain_size, len(world.retain))))
print(f"{len(forget)} forget questions, {len(retain)} retain questions; refusal(s) for IDK: {idk}")

# %% [markdown]
# ## 2. Five objectives on the same model
#
# Each objective trains a copy of the model with its own learning rate (`lrs`); probes record the
# greedy answers and the predictive entropy of every generated token along the way.

# %%
results = {}
for m, lr in lrs.items():
    extra = {"gd": ap_gd} if m == "idk_ap" else {}
    results[names.get(m, m)] = uk.unlearn(model, tok, forget, world.retain, method=m, steps=steps, lr=lr, idk=idk,
                                          probe_every=probe_every, probe_size=probe_size,
                                          max_new_tokens=max_new_tokens, seed=seed, progress=False, **extra)
fig = viz.plot_method_trajectories(results, quantities=("target", "belief"))
viz.save(fig, "02_trajectories", figures_dir)

# %% [markdown]
# The left panel is the probability of the forget answer, the middle one that of the model's own
# current answer (how sure it is of what it says), the right one the mean predictive entropy at the
# answer positions, in nats. A model that is sure of a *new* answer (a refusal) keeps its own answer
# likely; a model pushed towards maximal entropy does not.
#
# ## 3. The entropy explorer
#
# Each generated token is coloured by the **predictive entropy** of the distribution it was drawn
# from: pale = the model was sure, dark red = it was guessing. The bars beside it give the answer's
# **token entropy** (low = it repeats itself) and the mean predictive entropy. Pick an objective, a
# question and a step.

# %% tags=["nbval-ignore-output"]
explorer = viz.EntropyExplorer(results, forget)
viz.save(explorer.figure, "02_entropy_explorer", figures_dir)
explorer

# %%
rows = []
for name in results:
    explorer.select(method=name, step=explorer.step.options[-1][1])
    v = explorer.view
    rows.append({"objective": name, "answer now": v["after"]["text"], "token entropy": v["after"]["token_entropy"],
                 "mean predictive entropy": v["after"]["mean_entropy"]})
print(f"Question: {explorer.rows[explorer.question.value]['question']}   before: {v['before']['text']!r} "
      f"(token entropy {v['before']['token_entropy']:.2f}, mean predictive entropy {v['before']['mean_entropy']:.2f})")
pd.DataFrame(rows).round(3)


# %% [markdown]
# ### Exercise 1 · Token entropy
#
# > Difficulty ●●○○○ · ~5 min
#
# Write `token_entropy(tokens)`: the entropy of the token frequencies, `H = -Σ f log2 f` with
# `f = count / n`, divided by `log2(n)` so that it lies in [0, 1] (1: every token different; 0: one
# token repeated). Define it as 0 for answers of 0 or 1 tokens.

# %% exercise="token_entropy"
def token_entropy(tokens):
    """Normalized unigram entropy of a list of tokens, in [0, 1]."""
    # YOUR CODE HERE
    raise NotImplementedError


# %%
ex.check_token_entropy(token_entropy)

# %% [markdown]
# ## 4. Measuring what the models say
#
# The three closer-look metrics on the forget questions and on the retain questions, for the model
# before unlearning and after each objective.

# %%
metrics = ["token_entropy", "cosine_similarity", "fact_recall"]
data = {"forget": forget, "retain": retain}
frames = [uk.evaluate(model, tok, data, metrics, model_name="before", progress=False, idk=idk,
                      max_new_tokens=max_new_tokens)]
frames += [uk.evaluate(r.model, tok, data, metrics, model_name=name, progress=False, idk=idk,
                       max_new_tokens=max_new_tokens) for name, r in results.items()]
table = pd.concat(frames, ignore_index=True)
summary = uk.summarize(table)
fig = viz.plot_metric_table(summary, title="Closer-look metrics (forget and retain questions)")
viz.save(fig, "02_metric_table", figures_dir)
summary.pivot_table(index="model", columns=["split", "metric"], values="value", sort=False).round(3)

# %%
fig = viz.plot_split_bars(summary, metrics=("token_entropy", "cosine_similarity", "fact_recall"),
                          splits=("forget", "retain"), title="What the models say, forget vs retain")
viz.save(fig, "02_split_bars", figures_dir)

# %% [markdown]
# What did each model actually answer? `fact_recall` labels each answer: **collapsed** (babble
# or repetition, by the `collapse` detector's rule, even if the value occurs in it), the **true**
# value, a **wrong** value, a **refusal**, or **none** of these (another fact, or other words).

# %%
fr = table[table.metric == "fact_recall"]
labels = fr.groupby(["model", "split"], sort=False)["label"].value_counts().unstack(fill_value=0)
labels

# %%
first = fr[fr.split == "forget"].groupby("model", sort=False).head(2)[["model", "id", "generation", "label"]]
first

# %%
wide = summary.pivot_table(index="model", columns=["split", "metric"], values="value", sort=False)
te = wide[("forget", "token_entropy")]
lowest_te = te.drop("before").idxmin()
print(f"Lowest token entropy on the forget questions: {lowest_te} ({te[lowest_te]:.3f}; before unlearning "
      f"{te['before']:.3f}).")
refused = labels["refusal"] if "refusal" in labels.columns else pd.Series(0, index=labels.index)
for name in ("IDK", "IDK+AP"):
    if name in results:
        print(f"{name}: refuses {refused.get((name, 'forget'), 0)} of {len(forget)} forget questions and "
              f"{refused.get((name, 'retain'), 0)} of {len(retain)} retain questions; retain fact recall "
              f"{wide.loc[name, ('retain', 'fact_recall')]:.2f} (before: {wide.loc['before', ('retain', 'fact_recall')]:.2f}).")
if {"IDK", "IDK+AP"} <= set(results):
    d = wide.loc["IDK+AP", ("retain", "fact_recall")] - wide.loc["IDK", ("retain", "fact_recall")]
    print(f"Answer preservation changed retain fact recall by {d:+.2f} in this run.")
    claims.record("ap_keeps_retain", figures_dir, setting="quick" if quick else "",
                  idk_retain_refusals=int(refused.get(("IDK", "retain"), 0)),
                  idk_ap_retain_refusals=int(refused.get(("IDK+AP", "retain"), 0)), n_retain=len(retain))
if {"GA", "ME"} <= set(results):
    claims.record("me_no_babble", figures_dir, setting="quick" if quick else "", ga_token_entropy=te["GA"], me_token_entropy=te["ME"],
                  before=te["before"])

# %% [markdown]
# ### Forgetting vs keeping, at equal forgetting
#
# The objectives ran the same number of steps at their own learning rates, so they did not forget
# equally much. Below, each run is a path: the forget answers' mass (x, forgetting goes right)
# against the retain answers' mass (y, what is kept), read where every objective has forgotten as
# much as the least aggressive one did.

# %%
fig = viz.plot_equal_forgetting(results, x="target", y="target", y_split="retain",
                                title="Retain mass at equal forgetting")
viz.save(fig, "02_equal_forgetting", figures_dir)
fair = viz.at_equal_forgetting(results, x="target", y="target", y_split="retain")
fair.pivot(index="level", columns="method", values="retain target").round(3)

# %% [markdown]
# ### What does answer preservation preserve?
#
# IDK's objective keeps the retain answers with a plain likelihood term on them. IDK+AP replaces it
# with a *preference*: on a retain question, the true answer should stay more likely than the
# refusal, `-log σ(β · margin) / β` with `margin = log π(answer) - log π(refusal)`. A preference
# stops pulling once it holds: its gradient is scaled by `σ(-β · margin)`. The training log records
# the margin at every step.

# %%
if "IDK+AP" in results:
    log = results["IDK+AP"].log
    beta = results["IDK+AP"].hparams["beta"]
    margin = log["ap_margin"]
    pull = 1 / (1 + np.exp(beta * margin))  # σ(-β·margin): the AP gradient's share of its maximum
    print(f"retain margin log π(answer) - log π(refusal): {margin.iloc[0]:.1f} nats at the first step, "
          f"{margin.iloc[-1]:.1f} at the last; AP's pull σ(-β·margin): median {pull.median():.2g} over the steps, "
          f"at most {pull.max():.2g}.")
    if {"IDK", "IDK+AP"} <= set(results):
        a, b = wide.loc["IDK", ("retain", "fact_recall")], wide.loc["IDK+AP", ("retain", "fact_recall")]
        if b < a and pull.median() < 0.05:
            print(f"Here the preference held by a wide margin at most steps, so AP barely pulled, and nothing else "
                  f"anchored the retain answers: retain fact recall {b:.2f} vs {a:.2f} with IDK's plain "
                  "likelihood term. Try ap_gd=1 (an extra retain NLL) or a smaller learning rate.")
        elif b >= a:
            print(f"Retain fact recall {b:.2f} with IDK+AP vs {a:.2f} with IDK: AP kept the retain answers at "
                  "least as well.")
        else:
            print(f"Retain fact recall {b:.2f} with IDK+AP vs {a:.2f} with IDK.")
    display(log[["step", "forget", "retain", "ap_margin"]].round(3).tail(5))

# %% [markdown]
# Read the table with the three metrics together. A model can state no fact on the forget questions
# for very different reasons: it refuses (targeted), it says something else fluently, or it babbles
# (low token entropy). Fact recall's value alone cannot tell these apart; its labels can (`refusal`,
# `none`, `collapsed`: babble is labelled collapsed even when the value appears in it). Cosine
# similarity rewards answers that *sound* like the truth, even with a wrong value.
#
# ### Exercise 2 · Targeted or untargeted?
#
# > Difficulty ●○○○○ · ~2 min
#
# For each objective trained here, write `"targeted"` if it trains the model towards a chosen
# answer, `"untargeted"` if it only pushes the model away from the forget answers.

# %% exercise="targeted"
families = {"ga": ..., "npo": ..., "me": ..., "idk_nll": ..., "idk_ap": ...}  # "targeted" or "untargeted"

# %%
ex.check_targeted(families)

# %% [markdown]
# ### Exercise 3 · Which model babbles most?
#
# > Difficulty ●○○○○ · ~2 min
#
# From the summary table, which model's answers to the **forget** questions have the lowest token
# entropy? Give its name as it appears in the `model` column.

# %% exercise="lowest_token_entropy"
lowest = ...  # a model name from the table, e.g. "GA"

# %%
ex.check_lowest_token_entropy(summary, lowest)

# %% [markdown]
# ## 5. Forgetting vs utility
#
# TOFU summarizes a model with two numbers: **forget quality** (p-value of a test that its truth
# ratios on the forget questions look like those of a model never trained on them; right = more
# forgotten) and **model utility** (harmonic mean of probability, ROUGE and truth ratio on the other
# splits). The scatter puts each model on that plane, forget quality on a log axis.

# %%
reference = uk.retain_model(world, progress=False)
tofu_data = {"forget": forget, "retain": retain, "world_facts": world.world_facts}
tofu = [uk.evaluate(model, tok, tofu_data, ["forget_quality", "model_utility"], reference=reference,
                    model_name="before", progress=False, max_new_tokens=max_new_tokens)]
tofu += [uk.evaluate(r.model, tok, tofu_data, ["forget_quality", "model_utility"], reference=reference,
                     model_name=name, progress=False, max_new_tokens=max_new_tokens) for name, r in results.items()]
tofu_summary = uk.summarize(pd.concat(tofu, ignore_index=True))
fig = viz.plot_tradeoff(tofu_summary, title="Forget quality vs model utility")
viz.save(fig, "02_tradeoff", figures_dir)
viz.tradeoff_table(tofu_summary).round(4)

# %%
fq = viz.tradeoff_table(tofu_summary).set_index("model")["forget_quality"]
print(f"The KS test behind forget quality compares {len(forget)} truth ratios per model.")
if fq["before"] > 0.05:
    print(f"With so few, even the model before unlearning gets p = {fq['before']:.3f} > 0.05: the test cannot "
          "tell it from the retain model. Read forget quality with the number of forget questions in mind.")

# %% [markdown]
# ## 6. Check yourself
#
# The cell below checks what must hold whatever the run (token entropy lies in [0, 1], the models
# differ from the original) and prints the rest. Rerun with other learning rates, e.g.
# `papermill -y '{lrs: {ga: 1e-4, me: 1e-4, idk_nll: 3e-3, idk_ap: 3e-3}}'`, and compare.

# %%
te_all = table[table.metric == "token_entropy"].value
assert te_all.between(0, 1 + 1e-9).all(), "token entropy is normalized to [0, 1]"
changed = [n for n in results if (wide.loc[n] - wide.loc["before"]).abs().max() > 1e-6]
assert changed, "no objective changed what the model says"
print(f"objectives that changed the answers: {changed}; lowest forget token entropy: {lowest_te}")

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
recall = wide[("retain", "fact_recall")]
deepest = fair[fair.level == fair.level.min()].set_index("method")["retain target"]  # the equal-forgetting level
uk.record_result(result_path, ga_forget_token_entropy=te.get("GA"), me_forget_token_entropy=te.get("ME"),
                 idk_retain_refusals=refused.get(("IDK", "retain")),
                 idk_ap_retain_refusals=refused.get(("IDK+AP", "retain")),
                 idk_retain_fact_recall=recall.get("IDK"), idk_ap_retain_fact_recall=recall.get("IDK+AP"),
                 equal_forgetting_best=deepest.idxmax(), equal_forgetting_best_retain_mass=deepest.max())


# %% [markdown]
# ## Summary
#
# * Untargeted objectives (GA, NPO, ME) push the forget answers away; targeted ones (IDK, IDK+AP)
#   train towards a refusal. Token entropy, cosine similarity and fact recall tell apart refusing,
#   saying something else, and babbling.
# * Answer preservation is a preference, not a likelihood: once it holds it stops pulling (the
#   margin log above). Its effect on the retain questions is recorded as a claim for this run.
# * Compare objectives at equal forgetting: the same steps are not the same amount of unlearning.
# * Exercises: token entropy from its formula; targeted or untargeted; which model babbles most.
#
# **Next:** [03 · To each sequence its own: memorization-aware unlearning](03_memorization.ipynb)
