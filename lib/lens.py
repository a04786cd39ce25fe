"""The logit lens: read every layer's residual stream through the final norm and unembedding.

Taught in chapter 01 (the logit lens), which writes the lens out in full; later chapters call these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import nnsight
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lib.arch import Arch
from lib.data import batched, encode
from lib.devices import returns_cpu

RANK_BLOCK = 2 ** 24  # vocabulary entries compared at once by token_rank


@torch.no_grad()
def last_token_resid(model, prompts: Sequence[str], batch_size: int = 32, desc: str | None = None,
                     by_length: bool = False) -> Float[Tensor, "batch layer d_model"]:
    """resid_post of every layer at each prompt's last token, batched (one trace per batch); on the CPU.

    With `by_length`, prompts are batched in order of token count (less padding, so less compute, when
    lengths vary); rows come back in input order either way."""
    arch, prompts = Arch(model), list(prompts)
    order = _length_order(model.tokenizer, prompts) if by_length else np.arange(len(prompts))
    out = []
    for chunk in batched([prompts[i] for i in order], batch_size, desc):
        enc = encode(model.tokenizer, chunk, model.device)
        with model.trace(enc) as tracer:
            states = nnsight.save([arch.layers[i].output[:, -1] for i in range(arch.n_layers)])
            tracer.stop()  # skip the unembedding: vocabulary-sized logits at every position are costly
        out.append(torch.stack(states, dim=1).cpu())  # results gather on the CPU; GPU memory stays free
    return _in_input_order(torch.cat(out).float(), order)


@torch.no_grad()
def last_token_logits(model, prompts: Sequence[str], batch_size: int = 32, desc: str | None = None,
                      by_length: bool = False) -> Float[Tensor, "batch vocab"]:
    """The model's next-token logits at each prompt's last token, batched; only the last position is
    unembedded (`logits_to_keep=1`); on the CPU, rows in input order."""
    prompts = list(prompts)
    order = _length_order(model.tokenizer, prompts) if by_length else np.arange(len(prompts))
    out = []
    for chunk in batched([prompts[i] for i in order], batch_size, desc):
        with model.trace(encode(model.tokenizer, chunk, model.device), logits_to_keep=1):
            logits = nnsight.save(model.output.logits[:, -1])
        out.append(logits.float().cpu())
    return _in_input_order(torch.cat(out), order)


def _length_order(tokenizer, prompts: list[str]) -> np.ndarray:
    return np.argsort([len(ids) for ids in tokenizer(prompts).input_ids], kind="stable")


def _in_input_order(rows: Tensor, order: np.ndarray) -> Tensor:
    out = torch.empty_like(rows)
    out[torch.as_tensor(order)] = rows
    return out


@returns_cpu
def unembed(arch: Arch, resid: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch vocab"]:
    """Logits the model would give if `resid` were the last layer's output (norm, unembed, softcap); on the CPU."""
    return _unembed(arch, resid)


@torch.no_grad()
def _unembed(arch: Arch, resid: Tensor) -> Tensor:
    """`unembed` on the model's device (for helpers that reduce the logits before returning)."""
    norm, head = arch.hf_module("final_norm"), arch.hf_module("unembed")
    logits = head(norm(resid.to(head.weight.device, head.weight.dtype))).float()
    cap = arch.softcap()
    return torch.tanh(logits / cap) * cap if cap else logits


def token_rank(logits: Float[Tensor, "*batch vocab"], token: Int[Tensor, "*batch"]) -> Int[Tensor, "*batch"]:
    """Rank of `token` under `logits` (0 = top-1): how many tokens score strictly higher.

    Counted a block of leading rows at a time: summing a vocabulary-sized comparison makes an int64
    copy of it (1.5 GB for 143 prompts x 5 tokens of a 262k vocabulary, taken all at once)."""
    token = token.to(logits.device)
    if logits.dim() == 1:
        return (logits > logits[token]).sum()
    out = torch.empty(token.shape, dtype=torch.long, device=logits.device)
    block = max(1, RANK_BLOCK // max(1, logits[0].numel()))
    for start in range(0, logits.shape[0], block):
        part, tok = logits[start:start + block], token[start:start + block]
        out[start:start + block] = (part > part.gather(-1, tok[..., None])).sum(-1)
    return out


@torch.no_grad()
def lens_stats(arch: Arch, resid: Float[Tensor, "batch layer d_model"], tokens: Int[Tensor, "batch k"],
               chunk: int = 16) -> dict[str, Tensor]:
    """Per prompt and layer: top-1 token, and rank and probability of each of `tokens`' k columns.

    Returns {"top": [batch, layer], "rank": [batch, layer, k], "prob": [batch, layer, k]}; vocab-sized
    logits are made `chunk` prompts at a time so memory stays small.
    """
    tops, ranks, probs = [], [], []
    for start in range(0, resid.shape[0], chunk):
        logits = _unembed(arch, resid[start:start + chunk])  # [b, layer, vocab]
        tok = tokens[start:start + chunk, None, :].expand(-1, logits.shape[1], -1).to(logits.device)
        tops.append(logits.argmax(-1).cpu())
        ranks.append(torch.stack([token_rank(logits, tok[..., j]) for j in range(tok.shape[-1])], -1).cpu())
        probs.append(logits.log_softmax(-1).gather(-1, tok).exp().cpu())
    return {"top": torch.cat(tops), "rank": torch.cat(ranks), "prob": torch.cat(probs)}


def commitment_layer(top: Int[Tensor, "batch layer"], answer: Int[Tensor, "batch"]) -> Int[Tensor, "batch"]:
    """First layer from which the lens's top-1 token equals `answer` at that and every later layer.

    With `answer` the model's own prediction, the last layer always agrees, so the result is at most
    n_layers - 1 (chapter 01 writes this out and tests it against a null). A prompt whose last layer
    disagrees gets n_layers.
    """
    agree = top == answer.to(top.device)[:, None]
    from_here = agree.flip(1).int().cumprod(1).flip(1)  # 1 where this and every later layer agree
    return top.shape[1] - from_here.sum(1)
