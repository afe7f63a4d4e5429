"""Widget callbacks, driven as a user would (setting ``.value``), on real unlearning runs of the tiny model.

No browser and no kernel: traitlets observers fire synchronously, and each explorer keeps the
tables and the figure of its current state as attributes.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(quick_world, tiny):
    """GA (probes every 2 steps) and GA at a higher rate (probes every step): two objectives'
    worth of results with different probe steps, small enough for CI."""
    import unlearnkit as uk

    model, tok = tiny
    kw = dict(steps=4, probe_size=3, max_new_tokens=16, progress=False, seed=0)
    ga = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", lr=1e-4, probe_every=2, **kw)
    fast = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", lr=1e-3, probe_every=1, **kw)
    return {"GA": ga, "GA lr 1e-3": fast}


def after_heights(fig):
    return np.array([b.get_height() for b in fig.axes[0].containers[1]])


def test_squeeze_explorer_renders_at_construction(runs, quick_world):
    from unlearnkit.viz import SqueezeExplorer

    ex = SqueezeExplorer(runs, quick_world.forget)
    assert ex.method.value == "GA" and ex.step.value == 4  # last recorded step by default
    assert [v for _, v in ex.step.options] == [0, 2, 4]
    assert ex.png.startswith(b"\x89PNG") and ex.image.value == ex.png
    np.testing.assert_allclose(after_heights(ex.figure), ex.table.after.to_numpy(), equal_nan=True)
    assert ex.figure.axes[0].get_ylabel() and ex.figure.axes[0].get_title()
    assert ex.token_table is not None and set(ex.token_table.tag) <= {"target", "paraphrase", "belief", "perturbed",
                                                                        "other"}
    assert "<table" in ex.info.value
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle


def test_squeeze_step_slider_moves_the_mass(runs, quick_world):
    from unlearnkit.viz import SqueezeExplorer

    ex = SqueezeExplorer(runs, quick_world.forget)
    ex.step.value = 0
    t0 = ex.table.set_index("kind")
    png0 = ex.png
    # at the first step "before" and "at step" are the same model
    assert t0.loc["target", "after"] == pytest.approx(t0.loc["target", "before"])
    ex.step.value = 4
    t4 = ex.table.set_index("kind")
    assert ex.table.attrs["step"] == 4 and ex.png != png0
    assert t4.loc["target", "after"] < t0.loc["target", "after"]  # GA lowers the target's mass
    np.testing.assert_allclose(after_heights(ex.figure), ex.table.after.to_numpy(), equal_nan=True)
    # the token view follows the slider too
    tv = ex.token_table
    first = tv[(tv.position == 0) & tv.is_target].iloc[0]
    assert first.after < first.before


def test_squeeze_question_and_objective_switch(runs, quick_world):
    from unlearnkit.viz import SqueezeExplorer

    ex = SqueezeExplorer(runs, quick_world.forget)
    ids = [v for _, v in ex.question.options]
    assert len(ids) == 3
    ex.question.value = ids[1]
    assert ex.table.attrs["id"] == ids[1]
    assert ex.table.attrs["question"] == quick_world.forget.to_pandas().set_index("id").loc[ids[1], "question"]
    before = ex.table.after.to_numpy().copy()
    ex.method.value = "GA lr 1e-3"
    assert [v for _, v in ex.step.options] == [0, 1, 2, 3, 4]
    assert ex.step.value == 4 and ex.question.value == ids[1]
    assert not np.allclose(ex.table.after.to_numpy(), before)
    ex.step.value = 3  # a step only this run recorded
    assert ex.table.attrs["step"] == 3
    ex.method.value = "GA"  # back: step 3 was not recorded there, the nearest recorded one is taken
    assert ex.step.value == 2 and ex.table.attrs["step"] == 2
    ex.select(method="GA lr 1e-3", step=1)
    assert (ex.method.value, ex.step.value, ex.table.attrs["step"]) == ("GA lr 1e-3", 1, 1)


def test_squeeze_without_token_probes_draws_one_panel(quick_world, tiny):
    import unlearnkit as uk
    from unlearnkit.viz import SqueezeExplorer

    model, tok = tiny
    res = uk.unlearn(model, tok, quick_world.forget, None, method="ga", steps=1, probe_size=2, max_new_tokens=8,
                     token_probes=False, progress=False)
    ex = SqueezeExplorer(res, quick_world.forget)
    assert ex.token_table is None and len(ex.figure.axes) == 1
    assert ex.method.layout.display == "none"  # one objective: no switch shown


def test_explorers_reject_unusable_input(runs, quick_world):
    from unlearnkit.viz import EntropyExplorer, SqueezeExplorer

    with pytest.raises(ValueError, match="none of the probe questions"):
        SqueezeExplorer(runs, quick_world.retain)
    with pytest.raises(TypeError):
        SqueezeExplorer([1, 2], quick_world.forget)
    ga = runs["GA"]
    stripped = type(ga)(**{**ga.__dict__, "token_probes": ga.token_probes.iloc[:0]})
    with pytest.raises(ValueError, match="token_probes=True"):
        EntropyExplorer({"x": stripped}, quick_world.forget)


def test_entropy_explorer_follows_slider_and_objective(runs, quick_world):
    from unlearnkit.viz import EntropyExplorer
    from unlearnkit.viz.tables import token_entropy_value

    ex = EntropyExplorer(runs, quick_world.forget)
    tok = runs["GA"].tokenizer
    v = ex.view
    assert v["after"]["step"] == 4 and v["before"]["step"] == 0
    assert v["after"]["token_entropy"] == pytest.approx(token_entropy_value(tok.tokenize(v["after"]["text"])))
    assert v["after"]["mean_entropy"] == pytest.approx(float(v["after"]["tokens"].entropy.mean()))
    # the side panels show exactly these numbers
    te_bars = [b.get_height() for b in ex.figure.axes[1].patches]
    me_bars = [b.get_height() for b in ex.figure.axes[2].patches]
    assert te_bars == pytest.approx([v["before"]["token_entropy"], v["after"]["token_entropy"]])
    assert me_bars == pytest.approx([v["before"]["mean_entropy"], v["after"]["mean_entropy"]])
    ex.step.value = 0
    assert ex.view["after"]["text"] == ex.view["before"]["text"]
    png0 = ex.png
    ex.method.value = "GA lr 1e-3"
    ex.step.value = 4
    assert ex.png != png0 and ex.view["after"]["step"] == 4
    # the strip draws one coloured box per generated token, before and after
    n_tokens = len(ex.view["before"]["tokens"]) + len(ex.view["after"]["tokens"])
    assert len(ex.figure.axes[0].patches) == n_tokens
    assert "greedy answer" in ex.info.value


def test_misreport_table_flags_rouge_drops_that_keep_the_fact(runs, quick_world, tiny):
    from unlearnkit.metrics import misreport_table

    model, tok = tiny
    data = quick_world.forget.select(range(4))
    t = misreport_table(runs["GA lr 1e-3"].model, tok, data, before=model, max_new_tokens=16)
    assert list(t.id) == list(data["id"]) and list(t.value) == list(data["value"])
    assert set(t.states) <= {"true", "wrong", "refusal", "none"}
    assert t.rouge.between(0, 1).all() and (t.rouge_before > 0.9).all()  # the original model says the answer
    expected = (t.rouge < 0.5) & (t.rouge < t.rouge_before) & (t.states == "true")
    assert (t.misreported == expected).all()
    # every row flagged really does state the value in its answer
    for r in t[t.misreported].itertuples():
        assert r.value.lower() in r.answer.lower()
