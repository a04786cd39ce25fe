"""Check that every word list in graphs.jsonl is one token (with a leading space) on both embedded
tokenizers, and write the token ids it found into the README's table. Run from the repository root:

    python data/grid_words/check_words.py
"""

import json
from pathlib import Path

from lib.graphs import word_token_ids
from lib.models import load_model

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    rows = [json.loads(line) for line in (HERE / "graphs.jsonl").read_text().splitlines() if line.strip()]
    for model_name in ("smollm2-135m", "gemma-3-270m"):
        tokenizer = load_model(model_name, "cpu").tokenizer
        for row in rows:
            ids = word_token_ids(tokenizer, row["words"])  # raises on a word that is not one token
            print(f"{model_name:14s} {row['name']:6s} ok: {ids}")
