"""Generate data/concept_cities/statements.jsonl: true/false "The city of X is in Y." statements.

Each city gives one true statement (its country) and one false one (another country from the same
list, drawn with a fixed seed), so the set is balanced and every city appears once per label.
Run from the repository root: python data/concept_cities/make_statements.py
"""

import json
import random
from pathlib import Path

# (city, country): well-known cities, written by hand; several cities per country so a country
# name alone does not give the label away.
CITIES = """
Paris,France|Lyon,France|Marseille,France|Nice,France|Toulouse,France|Bordeaux,France
Berlin,Germany|Munich,Germany|Hamburg,Germany|Frankfurt,Germany|Cologne,Germany|Dresden,Germany
Rome,Italy|Milan,Italy|Naples,Italy|Venice,Italy|Florence,Italy|Turin,Italy
Madrid,Spain|Barcelona,Spain|Seville,Spain|Valencia,Spain|Bilbao,Spain|Malaga,Spain
London,England|Manchester,England|Liverpool,England|Birmingham,England|Leeds,England|Bristol,England
Tokyo,Japan|Osaka,Japan|Kyoto,Japan|Nagoya,Japan|Sapporo,Japan|Hiroshima,Japan
Beijing,China|Shanghai,China|Shenzhen,China|Guangzhou,China|Wuhan,China|Chengdu,China
Mumbai,India|Delhi,India|Bangalore,India|Chennai,India|Kolkata,India|Hyderabad,India
Moscow,Russia|Novosibirsk,Russia|Kazan,Russia|Vladivostok,Russia|Yekaterinburg,Russia|Omsk,Russia
Toronto,Canada|Vancouver,Canada|Montreal,Canada|Calgary,Canada|Ottawa,Canada|Winnipeg,Canada
Chicago,the United States|Houston,the United States|Boston,the United States|Seattle,the United States|Denver,the United States|Miami,the United States
Sydney,Australia|Melbourne,Australia|Brisbane,Australia|Perth,Australia|Adelaide,Australia|Canberra,Australia
Cairo,Egypt|Alexandria,Egypt|Luxor,Egypt|Giza,Egypt|Aswan,Egypt
Istanbul,Turkey|Ankara,Turkey|Izmir,Turkey|Antalya,Turkey|Bursa,Turkey
Rio de Janeiro,Brazil|Sao Paulo,Brazil|Brasilia,Brazil|Salvador,Brazil|Recife,Brazil
Buenos Aires,Argentina|Cordoba,Argentina|Rosario,Argentina|Mendoza,Argentina
Mexico City,Mexico|Guadalajara,Mexico|Monterrey,Mexico|Cancun,Mexico|Tijuana,Mexico
Seoul,South Korea|Busan,South Korea|Incheon,South Korea|Daegu,South Korea
Bangkok,Thailand|Chiang Mai,Thailand|Phuket,Thailand|Pattaya,Thailand
Jakarta,Indonesia|Surabaya,Indonesia|Bandung,Indonesia|Medan,Indonesia
Lagos,Nigeria|Abuja,Nigeria|Kano,Nigeria|Ibadan,Nigeria
Nairobi,Kenya|Mombasa,Kenya|Kisumu,Kenya
Johannesburg,South Africa|Cape Town,South Africa|Durban,South Africa|Pretoria,South Africa
Lisbon,Portugal|Porto,Portugal|Faro,Portugal|Coimbra,Portugal
Amsterdam,the Netherlands|Rotterdam,the Netherlands|Utrecht,the Netherlands|Eindhoven,the Netherlands
Stockholm,Sweden|Gothenburg,Sweden|Malmo,Sweden|Uppsala,Sweden
Oslo,Norway|Bergen,Norway|Trondheim,Norway|Stavanger,Norway
Athens,Greece|Thessaloniki,Greece|Patras,Greece|Heraklion,Greece
Warsaw,Poland|Krakow,Poland|Gdansk,Poland|Wroclaw,Poland|Poznan,Poland
Vienna,Austria|Salzburg,Austria|Innsbruck,Austria|Graz,Austria
Zurich,Switzerland|Geneva,Switzerland|Basel,Switzerland|Bern,Switzerland
Dublin,Ireland|Cork,Ireland|Galway,Ireland|Limerick,Ireland
Tehran,Iran|Isfahan,Iran|Shiraz,Iran|Tabriz,Iran
Karachi,Pakistan|Lahore,Pakistan|Islamabad,Pakistan|Peshawar,Pakistan
Lima,Peru|Cusco,Peru|Arequipa,Peru
Bogota,Colombia|Medellin,Colombia|Cali,Colombia|Cartagena,Colombia
Santiago,Chile|Valparaiso,Chile|Concepcion,Chile
Hanoi,Vietnam|Ho Chi Minh City,Vietnam|Da Nang,Vietnam|Hue,Vietnam
Manila,the Philippines|Cebu,the Philippines|Davao,the Philippines
Casablanca,Morocco|Marrakesh,Morocco|Rabat,Morocco|Fez,Morocco
Riyadh,Saudi Arabia|Jeddah,Saudi Arabia|Mecca,Saudi Arabia|Medina,Saudi Arabia
Kyiv,Ukraine|Odesa,Ukraine|Kharkiv,Ukraine|Lviv,Ukraine
Prague,the Czech Republic|Brno,the Czech Republic|Ostrava,the Czech Republic
Budapest,Hungary|Debrecen,Hungary|Szeged,Hungary
Helsinki,Finland|Tampere,Finland|Turku,Finland
Copenhagen,Denmark|Aarhus,Denmark|Odense,Denmark
"""


def pairs() -> list[tuple[str, str]]:
    return [
        tuple(item.split(",")) for line in CITIES.strip().splitlines() for item in line.split("|")]


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    cities = pairs()
    countries = sorted({country for _, country in cities})
    rows = []
    for city, country in cities:
        wrong = rng.choice([c for c in countries if c != country])
        rows.append({"text": f"The city of {city} is in {country}.", "label": 1, "city": city, "country": country})
        rows.append({"text": f"The city of {city} is in {wrong}.", "label": 0, "city": city, "country": wrong})
    out = Path(__file__).with_name("statements.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} statements from {len(cities)} cities in {len(countries)} countries -> {out}")


if __name__ == "__main__":
    main()
