"""The collapse detector: hand-made cases and GA's babble on the miniature."""

import pytest

from unlearnkit import evaluate, summarize, unlearn
from unlearnkit.metrics.collapse import is_collapsed, repetition_rate


def test_hand_made_cases():
    assert repetition_rate(["a", "b", "a", "b", "a", "b"]) == pytest.approx(1 - 2 / 5)
    assert repetition_rate(["x"]) == 0.0
    assert is_collapsed([])
    assert is_collapsed(["born"] * 6)
    assert not is_collapsed("Mira Voss was born in Quito .".split())


def test_long_ga_collapses_while_target_does_not(quick_world, tiny):
    """Measured on the quick world: the target model's forget answers have collapse rate 0.0;
    after 60 GA steps at lr 3e-4 the rate is 1.0 (answers like "born born born ..."). (The quick
    model's bits depend on the CPU's BLAS kernels: on an Intel build 40 steps already gave 1.0, on
    an AMD EPYC/AVX-512 build 40 steps gave 0.1 and 60 steps 1.0.)"""
    model, tok = tiny
    res = unlearn(model, tok, quick_world.forget, method="ga", steps=60, lr=3e-4, probe_every=0, progress=False)
    both = [evaluate(m, tok, quick_world.forget, ["collapse"], model_name=n, progress=False)
            for m, n in ((model, "target"), (res.model, "ga"))]
    s = summarize(__import__("pandas").concat(both)).set_index("model").value
    assert s["target"] == 0.0
    assert s["ga"] >= 0.5
