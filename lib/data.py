"""Datasets in data/ and turning prompts into model inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

DATA = Path(__file__).resolve().parent.parent / "data"


def load_jsonl(name: str) -> list[dict]:
    """Rows of data/<name>.jsonl (name may include a subfolder, e.g. 'factual/prompts')."""
    path = DATA / f"{name}.jsonl"
    if not path.exists():
        known = sorted(str(p.relative_to(DATA).with_suffix("")) for p in DATA.rglob("*.jsonl"))
        raise FileNotFoundError(f"dataset {name!r} not found in data/; known: {known}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def encode(tokenizer, prompts: Sequence[str], device: str | torch.device = "cpu") -> dict:
    """Left-padded batch (input_ids, attention_mask) on `device`: position -1 is every row's last token."""
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def batched(items: Sequence, size: int, desc: str | None = None) -> Iterator[Sequence]:
    """Consecutive slices of `items` of at most `size`, with a progress bar when `desc` is given."""
    starts = range(0, len(items), size)
    for start in tqdm(starts, desc=desc, disable=desc is None, leave=False):
        yield items[start:start + size]


def first_token_id(tokenizer, text: str) -> int:
    """Id of the first token of `text` (as the model would see it mid-sentence)."""
    return tokenizer(text, add_special_tokens=False).input_ids[0]


def is_single_token(tokenizer, text: str) -> bool:
    """Whether `text` encodes to exactly one token (without special tokens)."""
    return len(tokenizer(text, add_special_tokens=False).input_ids) == 1
