import pytest
import torch

from lib.activations import (  # noqa: I001
    block_writes,
    entry_effects,
    perplexity,
    residual_states,
    set_entries,
    token_nll,
    top_entries,
)
from lib.arch import (
    Arch,  # before lib.activations: beartype must load before nnsight (see lib.patching's tests)
)
from lib.data import encode

PROMPTS = ["w5 w6 w7 w8 w9 w10 w11 w12", "w20 w21 w22", "w30 w31 w32 w33 w34"]


@pytest.fixture(scope="module")
def enc(tiny_model):
    return encode(tiny_model.tokenizer, PROMPTS)


def hf_hidden(hf, enc) -> torch.Tensor:
    """Reference resid_post via a forward hook on every plain decoder layer (CPU model)."""
    arch, out = Arch(hf), []
    handles = [arch.hf_module("layers")[i].register_forward_hook(lambda m, a, o: out.append(o))
               for i in range(arch.n_layers)]
    try:
        with torch.no_grad():
            hf(**enc)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([o[0] if isinstance(o, tuple) else o for o in out], 1)


def test_residual_states_match_hooks(tiny_model, reference_hf, enc):
    resid = residual_states(tiny_model, enc)
    assert resid.device.type == "cpu"  # the device rule: lib returns CPU tensors
    torch.testing.assert_close(resid, hf_hidden(reference_hf, enc), atol=1e-4, rtol=1e-4)


def test_top_entries_against_loop(tiny_model, enc):
    resid = residual_states(tiny_model, enc)
    top = top_entries(resid, enc["attention_mask"], k=2)
    mask = enc["attention_mask"].bool()
    for b in range(resid.shape[0]):
        for layer in range(resid.shape[1]):
            h = resid[b, layer, mask[b]].abs()  # [real pos, d]
            values, flat = h.flatten().topk(2)
            torch.testing.assert_close(top.values[b, layer], values)
            assert top.feature[b, layer].tolist() == (flat % h.shape[1]).tolist()
            assert top.position[b, layer].tolist() == (flat // h.shape[1]).tolist()
            torch.testing.assert_close(top.median[b, layer], h.flatten().median())
    assert top.ratio.shape == top.median.shape


def test_block_writes_add_up(tiny_model, enc):
    w = block_writes(tiny_model, enc, 1)
    assert {v.device.type for v in w.values()} == {"cpu"}
    torch.testing.assert_close(w["resid_pre"] + w["attn_out"] + w["mlp_out"], w["resid_post"], atol=1e-4, rtol=1e-4)


def test_set_entries_identity_and_zero(tiny_model, reference_hf, enc):
    arch = Arch(reference_hf)
    pos = (enc["attention_mask"] == 0).sum(-1)[:, None]
    feats = {1: [0, 5]}
    resid = residual_states(tiny_model, enc)
    with torch.no_grad():
        plain = reference_hf(**enc).logits
    # writing back a row-independent value equal to row 0's entries changes row 0 not at all
    same = resid[0, 1, pos[0, 0], feats[1]]
    logits = set_entries(tiny_model, enc, feats, {1: same}, pos)
    torch.testing.assert_close(logits[0], plain[0], atol=1e-4, rtol=1e-4)
    # zeroing: compare with a forward hook doing the same edit
    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        for b in range(h.shape[0]):
            h[b, pos[b, 0], feats[1]] = 0.0
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
    handle = arch.hf_module("layers")[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            reference = reference_hf(**enc).logits
    finally:
        handle.remove()
    zeroed = set_entries(tiny_model, enc, feats, {1: torch.zeros(2)}, pos)
    torch.testing.assert_close(zeroed, reference, atol=1e-4, rtol=1e-4)


def test_perplexity_matches_hf_loss(tiny_model, reference_hf):
    enc = encode(tiny_model.tokenizer, ["w5 w6 w7 w8 w9 w10", "w1 w2 w3 w4 w5 w6"])  # equal length: no padding
    with torch.no_grad():
        out = reference_hf(**enc, labels=enc["input_ids"])
    torch.testing.assert_close(torch.tensor(perplexity(out.logits, enc)), out.loss.exp(), atol=1e-4, rtol=1e-4)
    nll, count = token_nll(out.logits, enc)
    assert count.tolist() == [enc["input_ids"].shape[1] - 1] * 2
    # padding is not scored
    padded = encode(tiny_model.tokenizer, ["w5 w6 w7 w8 w9 w10", "w1 w2"])
    with torch.no_grad():
        logits = reference_hf(**padded).logits
    assert token_nll(logits, padded)[1].tolist() == [int(padded["attention_mask"][i].sum()) - 1 for i in range(2)]


def test_entry_effects_match_hooks(tiny_model, reference_hf, enc):
    """Per-row NLL and attention to the first token under an entry edit, against forward hooks on the
    plain model (eager attention, output_attentions) doing the same edit."""
    arch = Arch(reference_hf)
    first = (enc["attention_mask"] == 0).sum(-1)  # left padding: first real token per row
    feats, values = {1: [0, 5], 2: [7]}, {1: torch.tensor([3.0, -2.0]), 2: torch.zeros(1)}

    def hook_for(layer):
        def hook(module, args, out):
            h = (out[0] if isinstance(out, tuple) else out).clone()
            for b in range(h.shape[0]):
                h[b, first[b], feats[layer]] = values[layer]
            return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
        return hook

    previous = reference_hf.config._attn_implementation
    reference_hf.config._attn_implementation = "eager"
    handles = [arch.hf_module("layers")[layer].register_forward_hook(hook_for(layer)) for layer in feats]
    try:
        with torch.no_grad():
            out = reference_hf(**enc, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
        reference_hf.config._attn_implementation = previous
    fx = entry_effects(tiny_model, enc, feats, values, first[:, None])
    assert fx.nll.device.type == "cpu" and fx.to_first.shape == (len(PROMPTS), arch.n_layers, arch.n_heads)
    nll, count = token_nll(out.logits, enc)
    torch.testing.assert_close(fx.nll, nll, atol=1e-4, rtol=1e-4)
    assert fx.count.tolist() == count.tolist()
    mask = enc["attention_mask"].bool()
    for b in range(len(PROMPTS)):
        later = torch.arange(mask.shape[1])[mask[b]]
        later = later[later > first[b]]  # real queries after the first token
        for layer, pattern in enumerate(out.attentions):
            expected = pattern[b, :, later, first[b]].mean(-1)  # [head]
            torch.testing.assert_close(fx.to_first[b, layer], expected, atol=1e-5, rtol=1e-4)
    # no edit: the plain model's NLL
    with torch.no_grad():
        plain = reference_hf(**enc).logits
    torch.testing.assert_close(entry_effects(tiny_model, enc, {}, {}, first[:, None]).nll, token_nll(plain, enc)[0],
                               atol=1e-4, rtol=1e-4)


def test_entry_effects_score_nll_in_row_blocks(tiny_model, reference_hf, enc, monkeypatch):
    """One row unembedded at a time gives the plain model's NLL, as one block of all rows does."""
    import lib.activations

    first = (enc["attention_mask"] == 0).sum(-1)
    whole = entry_effects(tiny_model, enc, {}, {}, first[:, None]).nll
    monkeypatch.setattr(lib.activations, "NLL_BLOCK", 1)  # a block of one row
    one_by_one = entry_effects(tiny_model, enc, {}, {}, first[:, None]).nll
    with torch.no_grad():
        plain = token_nll(reference_hf(**enc).logits, enc)[0]
    torch.testing.assert_close(one_by_one, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_by_one, plain, atol=1e-4, rtol=1e-4)
