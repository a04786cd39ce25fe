"""lib.das (last-token prefix-cache patching, one-direction DAS) and the engine's `mlp_hidden` site and
subspace interchange from source rows, against the obvious slow reference: a full forward pass of the
plain transformers model with a PyTorch hook, on tiny random Llama and Gemma 3 models."""

import pytest
import torch

from lib.arch import Arch, first
from lib.das import (
    LastToken,
    down_proj_rowspace,
    first_order_direction,
    fit_direction,
    fldd,
    interchange,
    norm_gain,
    query_basis,
    rowspace_basis,
    rowspace_fraction,
    split_rowspace,
)
from lib.data import encode
from lib.interventions import Edit, run_with_edits
from lib.models import load_hf
from tests.tiny import FAMILIES, save_tiny_model

BASE = ["w5 w6 w7 w8 w9 w10", "w20 w21 w22 w23", "w30 w31 w32 w33 w34"]  # different lengths: left padding
SOURCE = ["w6 w5 w7 w8 w9 w10", "w21 w20 w22 w23", "w31 w30 w32 w33 w34"]
ANSWER, WRONG = torch.tensor([10, 30, 40]), torch.tensor([11, 31, 41])
SITES = ["resid_pre", "attn_out", "mlp_hidden", "mlp_out", "resid_post"]


def batches(tokenizer):
    enc = encode(tokenizer, BASE + SOURCE)  # encoded together, so both halves have the same length
    n = len(BASE)
    return {k: v[:n] for k, v in enc.items()}, {k: v[n:] for k, v in enc.items()}


def module_of(arch: Arch, site: str, layer: int):
    """(module, is_input): where the slow reference hooks a site."""
    if site in ("resid_pre", "resid_post"):
        return arch.hf_module("layers")[layer], site == "resid_pre"
    if site == "mlp_hidden":
        return arch.hf_module("down_proj", layer), True
    return arch.hf_module(site, layer), False


def slow_ld(hf, enc, site=None, layer=None, fn=None):
    """Logit difference of a full forward pass, with fn(x [batch, pos, d]) -> x applied at `site` (if given)."""
    arch, handles = Arch(hf), []
    if site is not None:
        module, is_input = module_of(arch, site, layer)
        if is_input:
            handles.append(module.register_forward_pre_hook(
                lambda m, args, kw: ((fn(args[0]),) + args[1:], kw) if args
                else (args, {**kw, "hidden_states": fn(kw["hidden_states"])}), with_kwargs=True))
        else:
            handles.append(module.register_forward_hook(
                lambda m, a, out: (fn(first(out)),) + tuple(out[1:]) if isinstance(out, tuple) else fn(out)))
    try:
        with torch.no_grad():
            logits = hf(**enc).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
    return logits.gather(1, ANSWER[:, None])[:, 0] - logits.gather(1, WRONG[:, None])[:, 0]


def slow_read(hf, enc, site, layer):
    """The last token's activation at a site, from a full forward pass."""
    store = []

    def grab(x):
        store.append(x[:, -1].clone())
        return x
    slow_ld(hf, enc, site, layer, grab)
    return store[0]


def slow_patched(hf, base, source, site, layer, basis):
    """Full-forward reference: the base's last-token site, its span(basis) part (all if None) from the source."""
    src = slow_read(hf, source, site, layer)

    def swap(x):
        x = x.clone()
        x[:, -1] = interchange(x[:, -1], src, basis)
        return x
    return slow_ld(hf, base, site, layer, swap)


@pytest.fixture(scope="module")
def setup(tiny_model, reference_hf):
    base, source = batches(tiny_model.tokenizer)
    return LastToken(tiny_model, base, ANSWER, WRONG), LastToken(tiny_model, source, ANSWER, WRONG), base, source


def test_clean_logit_difference_matches_full_forward(setup, reference_hf):
    fast, _, base, _ = setup
    torch.testing.assert_close(fast.clean_ld.cpu(), slow_ld(reference_hf, base), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("site", SITES)
def test_read_and_patched_match_full_forward(setup, reference_hf, site):
    fast_base, fast_source, base, source = setup
    for layer in (0, 2, 3):
        torch.testing.assert_close(fast_source.read(site, layer).cpu(), slow_read(reference_hf, source, site, layer),
                                   atol=1e-4, rtol=1e-4)
        d = fast_source.read(site, layer).shape[-1]
        basis = torch.linalg.qr(torch.randn(d, 2, generator=torch.Generator().manual_seed(layer)))[0]
        for b in (None, basis):
            fast = fast_base.patched(site, layer, fast_source.read(site, layer), b)
            torch.testing.assert_close(fast.detach().cpu(), slow_patched(reference_hf, base, source, site, layer, b),
                                       atol=1e-4, rtol=1e-4)


def test_rows_select_and_repeat(setup):
    fast_base, fast_source, _, _ = setup
    src = fast_source.read("mlp_hidden", 1)
    full = fast_base.patched("mlp_hidden", 1, src)
    rows = torch.tensor([2, 0, 2])
    torch.testing.assert_close(fast_base.patched("mlp_hidden", 1, src[rows], rows=rows), full[rows])
    torch.testing.assert_close(fast_base.patched("mlp_hidden", 1, src), full)  # the cache was put back
    u = torch.nn.functional.normalize(torch.randn(3, src.shape[-1], generator=torch.Generator().manual_seed(0)), dim=-1)
    along = fast_base.patched_along("mlp_hidden", 1, src[rows], u, rows=rows)
    for k in range(3):
        one = fast_base.patched("mlp_hidden", 1, src[rows[k:k + 1]], u[k][:, None], rows=rows[k:k + 1])
        torch.testing.assert_close(along[k:k + 1], one, atol=1e-5, rtol=1e-5)


def test_gradient_matches_finite_difference(setup):
    fast_base, _, _, _ = setup
    grad = fast_base.gradient("resid_post", 1)
    x = fast_base.read("resid_post", 1)
    step = 1e-2 * grad / grad.norm(dim=-1, keepdim=True)
    moved = fast_base.patched("resid_post", 1, x + step)
    torch.testing.assert_close((moved - fast_base.clean_ld.to(moved.device)).cpu(),
                               (grad * step).sum(-1).cpu(), atol=2e-3, rtol=0.1)


def test_fit_direction_lowers_the_patched_logit_difference(setup):
    fast_base, fast_source, _, _ = setup
    src = fast_source.read("mlp_hidden", 2)
    v, losses = fit_direction(fast_base, src, "mlp_hidden", 2, steps=15, lr=0.1)
    assert v.shape == (src.shape[-1],) and v.device.type == "cpu"
    assert abs(float(v.norm()) - 1) < 1e-5
    assert losses[-1] < losses[0]
    v1, delta, grad = first_order_direction(fast_base, src, "mlp_hidden", 2)
    torch.testing.assert_close(delta, (src - fast_base.read("mlp_hidden", 2)).mean(0).cpu())
    assert abs(float(v1.norm()) - 1) < 1e-5


def test_mlp_hidden_edit_with_src_rows_and_basis_matches_reference(tiny_model, reference_hf):
    """The engine's subspace interchange from source rows at the new `mlp_hidden` site (one nnsight trace)."""
    base, source = batches(tiny_model.tokenizer)
    n, layer = len(BASE), 2
    d_mlp = Arch(reference_hf).W_out(layer).shape[0]
    basis = torch.linalg.qr(torch.randn(d_mlp, 3, generator=torch.Generator().manual_seed(0)))[0]
    both = {k: torch.cat([source[k], base[k]]) for k in base}
    edit = Edit("mlp_hidden", layer, torch.arange(n, 2 * n), torch.full((n, 1), -1), None,
                basis=basis, src_rows=torch.arange(n))
    logits = run_with_edits(tiny_model, both, [edit])[n:, -1]
    ld = logits.gather(1, ANSWER[:, None])[:, 0] - logits.gather(1, WRONG[:, None])[:, 0]
    torch.testing.assert_close(ld, slow_patched(reference_hf, base, source, "mlp_hidden", layer, basis),
                               atol=1e-4, rtol=1e-4)
    whole = Edit("mlp_hidden", layer, torch.arange(n, 2 * n), torch.full((n, 1), -1), None, src_rows=torch.arange(n))
    logits = run_with_edits(tiny_model, both, [whole])[n:, -1]
    ld = logits.gather(1, ANSWER[:, None])[:, 0] - logits.gather(1, WRONG[:, None])[:, 0]
    torch.testing.assert_close(ld, slow_patched(reference_hf, base, source, "mlp_hidden", layer, None),
                               atol=1e-4, rtol=1e-4)


def test_rowspace_helpers():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 10, generator=gen)
    basis = rowspace_basis(w)
    assert basis.shape == (10, 4)
    v = torch.randn(10, generator=gen)
    row, null = split_rowspace(v, basis)
    torch.testing.assert_close(w @ null, torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(row + null, v)
    assert rowspace_fraction(w[0], basis) == pytest.approx(1.0, abs=1e-5)
    assert rowspace_fraction(null, basis) == pytest.approx(0.0, abs=1e-5)
    assert fldd(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])) == pytest.approx(0.5)


def test_down_proj_rowspace_is_what_the_mlp_output_sees(reference_hf):
    arch = Arch(reference_hf)
    basis = down_proj_rowspace(arch, 1)
    null = torch.randn(basis.shape[0], generator=torch.Generator().manual_seed(1))
    null = null - basis @ (basis.T @ null)
    down = arch.hf_module("down_proj", 1)
    with torch.no_grad():
        torch.testing.assert_close(down(null[None]) - down(torch.zeros(1, null.shape[0])),
                                   torch.zeros(1, arch.d_model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_W_Q_and_norm_gain_give_the_queries(family, tmp_path):
    """q = ln1(x) @ W_Q[h] for every family; for RMSNorm families ln1(x) = gain * x / rms(x)."""
    hf = load_hf(str(save_tiny_model(family, tmp_path)))[0]
    arch, layer = Arch(hf), 1
    x = torch.randn(2, 3, arch.d_model, generator=torch.Generator().manual_seed(0))
    norm = arch.ln1(layer)
    with torch.no_grad():
        normed = x if norm is None else norm(x)
        out = first(arch.hf_module("q_proj", layer)(normed))
        q = torch.einsum("bpm,hmd->bphd", normed, arch.W_Q(layer))
        torch.testing.assert_close(out[..., :arch.n_heads * arch.d_head].reshape(q.shape) if family != "gpt_neox"
                                   else out.view(2, 3, arch.n_heads, 3, arch.d_head)[:, :, :, 0], q,
                                   atol=1e-4, rtol=1e-4)
        if norm is not None and family not in ("gpt2", "gpt_neox"):  # RMSNorm: a diagonal gain after x / rms(x)
            rms = x.pow(2).mean(-1, keepdim=True).add(arch.norm_eps).sqrt()
            torch.testing.assert_close(normed, norm_gain(arch, layer) * x / rms, atol=1e-4, rtol=1e-4)
    basis = query_basis(arch, [(layer, 0)])
    assert basis.shape[1] == min(arch.d_head, arch.d_model)
