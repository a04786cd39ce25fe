"""Bad input gives one line that names the parameter or file and what is wrong (issue 8).

Each case asserts how the message starts; `one_line` also checks there is no newline in it.
Nothing here writes into the repository: data and chapters are monkeypatched to tmp_path.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib import data, params, runner
from lib.book import start
from lib.models import resolve_source
from lib.params import ParameterError

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = "tokenizer.json, tokenizer.model, vocab.json, vocab.txt, spiece.model"
WEIGHTS = "*.safetensors or pytorch_model*.bin"


def one_line(error: pytest.ExceptionInfo) -> str:
    """The exception's message (SystemExit's code), checked to be a single line."""
    value = error.value
    message = str(value.code if isinstance(value, SystemExit) else value)
    assert "\n" not in message, message
    return message


# start(): the shared setup call validates every parameter before any work.

@pytest.mark.parametrize("kwargs, expected", [
    (dict(model_name="no-such-model"), "model_name: 'no-such-model' is not an embedded model (smollm2-135m, "
                                       "gemma-3-270m), an existing local directory, or a hub id like 'org/name'"),
    (dict(model_name="./no/such/dir"), "model_name: directory './no/such/dir' does not exist"),
    (dict(model_name="~/no-such-dir-here"), "model_name: directory '~/no-such-dir-here' does not exist"),
    (dict(model_name="x", device="tpu"), "device: expected 'auto', 'cpu' or 'cuda[:N]', got 'tpu'"),
    (dict(model_name="x", n_prompts=0), "n_prompts: expected a positive integer, got 0"),
    (dict(model_name="x", n_prompts=-3), "n_prompts: expected a positive integer, got -3"),
    (dict(model_name="x", n_prompts=2.5), "n_prompts: expected a positive integer, got 2.5"),
    (dict(model_name="x", n_prompts=True), "n_prompts: expected a positive integer, got True"),
    (dict(model_name="x", seed=-1), "seed: expected a non-negative integer, got -1"),
    (dict(model_name="x", remote="yes"), "remote: expected True or False, got 'yes'"),
    (dict(model_name="./local", remote=True), "remote: needs a hub id like 'org/name' as model_name, got './local'"),
    (dict(model_name="x", dtype="float64"), "dtype: expected one of ['float32', 'bfloat16', 'float16'], got 'float64'"),
    (dict(model_name="x", device="cpu", dtype="bfloat16"), "dtype: bfloat16 needs device='cuda' (on 'cpu' use 'float32')"),
    (dict(model_name="x", toy="yes"), "toy: expected True or False, got 'yes'"),
])
def test_start_rejects_bad_parameters(kwargs, expected):
    with pytest.raises(ParameterError) as error:
        start("00_test", **kwargs)
    assert one_line(error) == expected


def test_int_range_without_a_ceiling():
    with pytest.raises(ParameterError) as error:
        params.check_int_range("n_decoys", 1, 2)
    assert one_line(error) == "n_decoys: expected an integer >= 2, got 1"
    assert params.check_int_range("n_decoys", 5, 2) == 5


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="cuda:7 exists here")
def test_unavailable_cuda_device():
    with pytest.raises(ParameterError) as error:
        start("00_test", model_name="x", device="cuda:7")
    assert one_line(error).startswith("device: 'cuda:7' is not available (")
    assert one_line(error).endswith("); use 'cpu' or 'auto'")


# model_name as a local directory: config.json, a tokenizer and weights, else say which are missing.

@pytest.mark.parametrize("files, missing", [
    ([], f"no config.json; no tokenizer file ({TOKENIZERS}); no weights ({WEIGHTS})"),
    (["config.json"], f"no tokenizer file ({TOKENIZERS}); no weights ({WEIGHTS})"),
    (["config.json", "tokenizer.json"], f"no weights ({WEIGHTS})"),
    (["config.json", "vocab.json", "model.gguf"],
     f"no weights ({WEIGHTS}; a .gguf file loads only as an embedded model)"),
    (["tokenizer.model", "pytorch_model.bin"], "no config.json"),
])
def test_directory_that_is_not_a_model(tmp_path, files, missing):
    for name in files:
        (tmp_path / name).write_text("{}")
    with pytest.raises(ParameterError) as error:
        start("00_test", model_name=str(tmp_path), device="cpu")
    assert one_line(error) == f"model_name: directory '{tmp_path}' is not a model: {missing}"


def test_model_name_that_is_a_file(tmp_path):
    (tmp_path / "model.gguf").write_text("")
    with pytest.raises(ParameterError) as error:
        resolve_source(str(tmp_path / "model.gguf"))
    assert one_line(error) == f"model_name: '{tmp_path / 'model.gguf'}' is a file, not a model directory"


def test_complete_directory_and_hub_id_are_accepted(tmp_path):
    for name in ["config.json", "tokenizer.json", "model-00001-of-00002.safetensors"]:
        (tmp_path / name).write_text("{}")
    assert resolve_source(str(tmp_path)) == str(tmp_path)
    assert resolve_source("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


# lib.params helpers that chapters call after loading (layers) or for their own parameters.

def test_param_helpers():
    assert params.check_layer("layer", -1, 30) == 29
    cases = [  # seed='0', device=0 here: start's hints trip the test-time type checker first
        (lambda: params.check_seed("0"), "seed: expected a non-negative integer, got '0'"),
        (lambda: params.resolve_device(0), "device: expected 'auto', 'cpu' or 'cuda[:N]', got 0"),
        (lambda: params.resolve_device("cuda:x"), "device: expected 'auto', 'cpu' or 'cuda[:N]', got 'cuda:x'"),
        (lambda: params.check_layer("layer", 30, 30),
         "layer: expected a layer index in [0, 29] (or negative from the end), got 30"),
        (lambda: params.check_layer("layer", -31, 30),
         "layer: expected a layer index in [0, 29] (or negative from the end), got -31"),
        (lambda: params.check_choice("ablation", "one", {"mean", "zero"}),
         "ablation: expected one of ['mean', 'zero'], got 'one'"),
        (lambda: params.check_fraction("test_fraction", 1.5),
         "test_fraction: expected a number in [0.0, 1.0], got 1.5"),
        (lambda: params.check_fraction("coverage", "0.9"),
         "coverage: expected a number in [0.0, 1.0], got '0.9'"),
    ]
    for call, expected in cases:
        with pytest.raises(ParameterError) as error:
            call()
        assert one_line(error) == expected


# The runner: overrides are checked against every selected chapter's parameters cell first.

def notebook(source: str) -> str:
    """A minimal .ipynb whose only cell is a parameters cell with `source`."""
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source,
            "outputs": [], "execution_count": None}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def chapters(tmp_path, monkeypatch):
    """Two fake chapters in tmp_path; run_one fails the test if the runner gets that far."""
    (tmp_path / "01_demo.ipynb").write_text(notebook(
        'model_name = "smollm2-135m"  # model\ndevice = "auto"\nn_prompts = 8\nfraction = 0.5\nseed = 0\n'))
    (tmp_path / "02_other.ipynb").write_text(notebook('model_name = "gemma-3-270m"\ndevice = "auto"\nseed = 0\n'))
    monkeypatch.setattr(runner, "CHAPTERS", tmp_path)
    monkeypatch.setattr(runner, "run_one", lambda *a: pytest.fail("a chapter ran despite a bad override"))
    return tmp_path


def test_chapter_parameters_reads_the_cell(chapters):
    assert runner.chapter_parameters(chapters / "01_demo.ipynb") == dict(
        model_name="smollm2-135m", device="auto", n_prompts=8, fraction=0.5, seed=0)
    assert runner.default_model(chapters / "02_other.ipynb") == "gemma-3-270m"


@pytest.mark.parametrize("argv, expected", [
    (["--chapters", "01", "n_promts=3"], "n_promts: not a parameter of 01_demo (did you mean n_prompts?); "
                                         "its parameters are model_name, device, n_prompts, fraction, seed"),
    (["--chapters", "01", "batch=3"], "batch: not a parameter of 01_demo; "
                                      "its parameters are model_name, device, n_prompts, fraction, seed"),
    (["n_prompts=3"], "n_prompts: not a parameter of 02_other; its parameters are model_name, device, seed"),
    (["--chapters", "01", "n_prompts=abc"], "n_prompts: expected an integer like the default 8, got 'abc'"),
    (["--chapters", "01", "n_prompts=2.5"], "n_prompts: expected an integer like the default 8, got 2.5"),
    (["--chapters", "01", "fraction=high"], "fraction: expected a number like the default 0.5, got 'high'"),
    (["--chapters", "01", "device=0"], "device: expected a string like the default 'auto', got 0"),
    (["--chapters", "01", "n_prompts8"], "n_prompts8: not a parameter override; expected key=value, e.g. n_prompts=8"),
    (["--chapters", "01", "=8"], "=8: not a parameter override; expected key=value, e.g. n_prompts=8"),
    (["--chapters", "01,99"], "--chapters: no chapter 99; available: 01_demo, 02_other"),
    (["--chapters", "logit"], "--chapters: no chapter logit; available: 01_demo, 02_other"),
])
def test_runner_rejects_bad_arguments_before_running(chapters, argv, expected):
    with pytest.raises(SystemExit) as error:
        runner.main(argv)
    assert one_line(error) == expected


def test_runner_accepts_matching_overrides(chapters):
    paths = runner.select_chapters("01")
    runner.check_overrides(paths, runner.parse_overrides(["n_prompts=16", "fraction=1", "device=cpu"]))


def test_runner_command_line_prints_one_line_and_no_traceback():
    result = subprocess.run([sys.executable, "-m", "lib.runner", "--chapters", "01", "n_promts=3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("n_promts: not a parameter of 01_logit_lens (did you mean n_prompts?); "
                                    "its parameters are model_name, device, ")


# Data files: the file (relative to the repository) and the line.

@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data/ in tmp_path, used by lib.data.load_jsonl."""
    monkeypatch.setattr(data, "DATA", tmp_path)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "rows.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    return tmp_path


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}\n{"a": }\n', "data/bad/rows.jsonl line 2: not valid JSON (Expecting value: column 7)"),
    ('{"a": 1}\n\n{"a": 1,}\n', "data/bad/rows.jsonl line 3: not valid JSON "
                                "(Expecting property name enclosed in double quotes: column 9)"),
    ('{"a": 1}\n["a", "b"]\n', 'data/bad/rows.jsonl line 2: expected a JSON object {...}, got ["a", "b"]'),
    ('"just a string"\n', 'data/bad/rows.jsonl line 1: expected a JSON object {...}, got "just a string"'),
])
def test_malformed_data_file_names_file_and_line(data_dir, text, expected):
    (data_dir / "bad").mkdir()
    (data_dir / "bad" / "rows.jsonl").write_text(text)
    with pytest.raises(data.DataError) as error:
        data.load_jsonl("bad/rows")
    assert one_line(error) == expected


def test_unknown_dataset_lists_known_ones(data_dir):
    assert data.load_jsonl("good/rows") == [{"a": 1}, {"a": 2}]
    with pytest.raises(FileNotFoundError) as error:
        data.load_jsonl("good/row")
    assert one_line(error) == "data/good/row.jsonl: no such dataset; known: good/rows"
