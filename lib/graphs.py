"""A graph learned in context: random walks over words on a grid, and the geometry of what the model makes of them.

Park et al. place 16 words on a 4x4 grid and feed a model a random walk over them; Arditi asks how
much of what follows is induction. This module holds the pieces:

    adjacency = grid_graph(4, 4)                                  # [16, 16] 0/1, symmetric
    walks = random_walks(adjacency, n_walks=8, length=1024, seed=0)   # [8, 1024] node ids
    ids = walk_input_ids(tokenizer, words, walks)                 # [8, prefix + 1024] token ids
    out = walk_pass(model, ids, word_ids, layer=24)               # one trace, no vocabulary-sized logits
    out["word_logprobs"]   # [8, 1024, 16] log-softmax over the 16 words only, at every walk position
    out["resid"]           # [8, 1024, d_model] resid_pre at `layer`
    neighbour_mass(out["word_logprobs"], walks, adjacency)        # [8, 1024] probability on valid next words
    sums, counts = class_sums(out["resid"], walks, 16, positions) # per-walk sums: bootstrap over walks
    grid_spearman(class_means(sums, counts), grid_distances(4, 4))
    dirichlet_ratio(means, adjacency, n_perm=1000)                # energy / label-permuted energies
    neighbour_mixing(vectors, adjacency)                          # Arditi's null: x + mean of neighbours

`walk_pass` zero-ablates query heads per row (`heads=[[(layer, head), ...] per row]`), so an
ablation and its random-head draws share one batch. Taught in chapter 12.
"""

from __future__ import annotations

from collections.abc import Sequence

import nnsight
import numpy as np
import torch
from jaxtyping import Float, Int
from scipy.stats import spearmanr
from torch import Tensor

from lib.arch import Arch
from lib.devices import returns_cpu
from lib.interventions import site_tensor


def grid_graph(rows: int, cols: int) -> np.ndarray:
    """Adjacency [rows*cols, rows*cols] of a rows x cols grid (node r*cols + c; up/down/left/right). Taught in chapter 12."""
    n = rows * cols
    adjacency = np.zeros((n, n), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((1, 0), (0, 1)):
                if r + dr < rows and c + dc < cols:
                    i, j = r * cols + c, (r + dr) * cols + c + dc
                    adjacency[i, j] = adjacency[j, i] = 1
    return adjacency


def ring_graph(n: int) -> np.ndarray:
    """Adjacency of a ring of n nodes (each joined to the next and the previous). Taught in chapter 12."""
    adjacency = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        adjacency[i, (i + 1) % n] = adjacency[(i + 1) % n, i] = 1
    return adjacency


def graph_distances(adjacency: np.ndarray) -> np.ndarray:
    """Shortest-path distances [n, n] by breadth-first search (on a grid: the Manhattan distance). Taught in chapter 12."""
    n = len(adjacency)
    dist = np.full((n, n), -1, dtype=np.int64)
    for s in range(n):
        dist[s, s], frontier, d = 0, [s], 0
        while frontier:
            d += 1
            nxt = [j for i in frontier for j in np.flatnonzero(adjacency[i]) if dist[s, j] < 0]
            for j in set(nxt):
                dist[s, j] = d
            frontier = sorted(set(nxt))
    return dist


def grid_distances(rows: int, cols: int) -> np.ndarray:
    """Grid (Manhattan) distance between every pair of nodes of a rows x cols grid. Taught in chapter 12."""
    return graph_distances(grid_graph(rows, cols))


def random_walks(adjacency: np.ndarray, n_walks: int, length: int, seed: int,
                 starts: Sequence[int] | None = None) -> np.ndarray:
    """`n_walks` uniform random walks of `length` nodes [n_walks, length]; by default walk k starts at
    node 2k mod n (every other node). Seeded with numpy's default generator. Taught in chapter 12."""
    rng = np.random.default_rng(seed)
    n = len(adjacency)
    starts = [(2 * k) % n for k in range(n_walks)] if starts is None else list(starts)
    neighbours = [np.flatnonzero(adjacency[i]) for i in range(n)]
    walks = np.empty((n_walks, length), dtype=np.int64)
    for k in range(n_walks):
        node = starts[k]
        for t in range(length):
            walks[k, t] = node
            node = int(rng.choice(neighbours[node]))
    return walks


def word_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """Token id of " word" for each word; ValueError naming the words that are not one token. Taught in chapter 12."""
    ids = [tokenizer(" " + w, add_special_tokens=False).input_ids for w in words]
    bad = [w for w, i in zip(words, ids) if len(i) != 1]
    if bad:
        raise ValueError(f"words: not a single token with a leading space for this tokenizer: {bad}")
    if len({i[0] for i in ids}) != len(ids):
        raise ValueError("words: two words share a token")
    return [i[0] for i in ids]


def walk_input_ids(tokenizer, words: Sequence[str], walks: np.ndarray) -> Int[Tensor, "walk seq"]:
    """Token ids of each walk written as " w1 w2 w3 ...", after the tokenizer's prefix (BOS) if it adds one.
    Checked against the tokenizer's own encoding of the text. Taught in chapter 12."""
    word_ids = torch.tensor(word_token_ids(tokenizer, words))
    prefix = torch.tensor(tokenizer("").input_ids, dtype=torch.long)
    ids = torch.cat([prefix.expand(len(walks), -1), word_ids[torch.as_tensor(walks)]], 1)
    text = " " + " ".join(words[i] for i in walks[0])
    if tokenizer(text).input_ids != ids[0].tolist():
        raise ValueError("walk_input_ids: the tokenizer splits the walk text differently from word by word")
    return ids


def _logit_transform(arch: Arch, logits: Tensor) -> Tensor:
    softcap = arch.softcap()
    return softcap * torch.tanh(logits / softcap) if softcap else logits


@torch.no_grad()
def _log_word_mass(arch: Arch, final: Tensor, word_ids: Tensor, chunk: int = 16384) -> Tensor:
    """log of the full-vocabulary probability of the word set, from final-norm outputs [..., d],
    with the unembedding taken `chunk` vocabulary rows at a time (no [..., vocab] tensor is held)."""
    w_u = arch.W_U  # [d_model, vocab]
    lse = torch.full(final.shape[:-1], -torch.inf, device=final.device)
    for start in range(0, w_u.shape[1], chunk):
        part = _logit_transform(arch, final @ w_u[:, start:start + chunk].to(final.dtype)).float()
        lse = torch.logaddexp(lse, part.logsumexp(-1))
    words = _logit_transform(arch, final @ w_u[:, word_ids].to(final.dtype)).float().logsumexp(-1)
    return words - lse


@returns_cpu
@torch.no_grad()
def walk_pass(model, input_ids: Int[Tensor, "batch seq"], word_ids: Sequence[int], layer: int | None = None,
              heads: Sequence[Sequence[tuple[int, int]]] | None = None, prefix: int = 0,
              full_positions: Sequence[int] | None = None) -> dict:
    """One trace over walks: log-softmax over the `word_ids` only at every position from `prefix` on
    (`word_logprobs` [batch, seq - prefix, n_words], computed inside the trace from the final norm and
    the words' unembedding rows, so no [batch, seq, vocab] logits exist), and resid_pre at `layer`
    (`resid` [batch, seq - prefix, d_model], if a layer is given).

    `full_positions` (walk positions, i.e. after the prefix): also `log_word_mass` [batch, m], the log
    of the full-vocabulary probability of the whole word set there, so that the full-softmax
    probability of any word is exp(word_logprobs + log_word_mass). The unembedding of those positions
    runs in vocabulary chunks after the trace. `heads` (one list of (layer, head) per row)
    zero-ablates those query heads' outputs (the input of o_proj) in that row only. On the CPU.
    Taught in chapter 12.
    """
    arch = Arch(model)
    ids = input_ids.to(model.device)
    mask = torch.zeros(ids.shape[0], arch.n_layers, arch.n_heads, dtype=torch.bool)
    for row, row_heads in enumerate(heads or []):
        for lay, head in row_heads:
            mask[row, lay, head] = True
    ablated = sorted({int(i) for i in mask.any(0).any(-1).nonzero()})
    mask = mask.to(model.device)
    words = torch.as_tensor(list(word_ids), device=model.device)
    unembed = arch.W_U[:, words]  # [d_model, n_words]
    sub = torch.as_tensor([] if full_positions is None else list(full_positions), dtype=torch.long,
                          device=model.device) + prefix
    visit = sorted(set(ablated) | ({layer} if layer is not None else set()))
    with model.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}) as tracer:
        resid = []
        for lay in visit:  # modules in execution order: resid_pre of a layer before its heads
            if lay == layer:
                resid.append(arch.layers[lay].input[:, prefix:].clone())
            if lay in ablated:
                z = site_tensor(arch, "head", lay)  # [batch, pos, head, d_head]
                z[:] = torch.where(mask[:, lay, None, :, None], torch.zeros_like(z), z)
        final = arch.final_norm.output
        logits = _logit_transform(arch, final[:, prefix:] @ unembed.to(final.dtype))
        saved = nnsight.save((resid, logits.float().log_softmax(-1), final[:, sub].clone()))
        tracer.stop()  # the full unembedding never runs
    resid, word_logprobs, final_sub = saved
    out = {"word_logprobs": word_logprobs.float()}
    if resid:
        out["resid"] = resid[0].float()
    if full_positions is not None:
        out["log_word_mass"] = _log_word_mass(arch, final_sub, words)
    return out


def full_probabilities(word_logprobs: Float[Tensor, "walk pos n_words"], log_word_mass: Float[Tensor, "walk pos"]
                       ) -> Float[Tensor, "walk pos n_words"]:
    """Full-vocabulary probabilities of the words, from `walk_pass`'s outputs at the same positions. Taught in chapter 12."""
    return (word_logprobs + log_word_mass[..., None]).exp()


def neighbour_mass(probs: Float[Tensor, "walk pos n_words"], walks: np.ndarray, adjacency: np.ndarray
                   ) -> Float[Tensor, "walk pos"]:
    """Probability that position t puts on the graph neighbours of the word at t (the valid next words),
    from probabilities of the words [walk, pos, n_words] (`walks` [walk, pos]: the node at each of
    those positions). Taught in chapter 12."""
    valid = torch.as_tensor(adjacency, dtype=probs.dtype)[torch.as_tensor(walks)]  # [walk, pos, n]
    return (probs * valid).sum(-1)


def class_sums(resid: Float[Tensor, "walk pos d"], walks: np.ndarray, n_classes: int,
               positions: slice | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-walk sums [walk, class, d] and counts [walk, class] of the activations at `positions`, by
    the word at each position: class means over any set of walks are sums over counts. Taught in chapter 12."""
    positions = slice(None) if positions is None else positions
    x = resid[:, positions].double()
    labels = torch.as_tensor(walks)[:, positions]
    onehot = torch.nn.functional.one_hot(labels, n_classes).double()  # [walk, pos, class]
    return torch.einsum("wpc,wpd->wcd", onehot, x).numpy(), onehot.sum(1).numpy()


def class_means(sums: np.ndarray, counts: np.ndarray, walks: np.ndarray | None = None) -> np.ndarray:
    """Class means [class, d] over the walks `walks` (indices, repeats allowed; default all); NaN rows for
    classes never seen. Taught in chapter 12."""
    index = np.arange(len(sums)) if walks is None else np.asarray(walks)
    total, n = sums[index].sum(0), counts[index].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / n[:, None]


def _pair_distances(means: np.ndarray) -> np.ndarray:
    diff = means[:, None, :] - means[None, :, :]
    return np.sqrt((diff ** 2).sum(-1))


def grid_spearman(means: np.ndarray, distances: np.ndarray) -> float:
    """Spearman rho between the Euclidean distances of the class means and the graph distances, over
    pairs i < j (pairs with an unseen class dropped). Taught in chapter 12."""
    upper = np.triu_indices(len(means), 1)
    ours, theirs = _pair_distances(means)[upper], distances[upper]
    keep = np.isfinite(ours)
    return float(spearmanr(ours[keep], theirs[keep]).statistic)


def dirichlet_energy(means: np.ndarray, adjacency: np.ndarray) -> float:
    """Park et al.'s Dirichlet energy sum_ij A_ij ||x_i - x_j||^2, divided by sum_ij ||x_i - x_j||^2 so
    that it does not depend on scale (a random labelling gives about mean degree / (n - 1)). Taught in chapter 12."""
    squared = _pair_distances(means) ** 2
    return float((adjacency * squared).sum() / squared.sum())


def permutation_null(statistic, means: np.ndarray, n_perm: int, seed: int) -> np.ndarray:
    """`statistic(means[perm])` for `n_perm` random relabellings of the classes: the same geometry with
    the words assigned to other grid nodes. Taught in chapter 12."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(means[rng.permutation(len(means))]) for _ in range(n_perm)])


def neighbour_mixing(vectors: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """One step of neighbour mixing, Arditi's null: x_i + mean of x_j over the neighbours j of i. Taught in chapter 12."""
    degree = adjacency.sum(1, keepdims=True)
    return vectors + adjacency @ vectors / degree


def mixing_null(adjacency: np.ndarray, distances: np.ndarray, d_model: int, n_draws: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rho with the graph distances of random Gaussian vectors [n, d_model], before and after one
    step of neighbour mixing, for `n_draws` seeded draws: (rho_before, rho_after). Taught in chapter 12."""
    rng = np.random.default_rng(seed)
    before, after = [], []
    for _ in range(n_draws):
        x = rng.standard_normal((len(adjacency), d_model))
        before.append(grid_spearman(x, distances))
        after.append(grid_spearman(neighbour_mixing(x, adjacency), distances))
    return np.array(before), np.array(after)


def pca_2d(means: np.ndarray) -> np.ndarray:
    """The class means projected on their first two principal components [n, 2] (centred SVD). Taught in chapter 12."""
    centred = means - means.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T
