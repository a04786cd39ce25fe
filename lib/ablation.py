"""Ablation: knock components out (zero or mean) and measure what the model loses, in one trace.

    ablate_heads(model, enc, heads=[(9, 6), (9, 9)], mode="mean")       # [batch, pos, vocab]
    ablate_mlps(model, enc, layers=[3, 4], mode="zero", positions=pos)  # pos: [batch, m] per row
    ablate_directions(model, enc, layer=5, directions=U)                # project U out of resid_pre
    ablate(model, enc, [("head", 9, 6), ("mlp_out", 3)], mode="mean", means=reference_means)
    means = mean_activations(model, reference_enc, "head")             # [layer, head, d_head]
    ablation_sweep(model, enc, "head", metric, mode="mean")            # each head alone, batched
    ablation_sets(model, enc, [[("mlp_out", 3)], [("mlp_out", 5), ("mlp_out", 9)]], metric)  # [set, batch]
    patch(model, target, source, [("head", 9, 6)])                      # fixed set, source -> target

Components are tuples: ("head", layer, head), ("attn_out", layer), ("mlp_out", layer),
("resid_pre", layer), ... (sites of lib.interventions).

Taught in chapter 03 (zero and mean ablation; chapter 03 writes mean ablation out in full and checks
it against `ablate_heads`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from lib.arch import Arch
from lib.devices import returns_cpu
from lib.interventions import (
    Edit,
    Positions,
    Run,
    _collect,
    _run_with_edits,
    as_run,
    length_groups,
    position_index,
    run_with_edits,
)
from lib.metrics import Metric
from lib.patching import PatchResult, _sweep, _sweep_index, _tokens, auto_chunk_size

MODES = ("zero", "mean")


@returns_cpu
@torch.no_grad()
def mean_activations(model, enc: Run | dict, site: str, positions: Positions = None
                     ) -> Float[Tensor, "layer ..."]:
    """Mean of `site` at every layer over rows and real tokens (or the given positions per row); on the CPU."""
    run = as_run(enc, model.device)
    acts, _ = _collect(model, run, site)  # [batch, layer, pos, ...]
    batch, seq = run.shape
    pos = position_index(positions, batch, seq, acts.device)
    weight = torch.zeros(batch, seq, device=acts.device)
    weight.scatter_(1, pos, 1.0)
    weight = weight * run.enc["attention_mask"].to(acts.device)
    weight = weight.view(batch, 1, seq, *([1] * (acts.dim() - 3)))
    return (acts * weight).sum((0, 2)) / weight.sum((0, 2))


def _component_edit(arch: Arch, component: tuple, values_of: Callable, batch: int, pos: Tensor) -> Edit:
    """Edit writing `values_of(site, layer, head)` [batch or 1, m or 1, d] into one component."""
    site, layer = component[0], component[1] % arch.n_layers
    head = component[2] if site == "head" else None
    values = values_of(site, layer, head)
    values = values.expand(batch, pos.shape[1], values.shape[-1])
    rows = torch.arange(batch, device=pos.device)
    heads = None if head is None else torch.full((batch,), head, device=pos.device)
    return Edit(site, layer, rows, pos, values, heads)


def _ablation_values(model, run: Run, mode: str, means: dict | None, pos: Tensor) -> Callable:
    """values_of(site, layer, head) for zero or mean ablation (means computed on `run` if not given)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    arch, cache = Arch(model), dict(means or {})

    def values_of(site: str, layer: int, head: int | None) -> Tensor:
        if mode == "zero":
            d = arch.d_head if site == "head" else arch.d_model
            return torch.zeros(1, 1, d, device=pos.device)
        if site not in cache:
            cache[site] = mean_activations(model, run, site)
        mean = cache[site][layer] if head is None else cache[site][layer, head]
        return mean.to(pos.device)[None, None]
    return values_of


@torch.no_grad()
def ablate(model, enc: Run | dict, components: Sequence[tuple], mode: str = "mean",
           means: dict[str, Tensor] | None = None, positions: Positions = None,
           last_only: bool = False) -> Float[Tensor, "batch pos vocab"]:
    """Logits with `components` zeroed or set to their mean, in one trace.

    components: ("head", layer, head), ("attn_out", layer), ("mlp_out", layer), ("resid_pre", layer)...
    means: {site: mean_activations(...)} from a reference set; by default the mean over `enc` itself.
    """
    run, arch = as_run(enc, model.device), Arch(model)
    batch, seq = run.shape
    pos = position_index(positions, batch, seq, run.enc["input_ids"].device)
    values_of = _ablation_values(model, run, mode, means, pos)
    edits = [_component_edit(arch, c, values_of, batch, pos) for c in components]
    return run_with_edits(model, run, edits, last_only)


def ablate_heads(model, enc: Run | dict, heads: Sequence[tuple[int, int]], mode: str = "mean",
                 means: Tensor | None = None, positions: Positions = None,
                 last_only: bool = False) -> Float[Tensor, "batch pos vocab"]:
    """Logits with each (layer, head)'s output (before o_proj) zeroed or mean-ablated, in one trace."""
    return ablate(model, enc, [("head", l, h) for l, h in heads], mode,
                  None if means is None else {"head": means}, positions, last_only)


def ablate_mlps(model, enc: Run | dict, layers: Sequence[int], mode: str = "mean",
                means: Tensor | None = None, positions: Positions = None,
                last_only: bool = False) -> Float[Tensor, "batch pos vocab"]:
    """Logits with the MLP output of each layer in `layers` zeroed or mean-ablated, in one trace."""
    return ablate(model, enc, [("mlp_out", l) for l in layers], mode,
                  None if means is None else {"mlp_out": means}, positions, last_only)


@torch.no_grad()
def ablate_directions(model, enc: Run | dict, layer: int, directions: Float[Tensor, "r d_model"],
                      site: str = "resid_pre", mode: str = "zero",
                      means: Float[Tensor, " r"] | None = None, positions: Positions = None,
                      last_only: bool = False) -> Float[Tensor, "batch pos vocab"]:
    """Logits with the span of `directions` removed from `site` at `layer` (mode 'zero'), or its
    coordinates set to `means` (mode 'mean'; default: their mean over `enc`'s real tokens)."""
    run, arch = as_run(enc, model.device), Arch(model)
    batch, seq = run.shape
    basis = torch.linalg.qr(directions.T.float())[0]  # [d_model, r], orthonormal columns
    if mode == "mean" and means is None:
        means = mean_activations(model, run, site)[layer % arch.n_layers].float() @ basis.to(
            run.enc["input_ids"].device)
    elif mode == "zero":
        means = torch.zeros(basis.shape[1])
    pos = position_index(positions, batch, seq, run.enc["input_ids"].device)
    values = means.to(pos.device)[None, None].expand(batch, pos.shape[1], -1)
    edit = Edit(site, layer % arch.n_layers, torch.arange(batch, device=pos.device), pos, values,
                basis=basis.to(pos.device))
    return run_with_edits(model, run, [edit], last_only)


@torch.no_grad()
def patch(model, target: Run | dict, source: Run | dict, components: Sequence[tuple],
          positions: Positions = None, last_only: bool = False) -> Float[Tensor, "batch pos vocab"]:
    """Logits of `target` with `components` (as in `ablate`) taken from the `source` run, in one trace.

    Taught in chapter 02 (patching a fixed set of components, the counterpart of a sweep)."""
    target, source, arch = as_run(target, model.device), as_run(source, model.device), Arch(model)
    if target.shape != source.shape:
        raise ValueError(f"target and source differ in shape: {target.shape} vs {source.shape}")
    batch, seq = target.shape
    pos = position_index(positions, batch, seq, target.enc["input_ids"].device)
    acts = {site: _collect(model, source, site)[0] for site in {c[0] for c in components}}

    def values_of(site: str, layer: int, head: int | None) -> Tensor:
        a = acts[site][:, layer]
        a = a if head is None else a[:, :, head]
        return a.gather(1, pos.to(a.device)[..., None].expand(-1, -1, a.shape[-1]))

    return run_with_edits(model, target, [_component_edit(arch, c, values_of, batch, pos) for c in components],
                          last_only)


@torch.no_grad()
def ablation_sweep(model, enc: Run | dict, site: str, metric: Metric, mode: str = "mean",
                   means: Tensor | None = None, layers: Sequence[int] | None = None,
                   positions: Positions = None, heads: Sequence[int] | None = None,
                   chunk_size: int | None = None) -> PatchResult:
    """Ablate each (layer, position) — or (layer, head) — alone, batched, as `patch_sweep` does.

    `clean` is the unablated metric; `corrupt` and so `recovery()` are NaN (there is no corrupt run).
    """
    run, arch = as_run(enc, model.device), Arch(model)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    layers = list(range(arch.n_layers)) if layers is None else [i % arch.n_layers for i in layers]
    acts, logits = _collect(model, run, site, layers)
    if mode == "zero":
        source = torch.zeros_like(acts)
    else:
        mean = (mean_activations(model, run, site) if means is None else means).to(acts.device)[layers]
        source = mean[None, :, None].expand_as(acts)
    index, head_pos = _sweep_index(arch, site, positions, heads, *run.shape, "cpu")
    values, _, _ = _sweep(model, run, site, metric, layers, index, head_pos, chunk_size, source=source)
    base = metric(logits, torch.arange(run.shape[0], device=logits.device)).float().cpu()
    return PatchResult(values, base, torch.full_like(base, float("nan")), site, f"{mode}-ablate", layers, index,
                       _tokens(model.tokenizer, run.enc, site, index))


@torch.no_grad()
def ablation_sets(model, enc: Run | dict, sets: Sequence[Sequence[tuple]], metric: Metric, mode: str = "mean",
                  means: dict[str, Tensor] | None = None, positions: Positions = None,
                  chunk_size: int | None = None) -> Float[Tensor, "set batch"]:
    """`metric` of every row of `enc` with each set of components ablated together (as in `ablate`):
    the sets run as blocks of rows of one batch (chunked), not one trace per set; on the CPU.

    E.g. a null of random layer sets: sets=[[("mlp_out", l) for l in draw] for draw in draws].
    """
    run, arch = as_run(enc, model.device), Arch(model)
    batch, seq = run.shape
    pos = position_index(positions, batch, seq, "cpu")
    values_of = _ablation_values(model, run, mode, means, pos)
    out = torch.full((len(sets), batch), float("nan"))
    for group in length_groups(run.enc["attention_mask"]):  # prompts of similar length together
        n, sub, sub_pos = len(group), run.select(group), pos[group]
        per_chunk = max(1, (chunk_size or auto_chunk_size(model, seq)) // n)
        for start in range(0, len(sets), per_chunk):
            block = sets[start:start + per_chunk]
            rows = torch.arange(n).repeat(len(block))
            edits = []
            for k, components in enumerate(block):
                for c in components:
                    e = _component_edit(arch, c, values_of, n, sub_pos)
                    edits.append(Edit(e.site, e.layer, e.rows + k * n, e.pos, e.values, e.heads))
            logits = _run_with_edits(model, sub.select(rows), edits)[:, -1]
            metric_rows = group[rows].to(logits.device)  # the metric sees each row's index in `enc`
            out[start:start + len(block), group] = metric(logits, metric_rows).float().cpu().view(len(block), n)
    return out
