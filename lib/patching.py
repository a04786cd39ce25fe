"""Batched activation patching: one trace per chunk of rows, every row patched at its own site.

The usual way to teach patching runs one forward pass per patched site, which is latency-bound.
Here a sweep stacks all its patched runs as rows of one batch: row r is prompt pair `pair[r]`,
patched at its own (layer, position) or (layer, head). The source prompts run as extra rows of
the same batch; inside one nnsight trace we visit the layers in order and, at each layer, copy the
site of the rows that patch there from their source row (lib.interventions, the edit engine). Cost:
the same forward passes, batched, 1.04-1.20x plain inference on an H100 (appendix "How fast is
activation patching?", benchmarks/bench_patching.py). Sweeps are tested against one forward pass per
patch with plain hooks on Llama and Gemma 3 (tests/test_patching.py); the edit engine and every module
path, on all nine families lib.arch lists (tests/test_families.py).

    from lib.interventions import Run
    from lib.metrics import prob_metric
    from lib.patching import patch_sweep, window_sweep
    clean = encode(tok, prompts)                              # or Run(enc, embed_delta=noise)
    corrupt = Run(clean, embed_delta=noise)                   # ROME: noise on the subject
    res = patch_sweep(model, clean, corrupt, "resid_pre", prob_metric(answer))  # denoising
    res.values          # [pair, layer, position] metric after patching
    res.recovery()      # (value - corrupt) / (clean - corrupt), per pair
    res.frame           # tidy: site, direction, pair, layer, position, head, token, value, ...
    patch_sweep(model, clean, corrupt, "head", metric, positions=[-1])  # layer x head, last token
    patch_sweep(..., direction="noise")                       # corrupt activations into clean
    window_sweep(model, clean, corrupt, "mlp_out", metric, window=6, positions=pos)  # ROME's windows

Ablation sweeps (each component alone, batched the same way) are in lib.ablation.

Taught in chapter 02 (activation patching, ROME's windowed restoration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch
from lib.interventions import Edit, Positions, Run, _run_with_edits, as_run, length_groups, position_index
from lib.metrics import Metric

DIRECTIONS = ("denoise", "noise")


@dataclass
class PatchResult:
    """A sweep's metric per pair, layer and index (position or head), with clean/corrupt baselines."""

    values: Float[Tensor, "pair layer index"]
    clean: Float[Tensor, " pair"]
    corrupt: Float[Tensor, " pair"]
    site: str
    direction: str
    layers: list[int]
    index: Int[Tensor, "pair index"]  # absolute position per pair, or the head number
    tokens: list[list[str]] = field(repr=False, default_factory=list)  # per pair, per index
    windows: list[list[int]] | None = None  # window_sweep: the layers restored together for each entry of `layers`

    def recovery(self) -> Float[Tensor, "pair layer index"]:
        """(value - corrupt) / (clean - corrupt): 1 = the clean run's metric, 0 = the corrupt run's."""
        gap = (self.clean - self.corrupt)[:, None, None]
        return (self.values - self.corrupt[:, None, None]) / gap

    @property
    def frame(self) -> pd.DataFrame:
        """Tidy rows (site, direction, pair, layer, position, head, token, value, clean, corrupt, recovery)."""
        n_pair, n_layer, n_index = self.values.shape
        pair, layer, slot = np.meshgrid(np.arange(n_pair), np.arange(n_layer), np.arange(n_index), indexing="ij")
        pair, layer, slot = pair.ravel(), layer.ravel(), slot.ravel()
        index = self.index.cpu().numpy()[pair, slot]
        is_head = self.site == "head"
        missing = pd.array([pd.NA] * len(index), dtype="Int64")
        return pd.DataFrame({
            "site": self.site, "direction": self.direction, "pair": pair,
            "layer": np.asarray(self.layers)[layer],
            "position": missing if is_head else pd.array(index, dtype="Int64"),
            "head": pd.array(index, dtype="Int64") if is_head else missing,
            "token": [self.tokens[p][s] for p, s in zip(pair, slot)] if self.tokens else "",
            "value": self.values.cpu().numpy().ravel(),
            "clean": self.clean.cpu().numpy()[pair], "corrupt": self.corrupt.cpu().numpy()[pair],
            "recovery": self.recovery().cpu().numpy().ravel(),
        })


def auto_chunk_size(model, seq: int, fraction: float = 0.25, cap: int = 4096) -> int:
    """Rows per trace that fit in `fraction` of free memory (GPU if the model is on one, else RAM)."""
    arch, device = Arch(model), torch.device(model.device)
    d_mlp = getattr(arch.config, "intermediate_size", None) or 4 * arch.d_model
    per_row = 4 * (seq * (8 * arch.d_model + 3 * d_mlp + 2 * arch.n_heads * seq) + 2 * arch.vocab_size)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil
        free = psutil.virtual_memory().available
    return int(max(1, min(cap, fraction * free // per_row)))


def _rows(n_pair: int, n_layer: int, n_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pair, layer slot, index slot) of every patched run, pair-major."""
    grid = torch.cartesian_prod(torch.arange(n_pair), torch.arange(n_layer), torch.arange(n_index))
    return grid[:, 0], grid[:, 1], grid[:, 2]


def _sweep_edits(site: str, layers: list[int], pair: Tensor, layer_slot: Tensor, index_slot: Tensor,
                 index: Tensor, head_pos: Tensor | None, row0: int, source: Tensor | None,
                 src_row: Tensor | None, windows: list[list[int]] | None = None) -> list[Edit]:
    """One Edit per layer present in a chunk: rows row0.. patch their own site, with values from
    `source` [pair, layer, pos, ...] or from batch row `src_row[pair]` (index tensors stay on CPU).
    With `windows` (source rows only), slot s patches every layer of windows[s] at once."""
    if windows is not None:
        return [Edit(e.site, layer, e.rows, e.pos, None, e.heads, src_rows=e.src_rows)
                for e in _sweep_edits(site, list(range(len(windows))), pair, layer_slot, index_slot, index,
                                      head_pos, row0, None, src_row)
                for layer in windows[e.layer]]
    edits = []
    for slot in layer_slot.unique().tolist():
        rows = (layer_slot == slot).nonzero()[:, 0]
        p, s = pair[rows], index_slot[rows]
        heads = index[p, s] if site == "head" else None
        pos = head_pos[p] if site == "head" else index[p, s][:, None]
        values, src = None, None if src_row is None else src_row[p]
        if source is not None:
            dev = source.device
            values = source[(p[:, None].to(dev), slot, pos.to(dev)) + (() if heads is None else (heads[:, None].to(dev),))]
        edits.append(Edit(site, layers[slot], rows + row0, pos, values, heads, src_rows=src))
    return edits


def _concat(runs: Sequence[Run]) -> Run:
    """Stack runs along the batch (embedding noise zero where a run has none)."""
    enc = {k: torch.cat([r.enc[k] for r in runs]) for k in runs[0].enc}
    if all(r.embed_delta is None for r in runs):
        return Run(enc)
    like = next(r.embed_delta for r in runs if r.embed_delta is not None)
    deltas = [r.embed_delta if r.embed_delta is not None else like.new_zeros(r.shape[0], *like.shape[1:])
              for r in runs]
    return Run(enc, torch.cat(deltas))


@torch.no_grad()
def _sweep(model, target: Run, site: str, metric: Metric, layers: list[int], index: Tensor,
           head_pos: Tensor | None, chunk_size: int | None, source: Tensor | None = None,
           source_run: Run | None = None, windows: list[list[int]] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Metric of every (pair, layer, index) row, chunk by chunk, one trace each; and the metric of
    the unpatched source and target runs (NaN without `source_run`).

    With `source_run`, each chunk's batch is [source prompts, target prompts, patched rows]: rows
    copy their site from the source prompt's row at the same layer, so no activations are stored."""
    n_pair, seq = target.shape
    pair_of, layer_of, index_of = _rows(n_pair, len(layers), index.shape[1])
    per_pair = len(layers) * index.shape[1]
    chunk = chunk_size or auto_chunk_size(model, seq)
    values, base = torch.full((len(pair_of),), float("nan")), torch.full((2, n_pair), float("nan"))
    mask = target.enc["attention_mask"]
    if source_run is not None:
        mask = torch.maximum(mask, source_run.enc["attention_mask"])
    for group in length_groups(mask):  # prompts of similar length together: less padding to run
        rows = (group[:, None] * per_pair + torch.arange(per_pair)).flatten()  # their rows, pair-major
        for start in range(0, len(rows), chunk):
            r = rows[start:start + chunk]
            p = pair_of[r]
            run, row0, src_row = target.select(p), 0, None
            if source_run is not None:
                used = p.unique()
                src_row = torch.zeros(n_pair, dtype=torch.long)
                src_row[used] = torch.arange(len(used))
                run, row0 = _concat([source_run.select(used), target.select(used), run]), 2 * len(used)
            edits = _sweep_edits(site, layers, p, layer_of[r], index_of[r], index, head_pos, row0, source, src_row,
                                 windows)
            logits = _run_with_edits(model, run, edits)[:, -1]
            if source_run is not None:
                u = len(used)
                both = metric(logits[:row0], torch.cat([used, used]).to(logits.device)).float().cpu()
                base[:, used] = both.view(2, u)
            values[r] = metric(logits[row0:], p.to(logits.device)).float().cpu()
    return values.view(n_pair, len(layers), index.shape[1]), base[0], base[1]


def _sweep_index(arch: Arch, site: str, positions: Positions, heads: Sequence[int] | None,
                 batch: int, seq: int, device) -> tuple[Tensor, Tensor | None]:
    """(index [pair, k] swept over, positions [pair, m] every head row is patched at, or None)."""
    if site != "head":
        return position_index(positions, batch, seq, device), None
    heads = list(range(arch.n_heads)) if heads is None else list(heads)
    index = torch.as_tensor(heads, dtype=torch.long, device=device)[None].expand(batch, -1)
    return index, position_index(positions, batch, seq, device)


def _tokens(tokenizer, enc: dict, site: str, index: Tensor) -> list[list[str]]:
    if site == "head" or tokenizer is None:
        return [[""] * index.shape[1] for _ in range(index.shape[0])]
    ids = enc["input_ids"].gather(1, index.to(enc["input_ids"].device)).tolist()
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


@torch.no_grad()
def patch_sweep(model, clean: Run | dict, corrupt: Run | dict, site: str, metric: Metric,
                direction: str = "denoise", layers: Sequence[int] | None = None,
                positions: Positions = None, heads: Sequence[int] | None = None,
                chunk_size: int | None = None) -> PatchResult:
    """Patch every (layer, position) — or (layer, head) for site='head' — of every prompt pair.

    denoise: clean activations into the corrupt run; noise: corrupt activations into the clean run.
    `clean` and `corrupt` must have the same shape (encode them together so padding agrees).
    Non-head sites sweep `positions`; 'head' sweeps `heads` (default all query heads), each row
    patching its head at all of `positions` at once. Chunk size defaults to what fits in memory.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    clean, corrupt, arch = as_run(clean, model.device), as_run(corrupt, model.device), Arch(model)
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean and corrupt batches differ in shape: {clean.shape} vs {corrupt.shape}")
    layers = list(range(arch.n_layers)) if layers is None else [i % arch.n_layers for i in layers]
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    index, head_pos = _sweep_index(arch, site, positions, heads, *clean.shape, "cpu")
    values, base_source, base_target = _sweep(model, target, site, metric, layers, index, head_pos, chunk_size,
                                              source_run=source)
    base_clean, base_corrupt = (base_source, base_target) if direction == "denoise" else (base_target, base_source)
    return PatchResult(values, base_clean, base_corrupt, site, direction, layers, index,
                       _tokens(model.tokenizer, clean.enc, site, index))


def rome_windows(n_layers: int, window: int, centres: Sequence[int] | None = None,
                 exclude: Sequence[int] = ()) -> list[list[int]]:
    """The layers ROME restores together around each centre i: max(0, i - window//2) up to
    i + ceil(window/2) - 1, clipped to the model (kmeng01/rome, causal_trace.py), less `exclude`."""
    centres = range(n_layers) if centres is None else centres
    return [[j for j in range(max(0, i - window // 2), min(n_layers, i - (-window // 2))) if j not in exclude]
            for i in centres]


@torch.no_grad()
def window_sweep(model, clean: Run | dict, corrupt: Run | dict, site: str, metric: Metric, window: int,
                 centres: Sequence[int] | None = None, exclude: Sequence[int] = (),
                 direction: str = "denoise", positions: Positions = None, heads: Sequence[int] | None = None,
                 chunk_size: int | None = None) -> PatchResult:
    """`patch_sweep` where the row for centre i patches `site` at every layer of ROME's window around i
    at once (`rome_windows`; layers in `exclude` are never patched). `layers` of the result are the
    centres, `windows` the layers each one restored; one batched trace per chunk, as `patch_sweep`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    clean, corrupt, arch = as_run(clean, model.device), as_run(corrupt, model.device), Arch(model)
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean and corrupt batches differ in shape: {clean.shape} vs {corrupt.shape}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected a positive number of layers, got {window!r}")
    centres = list(range(arch.n_layers)) if centres is None else [i % arch.n_layers for i in centres]
    windows = rome_windows(arch.n_layers, window, centres, [i % arch.n_layers for i in exclude])
    source, target = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
    index, head_pos = _sweep_index(arch, site, positions, heads, *clean.shape, "cpu")
    values, base_source, base_target = _sweep(model, target, site, metric, centres, index, head_pos, chunk_size,
                                              source_run=source, windows=windows)
    base_clean, base_corrupt = (base_source, base_target) if direction == "denoise" else (base_target, base_source)
    return PatchResult(values, base_clean, base_corrupt, site, direction, centres, index,
                       _tokens(model.tokenizer, clean.enc, site, index), windows)
