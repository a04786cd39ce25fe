"""Batched activation patching: one trace per chunk of rows, every row patched at its own site.

The usual way to teach patching runs one forward pass per patched site, which is latency-bound.
Here a sweep stacks all its patched runs as rows of one batch: row r is prompt pair `pair[r]`,
patched at its own (layer, position) or (layer, head). The source prompts run as extra rows of
the same batch; inside one nnsight trace we visit the layers in order and, at each layer, copy the
site of the rows that patch there from their source row. Cost: the same forward passes, batched,
1.04-1.20x plain inference on an H100 (appendix "How fast is activation patching?", benchmarks/bench_patching.py).
Tested for Llama and Gemma 3 (tests/test_patching.py); GPT-2 and GPT-NeoX go through lib.arch too
but are untested here.

Sites (TransformerLens names): `resid_pre`, `attn_out`, `head` (a query head's output before
the output projection, i.e. `z`; grouped-query attention shares keys/values, not outputs, so
each of the `n_heads` query heads has its own slice), `mlp_out`, `resid_post`.

    from lib.patching import Run, patch_sweep, prob_metric
    clean = encode(tok, prompts)                              # or Run(enc, embed_delta=noise)
    corrupt = Run(clean, embed_delta=noise)                   # ROME: noise on the subject
    res = patch_sweep(model, clean, corrupt, "resid_pre", prob_metric(answer))  # denoising
    res.values          # [pair, layer, position] metric after patching
    res.recovery()      # (value - corrupt) / (clean - corrupt), per pair
    res.frame           # tidy: site, direction, pair, layer, position, head, token, value, ...
    patch_sweep(model, clean, corrupt, "head", metric, positions=[-1])  # layer x head, last token
    patch_sweep(..., direction="noise")                       # corrupt activations into clean
    window_sweep(model, clean, corrupt, "mlp_out", metric, window=6, positions=pos)  # ROME's windows

Ablations (what later chapters use to knock components out), each one trace, returning logits:

    ablate_heads(model, enc, heads=[(9, 6), (9, 9)], mode="mean")       # [batch, pos, vocab]
    ablate_mlps(model, enc, layers=[3, 4], mode="zero", positions=pos)  # pos: [batch, m] per row
    ablate_directions(model, enc, layer=5, directions=U)                # project U out of resid_pre
    ablate(model, enc, [("head", 9, 6), ("mlp_out", 3)], mode="mean", means=reference_means)
    means = mean_activations(model, reference_enc, "head")             # [layer, head, d_head]
    ablation_sweep(model, enc, "head", metric, mode="mean")            # each head alone, batched
    ablation_sets(model, enc, [[("mlp_out", 3)], [("mlp_out", 5), ("mlp_out", 9)]], metric)  # [set, batch]
    patch(model, target, source, [("head", 9, 6)])                      # fixed set, source -> target

Positions follow `encode`'s left padding: index -1 is every row's last token. Wherever a
`positions` argument appears it may be None (all), a list of ints (the same for every row) or an
int tensor [batch, m] (per row, e.g. each prompt's last subject token).

Taught in chapter 02 (activation patching, ROME's windowed restoration). Taught in chapter 03 (ablation:
zero, mean and resample; chapter 03 writes mean ablation out in full).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby

import nnsight
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch, first
from lib.devices import returns_cpu, to_device

SITES = ("resid_pre", "head", "attn_out", "mlp_out", "resid_post")  # execution order within a layer
DIRECTIONS = ("denoise", "noise")
MODES = ("zero", "mean")
Metric = Callable[[Tensor, Tensor], Tensor]  # (last-token logits [rows, vocab], pair [rows]) -> [rows]
Positions = Sequence[int] | Int[Tensor, "batch m"] | None


@dataclass(frozen=True)
class Run:
    """Inputs of one run: an `encode` batch, plus optional noise added to the token embeddings."""

    enc: dict
    embed_delta: Float[Tensor, "batch pos d_model"] | None = None

    def select(self, rows: Int[Tensor, " rows"]) -> Run:
        """The run of batch rows `rows` (repeats allowed): how a sweep builds its patched batch."""
        enc = {k: v[rows.to(v.device)] for k, v in self.enc.items()}
        delta = None if self.embed_delta is None else self.embed_delta[rows.to(self.embed_delta.device)]
        return Run(enc, delta)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.enc["input_ids"].shape)


def as_run(x: Run | dict, device=None) -> Run:
    """A Run from a Run or an `encode` batch; with `device`, its tensors moved there."""
    run = x if isinstance(x, Run) else Run(x)
    return run if device is None else to_device(run, device)


@dataclass(frozen=True)
class Edit:
    """Overwrite `site` at `layer`, for batch rows `rows` at positions `pos` [k, m] (and query heads
    `heads` [k]), with `values` [k, m, d] — or, with `src_rows` [k], with the same site of those
    rows of the same batch (a sweep runs its source prompts alongside the patched rows). With
    `basis` [d, r] (orthonormal columns) only the component in span(basis) is replaced and
    `values` [k, m, r] are its new coordinates."""

    site: str
    layer: int
    rows: Int[Tensor, " k"]
    pos: Int[Tensor, "k m"]
    values: Float[Tensor, "k m d"] | None
    heads: Int[Tensor, " k"] | None = None
    basis: Float[Tensor, "d_model r"] | None = None
    src_rows: Int[Tensor, " k"] | None = None


def site_tensor(arch: Arch, site: str, layer: int) -> Tensor:
    """The live activation of `site` at `layer` inside a trace; writing into it patches the run."""
    if site == "resid_pre":
        return arch.layers[layer].input
    if site == "resid_post":
        return arch.layers[layer].output
    if site == "attn_out":
        return first(arch.attn_out(layer).output)
    if site == "mlp_out":
        return arch.mlp_out(layer).output
    if site == "head":
        z = arch.o_proj(layer).input  # [batch, pos, n_heads * d_head], query-head major
        return z.view(*z.shape[:2], arch.n_heads, arch.d_head)
    raise ValueError(f"site: expected one of {SITES}, got {site!r}")


def _write(act: Tensor, edit: Edit) -> None:
    """Apply one edit in place to a live activation."""
    index = (edit.rows[:, None], edit.pos) + (() if edit.heads is None else (edit.heads[:, None],))
    index = tuple(i.to(act.device, non_blocking=True) for i in index)
    if edit.src_rows is not None:
        act[index] = act[(edit.src_rows.to(act.device, non_blocking=True)[:, None],) + index[1:]]
        return
    values = edit.values.to(act.device, act.dtype)
    if edit.basis is None:
        act[index] = values
        return
    basis = edit.basis.to(act.device, act.dtype)
    x = act[index]
    act[index] = x + (values - x @ basis) @ basis.T


def _order(edit: Edit) -> tuple[int, int]:
    return edit.layer, SITES.index(edit.site)


@returns_cpu
def run_with_edits(model, run: Run | dict, edits: Sequence[Edit], last_only: bool = True
                   ) -> Float[Tensor, "batch pos vocab"]:
    """Logits of one forward pass with `edits` applied (pos = 1 when `last_only`), in one trace; on the CPU."""
    return _run_with_edits(model, run, edits, last_only)


@torch.no_grad()
def _run_with_edits(model, run: Run | dict, edits: Sequence[Edit], last_only: bool = True) -> Tensor:
    """`run_with_edits` with the logits left on the model's device (sweeps reduce them there)."""
    run, arch = as_run(run, model.device), Arch(model)
    kwargs = {"logits_to_keep": 1} if last_only else {}
    with model.trace(dict(run.enc), **kwargs):
        if run.embed_delta is not None:
            embedded = arch.embed.output
            embedded += run.embed_delta.to(embedded.device, embedded.dtype)
        for (layer, _), group in groupby(sorted(edits, key=_order), key=_order):
            group = list(group)
            act = site_tensor(arch, group[0].site, layer)
            for edit in group:
                _write(act, edit)
        logits = nnsight.save(model.output.logits)
    return logits.float()


@returns_cpu
def collect(model, run: Run | dict, site: str, layers: Sequence[int] | None = None
            ) -> tuple[Float[Tensor, "batch layer pos ..."], Float[Tensor, "batch vocab"]]:
    """Activations of `site` at `layers` (default all) for every position, and last-token logits; on the CPU."""
    return _collect(model, run, site, layers)


@torch.no_grad()
def _collect(model, run: Run | dict, site: str, layers: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
    """`collect` with the results left on the model's device."""
    run, arch = as_run(run, model.device), Arch(model)
    layers = list(range(arch.n_layers)) if layers is None else list(layers)
    ordered = sorted(set(layers))
    with model.trace(dict(run.enc), logits_to_keep=1):
        if run.embed_delta is not None:
            embedded = arch.embed.output
            embedded += run.embed_delta.to(embedded.device, embedded.dtype)
        acts = nnsight.save([site_tensor(arch, site, i).clone() for i in ordered])
        logits = nnsight.save(model.output.logits[:, -1])
    return torch.stack([acts[ordered.index(i)] for i in layers], dim=1), logits.float()


def position_index(positions: Positions, batch: int, seq: int, device=None) -> Int[Tensor, "batch m"]:
    """Normalise a `positions` argument to non-negative per-row indices [batch, m]."""
    if positions is None:
        pos = torch.arange(seq)[None].expand(batch, seq)
    elif torch.is_tensor(positions):
        pos = positions.long().reshape(batch, -1) if positions.dim() == 2 else positions.long()[:, None]
    else:
        pos = torch.as_tensor(list(positions), dtype=torch.long)[None].expand(batch, -1)
    if ((pos < -seq) | (pos >= seq)).any():
        raise ValueError(f"positions: indices must lie in [-{seq}, {seq}), got {pos.tolist()}")
    return (pos % seq).to(device)


# ----------------------------------------------------------------------------- metrics


def prob_metric(answer: Int[Tensor, " pair"]) -> Metric:
    """Probability of each pair's answer token at the last position."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        return logits.softmax(-1).gather(-1, answer.to(logits.device)[pair][:, None])[:, 0]
    return metric


def top1_metric(answer: Int[Tensor, " pair"]) -> Metric:
    """1.0 where the greedy next token is the pair's answer token, else 0.0 (accuracy per row)."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        return (logits.argmax(-1) == answer.to(logits.device)[pair]).float()
    return metric


def logit_diff_metric(answer: Int[Tensor, " pair"], wrong: Int[Tensor, " pair"]) -> Metric:
    """Logit of each pair's answer minus that of its wrong answer, at the last position."""
    def metric(logits: Float[Tensor, "rows vocab"], pair: Int[Tensor, " rows"]) -> Float[Tensor, " rows"]:
        right = logits.gather(-1, answer.to(logits.device)[pair][:, None])[:, 0]
        return right - logits.gather(-1, wrong.to(logits.device)[pair][:, None])[:, 0]
    return metric


# ----------------------------------------------------------------------------- sweeps


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
    pair, layer_slot, index_slot = _rows(n_pair, len(layers), index.shape[1])
    chunk = chunk_size or auto_chunk_size(model, seq)
    out, base = [], torch.full((2, n_pair), float("nan"))
    for start in range(0, len(pair), chunk):
        p = pair[start:start + chunk]
        run, row0, src_row = target.select(p), 0, None
        if source_run is not None:
            used = p.unique()
            src_row = torch.zeros(n_pair, dtype=torch.long)
            src_row[used] = torch.arange(len(used))
            run, row0 = _concat([source_run.select(used), target.select(used), run]), 2 * len(used)
        edits = _sweep_edits(site, layers, p, layer_slot[start:start + chunk], index_slot[start:start + chunk],
                             index, head_pos, row0, source, src_row, windows)
        logits = _run_with_edits(model, run, edits)[:, -1]
        if source_run is not None:
            u = len(used)
            both = metric(logits[:row0], torch.cat([used, used]).to(logits.device)).float().cpu()
            base[:, used] = both.view(2, u)
        out.append(metric(logits[row0:], p.to(logits.device)).float().cpu())
    return torch.cat(out).view(n_pair, len(layers), index.shape[1]), base[0], base[1]


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


# ----------------------------------------------------------------------------- ablation


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
    """Logits of `target` with `components` (as in `ablate`) taken from the `source` run, in one trace."""
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
    per_chunk = max(1, (chunk_size or auto_chunk_size(model, seq)) // batch)
    out = []
    for start in range(0, len(sets), per_chunk):
        block = sets[start:start + per_chunk]
        rows = torch.arange(batch).repeat(len(block))
        edits = []
        for k, components in enumerate(block):
            for c in components:
                e = _component_edit(arch, c, values_of, batch, pos)
                edits.append(Edit(e.site, e.layer, e.rows + k * batch, e.pos, e.values, e.heads))
        logits = _run_with_edits(model, run.select(rows), edits)[:, -1]
        out.append(metric(logits, rows.to(logits.device)).float().cpu().view(len(block), batch))
    return torch.cat(out) if out else torch.empty(0, batch)
