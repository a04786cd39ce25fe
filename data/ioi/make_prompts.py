"""Generate data/ioi/prompts.jsonl: indirect-object-identification prompts with ABC corruptions.

Run from the repository root: `python data/ioi/make_prompts.py`. Deterministic (seeded).
"""

import json
import random
from pathlib import Path

# Names that are one token (with a leading space) in both embedded models' tokenizers.
NAMES = ["Mary", "John", "Tom", "James", "Anna", "Sarah", "David", "Michael", "Lisa", "Paul", "Mark",
         "Kate", "Emma", "Jack", "Peter", "Laura", "Alice", "Bob", "Daniel", "Rachel", "Susan", "Robert",
         "Linda", "Kevin", "Brian", "Jessica", "Amy", "Steve", "Chris", "Jane", "Joe", "Ben", "Sam",
         "Tim", "Adam", "Eric", "Ryan", "Grace", "Rose", "Helen", "Jason", "Alex", "George", "Henry"]
# {A} and {B} are the two names introduced; {S} is the repeated subject; the answer is the other one.
TEMPLATES = [
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "After {A} and {B} went to the shop, {S} handed a bag to",
    "While {A} and {B} were at the office, {S} gave a pen to",
    "When {A} and {B} got a snack at the market, {S} offered it to",
    "Then, {A} and {B} had lunch at the cafe. {S} passed the salt to",
    "{A} and {B} found a book at the library. {S} gave it to",
    "After the meeting, {A} and {B} went home. {S} sent a letter to",
]
N_PER_TEMPLATE = 16


def make(rng: random.Random) -> list[dict]:
    rows = []
    for t, template in enumerate(TEMPLATES):
        for k in range(N_PER_TEMPLATE):
            io, s, c = rng.sample(NAMES, 3)
            order = "ABBA" if k % 2 == 0 else "BABA"  # IO first (ABBA) or S first (BABA), balanced
            a, b = (io, s) if order == "ABBA" else (s, io)
            rows.append({
                "prompt": template.format(A=a, B=b, S=s),
                # ABC corruption: the repeated subject is replaced by a third name, so the
                # sentence no longer says who is left out; IO and S still appear once each.
                "corrupted": template.format(A=a, B=b, S=c),
                "io": " " + io, "s": " " + s, "template": t, "order": order,
            })
    return rows


if __name__ == "__main__":
    out = Path(__file__).with_name("prompts.jsonl")
    rows = make(random.Random(0))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} prompts to {out}")
