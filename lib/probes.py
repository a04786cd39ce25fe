"""Per-layer linear probes: fit one L2 logistic regression per layer, with a shuffled-label control.

The recipe (after Jin et al. 2024, *Exploring Concept Depth*): take each layer's hidden state at the
last token ([item, layer, d_model], e.g. from `lib.lens.last_token_resid`), split the items once
(`split`), fit a standardised L2 logistic regression per layer on the training part and score it on
the held-out part (`layer_accuracy`). The control refits with the training labels permuted
(`shuffled=True`): it shows how much a probe gets from the features' dimensionality alone.

    train, test = split(labels, test_fraction=0.3, seed=0)
    acc = layer_accuracy(states, labels, train, test)                  # [layer] held-out accuracy
    ctrl = layer_accuracy(states, labels, train, test, shuffled=True)  # [layer], ~chance
    right = layer_correct(states, labels, train, test)                 # [layer, test] per item, for CIs
    first = layer_at_fraction(acc, 0.9)                                # first layer >= 90% of peak

Everything is deterministic for a given seed (lbfgs solver, fixed permutation), so results
reproduce to the last decimal on one machine.

Taught in chapter 08 (concept depth); chapter 09 reuses the probes.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor


def split(labels: Int[np.ndarray, "item"], test_fraction: float = 0.3, seed: int = 0,
          groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/test item indices: stratified by label, or by `groups` (no group on both sides)."""
    labels, index = np.asarray(labels), np.arange(len(labels))
    if groups is None:
        train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        train, test = next(splitter.split(index, labels, np.asarray(groups)))
    return np.sort(train), np.sort(test)


def group_split(labels: Int[np.ndarray, "item"], groups, test_fraction: float = 0.3,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train/test item indices with no group on both sides, balanced by label.

    Groups are shuffled and cut separately per kind (the set of labels a group carries), so a split
    by adjective (each adjective one label) keeps both sides half positive, and a split by city
    (each city both labels) keeps each city's true and false statement together.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    names = np.unique(groups)
    kinds = {name: tuple(np.unique(labels[groups == name])) for name in names}
    held_out = []
    for kind in sorted(set(kinds.values())):
        members = [name for name in names if kinds[name] == kind]
        rng.shuffle(members)
        held_out += members[:round(test_fraction * len(members))]
    is_test = np.isin(groups, held_out)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def fit_probe(x: Float[np.ndarray, "item d"], y: Int[np.ndarray, "item"], C: float = 1.0):
    """One standardised L2 logistic-regression probe (sklearn pipeline: scaler, then classifier)."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return probe.fit(x, y)


def layer_correct(states: Float[Tensor, "item layer d"] | Float[np.ndarray, "item layer d"],
                  labels: Int[np.ndarray, "item"], train: np.ndarray, test: np.ndarray,
                  C: float = 1.0, shuffled: bool = False, seed: int = 0) -> Bool[np.ndarray, "layer test"]:
    """Whether each held-out item is classified right by a probe fitted separately on each layer.

    With `shuffled=True` the training labels are permuted (one fixed permutation from `seed`,
    the same for every layer) and the probe is scored on the true test labels: the control.
    """
    x = states.float().cpu().numpy() if torch.is_tensor(states) else np.asarray(states, dtype=np.float32)
    y = np.asarray(labels)
    y_train = y[train]
    if shuffled:
        y_train = np.random.default_rng(seed).permutation(y_train)
    return np.stack([fit_probe(x[train, layer], y_train, C).predict(x[test, layer]) == y[test]
                     for layer in range(x.shape[1])])


def layer_accuracy(states: Float[Tensor, "item layer d"] | Float[np.ndarray, "item layer d"],
                   labels: Int[np.ndarray, "item"], train: np.ndarray, test: np.ndarray,
                   C: float = 1.0, shuffled: bool = False, seed: int = 0) -> Float[np.ndarray, "layer"]:
    """Held-out accuracy per layer (mean of `layer_correct`); `shuffled=True` gives the control."""
    return layer_correct(states, labels, train, test, C, shuffled, seed).mean(1)


def layer_at_fraction(accuracy: Float[np.ndarray, "layer"], fraction: float = 0.9) -> int:
    """First layer whose accuracy reaches `fraction` of the peak (max over layers) accuracy."""
    accuracy = np.asarray(accuracy, dtype=float)
    return int(np.flatnonzero(accuracy >= fraction * accuracy.max())[0])


# --- many probes at once: every layer and split in one batched solve ---------------------------


def _standardise(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """StandardScaler fitted on the training items (population std; constant features left unscaled)."""
    mean, std = x_train.mean(-2, keepdim=True), x_train.std(-2, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x_train - mean) / std, (x_test - mean) / std


def _objective(z: Tensor, y: Tensor, a: Tensor, k: Tensor, C: float) -> Tensor:
    """sklearn's L2 logistic objective C * sum(log-loss) + |w|^2 / 2, with w = X^T a (so |w|^2 = a^T K a)."""
    loss = torch.nn.functional.softplus(-(2 * y - 1) * z).sum(-1)
    return C * loss + 0.5 * (a * (k @ a[..., None])[..., 0]).sum(-1)


def kernel_probe_scores(x_train: Float[Tensor, "*batch train d"], y_train: Float[Tensor, "*batch train"],
                        x_test: Float[Tensor, "*batch test d"], C: float = 1.0,
                        n_iter: int = 30) -> Float[Tensor, "*batch test"]:
    """Decision scores of standardised L2 logistic probes, many at once (Newton's method in float64).

    The same objective as `fit_probe` (sklearn's, intercept unpenalised), solved in the span of the
    training items (w = X^T a; exact, since the penalty is on w only): an (n+1)-dimensional Newton
    system per probe instead of d-dimensional, so all layers and splits of a chapter fit in one go.
    """
    xtr, xte = _standardise(x_train.float(), x_test.float())
    y = y_train.double()
    k, k_test = (xtr @ xtr.transpose(-1, -2)).double(), (xte @ xtr.transpose(-1, -2)).double()  # Gram in float32
    n = k.shape[-1]
    a, b = torch.zeros_like(y), torch.zeros_like(y[..., 0])
    z = torch.zeros_like(y)
    current = _objective(z, y, a, k, C)
    for _ in range(n_iter):
        p = torch.sigmoid(z)
        r, dw = p - y, p * (1 - p)                      # d loss / dz and d^2 loss / dz^2 per item
        # Newton step with K factored out of the a-rows: (C D K + I) da + C D 1 db = -(C r + a),
        # C 1^T D K da + C 1^T D 1 db = -C 1^T r.
        m = torch.zeros(*y.shape[:-1], n + 1, n + 1, dtype=y.dtype)
        m[..., :n, :n] = C * dw[..., :, None] * k + torch.eye(n, dtype=y.dtype)
        m[..., :n, n] = C * dw
        m[..., n, :n] = C * (dw[..., None, :] @ k)[..., 0, :]
        m[..., n, n] = C * dw.sum(-1)
        rhs = torch.cat([-(C * r + a), -(C * r).sum(-1, keepdim=True)], -1)
        step = torch.linalg.solve(m, rhs[..., None])[..., 0]
        da, db = step[..., :n], step[..., n]
        t = torch.ones_like(b)
        for _ in range(20):  # backtracking: halve the step where it does not lower the objective
            z_new = (k @ (a + t[..., None] * da)[..., None])[..., 0] + (b + t * db)[..., None]
            new = _objective(z_new, y, a + t[..., None] * da, k, C)
            worse = new > current + 1e-12
            if not worse.any():
                break
            t = torch.where(worse, t / 2, t)
        a, b, z = a + t[..., None] * da, b + t * db, z_new
        done = (current - new).abs().max() < 1e-10 * (1 + current.abs().max())
        current = new
        if done:
            break
    return (k_test @ a[..., None])[..., 0] + b[..., None]


def layer_correct_fast(states: Float[Tensor, "item layer d"] | Float[np.ndarray, "item layer d"],
                       labels: Int[np.ndarray, "item"], train: np.ndarray, test: np.ndarray,
                       C: float = 1.0, shuffled: bool = False, seed: int = 0) -> Bool[np.ndarray, "layer test"]:
    """`layer_correct` with every layer's probe fitted in one batched Newton solve (same objective).

    Agrees with the sklearn probes up to the solvers' tolerances: an item within ~1e-4 of the
    decision boundary may flip. Use it where hundreds of probes are fitted (layers x splits).
    """
    x = torch.as_tensor(np.asarray(states, dtype=np.float32) if not torch.is_tensor(states) else states)
    x = x.float().cpu().transpose(0, 1)                                   # [layer, item, d]
    y = np.asarray(labels)
    y_train = y[train]
    if shuffled:
        y_train = np.random.default_rng(seed).permutation(y_train)
    y_t = torch.as_tensor(y_train, dtype=torch.float64).expand(x.shape[0], -1)
    scores = kernel_probe_scores(x[:, train], y_t, x[:, test], C)
    return (scores > 0).numpy() == (y[test] == 1)[None]


def curves_bootstrap(correct: list[np.ndarray], n_boot: int = 2000,
                     seed: int = 0) -> Float[np.ndarray, "boot *cond layer"]:
    """Bootstrap accuracy curves over splits, then held-out items within each split.

    `correct` holds one array per split, [*cond, layer, test] (conditions such as probe/control or
    clean/noisy share the split's test items, so they stay paired). Returns the mean accuracy
    curve of each draw. The splits drawn depend only on `seed`, `n_boot` and the number of splits,
    so curves of different datasets bootstrapped with one seed share their split draws.
    """
    picks = np.random.default_rng(seed).integers(0, len(correct), (n_boot, len(correct)))
    rng = np.random.default_rng([seed, 1])
    out = []
    for draw in picks:
        rows = [np.take(correct[s], rng.integers(0, correct[s].shape[-1], correct[s].shape[-1]), axis=-1)
                for s in draw]
        out.append(np.concatenate(rows, axis=-1).mean(-1))
    return np.stack(out)


def depth_of(curves: Float[np.ndarray, "*batch layer"], fraction: float = 0.9) -> Int[np.ndarray, "*batch"]:
    """`layer_at_fraction` for many curves at once: first layer at `fraction` of each curve's peak."""
    curves = np.asarray(curves, dtype=float)
    return np.asarray(np.argmax(curves >= fraction * curves.max(-1, keepdims=True), axis=-1))
