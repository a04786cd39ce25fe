import sys

import pytest
import torch

from lib.arch import Arch
from lib.attention import (
    attention_patterns,
    attention_to_position,
    eager_attention,
    head_diagonal_score,
    induction_score,
    previous_token_score,
)
from lib.data import encode, first_token_position
from lib.models import load_hf

PROMPTS = ["w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16", "w20 w21 w22", "w30 w31 w32 w33 w34 w35 w36"]


def reference_pattern(hf, tokenizer, prompt: str) -> torch.Tensor:
    """Slow reference for one unpadded prompt: recompute softmax(q k^T) from each attention's input."""
    arch = Arch(hf)  # the plain transformers model, loaded separately from the nnsight one
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    captured = {}

    def grab(i):
        def hook(module, args, kwargs):
            captured[i] = (kwargs.get("hidden_states", args[0] if args else None), kwargs["position_embeddings"])
        return hook

    handles = [arch.hf_module("attn", i).register_forward_pre_hook(grab(i), with_kwargs=True)
               for i in range(arch.n_layers)]
    try:
        hf(ids)
    finally:
        for handle in handles:
            handle.remove()
    out = []
    for i in range(arch.n_layers):
        attn, (hidden, (cos, sin)) = arch.hf_module("attn", i), captured[i]
        seq = hidden.shape[1]
        q = attn.q_proj(hidden).view(1, seq, -1, arch.d_head).transpose(1, 2)
        k = attn.k_proj(hidden).view(1, seq, -1, arch.d_head).transpose(1, 2)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb(q, k, cos, sin)
        heads = []
        for h in range(arch.n_heads):
            kv = h // (arch.n_heads // arch.n_kv_heads)
            scores = (q[0, h] @ k[0, kv].T) * attn.scaling
            qi, ki = torch.arange(seq)[:, None], torch.arange(seq)[None, :]
            allowed = ki <= qi
            if getattr(attn, "sliding_window", None):
                allowed &= qi - ki < attn.sliding_window
            heads.append(scores.masked_fill(~allowed, float("-inf")).softmax(-1))
        out.append(torch.stack(heads))
    return torch.stack(out)  # [layer, head, q, k]


@torch.no_grad()
def test_patterns_match_reference_under_padding(tiny_model, tiny_dir):
    hf, tokenizer = load_hf(str(tiny_dir))
    enc = encode(tiny_model.tokenizer, PROMPTS)
    pattern = attention_patterns(tiny_model, enc)
    arch = Arch(tiny_model)
    assert pattern.shape == (len(PROMPTS), arch.n_layers, arch.n_heads, enc["input_ids"].shape[1],
                             enc["input_ids"].shape[1])
    starts = first_token_position(enc["attention_mask"])
    for row, prompt in enumerate(PROMPTS):
        s = starts[row]
        torch.testing.assert_close(pattern[row, :, :, s:, s:], reference_pattern(hf, tokenizer, prompt),
                                   atol=1e-5, rtol=1e-4)
        assert pattern[row, :, :, :s].abs().sum() == 0 and pattern[row, ..., :s].abs().sum() == 0


@torch.no_grad()
def test_layer_subset_and_restores_attention_implementation(tiny_model):
    enc = encode(tiny_model.tokenizer, PROMPTS)
    before = Arch(tiny_model).config._attn_implementation
    full = attention_patterns(tiny_model, enc)
    part = attention_patterns(tiny_model, enc, layers=[2, 0])
    torch.testing.assert_close(part, full[:, [2, 0]])
    assert Arch(tiny_model).config._attn_implementation == before


def loop_diagonal(pattern, offset, first_query):
    b, L, H, S, _ = pattern.shape
    out = torch.zeros(b, L, H)
    for q in range(first_query, S):
        out += pattern[..., q, q - offset]
    return out / (S - first_query)


def test_scores_match_loops():
    torch.manual_seed(0)
    pattern = torch.rand(2, 3, 4, 11, 11).softmax(-1)
    prefix, period = 1, 5
    torch.testing.assert_close(induction_score(pattern, period, prefix),
                               loop_diagonal(pattern, period - 1, prefix + period))
    torch.testing.assert_close(previous_token_score(pattern), loop_diagonal(pattern, 1, 1))
    with pytest.raises(ValueError):
        induction_score(pattern, period=20)


def test_attention_to_position_masks_queries():
    torch.manual_seed(0)
    pattern = torch.rand(2, 3, 4, 6, 6)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = first_token_position(mask)
    got = attention_to_position(pattern, pos, mask)
    torch.testing.assert_close(got[0], pattern[0, :, :, 2:, 2].mean(-1))
    torch.testing.assert_close(got[1], pattern[1, :, :, :, 0].mean(-1))
    torch.testing.assert_close(attention_to_position(pattern, 3)[1], pattern[1, :, :, 3:, 3].mean(-1))


def test_head_diagonal_score_matches_loops():
    torch.manual_seed(0)
    weights = torch.rand(2, 4, 11, 11).softmax(-1)
    torch.testing.assert_close(head_diagonal_score(weights, 4, 6), loop_diagonal(weights[:, None], 4, 6)[:, 0])


@torch.no_grad()
def test_head_diagonal_score_inside_a_trace_matches_patterns(tiny_model, reference_hf):
    """Scores computed layer by layer inside one trace equal the scores of the slow reference patterns."""
    import nnsight

    arch, tokenizer = Arch(tiny_model), tiny_model.tokenizer
    block = "w5 w6 w7 w8 w9 w10"
    ids = tokenizer(block + " " + block, return_tensors="pt").input_ids
    period = (ids.shape[1] - 1) // 2 if ids.shape[1] % 2 else ids.shape[1] // 2
    prefix = ids.shape[1] - 2 * period
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with eager_attention(tiny_model), tiny_model.trace(enc):
        got = nnsight.save([head_diagonal_score(arch.attn(i).output[1], period - 1, prefix + period)
                            for i in range(arch.n_layers)])
    got = torch.stack([g.float().cpu() for g in got], 1)  # [batch, layer, head]
    reference = reference_pattern(reference_hf, tokenizer, tokenizer.decode(ids[0], skip_special_tokens=True))
    torch.testing.assert_close(got, induction_score(reference[None], period, prefix), atol=1e-5, rtol=1e-4)
