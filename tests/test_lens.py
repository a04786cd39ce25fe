"""lib.lens.commitment_layer against a plain loop."""

import torch

from lib.lens import commitment_layer


def slow_commitment(top: list[int], answer: int) -> int:
    layer = len(top)
    while layer > 0 and top[layer - 1] == answer:
        layer -= 1
    return layer


def test_commitment_layer_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    top = torch.randint(0, 3, (200, 6), generator=gen)
    answer = torch.randint(0, 3, (200,), generator=gen)
    fast = commitment_layer(top, answer)
    assert fast.tolist() == [slow_commitment(t, a) for t, a in zip(top.tolist(), answer.tolist())]


def test_commitment_layer_edge_cases():
    top = torch.tensor([[1, 1, 1], [2, 1, 1], [1, 2, 1], [1, 1, 2]])
    assert commitment_layer(top, torch.tensor([1, 1, 1, 1])).tolist() == [0, 1, 2, 3]
