"""The full metric suite on the miniature: target model vs a GA-unlearned copy, errors, the NLI
plumbing, the squeezing decomposition, and the generated reference page."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnkit import evaluate, list_metrics, summarize, unlearn
from unlearnkit.metrics import (
    MissingInputError,
    metrics_markdown,
    privleak_value,
    squeeze_candidates,
    squeeze_decomposition,
    squeeze_summary,
    token_squeeze,
    token_squeeze_summary,
)
from unlearnkit.world import DataError

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["token_entropy", "cosine_similarity", "entailment_score", "fact_recall", "verbatim_memorization",
            "knowledge_memorization", "privleak", "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus",
            "mia_reference", "squeezing", "relearning", "quantization", "probability", "rouge", "truth_ratio",
            "forget_quality", "model_utility"]


def make_nli(path: Path, favour: str = "entailment") -> Path:
    """A tiny randomly initialised BERT NLI classifier (labels entailment/neutral/contradiction)
    whose bias makes ``favour`` the argmax for every pair; tokenizer: the bundled MiniLM one."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from unlearnkit.metrics.closer_look import default_embedding_model

    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    tok = AutoTokenizer.from_pretrained(default_embedding_model())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=512, num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0 if labels[i] == favour else 0.0 for i in range(3)]))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    return make_nli(tmp_path_factory.mktemp("nli") / "entail")


@pytest.fixture(scope="module")
def ga(quick_world, tiny):
    model, tok = tiny
    return unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", steps=20, lr=1e-4,
                   probe_every=0, progress=False).model


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tables(quick_world, tiny, tiny_retain, ga, nli_dir):
    model, tok = tiny
    before_params = _params(model)
    kw = dict(reference=tiny_retain, original=tiny, nli_model=str(nli_dir), progress=False)
    target = evaluate(model, tok, quick_world, "all", model_name="target", **kw)
    ga_params = _params(ga)
    after = evaluate(ga, tok, quick_world, "all", model_name="ga", **kw)
    unchanged = all(torch.equal(v, model.state_dict()[k]) for k, v in before_params.items()) and \
        all(torch.equal(v, ga.state_dict()[k]) for k, v in ga_params.items())
    return target, after, unchanged


def _agg(df):
    return summarize(df).set_index(["split", "metric"]).value


def test_all_metrics_registered_and_reported(tables):
    target, after, _ = tables
    names = set(list_metrics())
    assert set(REQUIRED) <= names and {"paraphrase_probe", "prefix_probe"} <= names
    for df in (target, after):
        assert set(REQUIRED) <= set(df.metric)  # every metric ran ("all" suite with every input given)
        assert {"model", "split", "metric", "id", "value"} <= set(df.columns)
        vals = df[df.metric != "privleak"].value.astype(float)
        assert np.isfinite(vals).all()


def test_passed_models_are_never_modified(tables):
    assert tables[2], "relearning / quantization / squeezing changed the weights of a model they were given"


def test_directions_target_vs_ga(tables):
    t, g = _agg(tables[0]), _agg(tables[1])
    # knowledge metrics on the forget split fall under GA
    for m in ("probability", "rouge", "knowledge_memorization", "verbatim_memorization", "cosine_similarity",
              "paraphrase_probe"):
        assert g["forget", m] < t["forget", m] - 0.05, m
    assert g["forget", "fact_recall"] <= t["forget", "fact_recall"]
    assert t["forget", "fact_recall"] == 1.0 and t["forget", "rouge"] > 0.9
    # GA output is less diverse (collapse signal); retain knowledge mostly survives 20 small steps
    assert g["forget", "token_entropy"] < t["forget", "token_entropy"]
    assert g["retain", "probability"] > 0.5
    # MIA: forget rows look less like members after GA (higher loss-like scores); AUC cannot rise
    # (GradNorm, measured: forget 0.085 -> 0.91 per-example norm; AUC 1.0 -> 0.9)
    for m in ("mia_loss", "mia_min_k", "mia_zlib", "mia_min_k_plus_plus", "mia_gradnorm"):
        assert g["forget", m] > t["forget", m], m
        assert g["forget_vs_holdout", m] <= t["forget_vs_holdout", m] + 1e-9, m
        assert 0 <= g["forget_vs_holdout", m] <= 1
    # the target knows its forget set: perfectly separable from never-seen people, privleak << 0
    assert t["forget_vs_holdout", "mia_loss"] == 1.0
    assert t["forget_vs_holdout", "privleak"] < -50
    # relearning brings GA's forget knowledge back on held-back rows; the target had nothing to regain
    tr, gr = tables[0], tables[1]
    gain_t = tr[tr.metric == "relearning"].gain.mean()
    gain_g = gr[gr.metric == "relearning"].gain.mean()
    assert gain_g > 0.1 and gain_g > gain_t + 0.05
    # squeezing of the target against itself is exactly nothing
    assert np.allclose(tr[tr.metric == "squeezing"].value, 0.0, atol=1e-6)


def test_relearning_on_related_retain_facts(quick_world, tiny, ga):
    """Fine-tuning on retain facts related to the forget rows (same city, same kind of fact) brings
    some of GA's forgotten knowledge back. Measured on the quick world: mean probability gain 0.049
    after GA vs 0.023 on the target (3 related retain rows, 10 steps)."""
    model, tok = tiny
    gains = {}
    for name, m in (("target", model), ("ga", ga)):
        df = evaluate(m, tok, quick_world, ["relearning"], relearn_on="retain", progress=False)
        assert set(df.relearn_on) == {"retain (related)"} and set(df.split) == {"forget"}
        gains[name] = df.gain.mean()
    assert gains["ga"] > gains["target"] > 0


def test_metric_rows_are_consistent(tables):
    t = tables[0]
    prob = t[(t.metric == "probability") & (t.split == "forget")].set_index("id").value
    quant = t[(t.metric == "quantization") & (t.split == "forget")].set_index("id")
    assert np.allclose(quant.prob_before.loc[prob.index], prob)  # quantization compares against the same numbers
    mia = t[t.metric == "mia_loss"]
    assert set(mia[mia.split == "forget"].member) == {True} and set(mia[mia.split == "holdout"].member) == {False}
    rl = t[t.metric == "relearning"]
    assert (rl.n_relearn == 3).all() and len(rl) == 7  # 10 forget rows: 3 relearned, 7 evaluated
    fr = t[t.metric == "fact_recall"]
    assert set(fr.label) <= {"true", "wrong", "refusal", "none"}


def test_entailment_plumbing(tables, quick_world, tiny, tmp_path):
    """The tiny NLI model always says "entailment": values are 1 exactly where ROUGE-L recall >= 0.1."""
    for df in tables[:2]:
        e = df[df.metric == "entailment_score"]
        assert np.array_equal(e.value.to_numpy(), (e.rouge_recall >= 0.1).astype(float).to_numpy())
        assert set(e.label) <= {"entailment", "none"}
        assert set(e[e.split == "forget"].premise) == {"generation"}
        assert set(e[e.split == "retain"].premise) == {"ground_truth"}
    # an NLI model that always says "contradiction" gives 0 everywhere
    contra = make_nli(tmp_path / "contra", "contradiction")
    df = evaluate(*tiny, {"forget": quick_world.forget}, ["entailment_score"], nli_model=str(contra), progress=False)
    assert (df.value == 0).all() and set(df.label) == {"contradiction"}


def test_missing_inputs_raise_by_name_and_skip_in_suites(quick_world, tiny):
    model, tok = tiny
    forget = {"forget": quick_world.forget.select(range(2))}
    with pytest.raises(MissingInputError, match="squeezing.*original=\\(model, tokenizer\\)"):
        evaluate(model, tok, forget, ["squeezing"], progress=False)
    with pytest.raises(MissingInputError, match="entailment_score.*nli_model="):
        evaluate(model, tok, forget, ["entailment_score"], progress=False)
    with pytest.raises(MissingInputError, match="mia_loss.*holdout"):
        evaluate(model, tok, forget, ["mia_loss"], progress=False)
    with pytest.raises(MissingInputError, match="privleak.*reference=.*retain_auc"):
        evaluate(model, tok, quick_world, ["privleak"], progress=False)
    with pytest.raises(MissingInputError, match="forget_quality.*reference="):
        evaluate(model, tok, forget, ["forget_quality"], progress=False)
    with pytest.warns(UserWarning, match="'entailment_score' skipped.*nli_model"):
        df = evaluate(model, tok, forget, "closer_look", progress=False)
    assert set(df.metric) == {"token_entropy", "cosine_similarity", "fact_recall", "collapse"}
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        df = evaluate(model, tok, forget, ["squeeze", "robustness"], progress=False)
    assert any("'squeezing' skipped" in str(w.message) for w in ws)
    assert "relearning" in set(df.metric) and "squeezing" not in set(df.metric)


def test_options_are_validated_by_name(quick_world, tiny):
    """A misspelt or out-of-range evaluate() option raises before any work, naming it."""
    from unlearnkit.metrics import OPTIONS, EvalContext

    model, tok = tiny
    forget = {"forget": quick_world.forget}
    with pytest.raises(ValueError, match=r"unknown parameter.*max_new_token \(did you mean max_new_tokens\?\)"):
        evaluate(model, tok, forget, ["rouge"], max_new_token=8, progress=False)
    for bad, match in [({"mia_k": 0}, "mia_k=0 is out of range"), ({"retain_auc": 1.5}, "retain_auc=1.5"),
                       ({"relearn_on": "both"}, "relearn_on='both' is invalid"),
                       ({"prefix_share": "yes"}, "prefix_share='yes' must be True or False")]:
        with pytest.raises(ValueError, match=match):
            evaluate(model, tok, forget, ["rouge"], progress=False, **bad)
    # every option a metric reads is declared (with its default) in one place
    assert EvalContext(model, tok).opt("mia_k") == OPTIONS["mia_k"].default == 0.4
    with pytest.raises(KeyError, match="not a declared evaluation option"):
        EvalContext(model, tok).opt("mia_kk")
    r = repr(EvalContext(model, tok, options={"mia_k": 0.2}))
    assert "mia_k=0.2" in r and "LlamaDecoderLayer" not in r and len(r) < 300


def test_holdout_entry_is_the_mia_baseline_not_a_split(quick_world, tiny):
    model, tok = tiny
    data = {"forget": quick_world.forget, "holdout": quick_world.split("holdout")}
    df = evaluate(model, tok, data, ["probability", "mia_loss"], progress=False)
    assert set(df[df.metric == "probability"].split) == {"forget"}
    assert "forget_vs_holdout" in set(df[df.metric == "mia_loss"].split)
    assert set(data) == {"forget", "holdout"}  # the caller's dict is left as it was


@pytest.mark.parametrize("field,bad,match", [
    ("perturbed_answer", [], "row 2 .*'perturbed_answer' must be a non-empty list"),
    ("answer", "", "row 2 .*field 'answer' is empty"),
    ("paraphrased_answer", " ", "row 2 .*field 'paraphrased_answer' is empty"),
    ("question", None, "row 2 .*field 'question' is empty or not a string: None"),
])
def test_malformed_rows_are_named_before_any_work(quick_world, tiny, field, bad, match):
    from datasets import Dataset

    model, tok = tiny
    rows = quick_world.forget.select(range(4)).to_list()
    rows[2][field] = bad
    with pytest.raises(DataError, match="split 'forget', " + match):
        evaluate(model, tok, {"forget": Dataset.from_list(rows)}, ["probability"], progress=False)


def test_missing_fields_name_metric_and_field(quick_world, tiny):
    from datasets import Dataset

    bare = Dataset.from_list([{"id": 0, "question": "Where was Xarira Haner born?",
                               "answer": "Xarira Haner was born in Stonevale."}])
    with pytest.raises(DataError, match="metric 'fact_recall' needs field.*value"):
        evaluate(*tiny, bare, ["fact_recall"], progress=False)
    with pytest.raises(DataError, match="metric 'paraphrase_probe' needs field.*paraphrased_question"):
        evaluate(*tiny, bare, ["paraphrase_probe"], progress=False)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        df = evaluate(*tiny, bare, "closer_look", progress=False)
    msgs = [str(w.message) for w in ws]
    assert any("'fact_recall' skipped: split 'data' lacks field(s) ['value', 'perturbed_answer']" in m for m in msgs)
    assert any("'entailment_score' skipped" in m for m in msgs)
    assert "token_entropy" in set(df.metric) and "fact_recall" not in set(df.metric)


def test_knowmem_few_shot_prompts(quick_world, tiny):
    """With ``knowmem_icl`` KnowMem generates from few-shot prompts (its own answers, cut at the
    stop strings), not the shared plain-prompt answers. Measured on the quick target: 1.00 plain,
    0.83 with one retain example as the shot (the 96-token context model is thrown off by it)."""
    from unlearnkit.metrics import generate_from_ids
    from unlearnkit.metrics.muse import icl_prompt

    model, tok = tiny
    forget = quick_world.forget
    shots = [{"question": q, "answer": a} for q, a in zip(quick_world.retain["question"][:1],
                                                           quick_world.retain["answer"][:1])]
    plain = evaluate(model, tok, {"forget": forget}, ["knowledge_memorization"], progress=False)
    few = evaluate(model, tok, {"forget": forget}, ["knowledge_memorization"], knowmem_icl=shots, progress=False)
    assert list(few.generation) != list(plain.generation)
    assert not any("Question" in g for g in few.generation)
    ids = tok(icl_prompt([(shots[0]["question"], shots[0]["answer"])], forget["question"][0]))["input_ids"]
    assert few.generation[0] == generate_from_ids(model, tok, [ids], max_new_tokens=32)[0].split("\n\n")[0].strip()
    assert 0.5 < few.value.mean() <= plain.value.mean()


def test_privleak_reference_variants(quick_world, tiny, tiny_retain):
    model, tok = tiny
    ref_table = evaluate(*tiny_retain, quick_world, ["mia_min_k"], progress=False)
    ref_auc = _agg(ref_table)["forget_vs_holdout", "mia_min_k"]
    mine = evaluate(model, tok, quick_world, ["mia_min_k", "privleak"], reference=ref_table, progress=False)
    s = _agg(mine)
    assert s["forget_vs_holdout", "privleak"] == pytest.approx(privleak_value(s["forget_vs_holdout", "mia_min_k"], ref_auc))
    direct = evaluate(model, tok, quick_world, ["privleak"], reference=tiny_retain, progress=False)
    assert direct.value.item() == pytest.approx(s["forget_vs_holdout", "privleak"])
    half = evaluate(model, tok, quick_world, ["privleak"], retain_auc=0.5, progress=False)
    assert half.retain_auc.item() == 0.5
    with pytest.raises(MissingInputError, match="mia_reference.*mia_loss"):
        evaluate(model, tok, quick_world, ["mia_reference"], reference=ref_table, progress=False)


# -- squeezing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def squeeze(quick_world, tiny):
    """GA at lr 1e-4 for 10 steps: the squeeze is at its clearest (by 20 steps GA starts to collapse)."""
    model, tok = tiny
    ga10 = unlearn(model, tok, quick_world.forget, quick_world.retain, method="ga", steps=10, lr=1e-4,
                   probe_every=0, progress=False).model
    cand = squeeze_candidates(model, tok, quick_world.forget, n_samples=4, belief_mode="beam")
    dec = squeeze_decomposition(model, ga10, tok, quick_world.forget, candidates=cand)
    tok_table = token_squeeze(model, ga10, tok, quick_world.forget, candidates=cand)
    return ga10, cand, dec, tok_table


def test_squeeze_decomposition_is_a_distribution(squeeze):
    _, cand, dec, _ = squeeze
    for _, g in dec.groupby("id"):
        listed = g[g.kind != "rest"]
        assert listed.mass_before.sum() <= 1 + 1e-6 and listed.mass_after.sum() <= 1 + 1e-6
        assert g.mass_before.sum() == pytest.approx(1.0, abs=1e-6) and g.mass_after.sum() == pytest.approx(1.0, abs=1e-6)
        assert (g.kind == "target").sum() == 1 and (g.kind == "rest").sum() == 1
        assert listed.text.is_unique  # deduplicated
    assert (cand.kind == "belief").sum() > 0  # beam search found answers of the model's own


def test_ga_squeezes_mass_into_paraphrases(squeeze):
    _, _, dec, tok_table = squeeze
    s = squeeze_summary(dec)
    # measured: target 0.65 -> 0.05 while paraphrases rose 0.33 -> 0.92 (docstring of unlearnkit.metrics.squeezing)
    assert s.target_before.mean() > 0.5 and s.target_after.mean() < 0.2
    assert s.paraphrase_after.mean() > s.paraphrase_before.mean() + 0.3
    assert s.squeezed.mean() > 0.3 and (s.squeezed > 0).all()
    assert (s.gained_kinds.str.contains("paraphrase")).all()
    # token level: at the first answer token the target's mass moves to the paraphrase's first token
    for _, g in tok_table.groupby(["id", "position"]):
        assert g.p_before.sum() == pytest.approx(1.0, abs=1e-4) and g.p_after.sum() == pytest.approx(1.0, abs=1e-4)
    ts = token_squeeze_summary(tok_table)
    first = ts[ts.position == 0]
    assert first.removed.mean() > 0.3 and first.gain_paraphrase.mean() > 0.8 * first.removed.mean()


def test_squeezing_metric_matches_functions(squeeze, quick_world, tiny):
    ga10, _, _, _ = squeeze
    model, tok = tiny
    df = evaluate(ga10, tok, quick_world, ["squeezing"], original=tiny, squeeze_belief_mode="beam", progress=False)
    assert set(df.split) == {"forget"}  # forget splits only
    cand = squeeze_candidates(model, tok, quick_world.forget, n_samples=4, belief_mode="beam")
    ref = squeeze_summary(squeeze_decomposition(model, ga10, tok, quick_world.forget, candidates=cand))
    assert np.allclose(df.sort_values("id").value.to_numpy(), ref.sort_values("id").squeezed.to_numpy(), atol=1e-6)


# -- the reference page ---------------------------------------------------------------------------


def test_docs_page_matches_registry():
    page = REPO / "docs" / "metrics.md"
    assert page.exists(), "docs/metrics.md missing: run python -m unlearnkit.docs"
    assert page.read_text(encoding="utf-8") == metrics_markdown(), \
        "docs/metrics.md is stale: run python -m unlearnkit.docs"
    for name in REQUIRED:
        assert f"`{name}`" in page.read_text(encoding="utf-8")


def test_metrics_table_fields_are_right():
    from unlearnkit.metrics import metrics_table

    t = metrics_table().set_index("name")
    assert "value" in t.loc["fact_recall", "fields"] and "paraphrased_question" in t.loc["paraphrase_probe", "fields"]
    assert "text" in t.loc["mia_min_k", "fields"] and "holdout" in t.loc["mia_min_k", "needs"]
    assert "original" in t.loc["squeezing", "needs"]
    assert isinstance(t, pd.DataFrame) and len(t) == len(list_metrics())
