"""lib.toy at tiny sizes: the generators, the clamp, the seeded training loop, the crossing times and the
Balls & Urns predictors, each against the obvious slow reference."""

import math

import numpy as np
import pytest
import torch

from lib import stats, toy


def tiny_world(K=12, L=4, D=6, eps=0.1, seed=0):
    return toy.icl_world(K, L, D, eps, seed)


def test_bursty_sequences_hold_the_query_class_and_labels_match_items():
    world = tiny_world()
    x, y, context = toy.icl_sequences(world, 20, N=4, B=2, generator=torch.Generator().manual_seed(1))
    assert x.shape == (20, 9, 6 + 9)
    assert (context == y[:, None]).any(1).all(), "bursty: the query's label is in the context"
    for i in range(20):
        for j in range(4):  # each label position carries the label vector of the item before it
            torch.testing.assert_close(x[i, 2 * j + 1, :6], world.label_vectors[context[i, j]])
    torch.testing.assert_close(x[:, :, 6:], torch.eye(9).expand(20, 9, 9))
    # each context label appears B = 2 times (or a multiple, when classes share a label)
    assert all((torch.bincount(c) % 2 == 0)[c].all() for c in context)


def test_sequences_are_a_function_of_the_generator():
    world = tiny_world()
    a = toy.icl_sequences(world, 5, N=4, B=0, generator=torch.Generator().manual_seed(3))
    b = toy.icl_sequences(world, 5, N=4, B=0, generator=torch.Generator().manual_seed(3))
    for s, t in zip(a, b):
        torch.testing.assert_close(s, t)
    with pytest.raises(ValueError):
        toy.icl_sequences(world, 5, N=4, B=3, generator=torch.Generator())


def test_clamp_replaces_layer_one_pattern_and_patterns_are_causal():
    pattern = toy.ideal_prev_pattern(4)
    assert pattern[1, 0] == 1 and pattern[3, 2] == 1 and pattern[2, 2] == 1
    torch.testing.assert_close(pattern.sum(-1), torch.ones(9))
    torch.manual_seed(0)
    net = toy.AttnOnlyClassifier(15, 4, clamp=pattern)
    x, _, _ = toy.icl_sequences(tiny_world(), 3, N=4, B=2, generator=torch.Generator().manual_seed(0))
    logits, (first, second) = net(x)
    assert logits.shape == (3, 4)
    torch.testing.assert_close(first, pattern.expand(3, 9, 9))
    assert second.shape == (3, 1, 9)
    torch.testing.assert_close(second.sum(-1), torch.ones(3, 1))


def test_query_only_last_layer_equals_the_full_computation():
    torch.manual_seed(0)
    net = toy.AttnOnlyClassifier(15, 4)
    x, _, _ = toy.icl_sequences(tiny_world(), 3, N=4, B=2, generator=torch.Generator().manual_seed(0))
    logits, (first, second) = net(x)
    h, d = x, x.shape[-1]
    future = torch.triu(torch.ones(9, 9, dtype=torch.bool), 1)
    for qkv in net.qkv:  # the slow reference: every row of every layer
        q, k, v = qkv(h).chunk(3, -1)
        full = (q @ k.transpose(1, 2) / d ** 0.5).masked_fill(future, -torch.inf).softmax(-1)
        h = h + full @ v
    torch.testing.assert_close(second, full[:, -1:])
    torch.testing.assert_close(logits, net.mlp(h[:, -1]))


def test_icl_scores_match_a_loop():
    world = tiny_world()
    x, y, context = toy.icl_sequences(world, 6, N=4, B=2, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    net = toy.AttnOnlyClassifier(15, 4)
    scores = toy.icl_scores(net, x, y, context, batch_size=4)
    logits, (first, second) = net(x)
    for i in range(6):
        ih = sum(second[i, -1, 2 * j + 1].item() for j in range(4) if context[i, j] == y[i])
        prev = np.mean([first[i, 2 * j + 1, 2 * j].item() for j in range(4)])
        assert math.isclose(scores["ih"][i].item(), ih, abs_tol=1e-6)
        assert math.isclose(scores["prev"][i].item(), prev, abs_tol=1e-6)
        assert scores["correct"][i].item() == float(logits[i].argmax() == y[i])


def test_train_is_seeded_calls_back_and_enforces_the_cap():
    world = tiny_world()

    def run():
        g = torch.Generator().manual_seed(0)
        net = toy.AttnOnlyClassifier(15, 4)
        seen = []
        losses = toy.train(net, lambda s: toy.icl_sequences(world, 8, N=4, B=2, generator=g)[:2], steps=5,
                           lr=1e-2, seed=1, eval_every=2, callback=lambda step, n: seen.append(step))
        return losses, seen, net.mlp[-1].weight.detach().clone()

    (l1, s1, w1), (l2, _, w2) = run(), run()
    assert s1 == [0, 2, 4, 5] and len(l1) == 5
    assert l1 == l2
    torch.testing.assert_close(w1, w2)
    with pytest.raises(toy.WallClockExceeded):
        toy.train(toy.AttnOnlyClassifier(15, 4), lambda s: toy.icl_sequences(world, 8, N=4, B=2,
                  generator=torch.Generator())[:2], steps=3, lr=1e-2, seed=0, eval_every=1, max_seconds=-1)


def test_crossings_interpolate_and_measure_abruptness():
    steps = [0, 100, 200, 300, 400]
    curve = [0.3, 0.25, 0.3, 0.9, 1.0]
    assert toy.first_crossing(steps, curve, 0.6) == pytest.approx(250)
    assert math.isnan(toy.first_crossing(steps, curve, 1.1))
    onset, end = toy.onset_and_rise(steps, curve, 0.35, 0.85)
    assert onset == pytest.approx(200 + 100 * 0.05 / 0.6) and end == pytest.approx(200 + 100 * 0.55 / 0.6)
    assert toy.abruptness(steps, curve) == pytest.approx((end - onset) / onset)
    assert toy.abruptness(steps, [0.3] * 5) == math.inf
    assert toy.rise_over_plateau(steps, [0.5, 0.1, 0.15, 0.3, 0.4]) == pytest.approx(200 + 100 * 0.05 / 0.15)
    # a minimum at initialisation is not the plateau: `start` leaves it out
    assert toy.rise_over_plateau(steps, [0.1, 0.2, 0.2, 0.5, 0.6], start=100) == pytest.approx(200 + 100 * 0.2 / 0.3)


def test_stratified_median_of_constant_seeds_has_a_point_interval():
    value, (low, high) = stats.stratified_median(lambda s, w: float(s), n_seeds=3, n_items=5, n_boot=20)
    assert value == low == high == 1.0
    w = stats.resample_weights(7, 11, seed=0)
    assert w.shape == (7, 11) and (w.sum(0) == 7).all()


def test_urn_predictors_match_bayes_by_hand():
    urns = toy.dirichlet_urns(3, 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(urns.sum(-1), torch.ones(3))
    tokens, balls = toy.urn_sequences(urns, 2, T=5, generator=torch.Generator().manual_seed(1))
    assert tokens.shape == balls.shape == (2, 5) and (tokens[:, 0] == 4).all()
    torch.testing.assert_close(tokens[:, 1:], balls[:, :-1])
    M, G = toy.urn_predictors(balls, urns)
    for i in range(2):
        for t in range(5):
            seen = balls[i, :t]
            counts = torch.bincount(seen, minlength=4).float()
            torch.testing.assert_close(G[i, t], (counts + 1) / (t + 4))
            likelihood = torch.stack([u[seen].prod() for u in urns])
            torch.testing.assert_close(M[i, t], (likelihood / likelihood.sum()) @ urns)


def test_relative_distance_is_zero_at_g_and_one_at_m():
    urns = toy.dirichlet_urns(3, 4, torch.Generator().manual_seed(0))
    _, balls = toy.urn_sequences(urns, 8, T=10, generator=torch.Generator().manual_seed(1))
    M, G = toy.urn_predictors(balls, urns)
    assert toy.relative_distance(toy.urn_distances(G, M, G)) == pytest.approx(0, abs=1e-5)
    assert toy.relative_distance(toy.urn_distances(M, M, G)) == pytest.approx(1, abs=1e-5)
    d = toy.urn_distances((M + G) / 2, M, G)
    w = stats.resample_weights(8, 4, seed=0)
    many = toy.relative_distance(d, w)
    assert many.shape == (4,)
    assert many[0] == pytest.approx(toy.relative_distance(np.repeat(d.numpy(), w[:, 0].astype(int), 0)))


def test_urn_transformer_is_causal():
    torch.manual_seed(0)
    net = toy.UrnTransformer(4, 6, d_model=8)
    tokens = torch.randint(4, (2, 6))
    out = toy.urn_outputs(net, tokens)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 4
    torch.testing.assert_close(out[:, :-1], toy.urn_outputs(net, changed)[:, :-1])
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 6))


def test_models_on_the_test_device_return_cpu_scores_equal_to_the_cpu_reference(device):
    """The device rule: data made on the CPU, models on --device, evaluations back on the CPU."""
    world = tiny_world()
    x, y, context = toy.icl_sequences(world, 4, N=4, B=2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    reference = toy.AttnOnlyClassifier(15, 4, clamp=toy.ideal_prev_pattern(4))
    moved = toy.AttnOnlyClassifier(15, 4, clamp=toy.ideal_prev_pattern(4))
    moved.load_state_dict(reference.state_dict())
    moved.to(device)
    scores, expected = toy.icl_scores(moved, x, y, context), toy.icl_scores(reference, x, y, context)
    for key in expected:
        assert scores[key].device.type == "cpu"
        torch.testing.assert_close(scores[key], expected[key], atol=1e-4, rtol=1e-4)
    urns = toy.dirichlet_urns(3, 4, torch.Generator().manual_seed(0))
    tokens, _ = toy.urn_sequences(urns, 2, T=5, generator=torch.Generator().manual_seed(1))
    net = toy.UrnTransformer(4, 5, d_model=8)
    cpu_out = toy.urn_outputs(net, tokens)
    out = toy.urn_outputs(net.to(device), tokens)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, cpu_out, atol=1e-4, rtol=1e-4)
    losses = toy.train(net, lambda s: toy.urn_sequences(urns, 4, T=5, generator=torch.Generator().manual_seed(s)),
                       steps=2, lr=1e-3, seed=0, eval_every=1, optimizer="adamw")
    assert len(losses) == 2
