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
# # unlearnkit tour: teaching a tiny model to forget
#
# This notebook builds a **miniature world** of fictitious people, trains a tiny Llama-style model on it
# (about a minute per model on a laptop CPU, then cached), and asks it to *unlearn* a few of those people with
# **gradient ascent** (GA). Along the way the kit records *probes*: at every step it measures how much
# probability the model puts on the true answer, on a paraphrase of it, on wrong answers, and on the
# answer the model itself would give.
#
# You will see the **squeezing effect**: GA pushes probability *off* the exact answer it is shown, and
# softmax normalisation *squeezes* that mass onto the model's other high-likelihood answers — here, a
# paraphrase that still states the forgotten fact. A ROUGE score against the original answer can then
# report "forgotten" while the fact is still there.
#
# Every number below is computed by the kit when you run the notebook; nothing is pasted in.

# %% tags=["parameters"]
# Parameters (papermill: -p name value). quick=True shrinks everything for CI.
quick = False
seed = 0
method = "ga"          # any name from unlearnkit.list_objectives()
steps = 30
lr = 1e-4
probe_every = 1
figures_dir = "figures"  # where PNG figures are written (None: do not save)
model_path = None      # a Hugging Face causal LM folder or hub name instead of the tiny model
tofu_path = None       # a folder of TOFU-format files (forget01_perturbed.json, retain_perturbed.json, ...)
prompt_format = "plain"  # "plain" (Question: ...\nAnswer:) or "chat": the model's chat template (instruct models)
result_path = None     # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import pandas as pd

import unlearnkit as uk
from unlearnkit import viz

viz.setup()
pd.set_option("display.max_colwidth", 80)
p = uk.check_params(method, steps=steps, lr=lr, seed=seed, probe_every=probe_every)  # papermill values, checked
prompt_format = uk.data.PromptFormat.of(prompt_format)  # "plain", "chat" or a dict of fields: checked too
steps, lr, seed, probe_every = p["steps"], p["lr"], p["seed"], p["probe_every"]
if quick:
    steps = min(steps, 16)

# %% [markdown]
# ## 1. A miniature world
#
# Each person has a handful of facts (birthplace, birth year, occupation, ...). Every fact is rendered as
# a question, an answer (phrasing A), a **paraphrased answer** (phrasing B, same fact), and several
# **perturbed answers** (phrasing A with a wrong value). The forget split holds 10% of the people.

# %%
world = uk.make_world(seed=seed, quick=quick)
if tofu_path:
    data = {"forget": uk.load_tofu(tofu_path, "forget01_perturbed", task_id="1"),
            "retain": uk.load_tofu(tofu_path, "retain_perturbed"),
            "world_facts": uk.load_tofu(tofu_path, "world_facts_perturbed")}
else:
    data = {"forget": world.forget, "retain": world.retain, "world_facts": world.world_facts}
print(world)
data["forget"].to_pandas()[["question", "answer", "paraphrased_answer"]].head(6)

# %% [markdown]
# ## 2. A tiny model that knows the world
#
# The **target model** was trained on every fact, with phrasing A twice as often as phrasing B; the
# **retain model** never saw the forget people (it is what perfect unlearning should look like).
# Both are built once and cached.

# %%
if model_path:
    model, tok = uk.load_model(model_path)
    reference = None
else:
    model, tok = uk.target_model(world)
    reference = uk.retain_model(world)
n_params = sum(p.numel() for p in model.parameters())
print(f"target model: {n_params / 1e6:.2f}M parameters, vocabulary {len(tok)} tokens")

# %%
metrics = ["probability", "rouge", "truth_ratio", "model_utility"]
if reference is not None:  # forget quality compares against the retain model
    metrics.insert(3, "forget_quality")
before = uk.evaluate(model, tok, data, metrics, reference=reference, model_name="target", prompt_format=prompt_format)
uk.summarize(before).pivot_table(index="metric", columns="split", values="value").round(3)

# %% [markdown]
# ## 3. Unlearning with gradient ascent, probed at every step
#
# `unlearn` trains a *copy* of the model (the original is never touched) and records probes on a few
# forget and retain questions.

# %%
result = uk.unlearn(model, tok, data["forget"], data["retain"], method=method, steps=steps, lr=lr,
                    probe_every=probe_every, seed=seed, prompt_format=prompt_format)
result

# %%
fig = viz.plot_trajectory(result.probes, split="forget")
viz.save(fig, "tour_trajectory", figures_dir)

# %% [markdown]
# ### Where did the mass go?
#
# The table below is read off the probes: each kind of answer's mean probability mass at the start,
# at its peak (and the step of the peak), and at the end.

# %%
sq = result.squeeze_summary("forget")
sq.round(3)

# %%
print(result.squeeze_story("forget"))

# %% [markdown]
# ## 4. Forgetting vs keeping
#
# The unlearned model next to the target and retain models. Look at *both* forget and retain columns:
# GA damages whatever shares the forget answers' phrasing, not only the forget people.

# %%
after = uk.evaluate(result.model, tok, data, metrics, reference=reference, model_name=f"after {method}",
                    prompt_format=prompt_format)
frames = [before, after]
if reference is not None:
    frames.append(uk.evaluate(*reference, data, metrics, reference=reference, model_name="retain model",
                              prompt_format=prompt_format))
summary = uk.summarize(pd.concat(frames))
summary.pivot_table(index=["split", "metric"], columns="model", values="value", sort=False).round(3)

# %%
fig = viz.plot_split_bars(summary, metrics=("probability", "rouge"))
viz.save(fig, "tour_forget_vs_retain", figures_dir)

# %% [markdown]
# ## 5. What does the model say now?
#
# Greedy answers to the forget questions before and after unlearning. Look for paraphrases that still
# state the fact, and for collapse (repetition) that ROUGE would score as "forgotten".

# %%
qs = data["forget"]["question"][:6]
pd.DataFrame({"question": qs,
              "before": uk.metrics.generate(model, tok, qs),
              "after": uk.metrics.generate(result.model, tok, qs)})

# %% [markdown]
# ## 6. Check yourself
#
# The cell below checks what this run actually did. Change `method`, `steps` or `lr` in the parameters
# cell (or with `papermill -p method graddiff`) and see which checks still hold.

# %%
start, end = sq.loc["target", "start"], sq.loc["target", "end"]
assert end < start, "unlearning did not lower the target answer's probability"
print(f"forget target mass {start:.3f} -> {end:.4f} ({start / max(end, 1e-12):.0f}x lower)")

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
now = summary[summary.model == f"after {method}"]
split_metric, aggregate = now.groupby(["split", "metric"]).value.first(), now.groupby("metric").value.first()
uk.record_result(result_path, target_before=start, target_after=end, paraphrase_peak=sq.loc["paraphrase", "peak"],
                 forget_probability=split_metric[("forget", "probability")],
                 retain_probability=split_metric[("retain", "probability")],
                 retain_rouge=split_metric[("retain", "rouge")], forget_quality=aggregate.get("forget_quality"),
                 model_utility=aggregate.get("model_utility"))


# %% [markdown]
# ## Summary
#
# * A tiny model trained on a fictitious world, with a *retain model* that never saw the forget split:
#   the reference every unlearning method is measured against.
# * Unlearning lowers the probability of the forget answers; the probes show *how* along the run, and
#   the evaluation table shows what it cost on the retain split and the world facts.
# * Whether the facts are really gone is a separate question: notebook 06 attacks the models.
#
# **Next:** [01 · Probability squeezing, and objectives that know the model's beliefs](01_squeezing_and_beliefs.ipynb)
