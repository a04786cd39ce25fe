"""Generate truth_statements/statements.jsonl (run from the repo root): true/false statements in two domains.

cities:  "{city} is a city in {country}."  each city once with its country (true) and once with
         another country from the list (false, drawn with a fixed seed).
numbers: "{a} is larger than {b}."  each pair of distinct two-digit numbers once in the true order
         and once reversed (false); pairs drawn with a fixed seed.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 0

CITIES = [
    ("Paris", "France"), ("Lyon", "France"), ("Marseille", "France"), ("Berlin", "Germany"),
    ("Munich", "Germany"), ("Hamburg", "Germany"), ("Madrid", "Spain"), ("Barcelona", "Spain"),
    ("Seville", "Spain"), ("Rome", "Italy"), ("Milan", "Italy"), ("Naples", "Italy"),
    ("Tokyo", "Japan"), ("Osaka", "Japan"), ("Kyoto", "Japan"), ("Beijing", "China"),
    ("Shanghai", "China"), ("Moscow", "Russia"), ("London", "England"), ("Manchester", "England"),
    ("Liverpool", "England"), ("Toronto", "Canada"), ("Montreal", "Canada"), ("Vancouver", "Canada"),
    ("Sydney", "Australia"), ("Melbourne", "Australia"), ("Chicago", "the United States"),
    ("Boston", "the United States"), ("Seattle", "the United States"), ("Mumbai", "India"),
    ("Delhi", "India"), ("Cairo", "Egypt"), ("Lisbon", "Portugal"), ("Porto", "Portugal"),
    ("Amsterdam", "the Netherlands"), ("Rotterdam", "the Netherlands"), ("Vienna", "Austria"),
    ("Stockholm", "Sweden"), ("Oslo", "Norway"), ("Copenhagen", "Denmark"), ("Dublin", "Ireland"),
    ("Athens", "Greece"), ("Istanbul", "Turkey"), ("Warsaw", "Poland"), ("Krakow", "Poland"),
    ("Prague", "the Czech Republic"), ("Budapest", "Hungary"), ("Mexico City", "Mexico"),
    ("Rio de Janeiro", "Brazil"), ("Buenos Aires", "Argentina"), ("Lima", "Peru"),
    ("Nairobi", "Kenya"), ("Seoul", "South Korea"), ("Bangkok", "Thailand"), ("Hanoi", "Vietnam"),
    ("Jakarta", "Indonesia"), ("Tehran", "Iran"), ("Baghdad", "Iraq"), ("Helsinki", "Finland"),
    ("Zurich", "Switzerland"),
]
N_NUMBER_PAIRS = 60


def city_rows(rng):
    countries = sorted({c for _, c in CITIES})
    rows = []
    for city, country in CITIES:
        wrong = rng.choice([c for c in countries if c != country])
        rows.append({"domain": "cities", "statement": f"{city} is a city in {country}.", "label": 1})
        rows.append({"domain": "cities", "statement": f"{city} is a city in {wrong}.", "label": 0})
    return rows


def number_rows(rng):
    pairs = set()
    while len(pairs) < N_NUMBER_PAIRS:
        a, b = rng.sample(range(10, 100), 2)
        pairs.add((max(a, b), min(a, b)))
    rows = []
    for big, small in sorted(pairs):
        rows.append({"domain": "numbers", "statement": f"{big} is larger than {small}.", "label": 1})
        rows.append({"domain": "numbers", "statement": f"{small} is larger than {big}.", "label": 0})
    return rows


def main():
    rng = random.Random(SEED)
    rows = city_rows(rng) + number_rows(rng)
    for i, row in enumerate(rows):
        row["pair"] = i // 2  # a true statement and its false twin share a pair id
    (HERE / "statements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    by = {}
    for r in rows:
        by[(r["domain"], r["label"])] = by.get((r["domain"], r["label"]), 0) + 1
    print(len(rows), "statements:", by)


if __name__ == "__main__":
    main()
