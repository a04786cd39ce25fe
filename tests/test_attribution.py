"""Attribution patching against a slow reference (one forward and backward pass per layer, the site
replaced by a leaf tensor, products summed in Python loops) and against exact patching where the
first-order estimate must hold (a tiny corruption), on tiny Llama and Gemma 3."""

import pytest
import torch

from lib.arch import Arch, first
from lib.attribution import attribution_sweep
from lib.data import encode
from lib.interventions import SITES, Run
from lib.metrics import logit_diff_metric
from lib.patching import patch_sweep

CLEAN = ["w5 w6 w7 w8 w9", "w20 w21 w22 w23"]  # different lengths: rows are left-padded
CORRUPT = ["w5 w40 w41 w8 w9", "w20 w50 w22 w23"]
ANSWER, WRONG = torch.tensor([10, 30]), torch.tensor([11, 31])


def pairs(tokenizer) -> tuple[Run, Run]:
    enc = encode(tokenizer, CLEAN + CORRUPT)
    return Run({k: v[:2] for k, v in enc.items()}), Run({k: v[2:] for k, v in enc.items()})


def ref_site_and_grad(hf, run: Run, site: str, layer: int, pair: int, metric) -> tuple[torch.Tensor, torch.Tensor]:
    """The site's activation at `layer` for one row, and d metric / d activation: the site is replaced by a
    leaf tensor, so its gradient is everything downstream of it."""
    arch, leaf = Arch(hf), {}
    module = (arch.hf_module("layers")[layer] if site.startswith("resid")
              else arch.hf_module({"head": "o_proj"}.get(site, site), layer))

    def as_leaf(x):
        leaf["x"] = x.detach().clone().requires_grad_(True)
        return leaf["x"]

    if site in ("resid_pre", "head"):
        def hook(m, args, kwargs):
            if args:
                return (as_leaf(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": as_leaf(kwargs["hidden_states"])}
        handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    else:
        def hook(m, args, output):
            x = as_leaf(first(output))
            return (x, *output[1:]) if isinstance(output, tuple) else x
        handle = module.register_forward_hook(hook)
    try:
        row = run.select(torch.tensor([pair]))
        logits = hf(**row.enc).logits[:, -1].float()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(metric(logits, torch.tensor([pair]))[0], leaf["x"])
    return leaf["x"].detach()[0], grad[0]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("site", SITES)
def test_matches_slow_reference(tiny_model, reference_hf, site, direction):
    clean, corrupt = pairs(tiny_model.tokenizer)
    metric = logit_diff_metric(ANSWER, WRONG)
    positions = [-1, -3] if site == "head" else None
    est = attribution_sweep(tiny_model, clean, corrupt, site, metric, direction, positions=positions, chunk_size=1)
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    arch, seq = Arch(reference_hf), clean.shape[1]
    n_index = arch.n_heads if site == "head" else seq
    assert est.values.shape == (2, arch.n_layers, n_index) and est.values.device.type == "cpu"
    for p in range(2):
        for layer in range(arch.n_layers):
            src, _ = ref_site_and_grad(reference_hf, source, site, layer, p, metric)
            tgt, grad = ref_site_and_grad(reference_hf, target, site, layer, p, metric)
            base = metric(reference_hf(**target.select(torch.tensor([p])).enc).logits[:, -1].float(),
                          torch.tensor([p]))[0].detach()
            for k in range(n_index):
                if site == "head":
                    d = slice(k * arch.d_head, (k + 1) * arch.d_head)
                    want = sum(((src[q, d] - tgt[q, d]) * grad[q, d]).sum() for q in (seq - 1, seq - 3))
                else:
                    want = ((src[k] - tgt[k]) * grad[k]).sum()
                torch.testing.assert_close(est.values[p, layer, k], base + want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("site", ["resid_pre", "head", "mlp_out"])
def test_first_order_agrees_with_exact_for_a_small_corruption(tiny_model, site):
    """With noise of norm ~1e-3 on the embeddings, the estimate must match exact patching to first order."""
    clean, _ = pairs(tiny_model.tokenizer)
    d_model = Arch(tiny_model).d_model
    noise = 1e-3 * torch.randn(*clean.shape, d_model, generator=torch.Generator().manual_seed(0))
    corrupt = Run(clean.enc, noise)
    metric = logit_diff_metric(ANSWER, WRONG)
    exact = patch_sweep(tiny_model, clean, corrupt, site, metric)
    est = attribution_sweep(tiny_model, clean, corrupt, site, metric)
    torch.testing.assert_close(est.corrupt, exact.corrupt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(est.clean, exact.clean, atol=1e-5, rtol=1e-5)
    exact_effect, est_effect = exact.values - exact.corrupt[:, None, None], est.values - est.corrupt[:, None, None]
    scale = exact_effect.abs().max()
    assert scale > 1e-5  # the corruption does move the metric
    torch.testing.assert_close(est_effect, exact_effect, atol=0.05 * scale.item(), rtol=0)


def test_bad_arguments(tiny_model):
    clean, corrupt = pairs(tiny_model.tokenizer)
    metric = logit_diff_metric(ANSWER, WRONG)
    with pytest.raises(ValueError, match="direction"):
        attribution_sweep(tiny_model, clean, corrupt, "head", metric, direction="sideways")
    with pytest.raises(ValueError, match="site"):
        attribution_sweep(tiny_model, clean, corrupt, "z", metric)
    with pytest.raises(ValueError, match="shape"):
        attribution_sweep(tiny_model, clean, corrupt.select(torch.tensor([0])), "head", metric)
