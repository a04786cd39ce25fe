"""A model run in bfloat16 (the `dtype` parameter, for 1-3B models on a GPU) gives lib results in float32,
and a chapter's written-out-vs-lib checks are float32-tight by default, looser only in half precision."""

import pytest
import torch

from lib.attention import attention_patterns
from lib.book import Chapter
from lib.data import encode
from lib.interventions import collect
from lib.lens import last_token_logits, last_token_resid
from lib.models import load_model

PROMPTS = ["w5 w6 w7 w8", "w9 w10"]


@pytest.fixture(scope="module")
def bf16_model(tiny_dir):
    return load_model(str(tiny_dir), "cpu", dtype="bfloat16")


def test_lib_returns_float32_from_a_bfloat16_model(bf16_model):
    assert next(bf16_model._module.parameters()).dtype == torch.bfloat16
    enc = encode(bf16_model.tokenizer, PROMPTS)
    results = [last_token_resid(bf16_model, PROMPTS), last_token_logits(bf16_model, PROMPTS),
               *collect(bf16_model, enc, "resid_pre"), attention_patterns(bf16_model, enc)]
    assert all(r.dtype == torch.float32 and r.device.type == "cpu" for r in results)


def chapter(dtype: str) -> Chapter:
    return Chapter("00_test", {"model_name": "x", "dtype": dtype}, model=None, device="cpu")


def test_assert_close_is_tight_in_float32_and_loose_in_half_precision():
    expected = torch.tensor([1.0, 2.0, 100.0])
    off = expected + torch.tensor([0.0, 0.05, 0.0])     # a bfloat16-sized rounding difference
    with pytest.raises(AssertionError):
        chapter("float32").assert_close(off, expected, atol=1e-3, rtol=1e-3)
    chapter("bfloat16").assert_close(off, expected, atol=1e-3, rtol=1e-3)
    with pytest.raises(AssertionError):                  # a wrong computation still fails
        chapter("bfloat16").assert_close(expected * 2, expected, atol=1e-3, rtol=1e-3)
