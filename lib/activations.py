"""Massive activations (Sun et al., 2024): per-layer top |entries| of the residual stream vs the
median, what each block writes there, setting chosen entries to a value, and perplexity.

    resid = residual_states(model, enc)                       # [batch, layer, pos, d_model]
    top = top_entries(resid, enc["attention_mask"], k=3)      # values/feature/position, median
    logits = set_entries(model, enc, {11: [507]}, values)     # massive entries -> zero or mean
    perplexity(logits, enc)                                   # exp(mean next-token NLL)
    fx = entry_effects(model, enc, {11: [507]}, values, pos)  # per-row NLL and attention to the first token

Taught in chapter 05 (attention sinks and massive activations), which writes the search out in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import nnsight
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch, first
from lib.attention import eager_attention
from lib.data import first_token_position
from lib.devices import returns_cpu, to_device
from lib.interventions import Edit, _write, run_with_edits, site_tensor


@returns_cpu
@torch.no_grad()
def residual_states(model, enc: dict) -> Float[Tensor, "batch layer pos d_model"]:
    """resid_post of every layer for every position, in one trace; on the CPU."""
    arch = Arch(model)
    with model.trace(to_device(enc, model.device), logits_to_keep=1):
        states = nnsight.save([arch.layers[i].output for i in range(arch.n_layers)])
    return torch.stack(states, 1).float()


@returns_cpu
@torch.no_grad()
def block_writes(model, enc: dict, layer: int) -> dict[str, Float[Tensor, "batch pos d_model"]]:
    """resid_pre, attn_out, mlp_out and resid_post of one layer, in one trace (what each block adds); on the CPU."""
    arch = Arch(model)
    with model.trace(to_device(enc, model.device), logits_to_keep=1):
        pre = nnsight.save(arch.layers[layer].input.clone())
        attn = nnsight.save(first(arch.attn_out(layer).output).clone())
        mlp = nnsight.save(arch.mlp_out(layer).output.clone())
        post = nnsight.save(arch.layers[layer].output.clone())
    return {"resid_pre": pre.float(), "attn_out": attn.float(), "mlp_out": mlp.float(), "resid_post": post.float()}


@dataclass
class TopEntries:
    """The k largest |entries| of each row's hidden states per layer, and the median |entry|."""

    values: Float[Tensor, "batch layer k"]  # |entry|, largest first
    feature: Int[Tensor, "batch layer k"]  # hidden dimension of each entry
    position: Int[Tensor, "batch layer k"]  # token index within the text (0 = first real token)
    median: Float[Tensor, "batch layer"]  # median |entry| over the row's real tokens and dimensions

    @property
    def ratio(self) -> Float[Tensor, "batch layer"]:
        """Largest |entry| over the median |entry| (Sun et al.'s criterion uses 100x)."""
        return self.values[..., 0] / self.median


def top_entries(resid: Float[Tensor, "batch layer pos d_model"], attention_mask: Int[Tensor, "batch pos"],
                k: int = 3) -> TopEntries:
    """Top-k |entries| per row and layer (padding excluded), with their feature and token index."""
    batch, n_layer, seq, d = resid.shape
    real = attention_mask.to(resid.device).bool()
    size = resid.abs().masked_fill(~real[:, None, :, None], -1.0)
    values, flat = size.flatten(2).topk(k, dim=-1)
    offset = first_token_position(attention_mask).to(resid.device)[:, None, None]
    median = torch.stack([size[b][:, real[b]].flatten(1).median(-1).values for b in range(batch)])
    return TopEntries(values, flat % d, flat // d - offset, median)


def entry_edits(d_model: int, features: dict[int, list[int]], values: dict[int, Tensor],
                positions: Int[Tensor, "batch m"]) -> list[Edit]:
    """lib.patching Edits that set resid_post[layer][row, positions[row], features[layer]] to `values[layer]`."""
    batch, m = positions.shape
    rows = torch.arange(batch)
    edits = []
    for layer, feats in features.items():
        basis = torch.eye(d_model)[:, feats]  # orthonormal: one column per feature
        new = values[layer].float().view(1, 1, -1).expand(batch, m, len(feats))
        edits.append(Edit("resid_post", layer, rows, positions.long(), new, basis=basis))
    return edits


def set_entries(model, enc: dict, features: dict[int, list[int]], values: dict[int, Tensor],
                positions: Int[Tensor, "batch m"]) -> Float[Tensor, "batch pos vocab"]:
    """All-position logits with resid_post[layer][row, positions[row], features[layer]] overwritten.

    `values[layer]` is [len(features[layer])] (the same for every row and position), e.g. zeros or
    the entries' mean over inputs. Only those coordinates change (lib.patching's Edit with a basis).
    """
    edits = entry_edits(Arch(model).d_model, features, values, positions)
    return run_with_edits(model, enc, edits, last_only=False)


NLL_BLOCK = 2 ** 26  # logits unembedded at once when scoring next-token NLL (256 MB in float32)


@dataclass
class EntryEffects:
    """What one intervention on hidden-state entries does, per row: language modelling and attention sinks."""

    nll: Float[Tensor, " batch"]  # summed next-token NLL over the row's real tokens
    count: Int[Tensor, " batch"]  # how many tokens were scored
    to_first: Float[Tensor, "batch layer head"]  # mean attention from later real queries to the first real token


@returns_cpu
@torch.no_grad()
def entry_effects(model, enc: dict, features: dict[int, list[int]], values: dict[int, Tensor],
                  positions: Int[Tensor, "batch m"]) -> EntryEffects:
    """`set_entries`'s intervention (empty `features`: none), reduced inside one eager-attention trace to
    per-row NLL and per-head attention to the first token, so no [batch, pos, vocab] logits are kept."""
    arch, enc = Arch(model), to_device(enc, model.device)
    edits = entry_edits(arch.d_model, features, values, positions)
    mask = enc["attention_mask"].bool()
    first_pos = first_token_position(enc["attention_mask"]).to(mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)
    queries = (mask & (torch.arange(mask.shape[1], device=mask.device)[None] > first_pos[:, None])).float()
    to_first = []  # filled inside the trace (a list made in the trace would not come out of it)
    with eager_attention(model), model.trace(dict(enc)) as tracer:
        for layer in range(arch.n_layers):  # a trace visits modules in execution order: attention, then resid_post
            column = arch.attn(layer).output[1][rows, :, :, first_pos]  # [batch, head, q]: weight on the first token
            to_first.append(nnsight.save((column * queries[:, None]).sum(-1) / queries.sum(-1)[:, None]))
            for edit in (e for e in edits if e.layer == layer):
                _write(site_tensor(arch, "resid_post", layer), edit)
        final = nnsight.save(arch.final_norm.output)  # [batch, pos, d_model]
        tracer.stop()  # the unembedding runs below, a few rows at a time
    nll, count = _blockwise_nll(arch, final, enc)
    return EntryEffects(nll.float(), count, torch.stack(to_first, 1).float())


def _blockwise_nll(arch: Arch, final: Tensor, enc: dict) -> tuple[Tensor, Tensor]:
    """`token_nll` of the logits of final-norm outputs [batch, pos, d_model], unembedded a block of rows
    at a time (about 2^26 logits each), so a large vocabulary never needs [batch, pos, vocab] at once."""
    head, cap = arch.hf_module("unembed"), arch.softcap()
    block = max(1, NLL_BLOCK // (final.shape[1] * arch.vocab_size))
    nll, count = [], []
    for start in range(0, final.shape[0], block):
        logits = head(final[start:start + block].to(head.weight.dtype)).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        part = {k: v[start:start + block] for k, v in enc.items()}
        n, c = token_nll(logits, part)
        nll.append(n)
        count.append(c)
    return torch.cat(nll), torch.cat(count)


def token_nll(logits: Float[Tensor, "batch pos vocab"], enc: dict) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Summed next-token negative log-likelihood per row over real tokens, and how many were scored."""
    ids, mask = enc["input_ids"].to(logits.device), enc["attention_mask"].to(logits.device).bool()
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    scored = mask[:, 1:] & mask[:, :-1]  # predict a real token from a real token
    return -(logp * scored).sum(-1), scored.sum(-1)


def perplexity(logits: Float[Tensor, "batch pos vocab"], enc: dict) -> float:
    """exp of the mean next-token NLL over all real tokens of the batch."""
    nll, count = token_nll(logits, enc)
    return float(torch.exp(nll.sum() / count.sum()))
