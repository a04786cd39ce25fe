"""Generate data/concept_comparison/statements.jsonl: two-step comparisons, true or false.

"Tom has 7 apples and Ann has 4 apples, so Ann has more apples than Tom."
Deciding the label takes two steps: compare the two numbers, then check whether the conclusion
names the person with more. Labels and the two surface cues (is the first number the larger?
is the conclusion's subject the first person?) are balanced so that neither cue alone predicts
the label: the label is their agreement (an XOR a linear probe cannot read off the words).
Run from the repository root: python data/concept_comparison/make_statements.py
"""

import json
import random
from pathlib import Path

NAMES = "Tom Ann Bob Sue Max Amy Sam Kate Ben Lucy Dan Emma Jack Mia Leo Zoe Paul Rose Mark Lily".split()
OBJECTS = "apples books coins cards stamps marbles pencils shells".split()
N_ITEMS = 400


def item(rng: random.Random, label: int, first_bigger: int) -> dict:
    a, b = rng.sample(NAMES, 2)
    big, small = sorted(rng.sample(range(2, 10), 2), reverse=True)
    na, nb = (big, small) if first_bigger else (small, big)
    obj = rng.choice(OBJECTS)
    subject_is_first = first_bigger if label else 1 - first_bigger
    subject, other = (a, b) if subject_is_first else (b, a)
    text = f"{a} has {na} {obj} and {b} has {nb} {obj}, so {subject} has more {obj} than {other}."
    return {"text": text, "label": label, "first_bigger": first_bigger, "subject_is_first": subject_is_first}


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = [item(rng, i % 2, (i // 2) % 2) for i in range(N_ITEMS)]
    rng.shuffle(rows)
    out = Path(__file__).with_name("statements.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} statements -> {out}")


if __name__ == "__main__":
    main()
