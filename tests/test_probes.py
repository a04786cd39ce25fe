import beartype  # noqa: F401  # before nnsight (via lib.lens): nnsight adds object.save, which breaks beartype's import
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lib.lens import last_token_resid
from lib.probes import (
    curves_bootstrap,
    depth_of,
    group_split,
    kernel_probe_scores,
    layer_accuracy,
    layer_at_fraction,
    layer_correct,
    layer_correct_fast,
    split,
)


def planted(n=200, n_layers=6, d=16, from_layer=3, seed=0):
    """Random states whose label is written into dimension 0 from `from_layer` on."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    states = rng.normal(size=(n, n_layers, d)).astype(np.float32)
    states[:, from_layer:, 0] += 4.0 * (2 * labels[:, None] - 1)
    return states, labels


def test_split_is_stratified_disjoint_and_fixed():
    labels = np.arange(100) % 2
    train, test = split(labels, 0.3, seed=1)
    assert len(test) == 30 and not set(train) & set(test) and len(train) + len(test) == 100
    assert labels[test].mean() == 0.5
    again = split(labels, 0.3, seed=1)
    np.testing.assert_array_equal(train, again[0])


def test_split_keeps_groups_on_one_side():
    groups = np.repeat(np.arange(50), 2)
    train, test = split(np.arange(100) % 2, 0.3, seed=0, groups=groups)
    assert not set(groups[train]) & set(groups[test])


def test_planted_signal_is_found_from_its_layer_and_control_is_near_chance():
    states, labels = planted()
    train, test = split(labels, 0.3)
    acc = layer_accuracy(states, labels, train, test)
    ctrl = layer_accuracy(states, labels, train, test, shuffled=True)
    assert acc[:3].max() < 0.75 and acc[3:].min() > 0.95
    assert ctrl.max() < 0.8
    assert layer_at_fraction(acc, 0.9) == 3


def test_layer_at_fraction():
    assert layer_at_fraction(np.array([0.5, 0.7, 0.95, 1.0]), 0.9) == 2
    assert layer_at_fraction(np.array([0.5, 0.5]), 0.9) == 0


def test_probe_matches_written_out_sklearn_on_tiny_model(tiny_model):
    prompts = [" ".join(f"w{(7 * i + k) % 200}" for k in range(5)) + (" w250" if i % 2 else " w251")
               for i in range(40)]
    labels = np.arange(40) % 2
    states = last_token_resid(tiny_model, prompts, batch_size=16)
    train, test = split(labels, 0.25)
    fast = layer_accuracy(states, labels, train, test, C=0.5)
    x = states.numpy()
    for layer in range(x.shape[1]):
        scaler = StandardScaler().fit(x[train, layer])
        clf = LogisticRegression(C=0.5, max_iter=2000).fit(scaler.transform(x[train, layer]), labels[train])
        ref = (clf.predict(scaler.transform(x[test, layer])) == labels[test]).mean()
        torch.testing.assert_close(float(fast[layer]), float(ref))
    assert fast.max() == 1.0  # the last token alone gives the label away
    np.testing.assert_array_equal(fast, layer_accuracy(states, labels, train, test, C=0.5))


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_layer_at_fraction_bounds(fraction):
    acc = np.array([0.4, 0.6, 0.8])
    assert 0 <= layer_at_fraction(acc, fraction) <= 2


def test_layer_correct_is_per_item_accuracy():
    states, labels = planted(n=60)
    train, test = split(labels, 0.5)
    right = layer_correct(states, labels, train, test)
    assert right.shape == (6, 30) and right.dtype == bool
    np.testing.assert_array_equal(right.mean(1), layer_accuracy(states, labels, train, test))


def test_group_split_is_balanced_and_keeps_groups_apart():
    labels = np.repeat([1, 0], 100)                       # 20 positive and 20 negative "adjectives"
    groups = np.repeat(np.arange(40), 5)
    train, test = group_split(labels, groups, 0.4, seed=3)
    assert not set(groups[train]) & set(groups[test]) and len(train) + len(test) == 200
    assert labels[test].mean() == 0.5 and len(set(groups[test])) == 16
    pairs = np.repeat(np.arange(50), 2)                    # each group holds both labels (a city)
    train, test = group_split(np.arange(100) % 2, pairs, 0.3, seed=0)
    assert len(test) == 30 and not set(pairs[train]) & set(pairs[test])


def test_fast_probes_match_sklearn_on_planted_and_tiny_model(tiny_model):
    states, labels = planted(n=120, d=24)
    train, test = split(labels, 0.4, seed=2)
    for shuffled in (False, True):
        slow = layer_correct(states, labels, train, test, C=0.5, shuffled=shuffled, seed=1)
        fast = layer_correct_fast(states, labels, train, test, C=0.5, shuffled=shuffled, seed=1)
        assert fast.shape == slow.shape and (fast == slow).mean() >= 0.98
    prompts = [" ".join(f"w{(7 * i + k) % 200}" for k in range(5)) + (" w250" if i % 2 else " w251")
               for i in range(40)]
    tiny = last_token_resid(tiny_model, prompts, batch_size=16)
    labels = np.arange(40) % 2
    train, test = split(labels, 0.25)
    np.testing.assert_array_equal(layer_correct_fast(tiny, labels, train, test).mean(1),
                                  layer_accuracy(tiny, labels, train, test))


def test_kernel_probe_reaches_sklearns_optimum():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 80)).astype(np.float32)      # more dimensions than items, as in the chapter
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    scaler = StandardScaler().fit(x[:40])
    ref = LogisticRegression(C=0.3, max_iter=10000, tol=1e-10).fit(scaler.transform(x[:40]), y[:40])
    scores = kernel_probe_scores(torch.tensor(x[:40]), torch.tensor(y[:40], dtype=torch.float64),
                                 torch.tensor(x[40:]), C=0.3)
    torch.testing.assert_close(scores, torch.tensor(ref.decision_function(scaler.transform(x[40:])), dtype=torch.float64),
                               atol=1e-3, rtol=1e-3)


def test_curves_bootstrap_and_depth():
    right = [np.stack([np.tile(np.arange(6)[:, None] >= 2, (1, 30)), np.zeros((6, 30), bool)]) for _ in range(3)]
    curves = curves_bootstrap(right, n_boot=50, seed=0)
    assert curves.shape == (50, 2, 6)
    np.testing.assert_array_equal(depth_of(curves[:, 0]), np.full(50, 2))
    assert depth_of(np.array([0.5, 0.7, 0.95, 1.0])) == layer_at_fraction(np.array([0.5, 0.7, 0.95, 1.0]))
    a = curves_bootstrap([np.ones((4, 10), bool)] * 5, n_boot=20, seed=7)
    b = curves_bootstrap([np.ones((4, 12), bool)] * 5, n_boot=20, seed=7)
    assert a.shape == (20, 4) and b.shape == (20, 4)   # same seed: same split draws, whatever the item counts
