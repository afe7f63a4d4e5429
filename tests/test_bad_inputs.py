"""Bad inputs and faults, each with the specific message or behaviour it must produce (issue #15).

Every case is checked at the boundary: parameters, data, files, destinations, models, faults
(divergence, SIGTERM during a save), the CLI and notebook parameter cells. ``test_case_count``
prints how many distinct cases the module tries.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import Dataset

import unlearnkit as uk
from unlearnkit import cli
from unlearnkit.io import atomic_dir
from unlearnkit.validate import as_dataset, check_destination, check_qa
from unlearnkit.world.loaders import DataError, load_tofu, qa_dataset

REPO = Path(__file__).resolve().parents[1]
FAST = dict(steps=1, probe_every=0, progress=False)

# -- parameters (no model, no data) ----------------------------------------------------------------
PARAMS = [
    ({"steps": 0}, r"steps=0 is out of range; valid range: \[1, inf\)"),
    ({"steps": -1}, r"steps=-1 is out of range"),
    ({"steps": 2.5}, r"steps=2.5 must be an integer"),
    ({"steps": "abc"}, r"steps='abc' is not a number; valid range: \[1, inf\)"),
    ({"steps": True}, r"steps=True is a boolean"),
    ({"steps": float("nan")}, r"steps=nan is out of range"),
    ({"steps": float("inf")}, r"steps=inf is out of range"),
    ({"steps": None}, r"steps=None is not a number"),
    ({"lr": 0}, r"lr=0 is out of range; valid range: \(0, inf\)"),
    ({"lr": -1e-4}, r"lr=-0.0001 is out of range"),
    ({"lr": "fast"}, r"lr='fast' is not a number"),
    ({"lr": float("inf")}, r"lr=inf is out of range"),
    ({"batch_size": 0}, r"batch_size=0 is out of range"),
    ({"batch_size": 1.5}, r"batch_size=1.5 must be an integer"),
    ({"retain_batch_size": 0}, r"retain_batch_size=0 is out of range"),
    ({"retain_batch_size": 2.5}, r"retain_batch_size=2.5 must be an integer"),
    ({"weight_decay": -0.1}, r"weight_decay=-0.1 is out of range"),
    ({"warmup_steps": -1}, r"warmup_steps=-1 is out of range"),
    ({"warmup_steps": 0.5}, r"warmup_steps=0.5 must be an integer"),
    ({"max_grad_norm": -1}, r"max_grad_norm=-1 is out of range"),
    ({"probe_every": -1}, r"probe_every=-1 is out of range"),
    ({"probe_every": 1.5}, r"probe_every=1.5 must be an integer"),
    ({"probe_size": 0}, r"probe_size=0 is out of range"),
    ({"max_new_tokens": 0}, r"max_new_tokens=0 is out of range"),
    ({"max_new_tokens": 3.3}, r"max_new_tokens=3.3 must be an integer"),
    ({"keep": "worst"}, r"keep='worst' is invalid; valid range: one of 'last', 'best', 'first_forgotten'"),
    ({"keep": 1}, r"keep=1 is invalid"),
    ({"forget_threshold": 1.5}, r"forget_threshold=1.5 is out of range; valid range: \[0, 1\]"),
    ({"forget_threshold": -0.1}, r"forget_threshold=-0.1 is out of range"),
    ({"reference_cache_gb": 0}, r"reference_cache_gb=0 is out of range"),
    ({"mixed_precision": "fp8"}, r"mixed_precision='fp8' is invalid"),
    ({"gradient_checkpointing": "yes"}, r"gradient_checkpointing='yes' must be True or False"),
    ({"retain_probes": 1}, r"retain_probes=1 must be True or False"),
    ({"token_probes": "no"}, r"token_probes='no' must be True or False"),
    ({"guard_weights": "on"}, r"guard_weights='on' must be True or False"),
    ({"seed": 1.5}, r"seed=1.5 must be an integer"),
    ({"seed": -1}, r"seed=-1 is out of range"),
    ({"seed": "abc"}, r"seed='abc' is not a number"),
    ({"learning_rate": 1e-4}, r"'learning_rate' \(did you mean 'lr'\?\)"),
    ({"stpes": 3}, r"'stpes' \(did you mean 'steps'\?\)"),
    ({"bacth_size": 3}, r"'bacth_size' \(did you mean 'batch_size'\?\)"),
    ({"seeed": 3}, r"'seeed' \(did you mean 'seed'\?\)"),
    ({"max_steps": 3}, r"'max_steps' \(did you mean 'steps'\?\)"),
    ({"num_steps": 3}, r"'num_steps' \(did you mean 'steps'\?\)"),
    ({"grad_clip": 1.0}, r"'grad_clip' \(did you mean 'max_grad_norm'\?\)"),
    ({"probe_evry": 2}, r"'probe_evry' \(did you mean 'probe_every'\?\)"),
    ({"zzz": 2}, r"unknown parameter\(s\) 'zzz'; valid parameters: .*steps, lr, .* \(loop\)"),
]


@pytest.mark.parametrize("given,msg", PARAMS, ids=[f"param-{i}" for i in range(len(PARAMS))])
def test_loop_parameters(given, msg):
    with pytest.raises(ValueError, match=msg):
        uk.check_params("ga", **given)


OBJ_PARAMS = [
    ("graddiff", {"alpah": 1.0}, r"'alpah' \(did you mean 'alpha'\?\).*valid parameters: .*alpha.* \(objective 'graddiff'\)"),
    ("graddiff", {"alpha": -1}, r"alpha=-1 is out of range"),
    ("npo", {"bta": 0.1}, r"'bta' \(did you mean 'beta'\?\)"),
    ("ga", {"alpha": 1.0}, r"unknown parameter\(s\) 'alpha'; valid parameters: none for objective 'ga'; steps, lr"),
    ("gaa", {}, r"unknown objective 'gaa' \(did you mean 'ga'\?\); valid choices: .*\bga\b"),
    ("", {}, r"unknown objective ''"),
    ("UniErase", {}, r"'UniErase' is an edit, not a loss: unlearnkit.editing.unierase\(.*takes the objectives .*\bga\b"),
    ("uipe", {}, r"an extrapolation around any objective: unlearnkit.editing.unlearn_uipe\("),
    ("alphaedit", {}, r"an edit, not a loss: unlearnkit.editing.apply_alphaedit\("),
]


@pytest.mark.parametrize("method,given,msg", OBJ_PARAMS, ids=[f"objparam-{i}" for i in range(len(OBJ_PARAMS))])
def test_objective_parameters(method, given, msg):
    with pytest.raises(ValueError, match=msg):
        uk.check_params(method, **given)


def test_method_not_a_string():
    with pytest.raises(TypeError, match="objective name must be a string, got int"):
        uk.check_params(3)


NOTEBOOK = [({"steps": "30"}, 30), ({"lr": "1e-3"}, 1e-3), ({"seed": "2"}, 2), ({"steps": 4.0}, 4)]


@pytest.mark.parametrize("given,want", NOTEBOOK, ids=[f"notebook-ok-{i}" for i in range(len(NOTEBOOK))])
def test_notebook_parameter_strings_are_coerced(given, want):
    """papermill -p passes strings; check_params turns valid ones into numbers of the right type."""
    (k, _), = given.items()
    got = uk.check_params("ga", **given)[k]
    assert got == want and type(got) is type(want)


# -- data files and datasets (no model) ------------------------------------------------------------
ROW = {"question": "Where was Ann born?", "answer": "Ann was born in Oslo."}


def _write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


FILES = [
    ("a.json", b'[{"question": "Q\xff", "answer": "A"}]', r"a.json: not UTF-8 text \(invalid byte at position"),
    ("a.json", "[{", r"a.json: not valid JSON"),
    ("a.json", [1, 2], r"a.json: expected a list of objects"),
    ("a.jsonl", '{"question": "q", "answer": "a"}\n{oops\n', r"a.jsonl, line 2: not valid JSON"),
    ("a.jsonl", '{"question": "q", "answer": "a"}\n[1]\n', r"a.jsonl, line 2: expected a JSON object, got list"),
    ("a.jsonl", "", r"a.jsonl: no rows"),
    ("a.json", [{"question": "q"}], r"a.json, row 0: missing field 'answer' \(fields present: question\)"),
    ("a.json", [{"question": "q", "answer": "  "}], r"a.json, row 0: field 'answer' is empty or not a string"),
    ("a.json", [{"question": None, "answer": "a"}], r"a.json, row 0: field 'question' is empty or not a string: None"),
    ("a.json", [ROW, {"question": 3, "answer": "a"}], r"a.json, row 1: field 'question' is empty"),
    ("a.json", [{**ROW, "perturbed_answer": []}], r"row 0: 'perturbed_answer' must be a non-empty list of strings"),
    ("a.json", [{**ROW, "perturbed_answer": [1, 2]}], r"row 0: 'perturbed_answer' must be a non-empty list"),
    ("a.json", {"meta": 1, "info": "x"}, r"a.json: a JSON object without a 'data' list of rows \(keys: meta, info\)"),
    ("a.parquet", b"not a parquet file", r"a.parquet: not a readable parquet file"),
]


@pytest.mark.parametrize("name,content,msg", FILES, ids=[f"file-{i}" for i in range(len(FILES))])
def test_bad_files_name_the_file_and_row(tmp_path, name, content, msg):
    p = _write(tmp_path, name, content)
    with pytest.raises(DataError, match=msg):
        load_tofu(p)


GOOD_FILES = [
    ("a.json", {"data": [ROW, ROW]}, 2),              # HF datasets' {"data": [...]} layout
    ("a.json", {"rows": [ROW]}, 1),                   # one list under one key
    ("a.json", ROW, 1),                               # one object
    ("a.json", json.dumps(ROW) + "\n" + json.dumps(ROW), 2),  # JSON lines in a .json file
]


@pytest.mark.parametrize("name,content,n", GOOD_FILES, ids=[f"goodfile-{i}" for i in range(len(GOOD_FILES))])
def test_json_layouts_accepted(tmp_path, name, content, n):
    assert len(load_tofu(_write(tmp_path, name, content))) == n


def test_tofu_parquet_with_numpy_perturbed_lists(tmp_path):
    """pandas reads list columns back as numpy arrays; a valid TOFU parquet loads."""
    df = pd.DataFrame([{**ROW, "paraphrased_answer": "Oslo is where Ann was born.",
                        "perturbed_answer": ["Ann was born in Rome.", "Ann was born in Lima."]}])
    df.to_parquet(tmp_path / "forget01_perturbed.parquet")
    ds = load_tofu(tmp_path, "forget01_perturbed")
    assert ds[0]["perturbed_answer"] == ["Ann was born in Rome.", "Ann was born in Lima."]


LOADER_ERRORS = [
    (lambda t: load_tofu(t / "missing.json"), FileNotFoundError, r"no TOFU data at .*missing.json"),
    (lambda t: load_tofu(t), DataError, r"is a folder: pass split=<file stem>"),
    (lambda t: load_tofu(t, "forget99"), DataError, r"no file for split 'forget99'"),
    (lambda t: load_tofu(_write(t, "a.json", [ROW]), task_id="9"), DataError, r"no rows with task_id='9'"),
    (lambda t: qa_dataset(["q1", "q2", "q3"], ["a1", "a2"]), DataError, r"3 questions but 2 answers"),
    (lambda t: qa_dataset(["q1"], ["a1"], paraphrased_answer=["p1", "p2"]), DataError,
     r"1 questions but 2 paraphrased_answer"),
    (lambda t: qa_dataset(["q1"], [""]), DataError, r"qa_dataset, row 0: field 'answer' is empty"),
]


@pytest.mark.parametrize("call,exc,msg", LOADER_ERRORS, ids=[f"loader-{i}" for i in range(len(LOADER_ERRORS))])
def test_loader_errors(tmp_path, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(tmp_path)


DATASETS = [
    (Dataset.from_list([ROW, {**ROW, "question": None}]), DataError, r"forget data, row 1: field 'question' is empty"),
    (Dataset.from_list([{"question": "q"}]), DataError, r"forget data lacks field\(s\) \['answer'\]; it has \['question'\]"),
    (Dataset.from_list([ROW]).select([]), DataError, r"forget data is empty"),
    (Dataset.from_list([{**ROW, "id": 1}, {**ROW, "id": 1}, {**ROW, "id": 2}, {**ROW, "id": 2}]), DataError,
     r"duplicate id\(s\) \[1, 2\]"),
    (Dataset.from_list([{**ROW, "answer": ""}]), DataError, r"row 0: field 'answer' is empty"),
    (Dataset.from_list([{**ROW, "paraphrased_answer": None}]), DataError, r"field 'paraphrased_answer' is empty"),
    (pd.DataFrame(), DataError, r"forget data lacks field\(s\) \['question', 'answer'\]"),
    (3, TypeError, r"forget data must be a datasets.Dataset, a pandas DataFrame or a list of dicts.*got int"),
    ("forget.json", TypeError, r"got str"),
    ([1, 2], TypeError, r"got list"),
]


@pytest.mark.parametrize("data,exc,msg", DATASETS, ids=[f"dataset-{i}" for i in range(len(DATASETS))])
def test_bad_datasets(data, exc, msg):
    with pytest.raises(exc, match=msg):
        check_qa("forget", data)


@pytest.mark.parametrize("data", [pd.DataFrame([ROW, ROW]), [ROW, ROW]], ids=["dataframe", "list-of-dicts"])
def test_dataframes_and_lists_are_converted(data):
    ds = as_dataset("forget", data)
    assert isinstance(ds, Dataset) and ds.column_names == ["question", "answer"] and len(ds) == 2


# -- destinations ---------------------------------------------------------------------------------

def test_destination_exists(tmp_path):
    with pytest.raises(FileExistsError, match=r"output_dir=.* exists; choose a new path or pass overwrite=True"):
        check_destination(tmp_path)


def test_destination_is_a_file(tmp_path):
    f = _write(tmp_path, "f.txt", "x")
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        check_destination(f, overwrite=True)


def test_destination_under_a_file(tmp_path):
    f = _write(tmp_path, "f.txt", "x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_destination(f / "run")


def _read_only(monkeypatch, ro):
    """chmod, and os.access told the truth for root too (root writes anywhere)."""
    import unlearnkit.validate as v

    real = os.access
    monkeypatch.setattr(v.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))


def test_destination_read_only(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    _read_only(monkeypatch, ro)
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="is not writable; nothing was trained"):
            check_destination(ro / "a" / "b")
    finally:
        ro.chmod(0o700)


def test_destination_overwrite_must_be_bool(tmp_path):
    with pytest.raises(ValueError, match="overwrite='yes' must be True or False"):
        check_destination(tmp_path / "x", overwrite="yes")


def test_new_nested_destination_is_fine(tmp_path):
    assert check_destination(tmp_path / "a" / "b") == tmp_path / "a" / "b"


# -- unlearn and evaluate with the tiny model -----------------------------------------------------

@pytest.fixture()
def no_work(monkeypatch):
    """Fail if unlearn starts any work (encoding the data is its first step after validation)."""
    import unlearnkit.train as tr

    def boom(*a, **k):
        raise AssertionError("training work started before the input was refused")

    monkeypatch.setattr(tr, "encode_parts", boom)
    monkeypatch.setattr(tr, "ProbeRecorder", boom)


def test_unlearn_existing_output_dir_refused_before_training(tiny, quick_world, tmp_path, no_work):
    model, tok = tiny
    t0 = time.perf_counter()
    with pytest.raises(FileExistsError, match="exists; choose a new path or pass overwrite=True"):
        uk.unlearn(model, tok, quick_world.forget, quick_world.retain, output_dir=tmp_path, **FAST)
    assert time.perf_counter() - t0 < 5  # measured: no training time spent (no_work guards it)


def test_unlearn_read_only_output_dir_refused_before_training(tiny, quick_world, tmp_path, no_work, monkeypatch):
    model, tok = tiny
    ro = tmp_path / "ro"
    _read_only(monkeypatch, ro)
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            uk.unlearn(model, tok, quick_world.forget, quick_world.retain, output_dir=ro / "run", **FAST)
    finally:
        ro.chmod(0o700)


def test_unlearn_overwrite_replaces(tiny, quick_world, tmp_path):
    model, tok = tiny
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    uk.unlearn(model, tok, quick_world.forget, quick_world.retain, output_dir=out, overwrite=True, **FAST)
    assert (out / "run.json").exists() and not (out / "old.txt").exists()


def _dup(world):
    f = world.forget
    return Dataset.from_list([*f.select([0, 1]).to_list(), f[0]])


UNLEARN_BAD = [
    (lambda w: dict(forget=w.forget, learning_rate=1e-4), ValueError, r"'learning_rate' \(did you mean 'lr'\?\)"),
    (lambda w: dict(forget=w.forget, stpes=2), ValueError, r"'stpes' \(did you mean 'steps'\?\)"),
    (lambda w: dict(forget=w.forget, steps=2.5), ValueError, r"steps=2.5 must be an integer"),
    (lambda w: dict(forget=w.forget, seed=1.5), ValueError, r"seed=1.5 must be an integer"),
    (lambda w: dict(forget=_dup(w)), DataError, r"forget data: duplicate id\(s\)"),
    (lambda w: dict(forget=Dataset.from_list([{**w.forget[0], "question": None}])), DataError,
     r"forget data, row 0 \(id .*\): field 'question' is empty or not a string: None"),
    (lambda w: dict(forget=5), TypeError, r"forget data must be a datasets.Dataset"),
    (lambda w: dict(forget=w.forget, probe_data=w.forget.remove_columns("answer")), DataError,
     r"probe data lacks field\(s\) \['answer'\]"),
    (lambda w: dict(forget=w.forget, retain=None, method="graddiff"), ValueError, r"objective 'graddiff' needs retain"),
    (lambda w: dict(forget=w.forget, retain=w.retain.remove_columns("question")), DataError,
     r"retain data lacks field\(s\) \['question'\]"),
    (lambda w: dict(forget=w.forget, method="gradient_ascent"), ValueError, r"unknown objective 'gradient_ascent'"),
]


@pytest.mark.parametrize("make,exc,msg", UNLEARN_BAD, ids=[f"unlearn-{i}" for i in range(len(UNLEARN_BAD))])
def test_unlearn_refuses_before_work(tiny, quick_world, no_work, make, exc, msg):
    model, tok = tiny
    kw = {"retain": quick_world.retain, **FAST, **make(quick_world)}
    forget, retain = kw.pop("forget"), kw.pop("retain")
    with pytest.raises(exc, match=msg):
        uk.unlearn(model, tok, forget, retain, **kw)


def test_unlearn_accepts_a_dataframe(tiny, quick_world):
    model, tok = tiny
    res = uk.unlearn(model, tok, quick_world.forget.to_pandas(), quick_world.retain.to_pandas(), **FAST)
    assert len(res.log) == 1


def test_retain_batch_size_is_clamped(tiny, quick_world):
    model, tok = tiny
    with pytest.warns(UserWarning, match=r"retain_batch_size=10000 > the \d+ retain rows: clamped to \d+"):
        res = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, method="graddiff",
                         retain_batch_size=10_000, **FAST)
    assert res.hparams["retain_batch_size"] == len(quick_world.retain)


def _long_forget(world, tok, n_words=150):
    rows = world.forget.to_list()
    rows[0] = {**rows[0], "answer": " ".join(["Oslo"] * n_words)}
    return Dataset.from_list(rows)


def test_rows_longer_than_context_are_counted_and_truncated(tiny, quick_world):
    model, tok = tiny
    forget = _long_forget(quick_world, tok)
    with pytest.warns(UserWarning, match=r"forget: 1 of \d+ row\(s\) exceed the model's context of 96 positions "
                                         r"\(ids \[.+\]; longest \d+ tokens\); their answers are truncated"):
        res = uk.unlearn(model, tok, forget, quick_world.retain, **FAST)
    assert len(res.log) == 1


def test_evaluate_counts_long_rows(tiny, quick_world):
    model, tok = tiny
    with pytest.warns(UserWarning, match=r"split 'data': 1 of \d+ row\(s\) exceed the model's context of 96 .*"
                                         r"scored as they are"):
        uk.evaluate(model, tok, _long_forget(quick_world, tok), ["probability"], progress=False)


def _bigger_tokenizer(tok):
    import copy

    t = copy.deepcopy(tok)
    t.add_tokens([f"<extra_{i}>" for i in range(5)])
    return t


def test_vocabulary_mismatch_named_in_unlearn(tiny, quick_world, no_work):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"tokenizer/model vocabulary mismatch: the tokenizer has \d+ tokens but the "
                                         r"model's embedding has \d+ rows"):
        uk.unlearn(model, _bigger_tokenizer(tok), quick_world.forget, quick_world.retain, **FAST)


def test_vocabulary_mismatch_named_in_evaluate(tiny, quick_world):
    model, tok = tiny
    with pytest.raises(ValueError, match="tokenizer/model vocabulary mismatch"):
        uk.evaluate(model, _bigger_tokenizer(tok), quick_world.forget, ["probability"], progress=False)


EVAL_BAD = [
    (lambda w: _dup(w), DataError, r"split 'data': duplicate id\(s\)"),
    (lambda w: {"forget": w.forget, "retain": 7}, TypeError, r"split 'retain' data must be a datasets.Dataset"),
    (lambda w: 3.5, TypeError, r"data must be a World, a datasets.Dataset, a pandas DataFrame or a dict"),
    (lambda w: Dataset.from_list([{**w.forget[0], "answer": None}]), DataError, r"field 'answer' is empty"),
]


@pytest.mark.parametrize("make,exc,msg", EVAL_BAD, ids=[f"evaluate-{i}" for i in range(len(EVAL_BAD))])
def test_evaluate_refuses(tiny, quick_world, make, exc, msg):
    model, tok = tiny
    with pytest.raises(exc, match=msg):
        uk.evaluate(model, tok, make(quick_world), ["probability"], progress=False)


@pytest.mark.parametrize("kind", ["no-id", "dataframe"])
def test_evaluate_without_ids_or_as_dataframe(tiny, quick_world, kind):
    model, tok = tiny
    d = quick_world.forget.remove_columns("id") if kind == "no-id" else quick_world.forget.to_pandas()
    df = uk.evaluate(model, tok, d, ["probability"], progress=False)
    assert sorted(df["id"]) == list(range(len(quick_world.forget))) if kind == "no-id" else len(df) == len(d)


def test_evaluate_bad_option_named(tiny, quick_world):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"evaluate: unknown parameter\(s\) max_new_tokenz \(did you mean max_new_tokens"):
        uk.evaluate(model, tok, quick_world.forget, ["probability"], max_new_tokenz=3, progress=False)


# -- model folders --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, tok = tiny
    d = tmp_path_factory.mktemp("model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _copy(src, dst, drop=()):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    return dst


MODEL_FOLDERS = [
    (lambda s, t: t / "nowhere", FileNotFoundError, r"model path .*nowhere' does not exist"),
    (lambda s, t: _copy(s, t / "m", drop=("config.json",)), FileNotFoundError, r"holds no config.json"),
    (lambda s, t: _copy(s, t / "m", drop=("tokenizer*", "special_tokens*", "vocab*", "merges*")), FileNotFoundError,
     r"m' holds no tokenizer files"),
    (lambda s, t: _copy(s, t / "m", drop=("*.safetensors", "*.bin")), FileNotFoundError, r"m' holds no model weights"),
]


@pytest.mark.parametrize("make,exc,msg", MODEL_FOLDERS, ids=[f"folder-{i}" for i in range(len(MODEL_FOLDERS))])
def test_model_folder_errors_say_what_is_missing(saved, tmp_path, make, exc, msg):
    with pytest.raises(exc, match=msg):
        uk.load_model(make(saved, tmp_path))


def test_truncated_safetensors_named(saved, tmp_path):
    d = _copy(saved, tmp_path / "m")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model.safetensors: unreadable safetensors file, probably truncated"):
        uk.load_model(d)


@pytest.mark.parametrize("content,msg", [(b"\xff\xfe{}", r"config.json: not UTF-8 text"),
                                         (b"{oops", r"config.json: not valid JSON")], ids=["non-utf8", "bad-json"])
def test_bad_config_named(saved, tmp_path, content, msg):
    d = _copy(saved, tmp_path / "m")
    (d / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=msg):
        uk.load_model(d)


def test_adapter_with_missing_base_named(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match=r"holds a LoRA adapter whose base model .*gone' is not found"):
        uk.load_model(d)


@pytest.mark.parametrize("merge", [False, True], ids=["adapter", "merged"])
def test_lora_result_reloads(tiny, quick_world, tmp_path, merge):
    model, tok = tiny
    res = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, lora=True, lr=1e-2, **FAST)
    out = res.save(tmp_path / "run", merge_lora=merge)
    assert (out / "adapter_config.json").exists() != merge
    back, tok2 = uk.load_model(out)
    ids = tok("Question: hello\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = res.model(ids).logits, back(ids).logits
    assert torch.allclose(a, b, atol=1e-4)


# -- faults ---------------------------------------------------------------------------------------

def test_divergence_returns_the_last_finite_weights(tiny, quick_world):
    """With clipping off, GA with a huge learning rate diverges: the run stops, says at which step,
    and returns finite weights equal to those of a run of exactly the finite steps."""
    model, tok = tiny
    kw = dict(method="ga", lr=1e3, max_grad_norm=0, probe_every=0, progress=False, seed=0)
    with pytest.warns(RuntimeWarning, match="stopped early"):
        res = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, steps=30, **kw)
    assert res.stopped and "the last finite step" in res.stopped
    k = len(res.log)
    assert k < 30 and f"weights after step {k}" in res.stopped
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    ref = uk.unlearn(model, tok, quick_world.forget, quick_world.retain, steps=k, **kw) if k else None
    want = (ref.model if ref is not None else model).state_dict()
    assert all(torch.equal(v, want[n]) for n, v in res.model.state_dict().items())


def test_exception_during_atomic_save_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "w.bin").write_bytes(b"x" * 100)
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_save_leaves_no_hidden_folder(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from unlearnkit.io import atomic_dir
        with atomic_dir({str(tmp_path / 'out')!r}) as tmp:
            (tmp / "model.safetensors").write_bytes(b"x" * 1000)
            print("writing", flush=True)
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    assert rc != 0 and list(tmp_path.iterdir()) == []


# -- CLI ------------------------------------------------------------------------------------------

CLI = [
    (["run", "--quick", "--method", "gaa", "--out", "{tmp}/r"], r"unknown objective 'gaa'"),
    (["run", "--quick", "--set", "learning_rate=1e-4", "--out", "{tmp}/r"], r"did you mean 'lr'\?"),
    (["run", "--quick", "--set", "stpes=3", "--out", "{tmp}/r"], r"did you mean 'steps'\?"),
    (["run", "--quick", "--set", "steps=2.5", "--out", "{tmp}/r"], r"steps=2.5 must be an integer"),
    (["run", "--quick", "--out", "{tmp}"], r"--out=.* exists; choose a new path or pass overwrite=True \(CLI: --overwrite\)"),
    (["sweep", "--quick", "--methods", "ga", "nope", "--out", "{tmp}/s"], r"unknown objective 'nope'"),
    (["evaluate", "--model", "{tmp}/missing"], r"FileNotFoundError: model path .* does not exist"),
    (["evaluate", "--quick", "--metrics", "probabilty"], r"unknown metric 'probabilty'; valid choices: probability"),
]


@pytest.mark.parametrize("argv,msg", CLI, ids=[f"cli-{i}" for i in range(len(CLI))])
def test_cli_one_line_errors(tmp_path, capsys, argv, msg):
    rc = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err
    err = err.splitlines()[-1]
    assert err.startswith("unlearnkit: error: ")
    assert __import__("re").search(msg, err), err
    assert not (tmp_path / "s").exists()  # a sweep with a bad name runs nothing


def test_cli_debug_shows_the_exception(tmp_path):
    with pytest.raises(ValueError, match="unknown objective 'gaa'"):
        cli.main(["run", "--quick", "--method", "gaa", "--out", str(tmp_path / "r"), "--debug"])


def test_sweep_validates_every_config_before_running(tiny, quick_world, tmp_path, no_work):
    from unlearnkit.sweep import sweep

    model, tok = tiny
    with pytest.raises(ValueError, match=r"sweep config 1 .*unknown objective 'npoo'"):
        sweep(model, tok, quick_world.forget, quick_world.retain, [{"method": "ga"}, {"method": "npoo"}], tmp_path / "s")
    with pytest.raises(ValueError, match=r"sweep config 0 .*'stpes' \(did you mean 'steps'\?\)"):
        sweep(model, tok, quick_world.forget, quick_world.retain, [{"method": "ga", "stpes": 1}], tmp_path / "s")
    assert not (tmp_path / "s").exists()


# -- the count ------------------------------------------------------------------------------------

def test_case_count():
    """Every test function counts once per parametrization (the function itself once if it has none)."""
    n = 0
    for name, f in vars(sys.modules[__name__]).items():
        if not name.startswith("test_") or name == "test_case_count" or not callable(f):
            continue
        k = 1
        for m in getattr(f, "pytestmark", []):
            if m.name == "parametrize":
                k *= len(m.args[1])
        n += k
    print(f"\ntest_bad_inputs: {n} distinct bad inputs and faults")
    assert n >= 100
