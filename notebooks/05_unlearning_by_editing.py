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
# # 05 · Unlearning by editing: UniErase
#
# Every method so far *trained* the model: gradient steps on a loss over the forget set.
# **UniErase** (arXiv 2505.15674) does not train the model's weights at all. It works in two stages:
#
# 1. **An unlearning token.** A new special token `<unl>` is added, and only its input embedding
#    row is trained, so that a question followed by `<unl>` makes the model say "I don't know".
# 2. **An edit.** A few MLP output projections are changed *in closed form* (AlphaEdit: MEMIT with
#    the update projected onto the null space of the keys of knowledge to preserve), so that each
#    forget question's first answer token becomes `<unl>`, which then triggers the refusal.
#
# The null-space projection is the point: keys of preserved text (here, the retain split and the
# world facts) are mapped by the edit to *exactly zero* change. This notebook compares the edit
# with fine-tuning (GA, NPO, IDK+AP) on the same forget set, looks at its precision (neighbouring
# facts that must stay), and runs it sequentially, round after round.
#
# **The miniature's forgetting space.** A real chat model already knows how to say "I don't know":
# the token only steers into that. Our tiny model would not, so this notebook's world is made with
# `refusal_people`: a few unknown people whose questions the tiny model was trained to refuse.
#
# Every number and sentence below is computed when you run the notebook.

# %% tags=["parameters"]
# Parameters (papermill: -p name value). quick=True shrinks everything for CI.
quick = False
seed = 0
refusal_people = 8         # unknown people the tiny model learned to refuse (its "forgetting space")
rounds = 3                 # sequential edit rounds (the forget requests are split into this many batches)
layers = None              # edited decoder layers (None: early-middle layers, [1, 2] for the tiny model)
null_space = "energy:0.05"  # projector rule: 'energy:<share of the key energy>', 'rank:<fraction>' or 'threshold:<eigenvalue>'
ft_steps = 30              # fine-tuning steps of GA / NPO / IDK+AP
lrs = {"ga": 3e-4, "npo": 3e-4, "idk_ap": 2e-3}  # fine-tuning method -> learning rate
probe_every = 1            # fine-tuning runs: probes every k steps (their path, for the comparison at equal forgetting)
figures_dir = "figures"    # where PNG figures are written (None: do not save)
result_path = None         # set by a sweep (unlearnkit sweep): where this run's row of numbers is written

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import unlearnkit as uk
from unlearnkit import claims, viz
from unlearnkit import exercises as ex
from unlearnkit.editing import neighbour_sets, refusal_check, unierase
from unlearnkit.scoring import generate

viz.setup()
pd.set_option("display.max_colwidth", 70)
for m, lr in lrs.items():
    uk.check_params(m, steps=ft_steps, lr=lr, seed=seed, probe_every=probe_every)  # papermill values, checked
if probe_every < 1:
    raise ValueError(f"probe_every={probe_every}: section 3 compares the methods at equal forgetting along each "
                     "fine-tuning run's probes; set probe_every to 1 or more (probes every k steps)")
if quick:  # CI: fewer fine-tuning steps, probed every other step
    ft_steps, probe_every = min(ft_steps, 10), max(probe_every, 2)
names = {"ga": "GA", "npo": "NPO", "idk_ap": "IDK+AP"}

# %% [markdown]
# ## 1. The world and the model

# %%
world = uk.make_world(seed=seed, quick=quick, refusal_people=refusal_people)
model, tok = uk.target_model(world, progress=False)
unknown_q = [q for q, _ in world.refusal_rows[:2]]
print(f"{len(world.forget)} forget questions, {len(world.retain)} retain, {len(world.world_facts)} world facts.")
for q, a in zip(unknown_q, generate(model, tok, unknown_q, max_new_tokens=24)):
    print(f"unknown person: {q!r} -> {a!r}")

# %% [markdown]
# ## 2. UniErase on the forget set
#
# One request per forget question: prompt = the question, subject = the person it asks about,
# target = `<unl>`. The requests are edited in `rounds` batches, one after the other, with the
# sequential key memory (earlier edits' keys are protected too).

# %%
res = unierase(model, tok, world.forget, world.retain, preserved=[world.world_facts], rounds=rounds,
               layers=layers, null_space=null_space, seed=seed)
man = res.manifest
chk = refusal_check(res.model, res.tokenizer, world.forget["question"], res.token_id, judge=uk.metrics.is_refusal)
first = float(chk.first_is_token.mean())
rate = float((chk.first_is_token & chk.refusal).mean())
stated = float(np.mean([v.lower() in t.lower() for v, t in zip(world.forget["value"], chk.text)]))
proj = man["projector"]
ranks = ", ".join(f"{v['rank']}/{v['d0']}" for v in proj.values())
display(Markdown(
    f"Edited layers **{man['edited_layers']}** ({', '.join(sorted(set(man['edited_modules'].values())))}); "
    f"the projector keeps {ranks} key directions "
    f"(holding {np.mean([v['energy'] for v in proj.values()]):.1%} of the preserved keys' energy). "
    f"**{man['fraction_changed']:.2%}** of the parameters changed ({man['n_changed']:,} weights, counted); "
    f"after the edit, **{first:.0%}** of the forget questions start with `<unl>`, {stated:.0%} of the answers "
    f"still state the fact, and {rate:.0%} continue with a recognisable refusal (the kit's `is_refusal`). "
    + ("The paper reports refusals for nearly all forget questions; this tiny model's refusal mode is reached "
       "only partly through one embedding row, so the text after `<unl>` is often garbled: the edit removes "
       "the fact, but the 'I don't know' is not reproduced here." if rate < 0.9 else "")))
chk.head(6)

# %% [markdown]
# ## 3. Editing vs fine-tuning on the same forget set
#
# GA and NPO push the forget answers down; IDK+AP trains towards a refusal while preserving the
# retain answers. All run on copies of the same model. We score every model on the forget and
# retain splits and on the world facts with ROUGE-L recall of the greedy answer against the
# true answer (lower on forget = more forgotten; higher elsewhere = more kept). Each fine-tuning run
# also records probes every `probe_every` steps (the answers' probabilities, for the comparison at
# equal forgetting below).

# %%
models = {"target": (model, tok), "UniErase": (res.model, res.tokenizer)}
runs = {"UniErase": res}  # every run with its probes (UniErase's: before the edit and after each round)
for m, lr in lrs.items():
    r = uk.unlearn(model, tok, world.forget, world.retain, method=m, steps=ft_steps, lr=lr, seed=seed,
                   probe_every=probe_every, token_probes=False, max_new_tokens=8, progress=False)
    models[names.get(m, m)], runs[names.get(m, m)] = (r.model, tok), r
tables = [uk.evaluate(mm, tt, world, metrics=["rouge"], model_name=name, progress=False)
          for name, (mm, tt) in models.items()]
table = uk.summarize(pd.concat(tables, ignore_index=True))
wide = table.pivot_table(index="model", columns="split", values="value").reindex(list(models))
wide

# %%
fig = viz.plot_split_bars(table, metrics=("rouge",), title="Editing vs fine-tuning: ROUGE-L recall")
viz.save(fig, "05_edit_vs_finetune", figures_dir)
best_ft = wide.drop(index=["target", "UniErase"])
unierase_claim = claims.record("unierase_refuses", figures_dir, setting="quick" if quick else "",
                              token_rate=first, refusal_rate=rate, retain_rouge=wide.loc["UniErase", "retain"],
                              retain_rouge_before=wide.loc["target", "retain"])
display(Markdown(
    f"UniErase: forget ROUGE {wide.loc['target', 'forget']:.2f} → {wide.loc['UniErase', 'forget']:.2f}, retain "
    f"{wide.loc['target', 'retain']:.2f} → {wide.loc['UniErase', 'retain']:.2f}, world facts "
    f"{wide.loc['target', 'world_facts']:.2f} → {wide.loc['UniErase', 'world_facts']:.2f}. Among the fine-tuned "
    f"models, the lowest forget ROUGE is {best_ft.forget.min():.2f} ({best_ft.forget.idxmin()}, retain "
    f"{best_ft.loc[best_ft.forget.idxmin(), 'retain']:.2f}) and the highest retain ROUGE "
    f"{best_ft.retain.max():.2f} ({best_ft.retain.idxmax()}, forget {best_ft.loc[best_ft.retain.idxmax(), 'forget']:.2f})."))

# %% [markdown]
# ### The same comparison at equal forgetting
#
# The fine-tuned models ran `ft_steps` steps each and UniErase edited once per round, so "equal
# effort" means little here, and a model that keeps more of the retain answers may simply have
# forgotten less. The fair question is *how much does each method keep once it has forgotten as
# much as the others?* The paper's answer (TOFU, Llama-3.1-8B): UniErase forgets more than the
# fine-tuning baselines and keeps far more of the model's ability (about 4x that of the baseline
# that forgets best).
#
# Every run recorded probes on the same questions (the first forget and retain questions): the
# fine-tuning runs every `probe_every` steps, UniErase before its edit and after each of its `rounds`
# rounds.
# Each run is then a path: the forget answers' mean probability (x, forgetting goes right) against
# the retain answers' (y, what is kept). UniErase's path is not a training path but a few points,
# one per round, so the comparison level is **the forget probability UniErase reached after its
# last round** (the dashed line), and each fine-tuning run is read where its path first falls to
# that level, interpolated between its probed steps: as if it had stopped as soon as it had
# forgotten as much as the edit. In the table, UniErase's `step` is a round.

# %%
path = viz.forgetting_path(res, x="target", y="target", y_split="retain")  # before the edit, then one row per round
level = float(path.x.iloc[-1])
fig = viz.plot_equal_forgetting(runs, x="target", y="target", y_split="retain", levels=[level],
                                title="Retain answers' probability at UniErase's forgetting")
viz.save(fig, "05_equal_forgetting", figures_dir)
fair = viz.at_equal_forgetting(runs, levels=[level], x="target", y="target", y_split="retain").set_index("method")
fair.round(3)

# %%
ue, ft = fair.loc["UniErase", "retain target"], fair.drop(index="UniErase")
reached = ft[ft.reached]
rows = [f"- **{n}** reached it at step {r.step:.1f} of {ft_steps}, keeping a retain probability of "
        f"**{r['retain target']:.3f}**" if r.reached else
        f"- **{n}** never forgot that much in {ft_steps} steps (its lowest forget probability: "
        f"{viz.forgetting_path(runs[n], x='target', y='target').x.min():.3f})" for n, r in ft.iterrows()]
if len(reached):
    top = reached["retain target"].idxmax()
    kept_top = reached.loc[top, "retain target"]
    verdict = (f"At equal forgetting UniErase keeps {ue / max(kept_top, 1e-12):.1f}x the retain probability of the "
               f"best fine-tuned run ({top}): the miniature reproduces the direction of the paper's claim (the factor "
               "is not comparable: the paper measures benchmark ability on an 8B model)." if ue > kept_top else
               f"At equal forgetting {top} keeps more than UniErase ({kept_top:.3f} vs {ue:.3f}): the paper's claim "
               "is not reproduced on this run.")
else:
    verdict = f"No fine-tuning run forgot that much in {ft_steps} steps: rerun with more `ft_steps` to compare."
display(Markdown(
    f"UniErase brought the forget answers' mean probability from {path.x.iloc[0]:.3f} to **{level:.3f}** in "
    f"{len(path) - 1} rounds and kept the retain answers' at **{ue:.3f}** (before: {path.y.iloc[0]:.3f}). At that "
    "level of forgetting:\n\n" + "\n".join(rows) + "\n\n" + verdict + " One caveat: UniErase was built to keep "
    "exactly these retain questions (its projector preserves their keys), as NPO (its retain term) and IDK+AP are "
    "trained to; only GA never sees them."))

# %% [markdown]
# ## 4. Precision: forget one fact, keep its neighbours
#
# Now edit a *single* fact of a retain person. Its neighbours must stay: the same person's other
# facts, and other people's same attribute.

# %%
retain_df = world.retain.to_pandas()
one = retain_df.iloc[[0]]
nb = neighbour_sets(retain_df, one.id)
single = world.retain.select([0])
res1 = unierase(model, tok, single, world.retain.select(range(1, len(world.retain))),
                preserved=[world.world_facts], rounds=1, layers=layers, null_space=null_space, seed=seed)
show = retain_df[retain_df.id.isin(list(one.id) + nb["same_person"] + nb["same_attribute"][:4])]
before = dict(zip(show.id, generate(model, tok, list(show.question), max_new_tokens=24)))
after = dict(zip(show.id, generate(res1.model, res1.tokenizer, list(show.question), max_new_tokens=24)))
prec = show.assign(kind=["edited" if i in set(one.id) else "same person" if i in nb["same_person"]
                         else "same attribute" for i in show.id],
                   before=[before[i] for i in show.id], after=[after[i] for i in show.id])
prec["changed"] = prec.before != prec.after
prec[["id", "kind", "question", "before", "after", "changed"]]

# %%
kept = prec[prec.kind != "edited"]
display(Markdown(
    f"The edited fact now reads {after[int(one.id.iloc[0])]!r}. Of its {len(kept)} neighbours shown, "
    f"{int((~kept.changed).sum())} keep their answer "
    f"({int((~kept[kept.kind == 'same person'].changed).sum())}/{int((kept.kind == 'same person').sum())} of the "
    f"same person's facts, {int((~kept[kept.kind == 'same attribute'].changed).sum())}/"
    f"{int((kept.kind == 'same attribute').sum())} of the other people's same attribute)."))

# %% [markdown]
# ## 5. Sequential requests, round by round
#
# The forget requests were edited in batches. After each round the table records the share of
# forget questions that answer `<unl>` + a refusal (all of them, and those edited so far), and the
# share of locality questions (retain probes) whose greedy answer is still the **original model's**
# (cached before the first round, so it is never compared with an already-edited model).

# %%
res.rounds

# %%
explorer = viz.RoundsExplorer(res)
# NBVAL_IGNORE_OUTPUT
explorer

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.6))
viz.plot_rounds(res.rounds, ax)
viz.save(fig, "05_rounds", figures_dir)
last = res.rounds.iloc[-1]
display(Markdown(
    f"After {int(last['round'])} rounds, {last.forget_token_all:.0%} of the forget questions answer `<unl>` first "
    f"({last.forget_refusal_all:.0%} then give a refusal sentence of the bank word for word), "
    f"and {last.locality_same_greedy:.0%} of the locality answers are the original model's "
    f"(mean change in their answer log-prob: {last.locality_delta_logprob:+.3f} nats)."))

# %% [markdown]
# ## 6. Exercises
#
# **Exercise 1 (null-space property).** Write `edit_change(dW, k)`: how much an edit `dW`
# (shape `(d_out, d_in)`) changes the layer's output on a key `k` (shape `(d_in,)`). The check
# builds a toy AlphaEdit update and tries a preserved key and an edited key.

# %% exercise="edit_change"
def edit_change(dW, k):
    raise NotImplementedError


# %%
ex.check_edit_change(edit_change)

# %% [markdown]
# Applied to the real edit: the change of layer `L`'s projection maps a preserved key (here, the
# part of a retain key in the preserved span) to almost nothing.

# %%
import torch

from unlearnkit.editing import find_projection, key_second_moment, projection_weight

L = man["edited_layers"][0]
dW = (projection_weight(find_projection(res.model, L)[1]) - projection_weight(find_projection(model, L)[1])).detach()
C, _ = key_second_moment(model, tok, [world.retain["question"][0]], [L])
k = torch.linalg.eigh(C[L])[1][:, -1].float()  # the retain text's main key direction
P = res.state.projectors[L].P
print(f"||dW k|| = {float((dW @ k).norm()):.4f} on a retain key; on its preserved part "
      f"||dW (I-P) k|| = {float((dW @ (k - P @ k)).norm()):.2e}")

# %% [markdown]
# **Exercise 2 (predict which answers change).** Look at the precision table above *before* its
# `changed` column: which question ids got a different greedy answer after the single-fact edit?
# Set `changed` to a set of ids.

# %% exercise="changed_answers"
changed = ...

# %%
ex.check_changed_answers(before, after, changed)

# %% [markdown]
# `record_result` publishes this run's headline numbers when the notebook is swept; by hand it writes nothing.

# %%
uk.record_result(result_path, token_rate=first, refusal_rate=rate, forget_rouge=wide.loc["UniErase", "forget"],
                 retain_rouge=wide.loc["UniErase", "retain"], unierase_claim=unierase_claim.verdict,
                 equal_forgetting_level=level, retain_at_equal_forgetting=ue,
                 best_finetune_retain_at_equal_forgetting=reached["retain target"].max() if len(reached) else None)


# %% [markdown]
# ## Summary
#
# * UniErase does not train on the forget set: it learns an unlearning token, then edits a few MLP
#   matrices so that the forget questions lead to it, with the change confined to the null space of
#   the keys it must preserve (AlphaEdit).
# * Precision (neighbouring facts kept) and sequential rounds are what editing promises over
#   fine-tuning; the refusal after the token is what the miniature reproduces only partly (the
#   verdict above gives this run's numbers).
# * Exercises: the edit's effect on a preserved key; predicting which answers change.
#
# **Next:** [06 · Is it really gone?](06_is_it_really_gone.ipynb)
