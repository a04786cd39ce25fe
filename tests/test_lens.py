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


PROMPTS = ["w5 w6 w7 w8 w9", "w20", "w30 w31 w32", "w40 w41", "w7 w8 w9 w10 w11 w12"]


def one_at_a_time(hf, tokenizer, prompts):
    """Reference: each prompt alone (no padding), plain transformers, hidden states and logits at the end."""
    states, logits = [], []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = hf(**enc, output_hidden_states=True)
        states.append(torch.stack(out.hidden_states[1:], 0)[:, 0, -1])  # [layer, d_model]
        logits.append(out.logits[0, -1])
    return torch.stack(states), torch.stack(logits)


def test_last_token_states_and_logits_match_one_prompt_at_a_time(tiny_model, reference_hf):
    from lib.arch import Arch
    from lib.lens import last_token_logits, last_token_resid

    states, logits = one_at_a_time(reference_hf, tiny_model.tokenizer, PROMPTS)
    final = Arch(reference_hf).hf_module("final_norm")
    for by_length in (False, True):
        mine = last_token_resid(tiny_model, PROMPTS, batch_size=2, by_length=by_length)
        with torch.no_grad():
            mine[:, -1] = final(mine[:, -1])  # the reference's last hidden state is after the final norm
        torch.testing.assert_close(mine, states, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(last_token_logits(tiny_model, PROMPTS, batch_size=2, by_length=by_length),
                                   logits, atol=1e-4, rtol=1e-4)
