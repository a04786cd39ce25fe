import beartype  # noqa: F401  # before nnsight (via lib.lens): nnsight adds object.save, which breaks beartype's import
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lib.lens import last_token_resid
from lib.probes import layer_accuracy, layer_at_fraction, layer_correct, split


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
