"""The whole suite on real TOFU rows and on plain-text data, with the tiny model: it runs, skips
what the data cannot support with a warning, and every value lies in its valid range."""

import warnings

import numpy as np
import pytest
import torch

from unlearnkit import evaluate, load_tofu, summarize

UNIT = ["probability", "rouge", "token_entropy", "cosine_similarity", "entailment_score", "knowledge_memorization",
        "verbatim_memorization", "relearning", "quantization", "paraphrase_probe", "prefix_probe"]


def _nli(path):
    """A tiny random BERT NLI classifier (entailment / neutral / contradiction) on MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from unlearnkit.metrics.closer_look import default_embedding_model

    tok = AutoTokenizer.from_pretrained(default_embedding_model())
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    torch.manual_seed(1)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tofu_eval(tofu_dir, tiny, tiny_retain, tmp_path_factory):
    n = 4
    data = {"forget": load_tofu(tofu_dir, "forget01_perturbed").select(range(n)),
            "retain": load_tofu(tofu_dir, "retain_perturbed").select(range(n)),
            "world_facts": load_tofu(tofu_dir, "world_facts_perturbed").select(range(n))}
    holdout = load_tofu(tofu_dir, "retain90").select(range(100, 100 + n))  # stands in for TOFU's holdout split
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        df = evaluate(*tiny, data, "all", reference=tiny_retain, original=tiny, holdout=holdout,
                      nli_model=_nli(tmp_path_factory.mktemp("nli")), max_new_tokens=16, relearn_steps=2,
                      verbmem_max_new_tokens=16, progress=False)
    return df, [str(w.message) for w in ws]


def test_suite_on_real_tofu_rows_in_range(tofu_eval):
    df, msgs = tofu_eval
    # TOFU rows carry no structured `value`: fact_recall is skipped with a warning naming the field
    assert any("'fact_recall' skipped" in m and "value" in m for m in msgs)
    # world_facts rows have no paraphrased_question: the paraphrase probe skips that split
    assert any("'paraphrase_probe' skipped: split 'world_facts'" in m for m in msgs)
    ran = set(df.metric)
    assert set(UNIT) | {"truth_ratio", "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_reference",
                        "mia_gradnorm",
                        "privleak", "squeezing", "forget_quality", "model_utility"} <= ran
    per = df[df.id >= 0]
    for m in UNIT:
        v = per[per.metric == m].value.astype(float)
        assert len(v) and v.between(0, 1).all(), m
    assert set(per[per.metric == "entailment_score"].value) <= {0.0, 1.0}
    assert (per[per.metric == "truth_ratio"].value > 0).all()
    assert per[per.metric == "squeezing"].value.between(-1, 1).all()
    assert set(per[per.metric == "squeezing"].split) == {"forget"}
    for m in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_reference", "mia_gradnorm"):
        rows = df[df.metric == m]
        assert np.isfinite(rows.value.astype(float)).all(), m
        auc = rows[rows.split == "forget_vs_holdout"].value.item()
        assert 0 <= auc <= 1
    s = summarize(df).set_index(["split", "metric"]).value
    assert 0 <= s["forget", "forget_quality"] <= 1
    assert np.isfinite(s["forget_vs_holdout", "privleak"]) or np.isnan(s["forget_vs_holdout", "privleak"])
    # the tiny model never saw TOFU: it knows nothing of it
    assert s["forget", "probability"] < 0.5


def test_plain_text_data_for_muse_and_mia(quick_world, tiny):
    """MUSE-style data: a `text` column instead of question/answer; whole-text scoring."""
    from datasets import Dataset

    def texts(split):
        d = quick_world.split(split)
        return Dataset.from_list([{"id": i, "text": f"{q} {a}"} for i, q, a in zip(d["id"], d["question"], d["answer"])])

    forget, holdout = texts("forget"), texts("holdout")
    df = evaluate(*tiny, {"forget": forget}, ["verbatim_memorization", "mia_min_k", "mia_loss", "mia_gradnorm"],
                  holdout=holdout,
                  progress=False)
    s = summarize(df).set_index(["split", "metric"]).value
    assert 0 <= s["forget", "verbatim_memorization"] <= 1
    # the target model trained on the forget people, never on the holdout ones
    assert s["forget_vs_holdout", "mia_loss"] > 0.8
    assert s["forget_vs_holdout", "mia_gradnorm"] > 0.8, s["forget_vs_holdout", "mia_gradnorm"]
    with pytest.raises(Exception, match="metric 'rouge' needs field"):
        evaluate(*tiny, {"forget": forget}, ["rouge"], progress=False)
