"""Does a model use its depth? What each layer writes, what skipping it changes later, how far each
layer's logit lens is from the output (Csordás, Manning and Potts 2025), and LAC's "void" layers
(Shemiranifar 2025), applied as the released code does (an early exit) and as the paper's text says
(void layers' writes removed during the forward pass).

    norms = layer_norms(model, enc)                            # |resid_pre|, |write|, |resid_post| per layer, token
    rel = token_mean(norms.write / norms.pre, enc["attention_mask"])   # [batch, layer], tokens after the first
    fx = skip_effects(model, enc)                              # one trace: every prompt x every skipped layer
    fx.effect                                                  # [prompt, skipped, layer] change of later writes
    active = lac_mask(norms.lac_norms(), alpha=0.8)            # [batch, layer, pos] LAC's activated layers
    exit_layer(active)                                         # the released code's per-token early exit
    logits, void = literal_lac(model, enc, alpha=0.8)          # the paper's text, decided inside one trace
    skip_layers(model, enc, void)                              # literal skipping of any per-token mask
    lens_kl(arch, resid)                                       # KL(output || logit lens) per layer

Every norm statistic can leave the first real token out: from about a third of the depth on it carries
massive activations (chapter 05), which would dominate |h|. Positions follow `encode`'s left padding.

Taught in chapter 13 (do language models use their depth?), which writes the skip out in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nnsight
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lib.arch import Arch
from lib.data import first_token_position
from lib.devices import returns_cpu, to_device
from lib.lens import _unembed

TINY = 1e-6  # floor of a denominator norm


def counted_tokens(attention_mask: Int[Tensor, "batch pos"], skip_first: bool = True) -> Bool[Tensor, "batch pos"]:
    """Real tokens (left padding), without each row's first real token when `skip_first`."""
    real = attention_mask.bool()
    if not skip_first:
        return real
    first = first_token_position(attention_mask)
    return real & (torch.arange(real.shape[1], device=real.device)[None] != first[:, None])


def token_mean(values: Float[Tensor, "batch layer pos"], attention_mask: Int[Tensor, "batch pos"],
               skip_first: bool = True) -> Float[Tensor, "batch layer"]:
    """Mean over each row's counted tokens (see `counted_tokens`), per layer."""
    keep = counted_tokens(attention_mask.to(values.device), skip_first).to(values.dtype)[:, None, :]
    return (values * keep).sum(-1) / keep.sum(-1).clamp(min=1)


@dataclass
class LayerNorms:
    """Per layer and token: |resid_pre|, |what the layer writes| = |resid_post - resid_pre| (attention plus
    MLP, after Gemma's post-block norms: exactly what enters the residual) and |resid_post|."""

    pre: Float[Tensor, "batch layer pos"]
    write: Float[Tensor, "batch layer pos"]
    post: Float[Tensor, "batch layer pos"]
    kept: Float[Tensor, "batch layer k d_model"] | None = None  # resid_post at the `keep` positions

    def lac_norms(self) -> Float[Tensor, "batch layer_plus_1 pos"]:
        """|h| after the embedding and after every layer: what LAC compares."""
        return torch.cat([self.pre[:, :1], self.post], 1)


@returns_cpu
@torch.no_grad()
def layer_norms(model, enc: dict, keep: Int[Tensor, "batch k"] | None = None) -> LayerNorms:
    """`LayerNorms` of every layer and token in one trace (stopped before the unembedding); with `keep`
    (absolute positions per row), also resid_post there, for a logit lens on a few positions."""
    arch, enc = Arch(model), to_device(enc, model.device)
    pre, write, post, kept = [], [], [], []
    rows = torch.arange(enc["input_ids"].shape[0], device=model.device)[:, None]
    with model.trace(dict(enc)) as tracer:
        for layer in range(arch.n_layers):
            h_in, h_out = arch.layers[layer].input, arch.layers[layer].output
            pre.append(nnsight.save(h_in.norm(dim=-1)))
            write.append(nnsight.save((h_out - h_in).norm(dim=-1)))
            post.append(nnsight.save(h_out.norm(dim=-1)))
            if keep is not None:
                kept.append(nnsight.save(h_out[rows, keep.to(model.device)]))
        tracer.stop()
    stack = lambda xs: torch.stack(xs, 1).float()  # noqa: E731
    return LayerNorms(stack(pre), stack(write), stack(post), stack(kept) if keep is not None else None)


@dataclass
class SkipEffects:
    """What skipping one layer (its output := its input, every token but the first) changes later."""

    effect: Float[Tensor, "prompt skipped layer"]  # max over tokens of |change of layer's write| / |its write|
    # (0 at and before the skipped layer: a row is measured before its skip is applied)
    kl: Float[Tensor, "prompt skipped"]  # KL(clean || skipped) of the next-token distribution at the last token
    skipped: list[int]  # the layer each `skipped` index removed


@returns_cpu
@torch.no_grad()
def skip_effects(model, enc: dict, layers: Sequence[int] | None = None) -> SkipEffects:
    """Csordás et al.'s skip-one-layer measurement, all prompts x skipped layers as rows of ONE trace.

    Each prompt gets a clean row and one row per skipped layer. At every layer we compare each row's write
    (resid_post - resid_pre) with its prompt's clean row and keep only the maximum over tokens (the first
    token left out), so [rows, layer] numbers leave the trace, not [rows, layer, pos, d_model] tensors.
    """
    arch, enc = Arch(model), to_device(enc, model.device)
    skipped = list(range(arch.n_layers)) if layers is None else list(layers)
    n, per = enc["input_ids"].shape[0], len(skipped) + 1
    prompt = torch.arange(n, device=model.device).repeat_interleave(per)
    row_skip = torch.tensor([-1] + skipped, device=model.device).repeat(n)  # -1: the clean row
    ref = prompt * per  # each row's clean row
    batch = {k: v[prompt] for k, v in enc.items()}
    counted = counted_tokens(batch["attention_mask"])
    first = ~counted & batch["attention_mask"].bool()  # the first real token keeps its layer output
    effect = []
    with model.trace(batch, logits_to_keep=1):
        for layer in range(arch.n_layers):
            h_in, h_out = arch.layers[layer].input, arch.layers[layer].output
            write = h_out - h_in
            clean = write[ref]
            change = (write - clean).norm(dim=-1) / clean.norm(dim=-1).clamp(min=TINY)
            effect.append(nnsight.save(change.masked_fill(~counted, 0.0).amax(-1)))
            here = (row_skip == layer).nonzero()[:, 0]
            if len(here):
                h_out[here] = torch.where(first[here, :, None], h_out[here], h_in[here])
        logp = model.output.logits[:, -1].float().log_softmax(-1)
        kl = nnsight.save(_kl_rows(logp[ref], logp))
    effect = torch.stack(effect, 1).float().view(n, per, arch.n_layers)[:, 1:]
    return SkipEffects(effect, kl.float().view(n, per)[:, 1:], skipped)


def _kl_rows(ref: Tensor, logp: Tensor, chunk: int = 16) -> Tensor:
    """KL(exp(ref) || exp(logp)) per row of log-probabilities, `chunk` rows at a time (vocabularies are large)."""
    return torch.cat([(ref[i:i + chunk].exp() * (ref[i:i + chunk] - logp[i:i + chunk])).sum(-1)
                      for i in range(0, len(ref), chunk)])


def lac_mask(norms: Float[Tensor, "batch layer_plus_1 pos"], alpha: float = 0.8) -> Bool[Tensor, "batch layer pos"]:
    """LAC's rule per token: with D_l = |h_l| - |h_(l-1)| (h_(-1) the embedding), layer l is *activated* iff
    D_l >= alpha * (max_(k<l) D_k - min_(k<l) D_k); the others are "voids". Layer 0 has no earlier layer
    to compare with and counts as activated (so layer 1 is activated iff it grows the norm at all)."""
    delta = norms[:, 1:] - norms[:, :-1]  # [batch, layer, pos]
    spread = (delta.cummax(1).values - delta.cummin(1).values)[:, :-1]  # over layers k < l, for l >= 1
    later = delta[:, 1:] >= alpha * spread
    return torch.cat([torch.ones_like(later[:, :1]), later], 1)


def exit_layer(active: Bool[Tensor, "batch layer pos"]) -> Int[Tensor, "batch pos"]:
    """The last activated layer per token: where the released LAC code takes the final hidden state from."""
    n_layers = active.shape[1]
    return n_layers - 1 - active.flip(1).int().argmax(1)


def random_voids(counts: Int[Tensor, "batch pos"], n_layers: int, generator: torch.Generator | None = None,
                 first_layer: int = 1) -> Bool[Tensor, "batch layer pos"]:
    """A control for literal skipping: per token, `counts` layers drawn uniformly from [first_layer, n_layers)."""
    batch, seq = counts.shape
    scores = torch.rand(batch, n_layers, seq, generator=generator)
    scores[:, :first_layer] = 2.0  # never drawn
    rank = scores.argsort(1).argsort(1)  # 0 = smallest score
    return rank < counts[:, None, :].to(rank.device)


@returns_cpu
@torch.no_grad()
def skip_layers(model, enc: dict, void: Bool[Tensor, "batch layer pos"]) -> Float[Tensor, "batch vocab"]:
    """Last-token logits with layer l's output := its input wherever void[row, l, pos] (literal skipping)."""
    arch, enc = Arch(model), to_device(enc, model.device)
    void = void.to(model.device)
    with model.trace(dict(enc), logits_to_keep=1):
        for layer in range(arch.n_layers):
            if void[:, layer].any():
                h_in, h_out = arch.layers[layer].input, arch.layers[layer].output
                h_out[:] = torch.where(void[:, layer, :, None], h_in, h_out)
        logits = nnsight.save(model.output.logits[:, -1])
    return logits.float()


@returns_cpu
@torch.no_grad()
def literal_lac(model, enc: dict, alpha: float = 0.8, skip_first: bool = True
                ) -> tuple[Float[Tensor, "batch vocab"], Bool[Tensor, "batch layer pos"]]:
    """LAC as the paper's text describes it: at every layer and token, decide from the norms of *this* run
    (earlier voids already removed) whether the layer is a void, and if so drop its write (output := input).
    Returns the last-token logits and the void mask; the first real token is never skipped (`skip_first`)."""
    arch, enc = Arch(model), to_device(enc, model.device)
    protect = ~counted_tokens(enc["attention_mask"], skip_first)  # first token (and padding): never skipped
    voids, high, low = [], None, None
    with model.trace(dict(enc), logits_to_keep=1):
        for layer in range(arch.n_layers):
            h_in, h_out = arch.layers[layer].input, arch.layers[layer].output
            delta = h_out.norm(dim=-1) - h_in.norm(dim=-1)  # [batch, pos]
            if layer == 0:
                void, high, low = torch.zeros_like(protect), delta, delta
            else:
                void = (delta < alpha * (high - low)) & ~protect
                high, low = torch.maximum(high, delta), torch.minimum(low, delta)
                h_out[:] = torch.where(void[..., None], h_in, h_out)
            voids.append(nnsight.save(void))
        logits = nnsight.save(model.output.logits[:, -1])
    return logits.float(), torch.stack(voids, 1)


@returns_cpu
@torch.no_grad()
def exit_logits(arch: Arch, resid: Float[Tensor, "batch layer d_model"], layer: Int[Tensor, " batch"]
                ) -> Float[Tensor, "batch vocab"]:
    """Logits from each row's resid_post at its own `layer` (final norm and unembedding): an early exit."""
    rows = torch.arange(resid.shape[0], device=resid.device)
    return _unembed(arch, resid[rows, layer.to(resid.device)])


@returns_cpu
@torch.no_grad()
def lens_kl(arch: Arch, resid: Float[Tensor, "batch layer d_model"], chunk: int = 2) -> Float[Tensor, "batch layer"]:
    """KL(output || logit lens at layer l), in nats, with the output the lens of the last layer (which is
    the model's own next-token distribution); vocabulary-sized logits exist for `chunk` rows at a time."""
    out = []
    for start in range(0, resid.shape[0], chunk):
        logp = _unembed(arch, resid[start:start + chunk]).log_softmax(-1)  # [b, layer, vocab]
        out.append(_kl_rows(logp[:, -1:].expand_as(logp).flatten(0, 1), logp.flatten(0, 1)).view(logp.shape[:2]).cpu())
    return torch.cat(out)
