"""The edit engine: one forward pass (one nnsight trace) with activations overwritten at chosen sites.

Every intervention in the book is a list of `Edit`s applied in one trace: patching (lib.patching),
ablation (lib.ablation), steering and entry edits (lib.activations). An `Edit` overwrites one site at
one layer, for some batch rows at some positions (and query heads), with given values, with the same
site of other rows of the same batch (`src_rows`: how a sweep runs its source prompts alongside the
patched rows), or only within a subspace (`basis`).

Sites (TransformerLens names): `resid_pre`, `attn_out`, `head` (a query head's output before
the output projection, i.e. `z`; grouped-query attention shares keys/values, not outputs, so
each of the `n_heads` query heads has its own slice), `mlp_out`, `resid_post`; for edits (not yet for
the sweeps, whose references do not know it) also `mlp_hidden`, the MLP's hidden activation (the input
of its down-projection, d_mlp wide; chapter 11).

    from lib.interventions import Edit, Run, collect, run_with_edits
    run = Run(encode(tok, prompts), embed_delta=noise)      # optional noise on the token embeddings
    acts, last_logits = collect(model, run, "resid_pre")     # [batch, layer, pos, d_model], [batch, vocab]
    edit = Edit("head", 9, rows=torch.arange(b), pos=pos, values=None, heads=h, src_rows=src)
    logits = run_with_edits(model, run, [edit])              # [batch, 1, vocab] (last_only)

Positions follow `encode`'s left padding: index -1 is every row's last token. When only the last
position is read, `run_with_edits` drops the leading columns that are padding in every row
(`trim_padding`), and the sweeps run prompts grouped by length (`length_groups`), so short prompts
do not pay for the longest one's padding. Wherever a
`positions` argument appears it may be None (all), a list of ints (the same for every row) or an
int tensor [batch, m] (per row, e.g. each prompt's last subject token).

Taught in chapter 02 (activation patching writes one edit out in full before using the engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import nnsight
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch, first
from lib.devices import returns_cpu, to_device

SITES = ("resid_pre", "head", "attn_out", "mlp_out", "resid_post")  # execution order within a layer
EDIT_SITES = ("resid_pre", "head", "attn_out", "mlp_hidden", "mlp_out", "resid_post")  # SITES + mlp_hidden, in order
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
    `basis` [d, r] (orthonormal columns) only the component in span(basis) is replaced: `values`
    [k, m, r] are its new coordinates, or with `src_rows` the source rows' component is taken
    (subspace interchange, as distributed alignment search patches)."""

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
    if site == "mlp_hidden":
        return arch.down_proj(layer).input  # [batch, pos, d_mlp]
    if site == "head":
        z = arch.o_proj(layer).input  # [batch, pos, n_heads * d_head], query-head major
        return z.view(*z.shape[:2], arch.n_heads, arch.d_head)
    raise ValueError(f"site: expected one of {EDIT_SITES}, got {site!r}")


def _write(act: Tensor, edit: Edit) -> None:
    """Apply one edit in place to a live activation."""
    index = (edit.rows[:, None], edit.pos) + (() if edit.heads is None else (edit.heads[:, None],))
    index = tuple(i.to(act.device, non_blocking=True) for i in index)
    basis = None if edit.basis is None else edit.basis.to(act.device, act.dtype)
    if edit.src_rows is not None:  # the same site of other rows: all of it, or its coordinates in span(basis)
        values = act[(edit.src_rows.to(act.device, non_blocking=True)[:, None],) + index[1:]]
        values = values if basis is None else values @ basis
    else:
        values = edit.values.to(act.device, act.dtype)
    if basis is None:
        act[index] = values
        return
    x = act[index]
    act[index] = x + (values - x @ basis) @ basis.T


def _order(edit: Edit) -> tuple[int, int]:
    return edit.layer, EDIT_SITES.index(edit.site)


@returns_cpu
def run_with_edits(model, run: Run | dict, edits: Sequence[Edit], last_only: bool = True
                   ) -> Float[Tensor, "batch pos vocab"]:
    """Logits of one forward pass with `edits` applied (pos = 1 when `last_only`), in one trace; on the CPU."""
    return _run_with_edits(model, run, edits, last_only)


def trim_padding(run: Run, edits: Sequence[Edit] = ()) -> tuple[Run, list[Edit]]:
    """`run` without its leading columns that are padding in every row (left padding; nnsight counts
    positions from each row's first real token, so the logits do not change), and `edits` with their
    positions shifted to match. Columns an edit writes to are kept. A batch of short prompts run
    apart from longer ones then costs what its own tokens cost."""
    mask = run.enc["attention_mask"]
    cut = int((mask == 0).all(0).long().cumprod(0).sum())  # leading all-padding columns
    for e in edits:  # negative positions count from the end and stay valid
        written = e.pos[e.pos >= 0]
        if written.numel():
            cut = min(cut, int(written.min()))
    if cut == 0:
        return run, list(edits)
    enc = {k: v[:, cut:] for k, v in run.enc.items()}
    delta = None if run.embed_delta is None else run.embed_delta[:, cut:]
    return Run(enc, delta), [Edit(e.site, e.layer, e.rows, torch.where(e.pos >= 0, e.pos - cut, e.pos), e.values,
                                  e.heads, e.basis, e.src_rows) for e in edits]


def length_groups(attention_mask: Tensor, ratio: float = 1.25) -> list[Tensor]:
    """Row indices grouped by real (unpadded) length, shortest first: a group starts wherever a row is
    more than `ratio` times the group's shortest. Run group by group (with `trim_padding`), short
    prompts stop paying for the padding up to the longest prompt of the batch."""
    lengths = attention_mask.sum(1).cpu()
    order = lengths.argsort(stable=True)
    groups, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or lengths[order[i]] > ratio * lengths[order[start]]:
            groups.append(order[start:i])
            start = i
    return groups


@torch.no_grad()
def _run_with_edits(model, run: Run | dict, edits: Sequence[Edit], last_only: bool = True) -> Tensor:
    """`run_with_edits` with the logits left on the model's device (sweeps reduce them there)."""
    run, arch = as_run(run, model.device), Arch(model)
    if last_only:  # only the last position is read: the all-padding columns in front can go
        run, edits = trim_padding(run, edits)
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
