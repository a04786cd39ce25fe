"""Datasets in data/ and turning prompts into model inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

DATA = Path(__file__).resolve().parent.parent / "data"


class DataError(ValueError):
    """A data file is malformed; the message names the file (relative to the repo) and the line."""


def load_jsonl(name: str) -> list[dict]:
    """Rows of data/<name>.jsonl (name may include a subfolder, e.g. 'factual/prompts'); one object a line."""
    path, shown = DATA / f"{name}.jsonl", f"data/{name}.jsonl"  # `shown`: never an absolute path
    if not path.is_file():
        known = sorted(p.relative_to(DATA).with_suffix("").as_posix() for p in DATA.rglob("*.jsonl"))
        raise FileNotFoundError(f"{shown}: no such dataset; known: {', '.join(known)}")
    lines = enumerate(path.read_text().splitlines(), start=1)
    return [parse_row(line, f"{shown} line {number}") for number, line in lines if line.strip()]


def parse_row(line: str, where: str) -> dict:
    """One JSON object from one line of a .jsonl file; DataError naming `where` otherwise."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg}: column {error.colno})") from None
    if not isinstance(row, dict):
        text = line.strip()
        raise DataError(f"{where}: expected a JSON object {{...}}, got {text[:40]}{'...' * (len(text) > 40)}")
    return row


def encode(tokenizer, prompts: Sequence[str], device: str | torch.device = "cpu") -> dict:
    """Left-padded batch (input_ids, attention_mask) on `device`: position -1 is every row's last token."""
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def first_token_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's first real token under `encode`'s left padding ([batch] from [batch, seq])."""
    return (attention_mask == 0).sum(-1)


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
