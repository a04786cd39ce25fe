"""Generate data/concept_sentiment/reviews.jsonl: short positive/negative reviews from templates.

A review is a template, a reviewed thing and one sentiment adjective; the label is the adjective's
polarity (1 = positive). Templates and things are shared by both labels, so only the adjective
carries the sentiment. Items are drawn without repeats with a fixed seed, half of each label.
Run from the repository root: python data/concept_sentiment/make_reviews.py
"""

import json
import random
from pathlib import Path

POSITIVE = ("wonderful excellent delightful superb fantastic brilliant charming lovely great amazing "
            "enjoyable pleasant impressive outstanding terrific marvelous beautiful perfect fun satisfying "
            "moving clever gorgeous refreshing memorable").split()
NEGATIVE = ("terrible awful dreadful boring disappointing horrible dull poor mediocre bad "
            "annoying unpleasant painful weak lousy miserable tedious bland messy useless "
            "forgettable clumsy ugly frustrating pointless").split()
THINGS = ("movie film show book album restaurant hotel meal concert play game phone "
          "café museum trip course").split()
TEMPLATES = [
    "I watched the {thing} last night and it was {adj}.",
    "Honestly, the {thing} was {adj}.",
    "My friends said the {thing} was {adj}, and I agree.",
    "Overall, I found the {thing} {adj}.",
    "We tried the {thing} on Sunday. It was {adj}.",
    "In one word, the {thing} was {adj}.",
    "After two hours I can say the {thing} is {adj}.",
    "Review: the {thing} was {adj} from start to finish.",
]
N_PER_LABEL = 200


def draw(rng: random.Random, adjectives: list[str], label: int) -> list[dict]:
    combos = [(t, thing, adj) for t in TEMPLATES for thing in THINGS for adj in adjectives]
    return [{"text": t.format(thing=thing, adj=adj), "label": label, "adjective": adj, "thing": thing}
            for t, thing, adj in rng.sample(combos, N_PER_LABEL)]


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = draw(rng, POSITIVE, 1) + draw(rng, NEGATIVE, 0)
    rng.shuffle(rows)
    out = Path(__file__).with_name("reviews.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} reviews ({N_PER_LABEL} per label) -> {out}")


if __name__ == "__main__":
    main()
