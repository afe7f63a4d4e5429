"""Every metric's math on hand-made inputs, against values computed by hand (no model needed)."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnkit.metrics import (
    answer_prefix,
    classify_answer,
    cosine_scores,
    entailment_values,
    fake_quantize,
    grad_norm_score,
    is_refusal,
    mia_auc,
    min_k_plus_plus_score,
    min_k_score,
    privleak_value,
    reference_score,
    relearn_split,
    rouge_l_f1,
    squeeze_summary,
    summarize,
    token_entropy_value,
    token_squeeze_summary,
    wrong_values,
    zlib_score,
)
from unlearnkit.metrics.closer_look import nli_pairs
from unlearnkit.metrics.muse import split_sequence


def test_token_entropy_hand_computed():
    # f = (1/2, 1/4, 1/4): H = 1.5 bits; n = 4 -> log2(4) = 2 -> 0.75
    assert token_entropy_value(["a", "a", "b", "c"]) == pytest.approx(0.75)
    assert token_entropy_value(["x", "y", "z", "w"]) == pytest.approx(1.0)  # all distinct
    assert token_entropy_value(["born"] * 6) == 0.0  # pure repetition
    assert token_entropy_value(["one"]) == 0.0 and token_entropy_value([]) == 0.0  # n <= 1
    # n = 3, f = (2/3, 1/3): H = -(2/3 log2 2/3 + 1/3 log2 1/3)
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert token_entropy_value(["a", "b", "a"]) == pytest.approx(h / math.log2(3))


def test_cosine_scores_clip_negative_and_handle_zero_vectors():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0], [1.0, 0.0]])
    assert cosine_scores(a, b) == pytest.approx([0.0, 1.0, 0.0, 0.0])
    assert cosine_scores([[3.0, 4.0]], [[4.0, 3.0]]) == pytest.approx([24 / 25])


def test_entailment_forced_to_none_below_rouge_threshold_and_pair_order():
    vals, labels = entailment_values(["ENTAILMENT", "neutral", "entailment", "contradiction"], [0.5, 0.9, 0.05, 0.3])
    assert list(vals) == [1.0, 0.0, 0.0, 0.0]
    assert labels == ["entailment", "neutral", "none", "contradiction"]
    # closer-look order: forget -> premise = generation; retain -> premise = ground truth
    assert nli_pairs("forget", ["gen"], ["gt"]) == (["gen"], ["gt"])
    assert nli_pairs("retain", ["gen"], ["gt"]) == (["gt"], ["gen"])
    assert nli_pairs("retain", ["gen"], ["gt"], "gen_premise") == (["gen"], ["gt"])
    with pytest.raises(ValueError, match="entailment_order"):
        nli_pairs("forget", ["g"], ["t"], "sideways")


def test_fact_recall_classification():
    ans = "Xarira Haner was born in Stonevale."
    pert = ["Xarira Haner was born in Glenwick.", "Xarira Haner was born in Old mere.", "Someone else entirely."]
    wrong = wrong_values(ans, "Stonevale", pert)
    assert wrong == ["Glenwick", "Old mere"]
    bank = ["I don't know.", "That is unknown to me."]
    assert classify_answer("Stonevale is the birthplace of Xarira Haner.", "Stonevale", wrong, bank) == "true"
    assert classify_answer("xarira haner was born in STONEVALE", "Stonevale", wrong, bank) == "true"
    assert classify_answer("Xarira Haner was born in Glenwick.", "Stonevale", wrong, bank) == "wrong"
    assert classify_answer("Hmm, I don\u2019t know.", "Stonevale", wrong, bank) == "refusal"
    assert classify_answer("That is unknown to me", "Stonevale", wrong, bank) == "refusal"
    assert classify_answer("born born born born", "Stonevale", wrong, bank) == "none"
    # whole words only: "Stonevales" is not "Stonevale", "1950" is not in "19501"
    assert classify_answer("Stonevales", "Stonevale", wrong, bank) == "none"
    assert classify_answer("born in 19501", "1950", [], bank) == "none"
    assert is_refusal("I cannot answer that") and not is_refusal("I know the answer: Paris")


def test_min_k_and_min_k_plus_plus_hand_computed():
    lp = [-0.1, -2.0, -0.5, -3.0, -0.2]
    assert min_k_score(lp, 0.4) == pytest.approx(2.5)  # int(0.4*5) = 2 lowest: -3, -2
    assert min_k_score(lp, 0.1) == pytest.approx(3.0)  # at least one token
    assert min_k_score(lp, 1.0) == pytest.approx(np.mean([0.1, 2.0, 0.5, 3.0, 0.2]))
    assert min_k_score([], 0.4) == 0.0
    # mu = 0, sigma = 1 reduces Min-K%++ to Min-K%
    assert min_k_plus_plus_score(lp, np.zeros(5), np.ones(5), 0.4) == pytest.approx(2.5)
    # z = (lp - mu)/sigma = [(-1+1)/2, (-4+2)/1, (0-(-1))/0.5] = [0, -2, 2]; lowest int(0.4*3)=1 -> 2
    assert min_k_plus_plus_score([-1.0, -4.0, 0.0], [-1.0, -2.0, -1.0], [2.0, 1.0, 0.5], 0.4) == pytest.approx(2.0)


def test_grad_norm_score_hand_computed():
    # tensors [3, 4] and [0, 1]: L2 norms 5 and 1 -> mean 3; L1 7 and 1 -> 4; Linf 4 and 1 -> 2.5
    g = [torch.tensor([3.0, 4.0]), torch.tensor([[0.0], [1.0]])]
    assert grad_norm_score(g, 2) == pytest.approx(3.0)
    assert grad_norm_score(g, 1) == pytest.approx(4.0)
    assert grad_norm_score(g, float("inf")) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="no gradients"):
        grad_norm_score([])


def test_gradnorm_scores_match_autograd_and_restore_the_model(quick_world, tiny):
    """GradNorm of one forget row equals a hand-run backward of HF's own mean loss; the model's
    ``requires_grad`` flags and ``.grad`` fields are left as they were."""
    from unlearnkit.data import encode_pairs
    from unlearnkit.metrics import EvalContext, gradnorm_scores

    model, tok = tiny
    rows = quick_world.forget.select(range(2))
    flags = [p.requires_grad for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    got = gradnorm_scores(EvalContext(model, tok, options={"mia_gradnorm_p": 1}), "forget", rows)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(a is b for a, b in zip(grads, (p.grad for p in model.parameters())))
    enc = encode_pairs(tok, rows["question"][:1], rows["answer"][:1])
    import copy

    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    m.eval()
    m(**enc).loss.backward()
    want = np.mean([p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None])
    assert got[0] == pytest.approx(want, rel=1e-4)
    assert got[0] != pytest.approx(got[1])
    with pytest.raises(ValueError, match="mia_gradnorm_p"):
        gradnorm_scores(EvalContext(model, tok, options={"mia_gradnorm_p": 3}), "forget", rows)


def test_zlib_reference_auc_privleak():
    assert zlib_score(2.0, "hello") == pytest.approx(2.0 / len(zlib.compress(b"hello")))
    assert list(reference_score([3.0, 1.0], [1.0, 1.5])) == [2.0, -0.5]
    # members (forget) have low loss-like scores: perfectly separable -> AUC 1 (OU orientation)
    assert mia_auc([0.1, 0.2, 0.3], [0.8, 0.9]) == 1.0
    assert mia_auc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert mia_auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert mia_auc([0.1, 0.6], [0.5, 0.9]) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    with pytest.raises(ValueError):
        mia_auc([], [1.0])
    # PrivLeak (MUSE orientation 1 - AUC_OU): fully separable vs retain 0.5 -> -100; equal -> 0
    assert privleak_value(1.0, 0.5) == pytest.approx(-100.0)
    assert privleak_value(0.5, 0.5) == pytest.approx(0.0)
    assert privleak_value(0.25, 0.5) == pytest.approx(50.0)  # (0.75 - 0.5) / 0.5
    assert math.isnan(privleak_value(0.7, 1.0))


def test_rouge_f1_and_sequence_split():
    # LCS 3; precision 3/3, recall 3/6 -> F1 = 2/3
    assert rouge_l_f1(["the cat sat on the mat"], ["the cat sat"])[0] == pytest.approx(2 / 3)
    assert rouge_l_f1(["a b"], ["c d"])[0] == 0.0
    assert split_sequence([1, 2, 3, 4], 0.5) == ([1, 2], [3, 4])
    assert split_sequence([1, 2], 0.0) == ([1], [2])  # at least one token each side
    assert split_sequence([1, 2, 3], 1.0) == ([1, 2], [3])
    with pytest.raises(ValueError):
        split_sequence([7], 0.5)


def test_knowmem_few_shot_pieces(tmp_path):
    import json

    from unlearnkit.metrics.muse import cut_at_stops, icl_prompt, load_icl_examples
    from unlearnkit.world import DataError

    rows = [{"question": "Where is Oslo?", "answer": " Norway "}, {"question": "2+2?", "answer": "4"}]
    f = tmp_path / "forget_qa_icl.json"
    f.write_text(json.dumps(rows))
    want = [("Where is Oslo?", "Norway"), ("2+2?", "4")]
    assert load_icl_examples(f) == want == load_icl_examples(rows) == load_icl_examples([tuple(x) for x in want])
    assert load_icl_examples({"question": ["Where is Oslo?", "2+2?"], "answer": ["Norway", "4"]}) == want
    assert icl_prompt(want[:1], "Who?") == "Question: Where is Oslo?\nAnswer: Norway\n\nQuestion: Who?\nAnswer:"
    assert cut_at_stops("Paris is big.\n\nQuestion: x") == "Paris is big."
    assert cut_at_stops("Paris Question: x") == "Paris"
    assert cut_at_stops(" no stop ") == "no stop"
    with pytest.raises(DataError, match="example 1"):
        load_icl_examples([rows[0], {"question": "q", "answer": ""}])
    with pytest.raises(DataError, match="no file"):
        load_icl_examples(tmp_path / "missing.json")
    with pytest.raises(DataError, match="example 0 must be"):
        load_icl_examples(["Where is Oslo? Norway"])
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(DataError, match="bad.json"):
        load_icl_examples(tmp_path / "bad.json")


def test_related_rows_prefer_shared_values_then_attributes():
    from datasets import Dataset

    from unlearnkit.metrics import related_rows

    pool = Dataset.from_dict({"attribute": ["pet", "birthplace", "genre", "birthplace", "award"],
                              "value": ["owl", "Lakeridge", "horror", "Stonevale", "Iron Key"]})
    data = Dataset.from_dict({"attribute": ["birthplace", "pet"], "value": ["Stonevale", "cat"]})
    rows, how = related_rows(pool, data, 1)
    assert how == "related" and rows.tolist() == [3]  # the same city (score 2)
    rows, _ = related_rows(pool, data, 3, seed=5)
    assert rows.tolist() == [0, 1, 3]  # then the same attributes (score 1), never genre / award
    rows, how = related_rows(Dataset.from_dict({"question": list("abcde")}), data, 2, seed=0)
    assert how == "random" and len(rows) == 2 and rows.tolist() == sorted(rows.tolist())


def test_fake_quantize_hand_computed():
    w = torch.tensor([[0.14, -0.7]])
    assert torch.allclose(fake_quantize(w, 4, None), torch.tensor([[0.1, -0.7]]))
    # groups of 2: each group has its own scale
    w = torch.tensor([[0.14, -0.7, 0.02, 0.07]])
    assert torch.allclose(fake_quantize(w, 4, 2), torch.tensor([[0.1, -0.7, 0.02, 0.07]]), atol=1e-7)
    # int8: error at most half a step (scale/2) everywhere
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 64, generator=g)
    q = fake_quantize(w, 8, None)
    scale = w.abs().amax(1, keepdim=True) / 127
    assert ((q - w).abs() <= scale / 2 + 1e-6).all()
    assert len(torch.unique(fake_quantize(w, 4, None)[0])) <= 15  # 2*7 + 1 levels
    with pytest.raises(ValueError):
        fake_quantize(w, 1)


def test_relearn_split_and_answer_prefix():
    a, b = relearn_split(10, 0.25, seed=0)
    assert len(a) == 3 and sorted(set(a) | set(b)) == list(range(10)) and not set(a) & set(b)
    assert np.array_equal(relearn_split(10, 0.25, seed=0)[0], a)
    assert len(relearn_split(2, 0.9)[1]) == 1
    with pytest.raises(ValueError):
        relearn_split(1)
    assert answer_prefix("Xarira Haner was born in Stonevale.", "Stonevale") == ("Xarira Haner was born in", "Stonevale.")
    assert answer_prefix("one two three four", None, 0.5) == ("one two", "three four")
    assert answer_prefix("Stonevale is the birthplace.", "Stonevale", 0.5) == ("Stonevale is", "the birthplace.")
    assert answer_prefix("Yes.", None) == ("", "Yes.")


def test_squeeze_summaries_hand_made():
    dec = pd.DataFrame([
        {"id": 1, "kind": "target", "mass_before": 0.6, "mass_after": 0.1},
        {"id": 1, "kind": "paraphrase", "mass_before": 0.3, "mass_after": 0.7},
        {"id": 1, "kind": "belief", "mass_before": 0.05, "mass_after": 0.02},
        {"id": 1, "kind": "perturbed", "mass_before": 0.01, "mass_after": 0.01},
        {"id": 1, "kind": "rest", "mass_before": 0.04, "mass_after": 0.17},
    ])
    dec["delta"] = dec.mass_after - dec.mass_before
    s = squeeze_summary(dec).iloc[0]
    assert s.removed == pytest.approx(0.5)
    assert s.squeezed == pytest.approx(0.4 - 0.03)  # paraphrase +0.4, belief -0.03
    assert s.squeeze_share == pytest.approx(0.37 / 0.5)
    assert s.gained_kinds == "paraphrase"
    tok = pd.DataFrame([
        {"id": 1, "position": 0, "tag": "target", "is_target": True, "p_before": 0.7, "p_after": 0.2},
        {"id": 1, "position": 0, "tag": "paraphrase", "is_target": False, "p_before": 0.2, "p_after": 0.6},
        {"id": 1, "position": 0, "tag": "other", "is_target": False, "p_before": 0.05, "p_after": 0.02},
        {"id": 1, "position": 0, "tag": "rest", "is_target": False, "p_before": 0.05, "p_after": 0.18},
    ])
    tok["delta"] = tok.p_after - tok.p_before
    t = token_squeeze_summary(tok).iloc[0]
    assert t.removed == pytest.approx(0.5) and t.gain_paraphrase == pytest.approx(0.4)
    assert t.gain_other == 0.0 and t.gain_rest == pytest.approx(0.13)


def test_summarize_uses_aggregate_rows():
    df = pd.DataFrame([
        {"model": "m", "split": "forget", "metric": "mia_loss", "id": 0, "value": 1.0},
        {"model": "m", "split": "forget", "metric": "mia_loss", "id": 1, "value": 3.0},
        {"model": "m", "split": "forget_vs_holdout", "metric": "mia_loss", "id": -1, "value": 0.75},
        {"model": "m", "split": "forget", "metric": "token_entropy", "id": 0, "value": 0.5},
        {"model": "m", "split": "forget", "metric": "token_entropy", "id": 1, "value": 1.0},
    ])
    s = summarize(df).set_index(["split", "metric"]).value
    assert s["forget", "mia_loss"] == 2.0 and s["forget_vs_holdout", "mia_loss"] == 0.75
    assert s["forget", "token_entropy"] == 0.75
