"""Attribution patching: a first-order estimate of every patch of a sweep from three passes.

Exact patching runs the model once per patched site. Attribution patching (Nanda 2023; Syed et al.
2023, "Attribution Patching Outperforms Automated Circuit Discovery") replaces each patched run with
a Taylor estimate around the run being patched (the *target*):

    m(target with site := source) ~ m(target) + (a_source - a_target) . dm/da |target

so one forward pass on the source prompts (their activations) and one forward and backward pass on
the target prompts (activations and gradients) score every site at once. With `direction="denoise"`
(the default, as in `lib.patching.patch_sweep`) the source is the clean run and the target the
corrupt one; `"noise"` swaps them (chapter 06's head ranking). The estimate is exact for a site
whose effect on the metric is linear and can be far off where attention or a softmax saturates, so
check it against `patch_sweep` on a few pairs (the appendix "How fast is activation patching?"
measures the agreement on SmolLM2-135M).

    from lib.attribution import attribution_sweep
    est = attribution_sweep(model, clean, corrupt, "head", logit_diff_metric(answer, wrong))
    est.values            # [pair, layer, head] estimated metric after each patch, like patch_sweep
    est.values - est.corrupt[:, None, None]   # the estimated effect of each patch

Sites and positions as in `lib.patching`: non-head sites give one estimate per (layer, position);
`head` gives one per (layer, query head), the head patched at all of `positions` at once. Written
with plain PyTorch hooks on the transformers model, since it needs gradients.

Taught in chapter 06 (circuit reuse), which writes head attribution out in full and checks it
against exact patching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from lib.arch import Arch, first
from lib.devices import returns_cpu
from lib.interventions import SITES, Positions, Run, as_run
from lib.metrics import Metric
from lib.patching import DIRECTIONS, PatchResult, _sweep_index, _tokens


def _site_module(arch: Arch, site: str, layer: int) -> tuple[torch.nn.Module, bool]:
    """(plain module, whether the site is its input rather than its output)."""
    if site in ("resid_pre", "resid_post"):
        return arch.hf_module("layers")[layer], site == "resid_pre"
    if site == "head":
        return arch.hf_module("o_proj", layer), True
    if site in ("attn_out", "mlp_out"):
        return arch.hf_module(site, layer), False
    raise ValueError(f"site: expected one of {SITES}, got {site!r}")


def _run_capturing(arch: Arch, run: Run, site: str, layers: list[int], grad: bool
                   ) -> tuple[list[Tensor], Float[Tensor, "batch vocab"]]:
    """Last-token logits of one forward pass and the live `site` tensors at `layers` (in the graph
    when `grad`: the embedding output is made a leaf that requires grad, the weights stay as they are)."""
    captured: list[Tensor] = []
    handles = []

    def keep_input(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    def keep_output(module, args, output):
        captured.append(first(output))

    def embed_hook(module, args, output):
        out = output if run.embed_delta is None else output + run.embed_delta.to(output.device, output.dtype)
        return out.detach().requires_grad_(True) if grad else out

    try:
        handles.append(arch.hf_module("embed").register_forward_hook(embed_hook))
        for layer in layers:
            module, is_input = _site_module(arch, site, layer)
            handles.append(module.register_forward_pre_hook(keep_input, with_kwargs=True) if is_input
                           else module.register_forward_hook(keep_output))
        with torch.set_grad_enabled(grad):
            logits = arch.hf(**run.enc, logits_to_keep=1).logits[:, -1].float()
    finally:
        for handle in handles:
            handle.remove()
    return captured, logits


def _per_site(arch: Arch, site: str, x: Float[Tensor, "batch pos d"], index: Tensor, head_pos: Tensor | None
              ) -> Float[Tensor, "batch index"]:
    """Sum a per-element product over d_model at each swept position, or over d_head and `head_pos` per head."""
    if site != "head":
        return x.sum(-1).gather(1, index.to(x.device))
    x = x.view(*x.shape[:2], arch.n_heads, arch.d_head).sum(-1)  # [batch, pos, head]
    at = torch.zeros(x.shape[:2], device=x.device, dtype=x.dtype)
    at.scatter_(1, head_pos.to(x.device), 1.0)  # every patched position of each row once
    return torch.einsum("bph,bp->bh", x, at).gather(1, index.to(x.device))


def _estimate(model, source: Run, target: Run, site: str, metric: Metric, layers: list[int],
              index: Tensor, head_pos: Tensor | None, pair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Estimated deltas [batch, layer, index] and the source and target metrics, for one chunk of pairs."""
    arch = Arch(model)
    src_acts, src_logits = _run_capturing(arch, source, site, layers, grad=False)
    tgt_acts, tgt_logits = _run_capturing(arch, target, site, layers, grad=True)
    m_target = metric(tgt_logits, pair.to(tgt_logits.device))
    grads = torch.autograd.grad(m_target.sum(), tgt_acts)  # rows are independent: the sum's gradient is per row
    deltas = [_per_site(arch, site, ((s - t.detach()) * g).float(), index, head_pos)
              for s, t, g in zip(src_acts, tgt_acts, grads)]
    with torch.no_grad():
        m_source = metric(src_logits, pair.to(src_logits.device))
    return torch.stack(deltas, 1), m_source.detach().float(), m_target.detach().float()


@returns_cpu
def attribution_sweep(model, clean: Run | dict, corrupt: Run | dict, site: str, metric: Metric,
                      direction: str = "denoise", layers: Sequence[int] | None = None,
                      positions: Positions = None, heads: Sequence[int] | None = None,
                      chunk_size: int | None = None) -> PatchResult:
    """Attribution-patching estimate of `patch_sweep(model, clean, corrupt, site, metric, ...)`, same shapes.

    One forward pass on the source run and one forward and backward pass on the target run per chunk
    of `chunk_size` pairs (default all). `values` are m(target) + estimated effect of each patch.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    clean, corrupt, arch = as_run(clean, model.device), as_run(corrupt, model.device), Arch(model)
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean and corrupt batches differ in shape: {clean.shape} vs {corrupt.shape}")
    if site not in SITES:
        raise ValueError(f"site: expected one of {SITES}, got {site!r}")
    layers = list(range(arch.n_layers)) if layers is None else [i % arch.n_layers for i in layers]
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    index, head_pos = _sweep_index(arch, site, positions, heads, *clean.shape, "cpu")
    n_pair = clean.shape[0]
    values, m_src, m_tgt = [], [], []
    for rows in torch.arange(n_pair).split(chunk_size or n_pair):
        delta, s, t = _estimate(model, source.select(rows), target.select(rows), site, metric, layers,
                                index[rows], None if head_pos is None else head_pos[rows], rows)
        values.append((t[:, None, None] + delta).cpu())
        m_src.append(s.cpu())
        m_tgt.append(t.cpu())
    m_src, m_tgt = torch.cat(m_src), torch.cat(m_tgt)
    base_clean, base_corrupt = (m_src, m_tgt) if direction == "denoise" else (m_tgt, m_src)
    return PatchResult(torch.cat(values), base_clean, base_corrupt, site, direction, layers, index,
                       _tokens(model.tokenizer, clean.enc, site, index))
