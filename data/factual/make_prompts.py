"""Build prompts.jsonl: factual prompts with short answers, from the hand-written tables below.

Run: python data/factual/make_prompts.py  (deterministic; rewrites prompts.jsonl)
"""

import json
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens",
    "Austria": "Vienna", "Hungary": "Budapest", "Poland": "Warsaw", "Ireland": "Dublin", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Belgium": "Brussels",
    "the Netherlands": "Amsterdam", "Czechia": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Ukraine": "Kyiv", "Turkey": "Ankara", "Iran": "Tehran",
    "Iraq": "Baghdad", "Syria": "Damascus", "Lebanon": "Beirut", "Israel": "Jerusalem", "Jordan": "Amman",
    "Saudi Arabia": "Riyadh", "India": "New Delhi", "Pakistan": "Islamabad", "Bangladesh": "Dhaka",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "the Philippines": "Manila",
    "South Korea": "Seoul", "North Korea": "Pyongyang", "Mongolia": "Ulaanbaatar", "Kenya": "Nairobi",
    "Ethiopia": "Addis Ababa", "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat", "Algeria": "Algiers",
    "Tunisia": "Tunis", "Libya": "Tripoli", "Sudan": "Khartoum", "Canada": "Ottawa", "Mexico": "Mexico City",
    "Cuba": "Havana", "Peru": "Lima", "Chile": "Santiago", "Argentina": "Buenos Aires", "Colombia": "Bogota",
    "Venezuela": "Caracas", "Australia": "Canberra", "New Zealand": "Wellington", "Brazil": "Brasilia",
    "the United Kingdom": "London", "the United States": "Washington", "Afghanistan": "Kabul",
    "Nepal": "Kathmandu", "Qatar": "Doha", "Kuwait": "Kuwait City", "Switzerland": "Bern",
}
LANGUAGES = {
    "France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish", "Portugal": "Portuguese",
    "Japan": "Japanese", "China": "Chinese", "Russia": "Russian", "Greece": "Greek", "Poland": "Polish",
    "Sweden": "Swedish", "Finland": "Finnish", "Norway": "Norwegian", "Denmark": "Danish",
    "the Netherlands": "Dutch", "Turkey": "Turkish", "Brazil": "Portuguese", "Mexico": "Spanish",
    "Argentina": "Spanish", "Hungary": "Hungarian", "Iran": "Persian", "Israel": "Hebrew",
    "South Korea": "Korean", "Thailand": "Thai", "Vietnam": "Vietnamese", "Egypt": "Arabic",
    "Ukraine": "Ukrainian", "Czechia": "Czech", "Romania": "Romanian", "Indonesia": "Indonesian",
}
CURRENCIES = {
    "Japan": "yen", "the United Kingdom": "pound", "the United States": "dollar", "India": "rupee",
    "Russia": "ruble", "China": "yuan", "South Korea": "won", "Mexico": "peso", "Switzerland": "franc",
    "Germany": "euro", "France": "euro", "Italy": "euro", "Brazil": "real", "Poland": "zloty",
    "Sweden": "krona", "Thailand": "baht", "Vietnam": "dong", "Turkey": "lira", "Israel": "shekel",
    "South Africa": "rand", "Canada": "dollar", "Australia": "dollar",
}
LANDMARKS = {
    "the Eiffel Tower": "Paris", "the Colosseum": "Rome", "Big Ben": "London", "the Kremlin": "Moscow",
    "the Brandenburg Gate": "Berlin", "the Acropolis": "Athens", "the Statue of Liberty": "New York",
    "the Golden Gate Bridge": "San Francisco", "the Sagrada Familia": "Barcelona", "the Taj Mahal": "Agra",
    "the Forbidden City": "Beijing", "the Sydney Opera House": "Sydney", "the Space Needle": "Seattle",
    "the Leaning Tower": "Pisa", "the Hollywood sign": "Los Angeles", "the Alhambra": "Granada",
    "the Louvre": "Paris", "the Vatican": "Rome", "the Hagia Sophia": "Istanbul", "the Burj Khalifa": "Dubai",
}
TEMPLATES = {
    "capital": ("The capital of {} is", CAPITALS),
    "language": ("The official language of {} is", LANGUAGES),
    "currency": ("The currency of {} is the", CURRENCIES),
    "landmark": ("{} is located in the city of", LANDMARKS),
}


def rows():
    for relation, (template, table) in TEMPLATES.items():
        for subject, answer in table.items():
            prompt = template.format(subject)
            yield {"relation": relation, "subject": subject[0].upper() + subject[1:] if prompt.startswith(subject) else subject,
                   "prompt": prompt[0].upper() + prompt[1:], "answer": " " + answer}


if __name__ == "__main__":
    out = Path(__file__).with_name("prompts.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {sum(1 for _ in rows())} prompts to {out}")
