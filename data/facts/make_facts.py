"""Build facts.jsonl (subject -> attribute facts with the subject span marked) and copy.jsonl (control).

Run: python data/facts/make_facts.py  (deterministic; rewrites both files)
facts.jsonl reuses data/factual/prompts.jsonl (chapter 01's prompts) and adds the subject's
character span, without a leading "the" (ROME's convention: the span is the entity's name).
copy.jsonl is a task that needs no recall: a list of common words, then the list again up to its
last word, which the model must copy from the context.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
WORDS = ("cat dog tree book lamp river stone cloud apple chair table door window house car road bird fish "
         "milk bread water fire green blue red black white small large happy quick slow king queen ship "
         "train shoe hat coat bag cup box key ring bell star moon sun rain snow wind hill sand").split()


def facts():
    for row in map(json.loads, (HERE.parent / "factual" / "prompts.jsonl").read_text().splitlines()):
        name = row["subject"][4:] if row["subject"].lower().startswith("the ") else row["subject"]
        start = row["prompt"].index(name)
        yield {**row, "subject": name, "subject_start": start, "subject_end": start + len(name)}


def copies(n: int = 60, length: int = 5, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        words = rng.sample(WORDS, length)
        yield {"prompt": ", ".join(words) + ". " + ", ".join(words[:-1]) + ",", "answer": " " + words[-1]}


if __name__ == "__main__":
    for name, rows in (("facts", list(facts())), ("copy", list(copies()))):
        (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {len(rows)} rows to {name}.jsonl")
