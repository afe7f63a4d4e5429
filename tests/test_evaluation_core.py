"""TOFU evaluation core: hand-computed values, seeds, real TOFU rows, errors."""

import math

import numpy as np
import pytest

from unlearnkit import evaluate, list_metrics, summarize
from unlearnkit.metrics import (
    aggregate_truth_ratio,
    forget_quality_value,
    harmonic_mean,
    rouge_recall,
    truth_ratio_raw,
)
from unlearnkit.world import DataError


def test_truth_ratio_hand_computed():
    # paraphrase mean NLL 1.0; perturbed mean NLLs 2 and 3 -> R = exp(1 - 2.5)
    r = truth_ratio_raw(np.array([1.0]), [np.array([2.0, 3.0])])
    assert r[0] == pytest.approx(math.exp(-1.5))
    # forget: mean(min(R, 1/R)); retain: mean(max(0, 1 - R)); closer look forget: 1 - mean(min)
    rs = np.array([0.5, 2.0, 4.0])
    assert aggregate_truth_ratio("forget", rs) == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert aggregate_truth_ratio("forget", rs, "cl_forget") == pytest.approx(1 - (0.5 + 0.5 + 0.25) / 3)
    assert aggregate_truth_ratio("retain", rs) == pytest.approx((0.5 + 0 + 0) / 3)


def test_rouge_recall_hand_computed():
    # LCS("the cat sat on the mat", "the cat sat") = 3 of 6 reference tokens
    assert rouge_recall(["the cat sat on the mat"], ["the cat sat"])[0] == pytest.approx(0.5)
    assert rouge_recall(["a b"], ["x y"])[0] == 0.0


def test_forget_quality_and_harmonic_mean():
    a = np.linspace(0.1, 1.0, 30)
    assert forget_quality_value(a, a) == pytest.approx(1.0)
    assert forget_quality_value(a, a + 10) < 1e-10
    assert harmonic_mean([0.5, 0.25]) == pytest.approx(1 / 3)
    assert harmonic_mean([0.5, 0.0]) == 0.0


@pytest.fixture(scope="module")
def core_eval(quick_world, tiny, tiny_retain):
    model, tok = tiny
    return evaluate(model, tok, quick_world, ["probability", "rouge", "truth_ratio", "forget_quality", "model_utility"],
                    reference=tiny_retain, progress=False)


def test_evaluate_is_tidy_and_in_range(core_eval):
    df = core_eval
    assert {"model", "split", "metric", "id", "value"} <= set(df.columns)
    per = df[df.id >= 0]
    assert set(per.split) == {"forget", "retain", "world_facts"}
    assert per[per.metric.isin(["probability", "rouge"])].value.between(0, 1).all()
    s = summarize(df).set_index(["split", "metric"]).value
    assert s["forget", "rouge"] >= 0.9 and s["retain", "probability"] > 0.3
    assert 0 <= s["forget", "forget_quality"] <= 1
    assert 0 < s["retain+world_facts", "model_utility"] <= 1


def test_forget_quality_separates_target_from_retain_model(core_eval, quick_world, tiny_retain):
    """The target model knows the forget answers, the retain model does not: FQ of the target is
    low; FQ of the retain model against itself is 1."""
    s = summarize(core_eval).set_index(["split", "metric"]).value
    own = evaluate(*tiny_retain, quick_world, ["forget_quality"], reference=tiny_retain, progress=False)
    assert own.value.item() == pytest.approx(1.0)
    assert s["forget", "forget_quality"] < own.value.item()


def test_same_seed_same_metrics(quick_world, tiny, core_eval):
    again = evaluate(*tiny, quick_world, ["probability", "rouge", "truth_ratio"], progress=False)
    a = core_eval[core_eval.metric.isin(["probability", "rouge", "truth_ratio"])].value.to_numpy()
    assert np.array_equal(a, again.value.to_numpy())


def test_metrics_on_real_tofu_rows(tofu_dir, tiny):
    from unlearnkit import load_tofu

    data = {"forget": load_tofu(tofu_dir, "forget01_perturbed").select(range(6)),
            "retain": load_tofu(tofu_dir, "retain_perturbed").select(range(6)),
            "world_facts": load_tofu(tofu_dir, "world_facts_perturbed").select(range(6))}
    df = evaluate(*tiny, data, ["probability", "rouge", "truth_ratio", "model_utility"], progress=False,
                  max_new_tokens=24)
    per = df[df.id >= 0]
    assert per[per.metric != "truth_ratio"].value.between(0, 1).all()
    assert (per[per.metric == "truth_ratio"].value > 0).all()
    assert np.isfinite(per.value).all()


def test_errors_name_metric_and_field(quick_world, tiny):
    from datasets import Dataset

    with pytest.raises(KeyError, match="unknown metric 'rougey'.*valid choices"):
        evaluate(*tiny, quick_world.forget, ["rougey"], progress=False)
    bare = Dataset.from_list([{"question": "Q?", "answer": "A.", "id": 0}])
    with pytest.raises(DataError, match="metric 'truth_ratio' needs field.*perturbed_answer"):
        evaluate(*tiny, bare, ["truth_ratio"], progress=False)
    assert {"probability", "rouge", "truth_ratio", "forget_quality", "model_utility"} <= set(list_metrics())


def test_greedy_answers_of_all_splits_are_decoded_in_one_pooled_call(quick_world, tiny, monkeypatch):
    """evaluate decodes the greedy answers of every split a generating metric reads in one call
    (fuller decoding batches), and they are the answers a separate call per split gives."""
    import unlearnkit.metrics.base as base
    from unlearnkit.scoring import generate

    model, tok = tiny
    calls = []

    def counting(*a, **kw):
        calls.append(len(a[2]))
        return generate(*a, **kw)

    monkeypatch.setattr(base, "generate", counting)
    df = evaluate(model, tok, quick_world, ["rouge", "probability"], max_new_tokens=12, progress=False)
    splits = ["forget", "retain", "world_facts"]
    assert calls == [sum(len(quick_world.split(s)) for s in splits)]
    for s in splits:
        d = quick_world.split(s)
        alone = generate(model, tok, d["question"], max_new_tokens=12, batch_size=5)
        got = df[(df.split == s) & (df.metric == "rouge")].sort_values("id").generation.tolist()
        assert got == alone, s


def test_generating_metrics_declare_it():
    """Every metric that reads ctx.generations says so (generates=...), so pooling sees it."""
    import inspect

    from unlearnkit.metrics import get_metric

    for name in list_metrics():
        m = get_metric(name)
        src = inspect.getsource(m.fn)
        if "ctx.generations(" in src or "knowmem_generations(" in src:
            assert m.generates, name
