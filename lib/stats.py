"""Intervals, nulls and verdicts: the statistics every claim in the book stands on.

A claim's value gets a 95% percentile-bootstrap interval over items (and over seeds, resampled
first, where training or sampling is involved); a null is summarised by its upper percentile; the
verdict is decided on the interval against a bar fixed before the run (lib.claims.decide).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

LEVEL = 0.95
N_BOOT = 2000


def _array(values) -> np.ndarray:
    if torch.is_tensor(values):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap(statistic: Callable[[np.ndarray], float], n_items: int, *, n_boot: int = N_BOOT,
              seed: int = 0, level: float = LEVEL, clusters=None) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic(index)` over resampled item indices.

    `statistic` receives an integer index array (with repeats) into the items and returns a number;
    pass several per-item arrays through a closure to keep them paired. With `clusters` (one label
    per item, e.g. the seed that produced it), clusters are resampled first and then items within
    each drawn cluster, so the interval covers seed-to-seed variation too.
    """
    if n_items < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    groups = None
    if clusters is not None:
        labels = np.asarray(clusters)
        if len(labels) != n_items:
            raise ValueError(f"clusters: expected one label per item ({n_items}), got {len(labels)}")
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    draws = np.empty(n_boot)
    for b in range(n_boot):
        if groups is None:
            index = rng.integers(0, n_items, n_items)
        else:
            picked = rng.integers(0, len(groups), len(groups))
            index = np.concatenate([rng.choice(groups[g], len(groups[g])) for g in picked])
        draws[b] = statistic(index)
    return _percentiles(draws, level)


def mean_ci(values, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
            clusters=None) -> tuple[float, tuple[float, float]]:
    """Mean of per-item values (NaNs dropped) and its bootstrap interval: (mean, (low, high))."""
    x = _array(values).reshape(-1)
    keep = np.isfinite(x)
    x = x[keep]
    labels = None if clusters is None else np.asarray(clusters)[keep]
    if x.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    ci = bootstrap(lambda i: x[i].mean(), x.size, n_boot=n_boot, seed=seed, level=level, clusters=labels)
    return float(x.mean()), ci


def median_ci(values, *, n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """Median of per-item values and its bootstrap interval."""
    x = _array(values).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    return float(np.median(x)), bootstrap(lambda i: float(np.median(x[i])), x.size, n_boot=n_boot,
                                          seed=seed, level=level)


def diff_ci(a, b, *, paired: bool = True, n_boot: int = N_BOOT, seed: int = 0,
            level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """mean(a) - mean(b) and its interval; paired resamples items jointly, else each group alone."""
    x, y = _array(a).reshape(-1), _array(b).reshape(-1)
    if paired:
        if x.shape != y.shape:
            raise ValueError(f"paired: a and b need one value per item each, got {x.size} and {y.size}")
        return mean_ci(x - y, n_boot=n_boot, seed=seed, level=level)
    rng = np.random.default_rng(seed)
    draws = np.array([x[rng.integers(0, x.size, x.size)].mean() - y[rng.integers(0, y.size, y.size)].mean()
                      for _ in range(n_boot)])
    return float(x.mean() - y.mean()), _percentiles(draws, level)


def null_quantile(null_values, q: float = 0.95) -> float:
    """The q-quantile of a null distribution (e.g. scores of random heads): a bar the null meets 1-q of the time."""
    x = _array(null_values).reshape(-1)
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if x.size else float("nan")


def percentile_rank(value: float, null_values) -> float:
    """Fraction of the null at or above `value` (an empirical one-sided p-value, with the +1 correction)."""
    x = _array(null_values).reshape(-1)
    return float((1 + (x >= value).sum()) / (1 + x.size))


def resample_weights(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_items, n_boot] bootstrap counts (each column a multinomial resample of the items), so that a
    resampled mean curve is `matrix @ weights / n_items`. Taught in chapter 10."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=n_boot).T.astype(float)


def stratified_median(per_seed: Callable[[int, np.ndarray | None], float], n_seeds: int, n_items: int,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Median over seeds of a per-seed statistic and its 95% interval from resampling each seed's
    evaluation items (seeds kept fixed). `per_seed(s, w)` gets bootstrap count weights `w` [n_items]
    (None for the point estimate). The median of 3 seeds clears a bar iff at least 2 seeds do, so the
    interval says whether that majority is robust to which evaluation items were drawn; it does not
    extrapolate to unseen seeds. Taught in chapter 10."""
    value = float(np.median([per_seed(s, None) for s in range(n_seeds)]))
    weights = [resample_weights(n_items, n_boot, seed + 1000 * s) for s in range(n_seeds)]
    draws = np.array([np.median([per_seed(s, weights[s][:, b]) for s in range(n_seeds)])
                      for b in range(n_boot)])
    alpha = (1 - level) / 2
    finite = draws[~np.isnan(draws)]
    low, high = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (math.nan, math.nan)
    return value, (float(low), float(high))
