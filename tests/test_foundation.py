"""Loading, the cache, parameter validation, the lens and the claims table, on tiny models."""

import json
from pathlib import Path

import pytest
import torch

from lib import claims
from lib.arch import Arch
from lib.data import encode
from lib.lens import last_token_resid, lens_stats, token_rank, unembed
from lib.models import load_model, resolve_source
from lib.runner import parse_overrides, select_chapters

PROMPTS = ["w5 w6 w7 w8 w9", "w10 w11", "w3 w4 w5"]


def test_loads_from_local_directory(tiny_model):
    arch = Arch(tiny_model)
    assert arch.n_layers == 4 and arch.n_heads == 4 and arch.n_kv_heads == 2
    assert tiny_model.tokenizer.padding_side == "left"


def test_embedded_name_uses_the_cache_without_converting(tiny_dir, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setenv("FIELD_GUIDE_CACHE", str(tmp_path))
    shutil.copytree(tiny_dir, tmp_path / "smollm2-135m")
    assert resolve_source("smollm2-135m") == str(tmp_path / "smollm2-135m")
    assert Arch(load_model("smollm2-135m")).n_layers == 4


def test_lens_last_layer_equals_model_logits(tiny_model, reference_hf):
    arch = Arch(tiny_model)
    resid = last_token_resid(tiny_model, PROMPTS, batch_size=2)
    with torch.no_grad():
        logits = reference_hf(**encode(tiny_model.tokenizer, PROMPTS)).logits[:, -1]
    torch.testing.assert_close(unembed(arch, resid[:, -1]), logits, atol=1e-4, rtol=1e-4)


def test_batched_resid_matches_one_prompt_at_a_time(tiny_model):
    batched = last_token_resid(tiny_model, PROMPTS, batch_size=3)
    single = torch.cat([last_token_resid(tiny_model, [p], batch_size=1) for p in PROMPTS])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_token_rank_and_lens_stats_match_sorting(tiny_model):
    arch = Arch(tiny_model)
    resid = last_token_resid(tiny_model, PROMPTS)
    tokens = torch.tensor([[5, 6], [7, 8], [9, 10]])
    stats = lens_stats(arch, resid, tokens, chunk=2)
    logits = unembed(arch, resid)
    order = logits.argsort(-1, descending=True)
    for b in range(3):
        for layer in range(arch.n_layers):
            for k in range(2):
                slow = (order[b, layer] == tokens[b, k]).nonzero().item()
                assert stats["rank"][b, layer, k] == slow
    assert torch.equal(stats["top"], logits.argmax(-1))
    assert token_rank(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([2])).item() == 1


def test_token_rank_in_blocks_matches_all_at_once(monkeypatch):
    import lib.lens

    logits = torch.randn(7, 3, 50, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 50, (7, 3), generator=torch.Generator().manual_seed(1))
    whole = (logits > logits.gather(-1, tokens[..., None])).sum(-1)
    monkeypatch.setattr(lib.lens, "RANK_BLOCK", 150)  # one row of 3 x 50 per block
    assert torch.equal(token_rank(logits, tokens), whole)
    assert torch.equal(token_rank(logits[:, None].expand(-1, 4, -1, -1)[:, 2], tokens), whole)  # an expanded view
    assert token_rank(logits[0, 0], tokens[0, 0]).item() == int((logits[0, 0] > logits[0, 0, tokens[0, 0]]).sum())


def test_claims_table_rounds_and_record_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELD_GUIDE_RECORDS", str(tmp_path))

    class Fake:
        name, model_name, device, started = "00_test", "tiny", "cpu", 0.0
        params, measurements = {"seed": 0}, {"x": torch.tensor(1.5)}
        stamp_line = "Run: tiny"
        claims = [claims.Claim("c", "c", "key", "p", 0.123456, (0.11, 0.13), 0.01, "random", 0.1, True),
                  claims.Claim("d", "d", "key", "p", float("nan"), (float("nan"), float("nan")), float("nan"),
                               "random", 0.1, True, reason="task at chance")]

    frame = claims.table(Fake.claims)
    assert list(frame["ours [95% CI]"]) == ["0.123 [0.11, 0.13]", "n/a"]
    assert list(frame["verdict"]) == ["holds", "no verdict: task at chance"]
    record = json.loads(Path(claims.write_record(Fake)).read_text())
    assert record["measurements"]["x"] == 1.5 and record["claims"][0]["verdict"] == "holds"
    assert record["claims"][1]["value"] is None and record["claims"][1]["reason"] == "task at chance"
    assert record["peak_memory_mb"] > 0 and record["stamp"] == "Run: tiny"


@pytest.mark.parametrize("value, shown", [
    (22135.735, "22100"), (22135.732, "22100"), (0.75531, "0.755"), (0.000123456, "0.000123"),
    (999.96, "1000"), (-0.04213, "-0.0421"), (29.0, "29"), (143, "143"), (True, "True"),
    (float("nan"), "nan"), (torch.tensor(0.12345), "0.123"), ("L24H4", "L24H4"),
])
def test_claims_values_keep_three_significant_figures(value, shown):
    assert claims.fmt(value) == shown


def test_claims_table_shows_full_text_and_the_stamp():
    long = "A claim whose text is much longer than pandas' fifty-character column width, " * 2
    table = claims.ClaimsTable(claims.table([claims.Claim("k", long, "key", "paper text", 0.5, (0.45, 0.55), 0.1,
                                                          "null", 0.4, True)]),
                               claims.stamp("smollm2-135m", "4-bit weights", "10 prompts", "cpu"))
    text, page = repr(table), table._repr_html_()
    assert "..." not in text and "..." not in page
    assert " ".join(text.split()).count(long.strip()) == 1 and long.strip() in page.replace("&#x27;", "'")
    assert "Run: smollm2-135m (4-bit weights) · 10 prompts · cpu · torch " in text
    assert "white-space:normal" in page and "claims-stamp" in page


def test_weights_are_described_without_local_paths(tmp_path):
    from lib.models import weights_description

    assert weights_description("smollm2-135m") == \
        "SmolLM2-135M-Instruct, 4-bit GGUF Q4_1 weights dequantised to float32"
    assert "Q4_K_M" in weights_description("gemma-3-270m")
    assert weights_description("org/name") == "hub id org/name, float32"
    assert str(tmp_path.parent) not in weights_description(str(tmp_path))


def test_runner_arguments():
    assert parse_overrides(["n_prompts=8", "task=abc"]) == {"n_prompts": 8, "task": "abc"}
    assert [p.stem for p in select_chapters("01")] == ["01_logit_lens"]
    with pytest.raises(SystemExit):
        select_chapters("99")
