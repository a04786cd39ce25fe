import numpy as np
import pytest
import torch

from lib.arch import Arch
from lib.graphs import (
    class_means,
    class_sums,
    dirichlet_energy,
    full_probabilities,
    graph_distances,
    grid_distances,
    grid_graph,
    grid_spearman,
    mixing_null,
    neighbour_mass,
    neighbour_mixing,
    pca_2d,
    permutation_null,
    random_walks,
    ring_graph,
    walk_input_ids,
    walk_pass,
    word_token_ids,
)

WORDS = [f"w{i}" for i in range(10, 19)]  # a 3 x 3 grid of the tiny tokenizer's words


def test_grid_and_ring_graphs():
    a = grid_graph(4, 4)
    assert (a == a.T).all() and a.trace() == 0
    assert sorted(np.bincount(a.sum(1))[2:5]) == [4, 4, 8]  # 4 corners (2), 8 edges (3), 4 inside (4)
    d = grid_distances(4, 4)
    rc = np.array([(i // 4, i % 4) for i in range(16)])
    np.testing.assert_array_equal(d, np.abs(rc[:, None] - rc[None]).sum(-1))
    r = ring_graph(7)
    assert (r.sum(1) == 2).all() and graph_distances(r).max() == 3


def test_random_walks_follow_edges():
    a = grid_graph(4, 4)
    walks = random_walks(a, 8, 200, seed=3)
    assert walks.shape == (8, 200) and list(walks[:, 0]) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert all(a[w[t], w[t + 1]] for w in walks for t in range(199))
    np.testing.assert_array_equal(walks, random_walks(a, 8, 200, seed=3))


def test_word_token_ids_rejects_multi_token_words(tiny_model):
    assert len(word_token_ids(tiny_model.tokenizer, WORDS)) == 9
    with pytest.raises(ValueError, match="single token"):
        word_token_ids(tiny_model.tokenizer, ["w1", "not-a-word w2"])


def _reference(hf, ids, word_ids, heads, layer):
    """Slow path: the plain model's full logits (and hidden states), heads zeroed by a pre-hook on o_proj."""
    arch = Arch(hf)
    handles = []
    for lay in {lay for row in heads for lay, _ in row}:
        def zero(module, args, lay=lay):
            z = args[0].clone().view(*args[0].shape[:2], arch.n_heads, arch.d_head)
            for row, row_heads in enumerate(heads):
                for ll, h in row_heads:
                    if ll == lay:
                        z[row, :, h] = 0
            return (z.view(args[0].shape),)
        handles.append(arch.hf_module("o_proj", lay).register_forward_pre_hook(zero))
    try:
        with torch.no_grad():
            out = hf(ids, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return out.logits.float(), out.hidden_states[layer].float()


@pytest.mark.parametrize("ablate", [False, True])
def test_walk_pass_matches_full_logits(tiny_model, reference_hf, ablate):
    a = grid_graph(3, 3)
    walks = random_walks(a, 3, 40, seed=0)
    tok = tiny_model.tokenizer
    ids = walk_input_ids(tok, WORDS, walks)
    word_ids = word_token_ids(tok, WORDS)
    heads = [[(1, 0), (2, 3)], [], [(0, 2)]] if ablate else [[], [], []]
    sub = [0, 5, 39]
    out = walk_pass(tiny_model, ids, word_ids, layer=2, heads=heads, full_positions=sub)
    logits, hidden = _reference(reference_hf, ids, word_ids, heads, layer=2)
    torch.testing.assert_close(out["word_logprobs"], logits[:, :, word_ids].log_softmax(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["resid"], hidden, atol=1e-4, rtol=1e-4)
    full = logits.softmax(-1)[:, sub][:, :, word_ids]
    torch.testing.assert_close(full_probabilities(out["word_logprobs"][:, sub], out["log_word_mass"]), full,
                               atol=1e-5, rtol=1e-4)
    slow_mass = torch.tensor([[full[w, t, a[walks[w, s]] == 1].sum() for t, s in enumerate(sub)] for w in range(3)])
    torch.testing.assert_close(neighbour_mass(full, walks[:, sub], a), slow_mass)


def test_class_means_and_geometry():
    a, d = grid_graph(4, 4), grid_distances(4, 4)
    coords = np.array([(i // 4, i % 4) for i in range(16)], dtype=float)
    rng = np.random.default_rng(0)
    walks = random_walks(a, 4, 300, seed=1)
    resid = torch.tensor(coords[walks] + 0.01 * rng.standard_normal((4, 300, 2)))
    sums, counts = class_sums(resid, walks, 16, slice(100, 300))
    assert counts.sum() == 4 * 200
    means = class_means(sums, counts)
    np.testing.assert_allclose(means, coords, atol=0.01)
    slow = np.stack([resid[:, 100:][torch.as_tensor(walks[:, 100:]) == c].mean(0).numpy() for c in range(16)])
    np.testing.assert_allclose(means, slow)
    assert grid_spearman(means, d) > 0.9
    null = permutation_null(lambda m: dirichlet_energy(m, a), means, 200, seed=0)
    assert dirichlet_energy(means, a) < null.min()
    assert abs(dirichlet_energy(rng.standard_normal((16, 50)), a) - 48 / 240) < 0.05
    assert np.isnan(class_means(sums[:1] * 0, counts[:1] * 0)).all()
    assert pca_2d(means).shape == (16, 2)


def test_neighbour_mixing_null():
    a, d = grid_graph(4, 4), grid_distances(4, 4)
    x = np.random.default_rng(0).standard_normal((16, 8))
    mixed = neighbour_mixing(x, a)
    np.testing.assert_allclose(mixed[0], x[0] + (x[1] + x[4]) / 2)
    before, after = mixing_null(a, d, 576, 5, seed=0)
    assert after.mean() > 0.5 > abs(before.mean())
