"""Toy tasks and models trained inside a chapter: Reddy's in-context classification task, a 2-layer
attention-only classifier (with an optional clamp of layer 1's pattern), a seeded training loop, and
Wurgaft et al.'s Balls & Urns task with its memorising and generalising predictors.

    world = icl_world(K=2048, L=32, D=63, eps=0.1, seed=1)          # class means, label vectors
    x, y, context = icl_sequences(world, 128, N=8, B=2, generator=g)  # item-label pairs, then a query
    net = AttnOnlyClassifier(d_in=x.shape[-1], n_labels=32)
    logits, patterns = net(x)                                        # patterns: [layer] of [batch, query, key]
    train(net, batch_fn, steps=2000, lr=3e-3, eval_every=50, callback=record)

Data are generated on the CPU from torch Generators (so a seed gives the same data on any device)
and moved to the model's device; evaluations return CPU tensors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------
# Reddy (2024): in-context classification


@dataclass
class IclWorld:
    """K class means and L label vectors in D dimensions; class k has label k mod L. Taught in chapter 10."""

    class_means: Float[Tensor, "K D"]
    label_vectors: Float[Tensor, "L D"]
    class_label: Int[Tensor, " K"]
    eps: float


def icl_world(K: int, L: int, D: int, eps: float, seed: int, label_vectors: Tensor | None = None) -> IclWorld:
    """Reddy's classes: means ~ N(0, I/D), labels ~ N(0, I/D), within-class noise eps. Pass the
    `label_vectors` of another world to make novel classes that share its labels. Taught in chapter 10."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(K, D, generator=g) / math.sqrt(D)
    labels = torch.randn(L, D, generator=g) / math.sqrt(D) if label_vectors is None else label_vectors
    return IclWorld(means, labels, torch.arange(K) % labels.shape[0], eps)


def positions(N: int) -> int:
    """Sequence length of N item-label pairs and a query. Taught in chapter 10."""
    return 2 * N + 1


def icl_sequences(world: IclWorld, n: int, *, N: int, B: int,
                  generator: torch.Generator) -> tuple[Float[Tensor, "n P d"], Int[Tensor, " n"], Int[Tensor, "n N"]]:
    """n sequences of N (item, label) pairs and a query item, with one-hot positions appended.

    Bursty (B > 0): N // B classes, each B times, and the query's class is among them (ICL can answer).
    Non-bursty (B = 0): N random classes and a random query class (mostly absent: only IWL can answer).
    Returns (x, the query's label, the labels of the context items). Taught in chapter 10.
    """
    K, D = world.class_means.shape
    if B > 0:
        if N % B:
            raise ValueError(f"B: expected a divisor of N={N}, got {B}")
        classes = torch.randint(K, (n, N // B), generator=generator).repeat(1, B)
        order = torch.rand(n, N, generator=generator).argsort(1)
        classes = classes.gather(1, order)
        query = classes.gather(1, torch.randint(N, (n, 1), generator=generator))[:, 0]
    else:
        classes = torch.randint(K, (n, N), generator=generator)
        query = torch.randint(K, (n,), generator=generator)
    P = positions(N)
    scale = 1 / math.sqrt(1 + world.eps ** 2)  # items keep the norm of a class mean
    noise = world.eps / math.sqrt(D)
    x = torch.zeros(n, P, D + P)
    x[:, 0:-1:2, :D] = scale * (world.class_means[classes] + noise * torch.randn(n, N, D, generator=generator))
    x[:, 1:-1:2, :D] = world.label_vectors[world.class_label[classes]]
    x[:, -1, :D] = scale * (world.class_means[query] + noise * torch.randn(n, D, generator=generator))
    x[:, :, D:] = torch.eye(P)
    return x, world.class_label[query], world.class_label[classes]


def ideal_prev_pattern(N: int) -> Float[Tensor, "P P"]:
    """Layer 1's ideal pattern: each label attends to the item just before it, every other position
    to itself (Singh et al.'s clamped 'previous-token' subcircuit). Taught in chapter 10."""
    P = positions(N)
    pattern = torch.zeros(P, P)
    for j in range(P):
        pattern[j, j - 1 if j % 2 == 1 else j] = 1.0
    return pattern


class AttnOnlyClassifier(nn.Module):
    """Reddy's network: two single-head attention layers (residual, no layer norm) and a 3-layer ReLU
    MLP reading the query position. `clamp` ([P, P]) replaces layer 1's pattern throughout. Returns the
    logits and each layer's pattern [batch, query, key]; the last layer's has only the query row.
    Taught in chapter 10."""

    def __init__(self, d_in: int, n_labels: int, n_layers: int = 2, clamp: Tensor | None = None):
        super().__init__()
        self.qkv = nn.ModuleList([nn.Linear(d_in, 3 * d_in, bias=False) for _ in range(n_layers)])
        self.mlp = nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_in), nn.ReLU(),
                                 nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, n_labels))
        self.register_buffer("clamp", clamp.clone() if clamp is not None else None)

    def forward(self, x: Float[Tensor, "batch P d"]) -> tuple[Float[Tensor, "batch L"], list[Tensor]]:
        P, d = x.shape[1], x.shape[2]
        future = torch.triu(torch.ones(P, P, dtype=torch.bool, device=x.device), 1)
        patterns = []
        for i, qkv in enumerate(self.qkv):
            last = i == len(self.qkv) - 1  # the MLP reads only the query position: the last layer's
            if last:                       # other rows would be computed and thrown away
                q = nn.functional.linear(x[:, -1:], qkv.weight[:d])
                k, v = nn.functional.linear(x, qkv.weight[d:]).chunk(2, -1)
                mask = future[-1:]
            else:
                q, k, v = qkv(x).chunk(3, -1)
                mask = future
            pattern = (q @ k.transpose(1, 2) / math.sqrt(d)).masked_fill(mask, -torch.inf).softmax(-1)
            if i == 0 and self.clamp is not None:
                pattern = self.clamp.expand_as(pattern)
            x = (x[:, -1:] if last else x) + pattern @ v
            patterns.append(pattern)
        return self.mlp(x[:, -1]), patterns


@torch.no_grad()
def icl_scores(net: AttnOnlyClassifier, x: Tensor, y: Tensor, context: Tensor,
               batch_size: int = 1000) -> dict[str, Tensor]:
    """Per-sequence scores (CPU): `correct` (argmax is the query's label), `ih` (layer-2 attention from
    the query to the labels of its own class, summed: the induction head) and `prev` (layer-1 attention
    from each label to the item before it, averaged over the N labels). Taught in chapter 10."""
    device = next(net.parameters()).device
    out = {"correct": [], "ih": [], "prev": []}
    for start in range(0, len(x), batch_size):
        xb, yb, cb = (t[start:start + batch_size].to(device) for t in (x, y, context))
        logits, (first, second) = net(xb)
        out["correct"].append((logits.argmax(-1) == yb).float().cpu())
        out["ih"].append((second[:, -1, 1:-1:2] * (cb == yb[:, None])).sum(-1).cpu())
        out["prev"].append(first[:, 1:-1:2, 0:-1:2].diagonal(dim1=1, dim2=2).mean(-1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------
# Training


class WallClockExceeded(RuntimeError):
    """The safety cap on a training run's wall-clock time was hit: the run is incomplete, not truncated.
    Taught in chapter 10."""


def train(net: nn.Module, batch_fn: Callable[[int], tuple[Tensor, Tensor]], *, steps: int, lr: float,
          seed: int, eval_every: int, callback: Callable[[int, nn.Module], None] | None = None,
          optimizer: str = "adam", max_seconds: float | int = 600.0, progress=None) -> list[float]:
    """Train `net` for exactly `steps` steps on `batch_fn(step) -> (input, target)` with cross-entropy,
    calling `callback(step, net)` at step 0 and every `eval_every` steps (and at the end).

    The seed fixes the initial weights (re-initialised here) so a run is a function of its arguments.
    `max_seconds` is a safety cap only: if it is hit, WallClockExceeded is raised, so that no result
    ever depends on the machine's speed. Returns the training losses. Taught in chapter 10.
    """
    torch.manual_seed(seed)
    for module in net.modules():
        if hasattr(module, "reset_parameters") and module is not net:
            module.reset_parameters()
    device = next(net.parameters()).device
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW)(net.parameters(), lr=lr)
    losses, started = [], time.perf_counter()
    for step in range(steps + 1):
        if callback is not None and (step % eval_every == 0 or step == steps):
            net.eval()
            callback(step, net)
            net.train()
        if step == steps:
            break
        if time.perf_counter() - started > max_seconds:
            raise WallClockExceeded(f"training stopped at step {step} of {steps}: over the {max_seconds} s "
                                    "safety cap; raise max_seconds or use a faster device")
        inputs, target = (t.to(device) for t in batch_fn(step))
        logits = net(inputs)
        logits = logits[0] if isinstance(logits, tuple) else logits
        loss = nn.functional.cross_entropy(logits.flatten(0, -2), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
    return losses


# ---------------------------------------------------------------------------------------------------
# Crossing times on evaluation curves


def first_crossing(steps, curve, threshold: float | int, after: float | int = -math.inf) -> float:
    """First step (linearly interpolated between evaluations) at which `curve` reaches `threshold`,
    looking only at evaluations after step `after`; nan if it never does. Taught in chapter 10."""
    s, c = np.asarray(steps, float), np.asarray(curve, float)
    hits = np.flatnonzero((c >= threshold) & (s > after))
    if hits.size == 0:
        return float("nan")
    i = hits[0]
    if i == 0 or s[i - 1] <= after or c[i] == c[i - 1]:
        return float(s[i])
    return float(s[i - 1] + (threshold - c[i - 1]) / (c[i] - c[i - 1]) * (s[i] - s[i - 1]))


def onset_and_rise(steps, curve, low: float | int, high: float | int) -> tuple[float, float]:
    """(onset, end) of a rise: `end` is the first crossing of `high`; `onset` the last upward crossing
    of `low` before it (both interpolated). nan when the curve never reaches `high`. Taught in chapter 10."""
    s, c = np.asarray(steps, float), np.asarray(curve, float)
    end = first_crossing(s, c, high)
    if math.isnan(end):
        return float("nan"), float("nan")
    below = np.flatnonzero((c <= low) & (s < end))
    if below.size == 0:
        return float(s[0]), end
    return first_crossing(s, c, low, after=float(s[below[-1]]) - 1e-9), end


def abruptness(steps, curve, low: float | int = 0.35, high: float | int = 0.85) -> float:
    """(end - onset) / onset of the rise from `low` to `high`: the rise's duration as a fraction of
    the plateau before it (Reddy's 'abrupt' made a number); inf when the curve never reaches `high`.
    Taught in chapter 10."""
    onset, end = onset_and_rise(steps, curve, low, high)
    if math.isnan(end):
        return math.inf
    return (end - onset) / max(onset, 1.0)


def rise_over_plateau(steps, curve, factor: float | int = 2.0, start: float | int = 0.0,
                      until: float | int = math.inf) -> float:
    """First step after the curve's plateau minimum (taken over evaluations from step `start` to `until`)
    at which it reaches `factor` times that minimum: when a score that sat on a plateau starts to rise.
    Taught in chapter 10."""
    s, c = np.asarray(steps, float), np.asarray(curve, float)
    window = np.flatnonzero((s >= start) & (s <= until))
    if window.size == 0:
        return float("nan")
    low = window[np.argmin(c[window])]
    return first_crossing(s, c, factor * c[low], after=float(s[low]) - 1e-9)


# ---------------------------------------------------------------------------------------------------
# Wurgaft et al. (2025): Balls & Urns


def dirichlet_urns(n: int, V: int, generator: torch.Generator) -> Float[Tensor, "n V"]:
    """n urns from a flat Dirichlet(1, ..., 1) over V colours (normalised Exp(1) draws, so a Generator
    fixes them). Taught in chapter 10."""
    draws = -torch.rand(n, V, generator=generator).clamp_min(1e-12).log()
    return draws / draws.sum(-1, keepdim=True)


def urn_sequences(urns: Tensor, n: int, *, T: int, generator: torch.Generator,
                  index: Tensor | None = None) -> tuple[Int[Tensor, "n T"], Int[Tensor, "n T"]]:
    """n sequences of T balls, each from one urn (random rows of `urns`, or those in `index`).
    Returns (input: a start token V then the first T-1 balls, target: the T balls). Taught in chapter 10."""
    V = urns.shape[1]
    if index is None:
        index = torch.randint(len(urns), (n,), generator=generator)
    balls = torch.multinomial(urns[index], T, replacement=True, generator=generator)
    return torch.cat([torch.full((n, 1), V), balls[:, :-1]], 1), balls


class UrnTransformer(nn.Module):
    """One pre-norm transformer block (1 head) with learned positions, predicting the next ball's colour
    (Wurgaft et al.'s 1-layer, 1-head model). Taught in chapter 10."""

    def __init__(self, V: int, T: int, d_model: int = 64):
        super().__init__()
        self.embed, self.pos = nn.Embedding(V + 1, d_model), nn.Embedding(T, d_model)
        self.ln1, self.ln2, self.ln_final = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.unembed = nn.Linear(d_model, V)

    def forward(self, tokens: Int[Tensor, "batch T"]) -> Float[Tensor, "batch T V"]:
        h = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        q, k, v = self.qkv(self.ln1(h)).chunk(3, -1)
        h = h + self.out(nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
        h = h + self.mlp(self.ln2(h))
        return self.unembed(self.ln_final(h))


def urn_predictors(balls: Int[Tensor, "n T"], urns: Float[Tensor, "D V"]) -> tuple[Tensor, Tensor]:
    """The two Bayesian predictors of the next ball given the balls so far, at every position:
    M (memorising: posterior over the D training urns) and G (generalising: Dirichlet(1) posterior mean,
    (count + 1) / (t + V)). Each [n, T, V]. Taught in chapter 10."""
    V = urns.shape[1]
    counts = nn.functional.one_hot(balls, V).float().cumsum(1)
    counts = torch.cat([torch.zeros_like(counts[:, :1]), counts[:, :-1]], 1)  # balls before position t
    seen = torch.arange(balls.shape[1]).float()[None, :, None]
    G = (counts + 1) / (seen + V)
    M = (counts @ urns.log().T).softmax(-1) @ urns
    return M.clamp_min(1e-6), G


def symmetric_kl(p: Tensor, q: Tensor) -> Tensor:
    """Symmetrised KL divergence over the last axis. Taught in chapter 10."""
    return 0.5 * ((p * (p.log() - q.log())).sum(-1) + (q * (q.log() - p.log())).sum(-1))


def urn_distances(h: Tensor, M: Tensor, G: Tensor, skip: int = 4) -> Float[Tensor, "n 3"]:
    """Per sequence, the mean over positions past `skip` of d(h, G), d(h, M) and d(G, M) (symmetrised KL);
    `relative_distance` turns (resampled) means of these into d_rel. Taught in chapter 10."""
    h = h.clamp_min(1e-6)[:, skip:]
    M, G = M[:, skip:], G[:, skip:]
    return torch.stack([symmetric_kl(h, G).mean(1), symmetric_kl(h, M).mean(1), symmetric_kl(G, M).mean(1)], 1)


def relative_distance(distances, weights: np.ndarray | None = None):
    """Wurgaft et al.'s d_rel = ((d(h,G) - d(h,M)) / d(G,M) + 1) / 2 from per-sequence distances [n, 3]
    (means over sequences, optionally with bootstrap count weights [n] or [n, n_boot]):
    0 = the generalising predictor, 1 = the memorising one. Taught in chapter 10."""
    d = np.asarray(distances, float)
    mean = d.mean(0) if weights is None else (d.T @ weights) / weights.sum(0)
    return ((mean[0] - mean[1]) / mean[2] + 1) / 2


@torch.no_grad()
def urn_outputs(net: UrnTransformer, tokens: Tensor, batch_size: int = 512) -> Tensor:
    """The network's next-ball distributions for `tokens` (CPU). Taught in chapter 10."""
    device = next(net.parameters()).device
    return torch.cat([net(tokens[i:i + batch_size].to(device)).softmax(-1).cpu()
                      for i in range(0, len(tokens), batch_size)])
