"""Attention patterns of every layer and head, and the per-head scores chapters rank heads by.

`attention_patterns(model, enc)` runs one nnsight trace with the model switched to eager attention
(the fused SDPA kernels never materialise the weights) and returns softmax weights per query head,
so grouped-query heads that share a key/value head still get their own pattern.

    with torch.no_grad():
        pattern = attention_patterns(model, enc)          # [batch, layer, head, q, k]
    induction_score(pattern, period=50, prefix=1)         # [batch, layer, head]

Inside your own trace, `head_diagonal_score(attn.output[1], offset, first_query)` scores one layer's
heads without keeping its pattern (a [batch, head] tensor leaves the trace).

Taught in chapter 03 (induction and previous-token scores); chapter 05 uses attention to a position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import nnsight
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch
from lib.devices import returns_cpu, to_device


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """Run `model` with transformers' eager attention inside the block, restoring the old one after."""
    config = Arch(model).config  # one config object, shared by every attention module and the mask code
    previous = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = previous


@returns_cpu
@torch.no_grad()
def attention_patterns(model, enc: dict, layers: Sequence[int] | None = None
                       ) -> Float[Tensor, "batch layer head q k"]:
    """Softmax attention weights of every query head in `layers` (default all), in one trace.

    `enc` is a batch from `lib.data.encode`. Rows and columns of padding positions are zero. On the CPU.
    """
    arch, enc = Arch(model), to_device(enc, model.device)
    layers = list(range(arch.n_layers)) if layers is None else list(layers)
    ordered = sorted(set(layers))  # a trace must visit modules in execution order
    with eager_attention(model), model.trace(enc) as tracer:
        weights = nnsight.save([arch.attn(i).output[1] for i in ordered])
        tracer.stop()  # nothing after the last requested layer is needed (no vocabulary-sized logits)
    pattern = torch.stack([weights[ordered.index(i)] for i in layers], dim=1).float()
    mask = enc["attention_mask"].to(pattern.device, pattern.dtype)
    return pattern * mask[:, None, None, :, None] * mask[:, None, None, None, :]


def diagonal_score(pattern: Float[Tensor, "batch layer head q k"], offset: int, first_query: int = 0
                   ) -> Float[Tensor, "batch layer head"]:
    """Mean attention from each query q >= first_query to key q - offset (rows assumed unpadded)."""
    if offset < 0 or first_query < offset or first_query >= pattern.shape[-2]:
        raise ValueError(f"need 0 <= offset <= first_query < seq_len, got {offset=}, {first_query=}")
    diag = pattern.diagonal(offset=-offset, dim1=-2, dim2=-1)  # element j is pattern[..., j + offset, j]
    return diag[..., first_query - offset:].mean(-1)


def head_diagonal_score(weights: Float[Tensor, "batch head q k"], offset: int, first_query: int = 0
                        ) -> Float[Tensor, "batch head"]:
    """`diagonal_score` of one layer's weights, as a trace sees them (`attn.output[1]`).

    Called inside a trace, it lets a [batch, head] score leave the trace instead of the
    [batch, head, q, k] pattern: a layer-by-layer score of every head costs no pattern memory.
    """
    return diagonal_score(weights[:, None], offset, first_query)[:, 0]


def induction_score(pattern: Float[Tensor, "batch layer head q k"], period: int, prefix: int = 0
                    ) -> Float[Tensor, "batch layer head"]:
    """Attention from each token of the repeats to the token after its previous occurrence.

    Rows are `prefix` tokens (e.g. BOS) then a block of `period` tokens repeated; query q (in a
    repeat) should attend to key q - period + 1 (Olsson et al.'s induction score).
    """
    return diagonal_score(pattern, offset=period - 1, first_query=prefix + period)


def previous_token_score(pattern: Float[Tensor, "batch layer head q k"], first_query: int = 1
                         ) -> Float[Tensor, "batch layer head"]:
    """Mean attention from each query q >= first_query to the token just before it."""
    return diagonal_score(pattern, offset=1, first_query=first_query)


def attention_to_position(pattern: Float[Tensor, "batch layer head q k"], position: int | Int[Tensor, "batch"],
                          attention_mask: Int[Tensor, "batch seq"] | None = None,
                          ) -> Float[Tensor, "batch layer head"]:
    """Mean attention each head puts on key `position` (per row), over real queries at or after it."""
    batch, _, _, seq, _ = pattern.shape
    pos = torch.as_tensor(position, device=pattern.device).expand(batch)
    keys = pattern.gather(-1, pos.view(batch, 1, 1, 1, 1).expand(*pattern.shape[:-1], 1))[..., 0]
    queries = torch.arange(seq, device=pattern.device)[None, :] >= pos[:, None]  # [batch, q]
    if attention_mask is not None:
        queries = queries & attention_mask.to(pattern.device).bool()
    weight = queries.to(pattern.dtype)[:, None, None, :]
    return (keys * weight).sum(-1) / weight.sum(-1).clamp(min=1)
