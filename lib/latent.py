"""Latent-language measurements (Wendler et al.): token-prefix sets of a word, and bootstrap bands.

A word's probability under the logit lens is the summed probability of every vocabulary token
that could *start* it: each token whose text is a non-empty prefix of the word, written either
glued to what precedes it ("flo") or after a space (" flo"). Tokens that are partial UTF-8 bytes
decode to U+FFFD and never count: they could start thousands of words.

Taught in chapter 07 (which language does a model think in?).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence

import nnsight
import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lib.arch import Arch
from lib.data import batched
from lib.devices import returns_cpu
from lib.params import ParameterError

REPLACEMENT = "\ufffd"
LANGUAGES = {"en": "English", "fr": "Français", "de": "Deutsch", "es": "Español", "zh": "中文"}


def parse_tasks(tasks) -> list[tuple[str, str]]:
    """'fr-zh' style task names -> (source, target) pairs; ParameterError unless both are known
    languages, differ, and neither is English (English is the latent language we look for)."""
    allowed = sorted(f"{a}-{b}" for a in LANGUAGES for b in LANGUAGES if a != b and "en" not in (a, b))
    if not isinstance(tasks, (list, tuple)) or not tasks or any(t not in allowed for t in tasks):
        raise ParameterError(f"tasks: expected a non-empty list of {allowed}, got {tasks!r}")
    return [tuple(t.split("-")) for t in tasks]


def vocab_index(tokenizer) -> dict[str, list[int]]:
    """Decoded text -> token ids with that text, over the whole vocabulary (special tokens left out)."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    index = defaultdict(list)
    for i, text in zip(ids, tokenizer.batch_decode([[i] for i in ids])):
        if text and REPLACEMENT not in text:
            index[text].append(i)
    return dict(index)


def prefix_token_ids(index: dict[str, list[int]], word: str) -> list[int]:
    """Ids of every token whose text is a non-empty prefix of `word`, bare or after one space."""
    found = set()
    for k in range(1, len(word) + 1):
        found.update(index.get(word[:k], ()))
        found.update(index.get(" " + word[:k], ()))
    return sorted(found)


def first_token_after(tokenizer, context: str, word: str) -> int | None:
    """The token the model must emit first to write `word` right after `context`; None when the
    tokenizer merges the word into the context's last token."""
    ctx = tokenizer(context, add_special_tokens=False).input_ids
    full = tokenizer(context + word, add_special_tokens=False).input_ids
    return full[len(ctx)] if full[: len(ctx)] == ctx and len(full) > len(ctx) else None


def answer_sets(tokenizer, index: dict[str, list[int]], target: str, english: str,
                context: str = ': "') -> tuple[list[int], list[int]] | None:
    """(target ids, English ids), or None when the item is ambiguous and must be dropped.

    Kept only if the words differ (ignoring case), both words' first tokens after `context` are
    whole characters, and neither first token is in the other word's prefix set. Tokens in both
    sets (e.g. a shared first letter) are removed from both, so no mass counts twice.
    """
    if target.casefold() == english.casefold():
        return None
    tgt, eng = set(prefix_token_ids(index, target)), set(prefix_token_ids(index, english))
    firsts = first_token_after(tokenizer, context, target), first_token_after(tokenizer, context, english)
    if firsts[0] not in tgt or firsts[1] not in eng or firsts[0] in eng or firsts[1] in tgt:
        return None
    shared = tgt & eng
    return sorted(tgt - shared), sorted(eng - shared)


def multi_hot(sets: Sequence[Sequence[int]], vocab: int) -> Float[Tensor, "batch vocab"]:
    """Row b is 1 at the ids of sets[b]: multiply with probabilities and sum to get a set's mass."""
    mask = torch.zeros(len(sets), vocab)
    for row, ids in enumerate(sets):
        mask[row, list(ids)] = 1.0
    return mask


def set_probability(probs: Float[Tensor, "batch layer vocab"],
                    mask: Float[Tensor, "batch vocab"]) -> Float[Tensor, "batch layer"]:
    """Summed probability of each row's token set (mask from `multi_hot`), at every layer."""
    return torch.einsum("blv,bv->bl", probs, mask.to(probs.device, probs.dtype))


def entropy_bits(logits: Float[Tensor, "*batch vocab"]) -> Float[Tensor, "*batch"]:
    """Entropy of softmax(logits) in bits."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / np.log(2)


def bootstrap_ci(values: Float[Tensor, "n layer"], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Tensor]:
    """Mean over the n rows and its percentile bootstrap interval, per column.

    Rows (prompts) are resampled with replacement, the same draw for every column, from a
    generator seeded with `seed`, so bands are reproducible. Returns {"mean", "low", "high"}.
    """
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, values.shape[0], (n_boot, values.shape[0]), generator=gen)
    means = values.double()[draws].mean(1)  # [boot, layer]
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=means.dtype, device=means.device), dim=0)
    return {"mean": values.double().mean(0), "low": low, "high": high}


def longest_run(mask: Bool[Tensor, "layer"] | Sequence[bool]) -> tuple[int, int] | None:
    """(first, last) index of the longest run of True (the earliest on ties); None if none is True."""
    best, start = None, None
    flags = [bool(x) for x in mask] + [False]
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if best is None or i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return best


@returns_cpu
@torch.no_grad()
def shared_prefix_resid(model, prefix: str, suffixes: Sequence[str], batch_size: int = 32,
                        desc: str | None = None) -> Float[Tensor, "batch layer d_model"]:
    """resid_post of every layer at the last token of each `prefix + suffix`, like
    `lib.lens.last_token_resid`, but the shared prefix (the few-shot examples) runs once: its key/value
    cache is copied for each batch of right-padded suffixes, so only the suffix tokens are computed.

    The prefix must end where the tokenizer splits (e.g. after a newline); this is checked. On the CPU.
    """
    arch, tok = Arch(model), model.tokenizer
    pre = tok(prefix, return_tensors="pt").input_ids.to(model.device)
    cache = arch.hf(input_ids=pre, use_cache=True).past_key_values
    out = []
    for chunk in batched(list(suffixes), batch_size, desc):
        ids = [tok(s, add_special_tokens=False).input_ids for s in chunk]
        for s, row in zip(chunk, ids):
            if tok(prefix + s).input_ids != pre[0].tolist() + row:
                raise ValueError(f"prefix and suffix {s!r} do not tokenize separately as they do together")
        lengths = torch.tensor([len(row) for row in ids])
        input_ids = torch.full((len(ids), int(lengths.max())), tok.pad_token_id)
        for b, row in enumerate(ids):
            input_ids[b, :len(row)] = torch.tensor(row)
        mask = torch.cat([torch.ones(len(ids), pre.shape[1], dtype=torch.long),
                          (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()], 1)
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(ids))
        enc = {"input_ids": input_ids.to(model.device), "attention_mask": mask.to(model.device)}
        with model.trace(enc, past_key_values=past, use_cache=True) as tracer:
            states = nnsight.save([arch.layers[i].output for i in range(arch.n_layers)])
            tracer.stop()
        last = (lengths - 1).to(model.device)
        out.append(torch.stack([s[torch.arange(len(ids)), last] for s in states], 1))
    return torch.cat(out).float()


def disjoint_sets(tokenizer, index: dict[str, list[int]], words: dict[str, str], context: str = ': "',
                  checked: Sequence[str] | None = None) -> dict[str, list[int]] | None:
    """Prefix sets of several words (e.g. target, English, source) made pairwise disjoint, or None
    when the item cannot tell the words apart and must be dropped.

    `answer_sets` for any number of words: dropped if two words are equal ignoring case, or a word's
    first token after `context` is not in its own set or lies in another word's set (only the words
    named in `checked`, default all: a source word need not be writable, it only lends its tokens);
    tokens in two or more sets are then removed from all of them (so copying the source word cannot
    count as English, and no probability counts twice).
    """
    names = list(words)
    folded = [words[n].casefold() for n in names]
    if len(set(folded)) < len(folded):
        return None
    sets = {n: set(prefix_token_ids(index, words[n])) for n in names}
    for n in names if checked is None else checked:
        first = first_token_after(tokenizer, context, words[n])
        if first not in sets[n] or any(first in sets[m] for m in names if m != n):
            return None
    seen = defaultdict(int)
    for ids in sets.values():
        for i in ids:
            seen[i] += 1
    return {n: sorted(i for i in sets[n] if seen[i] == 1) for n in names}


def strip_shared(ids: Sequence[int], *others: Sequence[int]) -> list[int]:
    """`ids` without any id that is in one of `others` (a control word's set, made comparable)."""
    drop = set().union(*map(set, others)) if others else set()
    return sorted(set(ids) - drop)


def demo_assignment(n_items: int, n_sets: int, n_shots: int, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    """Demonstration sets for few-shot prompts, and which set each query uses.

    Draws `n_sets` sets of `n_shots` distinct items each (a fresh draw per set, as the paper's
    notebook draws fresh demonstrations per query); query q uses set q mod n_sets, or the next set
    that does not contain q. Every item is a query. Returns (sets, set index per query).
    """
    if n_items < n_shots + 1:
        raise ValueError(f"need more than n_shots={n_shots} items, got {n_items}")
    rng = np.random.default_rng(seed)
    sets = [sorted(rng.choice(n_items, n_shots, replace=False).tolist()) for _ in range(n_sets)]
    choice = []
    for q in range(n_items):
        options = [(q + k) % n_sets for k in range(n_sets)]
        usable = [s for s in options if q not in sets[s]]
        if not usable:
            raise ValueError(f"item {q} is in every demonstration set; use more sets")
        choice.append(usable[0])
    return sets, choice


def gather_set_probability(probs: Float[Tensor, "batch layer vocab"],
                           sets: Sequence[Sequence[int]]) -> Float[Tensor, "batch layer"]:
    """`set_probability` by gathering each row's few ids instead of a vocabulary-sized mask: the
    same sums, at a cost that does not grow with the vocabulary (empty sets give 0)."""
    width = max(1, max(len(s) for s in sets))
    index = torch.zeros(len(sets), width, dtype=torch.long)
    keep = torch.zeros(len(sets), width, dtype=probs.dtype)
    for row, ids in enumerate(sets):
        index[row, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        keep[row, :len(ids)] = 1
    index, keep = index.to(probs.device), keep.to(probs.device)
    picked = probs.gather(-1, index[:, None, :].expand(-1, probs.shape[1], -1))
    return (picked * keep[:, None, :]).sum(-1)


@returns_cpu
@torch.no_grad()
def lens_readout(arch: Arch, resid: Float[Tensor, "batch layer d_model"],
                 sets: dict[str, Sequence[Sequence[int]]], chunk: int = 8) -> dict[str, Tensor]:
    """Logit lens at every layer, reduced to what the latent-language plots need: the entropy
    (bits) and, for each named list of per-prompt token sets, the summed probability of the set.

    The same numbers as `lib.lens.unembed` -> softmax -> `gather_set_probability` / `entropy_bits`,
    but the vocabulary-sized logits of `chunk` prompts live in one reused buffer, and the softmax
    is one exp pass: with e = exp(logit - max) and s = sum(e), p = e / s and
    entropy = log s - sum(e * (logit - max)) / s. Returns {"entropy": [batch, layer], name: [batch, layer]}.
    """
    norm, head = arch.hf_module("final_norm"), arch.hf_module("unembed")
    weight, cap = head.weight, arch.softcap()
    n, n_layers = resid.shape[:2]
    rows = chunk * n_layers
    logits = torch.empty(rows, weight.shape[0], device=weight.device, dtype=torch.float32)
    expd = torch.empty_like(logits)
    out = {name: [] for name in ["entropy", *sets]}
    for lo in range(0, n, chunk):
        b = min(chunk, n - lo)
        h = norm(resid[lo:lo + b].to(weight.device, weight.dtype)).reshape(b * n_layers, -1)
        y, e = logits[:b * n_layers], expd[:b * n_layers]
        torch.matmul(h.float(), weight.float().T, out=y)
        if cap:
            y.div_(cap).tanh_().mul_(cap)
        y.sub_(y.amax(-1, keepdim=True))
        torch.exp(y, out=e)
        s = e.sum(-1)
        ent = (s.log() - torch.bmm(e[:, None, :], y[:, :, None])[:, 0, 0] / s) / np.log(2)
        out["entropy"].append(ent.reshape(b, n_layers))
        e3 = e.reshape(b, n_layers, -1)
        for name, per_prompt in sets.items():
            summed = gather_set_probability(e3, per_prompt[lo:lo + b])
            out[name].append(summed / s.reshape(b, n_layers))
    return {name: torch.cat(parts).float() for name, parts in out.items()}
