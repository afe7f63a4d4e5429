# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Related knowledge: forgotten facts that can be re-derived, and UIPE
#
# After unlearning, a model may no longer answer *"Where was F born?"*, yet still know a
# **related** fact from which the answer follows: *"T, the twin of F, was born in Z too."* Ask
# it *"Where was the twin of F born?"* and the forgotten value comes back. UIPE (Unlearning
# Improvement via Parameter Extrapolation, arXiv 2503.04693) argues that the unlearning update
# `v = θ_u − θ₀` already points partly at that related knowledge, and that moving further along
# it, `θ_UIPE = θ_u + α·v`, removes more of it, with `α` trading forgetting against utility.
#
# This notebook builds a miniature world with such related knowledge (twins who share their family
# facts), shows the target model re-deriving forgotten facts through it, unlearns with GA,
# GradDiff and NPO, and sweeps α after one unlearning run (no training per α).
# Spec: `methods.md` A18; no author code is public, so the operator follows the kit's choice
# (parameters only, fp32, cast back).

# %% tags=["parameters"]
quick = False              # CI: fewer alphas, shorter generations, a retain subset for utility
figures_dir = "figures"    # where the figures are saved (None: do not save)
seed = 0                   # world seed
methods = ["ga", "graddiff", "npo"]                  # objectives compared
lrs = {"ga": 1e-4, "graddiff": 1e-4, "npo": 3e-4}    # learning rate of each objective
steps = 20                 # unlearning steps of each objective
uipe_method = "ga"         # the run whose update is extrapolated
alphas = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]       # the α grid of the sweep
alpha = 1.0                # the notebook's α (UIPE's result at this α is compared with the base objectives)
budget = 0.9               # exercise: keep at least this share of the retain probability
max_new_tokens = 24        # length of greedy answers (tokens)
result_path = None         # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex
from unlearnkit.editing import summarize_sweep, uipe_sweep, unlearn_uipe
from unlearnkit.world import make_related_world

pd.set_option("display.width", 160, "display.max_colwidth", 80)
if quick:
    alphas = [a for a in alphas if a in (0.0, 0.5, 1.0, 2.0)] or alphas[:3]
    max_new_tokens = min(max_new_tokens, 20)
if alpha not in alphas:
    alphas = sorted({*alphas, alpha})

# %% [markdown]
# ## A world where forgotten facts can be re-derived
#
# `make_related_world` turns on the world's `related_facts` knob: every forgotten person gets a
# **twin** among the retain people, who shares the family facts (birthplace, birth year, the
# parent's job). The retain split then holds *related facts* about the twin that mention the
# forgotten person, and the new `indirect` split holds **indirect probes**: questions about the
# forgotten person's twin, never trained on verbatim, whose answer is the forgotten value. A few
# more twin pairs among retain people are trained with such questions, so the pattern is
# learnable. `world.carriers()` says which related fact carries each probe's answer.

# %%
world = make_related_world(seed=seed)
carriers = world.carriers()
print(world)
carriers[["id", "question", "value", "person", "twin", "carrier_answer"]].head(6)

# %%
model, tok = uk.target_model(world, progress=False)
retain_model, _ = uk.retain_model(world, progress=False)
retain_eval = world.retain if not quick else world.retain.select(range(0, len(world.retain), 3))
data = {"forget": world.forget, "indirect": world.indirect, "retain": retain_eval}
SPLIT_METRICS = {"forget": ["fact_recall", "probability"], "indirect": ["related_recall", "probability"],
                 "retain": ["fact_recall", "probability"]}


def scores(m, name):
    """One summarized row per (split, metric) for model ``m``."""
    frames = [uk.evaluate(m, tok, {s: data[s]}, ms, model_name=name, progress=False, max_new_tokens=max_new_tokens)
              for s, ms in SPLIT_METRICS.items()]
    return pd.concat(frames, ignore_index=True)


# %% [markdown]
# ## The target model answers the indirect probes
#
# Direct question and indirect probe side by side for the first forgotten person, answered live
# by the target model:

# %%
first = carriers.iloc[0]
tab = world.table
direct_q = tab[(tab.split == "forget") & (tab.person == first.person) & (tab.attribute == first.attribute)].question.iloc[0]
qs = [direct_q, first.question, first.carrier_question]
for q, a in zip(qs, uk.metrics.generate(model, tok, qs, max_new_tokens=max_new_tokens)):
    print(f"Q: {q}\nA: {a}\n")

# %%
raw = {"target": scores(model, "target"), "retain model": scores(retain_model, "retain model")}
summary = uk.summarize(pd.concat(raw.values(), ignore_index=True))
chance = float(sum(world.chance(a) for a in world.indirect["attribute"]) / len(world.indirect))
pivot = summary.pivot_table(index="model", columns=["split", "metric"], values="value")
pivot.round(3)

# %%
ind = summary[(summary.split == "indirect") & (summary.metric == "related_recall")].set_index("model").value
dire = summary[(summary.split == "forget") & (summary.metric == "fact_recall")].set_index("model").value
display(Markdown(
    f"The target model states the forgotten value on **{ind['target']:.0%}** of the {len(world.indirect)} indirect "
    f"probes (chance, a uniform guess among the values: {chance:.1%}), and on {dire['target']:.0%} of the direct "
    f"forget questions. The retain model, which never saw the forgotten people's own facts but does know the "
    f"related facts, gets **{ind['retain model']:.0%}** of the indirect probes"
    + (" — the related facts alone carry " + ("most of" if ind['retain model'] >= 0.5 * ind['target'] else "part of")
       + " the route." if ind['retain model'] > chance else " — no better than chance: the route needs more than the "
       "related facts here.")))

# %% [markdown]
# ## GA, GradDiff and NPO remove the direct answer; what about the indirect route?

# %%
results = {}
for m in methods:
    results[m] = uk.unlearn(model, tok, world.forget, world.retain, method=m, steps=steps, lr=lrs[m], seed=seed,
                            probe_every=0, progress=False)
    raw[m] = scores(results[m].model, m)
summary = uk.summarize(pd.concat(raw.values(), ignore_index=True))


def table_of(summary):
    t = summary.pivot_table(index="model", columns=["split", "metric"], values="value")
    return t[[("forget", "fact_recall"), ("indirect", "related_recall"), ("retain", "probability"),
              ("retain", "fact_recall")]]


table_of(summary).round(3)

# %%
t = table_of(summary)
lines = []
for m in methods:
    d, i, r = t.loc[m, ("forget", "fact_recall")], t.loc[m, ("indirect", "related_recall")], t.loc[m, ("retain", "probability")]
    lines.append(f"- **{m}**: direct recall {t.loc['target', ('forget', 'fact_recall')]:.0%} → {d:.0%}, "
                 f"indirect recall {t.loc['target', ('indirect', 'related_recall')]:.0%} → {i:.0%}, "
                 f"retain probability {t.loc['target', ('retain', 'probability')]:.3f} → {r:.3f}"
                 + (" — the indirect route outlives the direct answer" if i > d else ""))
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## UIPE: one unlearning run, many extrapolations
#
# `uipe_sweep` takes the `uipe_method` run and, for each α, rewrites one working copy's
# parameters to `θ_u + α(θ_u − θ₀)` (fp32, cast back; buffers untouched) and evaluates it. No
# training happens per α. The measured norm ratio `‖θ_UIPE − θ₀‖ / ‖θ_u − θ₀‖` is logged with
# every row (it should read 1 + α).

# %%
examples = uipe_sweep(model, results[uipe_method], tok, data, alphas=alphas, metrics=SPLIT_METRICS,
                      per_example=True, max_new_tokens=max_new_tokens)   # one row per (alpha, probe, metric)
sweep = summarize_sweep(examples)                                        # one row per (alpha, split, metric)
wide = viz.alpha_curves(sweep)
wide.assign(norm_ratio=sweep.groupby("alpha").norm_ratio.first()).round(3)

# %%
baselines = {m: {viz.uipe.CURVES[k]: t.loc[m, k] for k in viz.uipe.CURVES} for m in methods}
fig = viz.plot_alpha_curve(sweep, alpha=alpha, baselines=baselines,
                           title=f"UIPE on {uipe_method} ({steps} steps): forgetting vs utility along α")
viz.save(fig, "uipe_alpha_curve", figures_dir)
plt.show()

# %% [markdown]
# The slider replays the sweep: the curves with a marker at the chosen α, and each indirect
# probe's greedy answer there (the static image below is its current state).

# %%
explorer = viz.AlphaExplorer(sweep, examples, alpha=alpha, baselines=baselines)
explorer

# %% [markdown]
# ### UIPE at the notebook's α against the base objectives
#
# `unlearn_uipe` is the same thing as a wrapper of any registered objective: unlearn, then
# extrapolate; α and the measured norm ratio land in the result's manifest.

# %%
res_uipe = unlearn_uipe(model, tok, world.forget, world.retain, method=uipe_method, alpha=alpha, steps=steps,
                        lr=lrs[uipe_method], seed=seed, probe_every=0, progress=False)
print("manifest:", res_uipe.manifest["uipe"])
raw[f"{uipe_method}+uipe"] = scores(res_uipe.model, f"{uipe_method}+uipe")
t = table_of(uk.summarize(pd.concat(raw.values(), ignore_index=True)))
t.round(3)

# %%
u, b = t.loc[f"{uipe_method}+uipe"], t.loc[uipe_method]
ki, kr = ("indirect", "related_recall"), ("retain", "probability")
uipe_claim = claims.record("uipe_indirect", figures_dir, setting=f"alpha {alpha:g}" + (", quick" if quick else ""),
                           uipe_indirect_recall=u[ki], base_indirect_recall=b[ki], uipe_retain=u[kr],
                           base_retain=b[kr])
verdict = ("UIPE closes more of the indirect route" if u[ki] < b[ki] else
           "UIPE does not close more of the indirect route here")
display(Markdown(
    f"At α = {alpha:g}, {uipe_method}+UIPE brings indirect recall to **{u[ki]:.0%}** (base {uipe_method}: {b[ki]:.0%}) "
    f"and direct recall to {u[('forget', 'fact_recall')]:.0%} (base: {b[('forget', 'fact_recall')]:.0%}), at a retain "
    f"probability of {u[kr]:.3f} (base: {b[kr]:.3f}, target: {t.loc['target', kr]:.3f}): {verdict}. "
    "Whether that beats simply training the base objective longer is the comparison that matters: read the "
    "curve against the base objectives' ticks at equal retain probability."))

# %% [markdown]
# ## Exercises
#
# **1.** Write UIPE's extrapolation on a list of weights.

# %% exercise="extrapolate"
def extrapolate(theta0, theta_u, alpha):
    """theta_u + alpha * (theta_u - theta0), element by element."""
    raise NotImplementedError


# %%
ex.check_extrapolate(extrapolate)

# %% [markdown]
# **2.** From the sweep table, pick the α with the lowest indirect recall whose retain probability
# stays at least `budget` times its value at α = 0 (ties: the smaller α).

# %% exercise="alpha_for_budget"
alpha_choice = ...  # one of the swept alphas

# %%
ex.check_alpha_for_budget(sweep, alpha_choice, budget=budget)

# %% [markdown]
# **3.** Take the first indirect probe that the target model answered right. Whose fact carried the
# answer? (Use `carriers`.)

# %%
right = raw["target"][(raw["target"].metric == "related_recall") & (raw["target"].value == 1)]
probe_id = int(right.id.iloc[0]) if len(right) else int(carriers.id.iloc[0])
print("probe:", carriers.set_index("id").loc[probe_id, "question"])

# %% exercise="carrier"
carrier_name = ...  # a person's name

# %%
ex.check_carrier(carriers, probe_id, carrier_name)

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
kf = ("forget", "fact_recall")
uk.record_result(result_path, target_indirect_recall=t.loc["target", ki], base_forget_recall=b[kf],
                 base_indirect_recall=b[ki], base_retain_probability=b[kr], uipe_forget_recall=u[kf],
                 uipe_indirect_recall=u[ki], uipe_retain_probability=u[kr], uipe_claim=uipe_claim.verdict)


# %% [markdown]
# ## Summary
#
# * A forgotten fact can still be re-derived from related facts (here: a twin's), which indirect
#   probes measure with `related_recall`.
# * UIPE extrapolates an unlearning update, `θ_u + α(θ_u − θ₀)`; the α curve shows what each step
#   along it costs on the retain split. Read it at equal retain probability, against the base
#   objectives trained longer.
# * Exercises: the extrapolation from its formula; choosing α for a utility budget; whose fact
#   carried an answer.
#
# **Next:** [05 · Unlearning by editing: UniErase](05_unlearning_by_editing.ipynb)
