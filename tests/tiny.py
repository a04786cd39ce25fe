"""Tiny random-weight models of real families, built from configs, for fast offline tests."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["<pad>", "<bos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(252)]


def tiny_tokenizer():
    """A word-level tokenizer over 'w0' ... 'w251' (whitespace split), with pad/bos/eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_config(family: str):
    """Config of a 4-layer, d_model 64 model; GQA with 4 query and 2 key/value heads."""
    common = dict(vocab_size=len(WORDS), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        from transformers import LlamaConfig
        return LlamaConfig(**common, tie_word_embeddings=False)
    if family == "gemma3":
        from transformers import Gemma3TextConfig
        return Gemma3TextConfig(**common, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                layer_types=["sliding_attention", "full_attention"] * 2)
    raise ValueError(f"family: expected 'llama' or 'gemma3', got {family!r}")


def save_tiny_model(family: str, directory: Path, seed: int = 0) -> Path:
    """Write a seeded random tiny model and its tokenizer to `directory`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    model.save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory
