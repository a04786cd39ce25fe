"""Write data/ordinal_sets/sets.jsonl (ordinal sequences for the successor-heads chapter) and
control.jsonl (a non-ordinal word set), and
print per-tokenizer single-token counts for the README.

Run: HF_HUB_OFFLINE=1 .venv/bin/python data/ordinal_sets/make_sets.py
"""

import json
from pathlib import Path

NUMBER_WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty").split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
# The non-ordinal control: 26 common concrete nouns in no particular order;
# no item has a successor. Chapter 04 builds lists of three of them in random order.
CONTROL_WORDS = ("apple chair river cloud table horse paper glass stone window garden bread coat lamp ship "
                 "bottle carpet doctor forest island kitchen mountain pencil rabbit sugar wallet").split()

# Digits are written without a leading space: both embedded tokenizers split " 4" into a space
# token and "4", so the prompt "1, 2, 3, " ends on the space and the next token is the bare digit.
SETS = [
    dict(name="digits", items=[str(d) for d in range(10)], space=False, cyclic=False),
    dict(name="number_words", items=NUMBER_WORDS, space=True, cyclic=False),
    dict(name="days", items=DAYS, space=True, cyclic=True),
    dict(name="months", items=MONTHS, space=True, cyclic=True),
    dict(name="letters", items=LETTERS, space=True, cyclic=False),
]
CONTROL = [dict(name="random_words", items=CONTROL_WORDS, space=True, cyclic=False)]


def token_text(row: dict, item: str) -> str:
    """The text whose single token stands for `item` mid-list (' Monday', but '4')."""
    return (" " if row["space"] else "") + item


def main() -> None:
    out = Path(__file__).with_name("sets.jsonl")
    out.write_text("".join(json.dumps(row) + "\n" for row in SETS))
    out.with_name("control.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CONTROL))
    from transformers import AutoTokenizer

    from lib.models import converted_dir

    for model in ("smollm2-135m", "gemma-3-270m"):
        tok = AutoTokenizer.from_pretrained(converted_dir(model))
        for row in SETS + CONTROL:
            single = sum(len(tok(token_text(row, i), add_special_tokens=False).input_ids) == 1
                         for i in row["items"])
            print(f"| {model} | {row['name']} | {len(row['items'])} | {single} |")


if __name__ == "__main__":
    main()
