"""Generate data/concept_twohop/statements.jsonl: two-hop city facts, true or false.

"The city of Lyon is in the country whose capital is Paris."
Deciding the label takes two hops of recall: the city's country (the fact of data/concept_cities)
and that country's capital (the capital facts of data/factual, chapters 01-02), then a match.
Each non-capital city gives one true statement (its country's capital) and one false one (the
capital of another country from the same list, drawn with a fixed seed), so every city appears
once per label and every capital appears with both labels.
Run from the repository root: python data/concept_twohop/make_statements.py
"""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "data" / "concept_cities"))
sys.path.insert(0, str(ROOT / "data" / "factual"))
from make_prompts import CAPITALS  # noqa: E402  (chapter 01's hand-written capital table)
from make_statements import pairs  # noqa: E402  (chapter 08's hand-written (city, country) list)

# The cities list names two countries differently from the capital table; South Africa (three
# capitals) is left out.
SAME_COUNTRY = {"England": "the United Kingdom", "the Czech Republic": "Czechia"}
TEMPLATE = "The city of {city} is in the country whose capital is {capital}."


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    capital = {country: CAPITALS[SAME_COUNTRY.get(country, country)] for _, country in pairs()
               if SAME_COUNTRY.get(country, country) in CAPITALS}
    capitals = set(capital.values()) | {"Delhi"}  # a capital never asks about itself ("New Delhi")
    cities = [(city, country) for city, country in pairs() if country in capital and city not in capitals]
    countries = sorted(capital)
    rows = []
    for city, country in cities:
        wrong = rng.choice([c for c in countries if c != country])
        for label, named in ((1, country), (0, wrong)):
            rows.append({"text": TEMPLATE.format(city=city, capital=capital[named]), "label": label,
                         "city": city, "country": country, "capital": capital[named]})
    out = Path(__file__).with_name("statements.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} statements from {len(cities)} cities in {len(countries)} countries -> {out}")


if __name__ == "__main__":
    main()
