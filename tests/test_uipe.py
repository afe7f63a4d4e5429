"""UIPE (spec A18): the extrapolation operator on toy tensors, models and LoRA adapters, its input
checks, the objective wrapper and the α sweep. Fast: tiny random models and the quick world's
cached target model only (the related-knowledge world is tested in test_related.py)."""

import math

import pytest
import torch

from unlearnkit.editing import extrapolate_state, uipe, uipe_sweep, unlearn_uipe
from unlearnkit.editing.uipe import extrapolations


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=32,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def perturbed_copy(model, seed=1, scale=0.01):
    import copy

    g = torch.Generator().manual_seed(seed)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


# -- the operator on toy tensors -------------------------------------------------------------------

def test_operator_equals_hand_computed_values_and_norm_ratio_is_one_plus_alpha():
    theta0 = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5, -0.5])}
    theta_u = {"w": torch.tensor([[2.0, 2.0], [1.0, 4.0]]), "b": torch.tensor([0.5, 0.5])}
    before = {k: v.clone() for k, v in theta_u.items()}
    out, info = extrapolate_state(theta0, theta_u, 0.5)
    # v = θu − θ0 = [[1, 0], [−2, 0]], [0, 1];  θu + 0.5 v:
    assert out["w"].tolist() == [[2.5, 2.0], [0.0, 4.0]]
    assert out["b"].tolist() == [0.5, 1.0]
    assert info["norm_ratio"] == pytest.approx(1.5, abs=1e-12)
    assert info["update_norm"] == pytest.approx(math.sqrt(1 + 4 + 1))
    assert all(torch.equal(theta_u[k], before[k]) for k in theta_u)  # inputs untouched
    for alpha in (0.0, 0.1, 0.3, 1.0, 2.5):
        _, info = extrapolate_state(theta0, theta_u, alpha)
        assert info["norm_ratio"] == pytest.approx(1 + alpha, rel=1e-6)


def test_alpha_zero_is_exact_and_dtype_is_kept_with_fp32_arithmetic():
    g = torch.Generator().manual_seed(0)
    theta0 = {"w": torch.randn(64, generator=g).to(torch.bfloat16)}
    theta_u = {"w": (theta0["w"].float() + 0.01 * torch.randn(64, generator=g)).to(torch.bfloat16)}
    out, _ = extrapolate_state(theta0, theta_u, 0.0)
    assert torch.equal(out["w"], theta_u["w"])
    out, info = extrapolate_state(theta0, theta_u, 0.3)
    assert out["w"].dtype == torch.bfloat16
    want = (theta_u["w"].float() + 0.3 * (theta_u["w"].float() - theta0["w"].float())).to(torch.bfloat16)
    assert torch.equal(out["w"], want)
    assert info["norm_ratio"] == pytest.approx(1.3, rel=0.02)  # measured after the bf16 cast


def test_non_parameters_and_integer_tensors_are_copied_unchanged():
    theta0 = {"w": torch.zeros(3), "buf": torch.zeros(3), "step": torch.tensor(1)}
    theta_u = {"w": torch.ones(3), "buf": torch.ones(3), "step": torch.tensor(5)}
    out, info = extrapolate_state(theta0, theta_u, 1.0, params=["w", "step"])
    assert out["w"].tolist() == [2.0] * 3
    assert out["buf"].tolist() == [1.0] * 3 and out["step"].item() == 5
    assert set(info["skipped"]) == {"buf", "step"}


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf"), "0.3", None, True])
def test_bad_alpha_is_refused_naming_alpha_and_its_range(alpha):
    with pytest.raises(ValueError, match=r"alpha=.*\[0, inf\)"):
        extrapolate_state({"w": torch.zeros(1)}, {"w": torch.ones(1)}, alpha)


def test_mismatching_tensors_are_named():
    with pytest.raises(ValueError, match="'layer.1.w'.*shape \\(2,\\).*\\(3,\\)"):
        extrapolate_state({"layer.0.w": torch.zeros(2), "layer.1.w": torch.zeros(2)},
                          {"layer.0.w": torch.zeros(2), "layer.1.w": torch.zeros(3)}, 0.2)
    with pytest.raises(ValueError, match="'extra'.*no counterpart"):
        extrapolate_state({"w": torch.zeros(2)}, {"w": torch.zeros(2), "extra": torch.zeros(2)}, 0.2)
    with pytest.raises(ValueError, match="'gone'.*missing from the unlearned"):
        extrapolate_state({"w": torch.zeros(2), "gone": torch.zeros(2)}, {"w": torch.zeros(2)}, 0.2)


# -- models ---------------------------------------------------------------------------------------

def test_model_level_uipe_extrapolates_parameters_only_and_leaves_inputs_alone():
    orig = tiny_llama()
    unl = perturbed_copy(orig)
    rotary = [n for n, _ in unl.named_buffers() if n.endswith("inv_freq")]
    assert rotary, "the tiny Llama should carry a rotary inv_freq buffer"
    with torch.no_grad():  # make the buffer differ between the two models: it must keep unl's value
        dict(orig.named_buffers())[rotary[0]].mul_(2.0)
    u_before = {k: v.clone() for k, v in unl.state_dict().items()}
    o_before = {k: v.clone() for k, v in orig.state_dict().items()}
    out, info = uipe(orig, unl, 0.4, return_info=True)
    assert out is not unl
    assert info["norm_ratio"] == pytest.approx(1.4, rel=1e-5) and not info["lora"]
    assert torch.equal(dict(out.named_buffers())[rotary[0]], dict(unl.named_buffers())[rotary[0]])
    for n, p in out.named_parameters():
        want = unl.get_parameter(n) + 0.4 * (unl.get_parameter(n) - orig.get_parameter(n))
        assert torch.allclose(p, want, atol=1e-7), n
    assert all(torch.equal(v, unl.state_dict()[k]) for k, v in u_before.items())
    assert all(torch.equal(v, orig.state_dict()[k]) for k, v in o_before.items())
    same = uipe(orig, unl, 0)
    assert all(torch.equal(p, unl.get_parameter(n)) for n, p in same.named_parameters())


def test_model_level_errors_before_any_copy():
    from transformers import LlamaConfig, LlamaForCausalLM

    orig = tiny_llama()
    other = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=48, max_position_embeddings=32,
                                         tie_word_embeddings=True))
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight.*shape"):
        uipe(orig, other, 0.3)
    with pytest.raises(ValueError, match="alpha"):
        uipe(orig, perturbed_copy(orig), -1)
    with pytest.raises(ValueError, match="original=None"):
        uipe(None, perturbed_copy(orig), 0.3)


def test_lora_uipe_scales_the_adapter_delta_and_matches_full_weight_extrapolation():
    import copy

    from unlearnkit.models import wrap_lora

    orig = tiny_llama()
    peft_model = wrap_lora(copy.deepcopy(orig), {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # an "unlearned" adapter: B no longer zero
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    out, info = uipe(None, peft_model, 0.5, return_info=True)
    assert info["lora"] and info["norm_ratio"] == pytest.approx(1.5, rel=1e-5)
    for (n, p), (_, q) in zip(out.named_parameters(), peft_model.named_parameters()):
        assert torch.allclose(p, 1.5 * q if "lora_B" in n else q), n
    # the same as extrapolating the merged full weights from θ0
    merged_u = copy.deepcopy(peft_model).merge_and_unload()
    merged_uipe = copy.deepcopy(out).merge_and_unload()
    want, _ = extrapolate_state(orig.state_dict(), merged_u.state_dict(), 0.5)
    for k, v in merged_uipe.state_dict().items():
        assert torch.allclose(v, want[k], atol=1e-6), k
    # the adapter model itself was not modified
    assert any(torch.count_nonzero(p) for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_extrapolations_reuse_one_copy_and_restart_from_theta_u_each_time():
    orig = tiny_llama()
    unl = perturbed_copy(orig)
    seen = []
    for a, m, info in extrapolations(orig, unl, [0.5, 0.0, 1.0]):
        seen.append(id(m))
        assert info["norm_ratio"] == pytest.approx(1 + a, rel=1e-5)
        if a == 0.0:  # not cumulative: back to θu exactly
            assert all(torch.equal(p, unl.get_parameter(n)) for n, p in m.named_parameters())
    assert len(set(seen)) == 1


# -- the objective wrapper and the sweep on the quick world -----------------------------------------

def test_unlearn_uipe_alpha_zero_is_the_base_objective_and_records_the_norm_ratio(quick_world, tiny):
    from unlearnkit import unlearn

    model, tok = tiny
    kw = dict(steps=3, lr=1e-4, probe_every=0, progress=False, seed=0)
    base = unlearn(model, tok, quick_world.forget, quick_world.retain, method="graddiff", **kw)
    zero = unlearn_uipe(model, tok, quick_world.forget, quick_world.retain, method="graddiff", alpha=0.0, **kw)
    assert all(torch.equal(p, base.model.get_parameter(n)) for n, p in zero.model.named_parameters())
    res = unlearn_uipe(model, tok, quick_world.forget, quick_world.retain, method="graddiff", alpha=0.3, **kw)
    assert res.hparams["uipe_alpha"] == 0.3
    assert res.manifest["uipe"]["alpha"] == 0.3
    assert res.manifest["uipe"]["norm_ratio"] == pytest.approx(1.3, rel=1e-4)
    for n, p in res.model.named_parameters():
        want = base.model.get_parameter(n) + 0.3 * (base.model.get_parameter(n) - model.get_parameter(n))
        assert torch.allclose(p, want, atol=1e-6), n
    with pytest.raises(ValueError, match="alpha"):  # refused before any training
        unlearn_uipe(model, tok, quick_world.forget, method="ga", alpha=float("nan"), **kw)


def test_unlearn_uipe_under_lora(quick_world, tiny):
    model, tok = tiny
    res = unlearn_uipe(model, tok, quick_world.forget, method="ga", alpha=0.5, lora={"r": 4}, steps=2, lr=1e-3,
                       probe_every=0, progress=False)
    assert res.manifest["uipe"]["lora"] is True
    assert res.manifest["uipe"]["norm_ratio"] == pytest.approx(1.5, rel=1e-4)


def test_sweep_is_tidy_and_checks_inputs_first(quick_world, tiny):
    from unlearnkit import unlearn

    model, tok = tiny
    res = unlearn(model, tok, quick_world.forget, method="ga", steps=3, lr=3e-4, probe_every=0, progress=False)
    data = {"forget": quick_world.forget.select(range(4)), "retain": quick_world.retain.select(range(4))}
    table = uipe_sweep(model, res, tok, data, alphas=[0, 1.0], metrics=["probability"])
    assert list(table.columns[:5]) == ["alpha", "norm_ratio", "split", "metric", "value"]
    assert len(table) == 4 and set(table.alpha) == {0.0, 1.0}
    t = table.set_index(["alpha", "split"]).value
    assert t[(1.0, "forget")] < t[(0.0, "forget")]  # extrapolating GA lowers the forget probability further
    assert table.norm_ratio.tolist() == pytest.approx([1, 1, 2, 2], rel=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        uipe_sweep(model, res, tok, data, alphas=[0.1, -0.5])
    with pytest.raises(ValueError, match="indirect"):
        uipe_sweep(model, res, tok, data, alphas=[0.1], metrics={"indirect": ["related_recall"]})
    from unlearnkit.world.loaders import DataError

    with pytest.raises(DataError, match="related_recall.*carrier"):
        uipe_sweep(model, res, tok, data, alphas=[0.1], metrics={"forget": ["related_recall"]})
