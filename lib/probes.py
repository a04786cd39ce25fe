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
