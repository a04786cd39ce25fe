"""Reading and writing directions in the residual stream: difference-of-means directions, and
adding a vector to a layer's output (resid_post) during a forward pass or a greedy generation.

    dirs = scenario_centered_means(resid)                  # [emotion, layer, d] from [scenario, emotion, layer, d]
    truth = diff_of_means(states, labels)                  # [layer, d]: mean(label 1) - mean(label 0)
    logits = steered_logits(model, prompts, layer, vecs)   # last-token logits, vecs[r] added to row r
    out = steered_generate(model, prompts, layer, vecs, max_new_tokens=20)
    ppl = continuation_perplexity(model, out)              # fluency under the unsteered model

Each row of a batch carries its own vector, so a sweep over directions and strengths is one batch
(rows = prompt x direction x strength), not one run per setting. The vector is added at every
position, including the prompt; during generation it is added at every step, so cached keys and
values were computed from steered states too.
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
