"""Generate data/colored_objects/prompts.jsonl: one-shot Colored Objects prompts with corruptions.

Format after Merullo et al. (2024) (the BIG-bench Reasoning about Colored Objects task, one shot).
Also writes prompts_3shot.jsonl: the same test questions after three answered examples with lower-case
answers (their repository's `NShotPrompt(uppercase=False)` with three shots), a variant a small model
may find easier. Run from the repository root: `python data/colored_objects/make_prompts.py`.
Deterministic (seeded).
"""

import json
import random
from pathlib import Path

# Colours and objects that are one token (with a leading space; colours also capitalised) in both
# embedded models' tokenizers.
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
          "gray", "silver", "gold"]
OBJECTS = ["textbook", "puzzle", "cup", "pen", "book", "ball", "hat", "key", "phone", "lamp", "bowl",
           "plate", "sock", "shoe", "bag", "box", "card", "coin", "ring", "watch", "clock", "bottle",
           "candle", "chair", "pencil", "notebook", "glove"]
PLACES = ["On the table", "On the desk", "On the floor", "On the shelf"]
N_PROMPTS = 128


def article(color: str) -> str:
    return "an" if color[0] in "aeiou" else "a"


def question(rng: random.Random) -> tuple[str, list[str], list[str], int]:
    """One 'Q: ... What color is the X?' with three distinct objects/colours; returns the asked index."""
    objects, colors = rng.sample(OBJECTS, 3), rng.sample(COLORS, 3)
    items = [f"{article(c)} {c} {o}" for c, o in zip(colors, objects)]
    scene = f"{rng.choice(PLACES)}, I see {items[0]}, {items[1]}, and {items[2]}."
    return scene, objects, colors, rng.randrange(3)


def make(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_PROMPTS):
        scene, objects, colors, _k = question(rng)
        shot_scene, shot_objects, shot_colors, j = question(rng)
        shot = f"Q: {shot_scene} What color is the {shot_objects[j]}?\nA: {shot_colors[j].capitalize()}\n"
        k, other = rng.sample(range(3), 2)  # asked object, and the one the corruption asks about
        rows.append({
            "prompt": f"{shot}Q: {scene} What color is the {objects[k]}?\nA:",
            # Corruption: the same scene, but the question names another object, so the answer changes.
            "corrupted": f"{shot}Q: {scene} What color is the {objects[other]}?\nA:",
            "answer": " " + colors[k].capitalize(), "wrong": " " + colors[other].capitalize(),
            "candidates": [" " + c.capitalize() for c in colors], "asked": k,
        })
    return rows


def lowercase_three_shot(rows: list[dict], rng: random.Random) -> list[dict]:
    """Each row's test question after its own example and two more, every answer in lower case."""
    out = []
    for row in rows:
        shots = []
        for _ in range(2):
            scene, objects, colors, j = question(rng)
            shots.append(f"Q: {scene} What color is the {objects[j]}?\nA: {colors[j]}\n")
        first, rest = row["prompt"].split("\n", 1)  # the row's own example: question, then "A: White\n..."
        own_answer, test = rest.split("\n", 1)
        prefix = "".join(shots) + f"{first}\nA: {own_answer[3:].lower()}\n"
        out.append({**row, "prompt": prefix + test, "corrupted": prefix + row["corrupted"].split("\n", 2)[2],
                    "answer": row["answer"].lower(), "wrong": row["wrong"].lower(),
                    "candidates": [c.lower() for c in row["candidates"]]})
    return out


if __name__ == "__main__":
    out = Path(__file__).with_name("prompts.jsonl")
    rows = make(random.Random(0))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} prompts to {out}")
    variant = lowercase_three_shot(rows, random.Random(1))
    out.with_name("prompts_3shot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in variant))
    print(f"wrote {len(variant)} prompts to {out.with_name('prompts_3shot.jsonl')}")
