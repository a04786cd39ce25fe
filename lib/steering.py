"""Reading and writing directions in the residual stream: difference-of-means directions, and
adding a vector to a layer's output (resid_post) during a forward pass or a greedy generation.

    dirs = scenario_centered_means(resid)                  # [emotion, layer, d] from [scenario, emotion, layer, d]
    truth = diff_of_means(states, labels)                  # [layer, d]: mean(label 1) - mean(label 0)
    logits = steered_logits(model, prompts, layer, vecs)   # last-token logits, vecs[r] added to row r
    out = steered_generate(model, prompts, layer, vecs, max_new_tokens=20)
    ppl = continuation_perplexity(model, out)              # fluency under the unsteered model
    logits = window_steered_logits(model, prompts, layers, vecs, positions=[-1], rms=True)
                                                           # a layer window, chosen positions, RMS-scaled

Each row of a batch carries its own vector, so a sweep over directions and strengths is one batch
(rows = prompt x direction x strength), not one run per setting. The vector is added at every
position, including the prompt; during generation it is added at every step, so cached keys and
values were computed from steered states too. `window_steered_logits` adds the vector only at chosen
positions, at every layer of a window, optionally scaled by each position's own RMS (the emotion
paper's steering script), in one forward pass.

Taught in chapter 09: difference-of-means directions and steering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nnsight
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lib.arch import Arch
from lib.data import encode


def scenario_centered_means(resid: Float[Tensor, "scenario emotion layer d"]
                            ) -> Float[Tensor, "emotion layer d"]:
    """Per emotion and layer, the mean over scenarios of each state minus its scenario's mean state.

    Removing each scenario's mean (over emotions) cancels what the situation contributes, leaving
    what the emotion adds: a context-agnostic emotion direction (Wang et al. 2025).
    """
    return (resid - resid.mean(1, keepdim=True)).mean(0)


def diff_of_means(states: Float[Tensor, "item layer d"], labels: Bool[Tensor, "item"]
                  ) -> Float[Tensor, "layer d"]:
    """Mean state of the positive items minus mean of the negative ones, per layer."""
    labels = labels.bool().to(states.device)
    return states[labels].mean(0) - states[~labels].mean(0)


def cosine_scores(states: Float[Tensor, "item layer d"], directions: Float[Tensor, "k layer d"],
                  center: Float[Tensor, "layer d"]) -> Float[Tensor, "item layer k"]:
    """Cosine similarity of each centred state with each direction, per layer (a nearest-direction classifier)."""
    x = torch.nn.functional.normalize(states - center.to(states.device), dim=-1)
    d = torch.nn.functional.normalize(directions.to(states.device), dim=-1)
    return torch.einsum("ild,kld->ilk", x, d)


@torch.no_grad()
def steered_logits(model, prompts: Sequence[str], layer: int, vectors: Float[Tensor, "batch d_model"],
                   batch_size: int = 32) -> Float[Tensor, "batch vocab"]:
    """Last-token logits with `vectors[r]` added to row r's resid_post at `layer`, at every position."""
    arch, out = Arch(model), []
    for start in range(0, len(prompts), batch_size):
        enc = encode(model.tokenizer, prompts[start:start + batch_size], model.device)
        vec = vectors[start:start + batch_size, None, :]
        with model.trace(enc, logits_to_keep=1):
            hidden = arch.layers[layer].output
            hidden += vec.to(hidden.device, hidden.dtype)
            logits = nnsight.save(model.output.logits[:, -1])
        out.append(logits.float().cpu())
    return torch.cat(out)


@dataclass
class Generation:
    """Greedy continuations: left-padded prompt+new ids, the prompt part's mask, and decoded texts."""

    ids: Int[Tensor, "batch seq"]
    prompt_mask: Int[Tensor, "batch prompt"]
    texts: list[str]

    @property
    def n_prompt(self) -> int:
        return self.prompt_mask.shape[1]


@torch.no_grad()
def steered_generate(model, prompts: Sequence[str], layer: int, vectors: Float[Tensor, "batch d_model"],
                     max_new_tokens: int = 20, batch_size: int = 64) -> list[Generation]:
    """Greedy generation with `vectors[r]` added to row r's resid_post at `layer` on every step.

    One nnsight generate per chunk of `batch_size` rows; returns one Generation per chunk (their
    prompt lengths differ). `tracer.iter[:max_new_tokens]` visits the prefill step and each new token.
    """
    arch, chunks = Arch(model), []
    for start in range(0, len(prompts), batch_size):
        enc = encode(model.tokenizer, prompts[start:start + batch_size], model.device)
        vec = vectors[start:start + batch_size, None, :]
        with model.generate(enc, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=model.tokenizer.pad_token_id) as tracer:
            for _ in tracer.iter[:max_new_tokens]:
                hidden = arch.layers[layer].output
                hidden += vec.to(hidden.device, hidden.dtype)
            ids = nnsight.save(tracer.result)
        new = ids[:, enc["input_ids"].shape[1]:]
        texts = model.tokenizer.batch_decode(new, skip_special_tokens=True)
        chunks.append(Generation(ids.cpu(), enc["attention_mask"].cpu(), texts))
    return chunks


def continuation_mask(gen: Generation, eos_id: int | None) -> Bool[Tensor, "batch new"]:
    """Which generated tokens count: those up to and including the first end-of-sequence token."""
    new = gen.ids[:, gen.n_prompt:]
    if eos_id is None:
        return torch.ones_like(new, dtype=torch.bool)
    ended_before = (new == eos_id).int().cumsum(1) - (new == eos_id).int()
    return ended_before == 0


@torch.no_grad()
def continuation_perplexity(model, gen: Generation) -> Float[Tensor, "batch"]:
    """Perplexity of each row's generated tokens under the unsteered model (a fluency measure)."""
    ids = gen.ids.to(model.device)
    mask = torch.cat([gen.prompt_mask, torch.ones_like(gen.ids[:, gen.n_prompt:])], 1).to(model.device)
    n_new = gen.ids.shape[1] - gen.n_prompt
    with model.trace({"input_ids": ids, "attention_mask": mask}, logits_to_keep=n_new + 1):
        logits = nnsight.save(model.output.logits)  # [batch, n_new + 1, vocab]: only the positions we score
    logprobs = logits[:, :-1].float().log_softmax(-1).cpu()
    target = gen.ids[:, gen.n_prompt:]
    token_lp = logprobs.gather(-1, target[..., None])[..., 0]
    keep = continuation_mask(gen, model.tokenizer.eos_token_id).float()
    return torch.exp(-(token_lp * keep).sum(1) / keep.sum(1).clamp(min=1))


def _window_vectors(vectors: Tensor, n_layers: int) -> Tensor:
    """[batch, d] (one vector for every layer) or [batch, layer, d] -> [batch, layer, d]."""
    if vectors.dim() == 2:
        return vectors[:, None, :].expand(-1, n_layers, -1)
    if vectors.dim() != 3 or vectors.shape[1] != n_layers:
        raise ValueError(f"vectors: expected [batch, d] or [batch, {n_layers}, d], got {tuple(vectors.shape)}")
    return vectors


def _add_scaled(hidden, rows, pos, vec, rms: bool) -> None:
    """hidden[rows, pos] += vec (times each state's RMS when `rms`), in place inside a trace."""
    seg = hidden[rows, pos]                                              # [n, k, d]
    scale = seg.pow(2).mean(-1, keepdim=True).sqrt() if rms else 1.0
    hidden[rows, pos] = seg + vec.to(hidden.device, hidden.dtype)[:, None, :] * scale


@torch.no_grad()
def window_steered_logits(model, prompts: Sequence[str], layers: Sequence[int],
                          vectors: Float[Tensor, "batch *layer d_model"], positions: Sequence[int] = (-1,),
                          rms: bool = False, batch_size: int = 32) -> Float[Tensor, "batch vocab"]:
    """Last-token logits with row r's vector added to its resid_post at each of `layers`, at the
    `positions` counted from the end (-1 = last token; rows are left-padded, so they line up).

    `vectors` is [batch, d] (the same vector at every layer) or [batch, len(layers), d] (one per
    layer). With `rms`, the added vector is scaled by the root-mean-square of the state it is added
    to, recomputed at every layer and position (alpha * v * RMS(h), as the emotion paper's script does).
    """
    arch, out = Arch(model), []
    offsets = torch.as_tensor(list(positions))
    if (offsets >= 0).any():
        raise ValueError(f"positions: expected negative offsets from the end, like [-2, -1], got {list(positions)}")
    vectors = _window_vectors(vectors, len(layers))
    for start in range(0, len(prompts), batch_size):
        enc = encode(model.tokenizer, prompts[start:start + batch_size], model.device)
        n, seq = enc["input_ids"].shape
        rows = torch.arange(n)[:, None].to(model.device)
        pos = (seq + offsets).expand(n, -1).to(model.device)          # [n, k]
        vec = vectors[start:start + batch_size]
        with model.trace(enc, logits_to_keep=1):
            for j, layer in enumerate(layers):
                _add_scaled(arch.layers[layer].output, rows, pos, vec[:, j], rms)
            logits = nnsight.save(model.output.logits[:, -1])
        out.append(logits.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def window_steered_generate(model, prompts: Sequence[str], layers: Sequence[int],
                            vectors: Float[Tensor, "batch *layer d_model"], max_new_tokens: int = 12,
                            rms: bool = True, batch_size: int = 64) -> list[str]:
    """Greedy continuations steered as `window_steered_logits` steers (last position, each layer of
    the window): the prompt's last token at the first step, then each new token as it is read."""
    arch, texts = Arch(model), []
    vectors = _window_vectors(vectors, len(layers))
    for start in range(0, len(prompts), batch_size):
        enc = encode(model.tokenizer, prompts[start:start + batch_size], model.device)
        n = enc["input_ids"].shape[0]
        rows = torch.arange(n)[:, None].to(model.device)
        vec = vectors[start:start + batch_size]
        with model.generate(enc, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=model.tokenizer.pad_token_id) as tracer:
            for _ in tracer.iter[:max_new_tokens]:
                for j, layer in enumerate(layers):
                    hidden = arch.layers[layer].output
                    last = torch.full((n, 1), hidden.shape[1] - 1, device=model.device)
                    _add_scaled(hidden, rows, last, vec[:, j], rms)
            ids = nnsight.save(tracer.result)
        texts += model.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts
