"""lib.depth against slow references written with plain PyTorch hooks on the transformers model (one forward
pass per skipped layer, a Python loop per layer for LAC), on tiny random Llama and Gemma 3 models."""

import pytest
import torch

from lib.arch import Arch  # noqa: I001  (before lib.depth: beartype must load before nnsight)
from lib.data import encode
from lib.depth import (
    counted_tokens,
    exit_layer,
    exit_logits,
    lac_mask,
    layer_norms,
    lens_kl,
    literal_lac,
    random_voids,
    skip_effects,
    skip_layers,
    token_mean,
)

PROMPTS = ["w5 w6 w7 w8 w9 w10 w11 w12", "w20 w21 w22", "w30 w31 w32 w33 w34 w35"]  # lengths differ: left padding


@pytest.fixture(scope="module")
def enc(tiny_model):
    return encode(tiny_model.tokenizer, PROMPTS)


def run_hf(hf, enc, edit=None):
    """Plain forward pass; every decoder layer's (input, output) recorded, and `edit(layer, input, output)`
    may return a new output for that layer. Returns (inputs, outputs, last-token logits)."""
    layers, ins, outs = Arch(hf).hf_module("layers"), [], []

    def hook(module, args, kwargs, output):
        h_in = args[0] if args else kwargs["hidden_states"]
        h_out = output[0] if isinstance(output, tuple) else output
        if edit is not None:
            new = edit(len(ins), h_in, h_out)
            if new is not None:
                h_out = new
        ins.append(h_in.clone())
        outs.append(h_out.clone())
        return (h_out, *output[1:]) if isinstance(output, tuple) else h_out

    handles = [layer.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            logits = hf(**enc).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    return torch.stack(ins, 1), torch.stack(outs, 1), logits


def test_layer_norms_match_hooks(tiny_model, reference_hf, enc):
    keep = torch.tensor([[7, 5], [7, 6], [7, 4]])
    norms = layer_norms(tiny_model, enc, keep=keep)
    ins, outs, _ = run_hf(reference_hf, enc)
    assert norms.pre.device.type == "cpu"
    torch.testing.assert_close(norms.pre, ins.norm(dim=-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norms.post, outs.norm(dim=-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norms.write, (outs - ins).norm(dim=-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norms.kept, outs[torch.arange(3)[:, None], :, keep].transpose(1, 2),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norms.lac_norms()[:, 1:], norms.post)


def test_token_mean_leaves_out_first_and_padding(enc):
    mask = enc["attention_mask"]
    counted = counted_tokens(mask)
    assert counted.sum(1).tolist() == [7, 2, 5]
    values = torch.arange(2 * mask.shape[1], dtype=torch.float).view(1, 2, -1).expand(3, 2, -1)
    got = token_mean(values, mask)
    for b in range(3):
        torch.testing.assert_close(got[b], values[b][:, counted[b]].mean(-1))


def test_skip_effects_match_one_pass_per_skipped_layer(tiny_model, reference_hf, enc):
    fx = skip_effects(tiny_model, enc)
    n_layers = Arch(reference_hf).n_layers
    assert fx.effect.shape == (3, n_layers, n_layers) and fx.kl.shape == (3, n_layers)
    counted = counted_tokens(enc["attention_mask"])
    first = enc["attention_mask"].bool() & ~counted
    ins, outs, logits = run_hf(reference_hf, enc)
    clean_write, clean_logp = outs - ins, logits.log_softmax(-1)
    for s in range(n_layers):
        def skip(layer, h_in, h_out, s=s):
            return torch.where(first[..., None], h_out, h_in) if layer == s else None
        s_in, s_out, s_logits = run_hf(reference_hf, enc, skip)
        change = (s_out - s_in - clean_write).norm(dim=-1) / clean_write.norm(dim=-1)  # [batch, layer, pos]
        want = change.masked_fill(~counted[:, None], 0).amax(-1)
        other = [layer for layer in range(n_layers) if layer != s]  # the skipped layer's own entry is 0
        torch.testing.assert_close(fx.effect[:, s, other], want[:, other], atol=1e-3, rtol=1e-3)
        assert fx.effect[:, s, s].abs().max() < 1e-4
        kl = (clean_logp.exp() * (clean_logp - s_logits.log_softmax(-1))).sum(-1)
        torch.testing.assert_close(fx.kl[:, s], kl, atol=1e-4, rtol=1e-3)
    assert fx.effect[:, 2, :2].abs().max() < 1e-4  # layers before the skipped one are untouched
    part = skip_effects(tiny_model, enc, layers=[1, 3])
    torch.testing.assert_close(part.effect, fx.effect[:, [1, 3]], atol=1e-4, rtol=1e-4)
    assert part.skipped == [1, 3]


def lac_loop(norms, alpha):
    """LAC's rule written as a loop over layers, one token at a time."""
    batch, n_plus_1, seq = norms.shape
    out = torch.zeros(batch, n_plus_1 - 1, seq, dtype=torch.bool)
    for b in range(batch):
        for p in range(seq):
            deltas = []
            for layer in range(n_plus_1 - 1):
                d = float(norms[b, layer + 1, p] - norms[b, layer, p])
                out[b, layer, p] = layer == 0 or d >= alpha * (max(deltas) - min(deltas))
                deltas.append(d)
    return out


def test_lac_mask_matches_loop_and_exit():
    norms = torch.rand(4, 9, 5, generator=torch.Generator().manual_seed(0)).cumsum(1)
    for alpha in (0.0, 0.5, 0.8):
        assert torch.equal(lac_mask(norms, alpha), lac_loop(norms, alpha))
    active = lac_mask(norms, 0.8)
    ex = exit_layer(active)
    for b in range(4):
        for p in range(5):
            assert int(ex[b, p]) == max(i for i in range(8) if active[b, i, p])


def test_exit_logits_and_lens_kl(tiny_model, reference_hf, enc):
    arch = Arch(tiny_model)
    _, outs, logits = run_hf(reference_hf, enc)
    last = outs[:, :, -1]  # [batch, layer, d]
    torch.testing.assert_close(exit_logits(arch, last, torch.tensor([arch.n_layers - 1] * 3)), logits,
                               atol=1e-4, rtol=1e-4)
    hf = Arch(reference_hf)
    want = reference_hf.lm_head(hf.hf_module("final_norm")(last[torch.arange(3), [0, 2, 1]]))
    torch.testing.assert_close(exit_logits(arch, last, torch.tensor([0, 2, 1])), want, atol=1e-4, rtol=1e-4)
    kl = lens_kl(arch, last, chunk=2)
    logp = reference_hf.lm_head(hf.hf_module("final_norm")(last)).log_softmax(-1)
    final = logp[:, -1:]
    torch.testing.assert_close(kl, (final.exp() * (final - logp)).sum(-1), atol=1e-4, rtol=1e-4)
    assert kl[:, -1].abs().max() < 1e-5


def test_literal_lac_matches_sequential_hooks(tiny_model, reference_hf, enc):
    counted = counted_tokens(enc["attention_mask"])
    for alpha in (0.3, 0.8):
        logits, void = literal_lac(tiny_model, enc, alpha=alpha)
        state, ref_void = {}, []

        def decide(layer, h_in, h_out, alpha=alpha, state=state, ref_void=ref_void):
            delta = h_out.norm(dim=-1) - h_in.norm(dim=-1)
            if layer == 0:
                state.update(high=delta, low=delta)
                ref_void.append(torch.zeros_like(counted))
                return None
            v = (delta < alpha * (state["high"] - state["low"])) & counted
            state.update(high=torch.maximum(state["high"], delta), low=torch.minimum(state["low"], delta))
            ref_void.append(v)
            return torch.where(v[..., None], h_in, h_out)

        _, _, ref_logits = run_hf(reference_hf, enc, decide)
        assert torch.equal(void, torch.stack(ref_void, 1))
        torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(skip_layers(tiny_model, enc, void), logits, atol=1e-4, rtol=1e-4)
    assert void[:, 0].sum() == 0 and not void[~counted[:, None].expand_as(void)].any()


def test_skip_layers_matches_hooks(tiny_model, reference_hf, enc):
    n_layers = Arch(reference_hf).n_layers
    counts = torch.tensor([[0, 1, 2, 3, 1, 0, 2, 3]] * 3)
    void = random_voids(counts, n_layers, torch.Generator().manual_seed(1))
    assert torch.equal(void.sum(1), counts) and not void[:, 0].any()
    got = skip_layers(tiny_model, enc, void)

    def skip(layer, h_in, h_out):
        return torch.where(void[:, layer, :, None], h_in, h_out)

    torch.testing.assert_close(got, run_hf(reference_hf, enc, skip)[2], atol=1e-4, rtol=1e-4)


def test_depth_returns_float32_from_a_bfloat16_model(tiny_dir):
    from lib.models import load_model

    model = load_model(str(tiny_dir), "cpu", dtype="bfloat16")
    enc = encode(model.tokenizer, PROMPTS)
    norms = layer_norms(model, enc, keep=torch.tensor([[7], [7], [7]]))
    fx = skip_effects(model, enc, layers=[1])
    logits, void = literal_lac(model, enc)
    floats = [norms.pre, norms.write, norms.kept, fx.effect, fx.kl, logits, skip_layers(model, enc, void),
              exit_logits(Arch(model), norms.kept[:, :, 0], torch.tensor([0, 1, 2])), lens_kl(Arch(model), norms.kept[:, :, 0])]
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in floats)
    assert void.dtype == torch.bool
