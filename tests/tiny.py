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


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "olmo2", "gemma2", "gemma3", "gpt2", "gpt_neox"]


def tiny_config(family: str):
    """Config of a 4-layer, d_model 64 model of `family`; GQA with 4 query and 2 key/value heads where the
    family has it (GPT-2 and GPT-NeoX have 4 full heads)."""
    common = dict(vocab_size=len(WORDS), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        from transformers import LlamaConfig
        return LlamaConfig(**common, tie_word_embeddings=False)
    if family == "mistral":
        from transformers import MistralConfig
        return MistralConfig(**common, sliding_window=None)
    if family == "qwen2":
        from transformers import Qwen2Config
        return Qwen2Config(**common)
    if family == "qwen3":
        from transformers import Qwen3Config
        return Qwen3Config(**common, head_dim=16)
    if family == "olmo2":
        from transformers import Olmo2Config
        return Olmo2Config(**common)
    if family == "gemma2":
        from transformers import Gemma2Config
        return Gemma2Config(**common, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                            final_logit_softcapping=30.0, attn_logit_softcapping=50.0)
    if family == "gemma3":
        from transformers import Gemma3TextConfig
        return Gemma3TextConfig(**common, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                layer_types=["sliding_attention", "full_attention"] * 2)
    if family == "gpt2":
        from transformers import GPT2Config
        return GPT2Config(vocab_size=len(WORDS), n_embd=64, n_layer=4, n_head=4, n_positions=128, **ids)
    if family == "gpt_neox":
        from transformers import GPTNeoXConfig
        return GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=128, rotary_pct=0.25,
                             use_parallel_residual=True, **ids)
    raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")


def save_tiny_model(family: str, directory: Path, seed: int = 0) -> Path:
    """Write a seeded random tiny model and its tokenizer to `directory`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    model.save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory
