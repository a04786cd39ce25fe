"""Generate emotion_scenarios/scenarios.jsonl and neutral_prompts.jsonl (run from the repo root).

Every scenario is a neutral situation (a place and an everyday activity) paired with one event per
emotion, written to elicit that emotion without naming it. Event templates are assigned to scenarios
by rotation, so each template appears in several scenarios and each scenario gets six different
templates. The only randomness is none: the output is a deterministic function of the lists below.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
EMOTIONS = ["anger", "sadness", "happiness", "fear", "surprise", "disgust"]

# (neutral situation, a person present, an object you have)
SITUATIONS = [
    ("You are waiting for a train at the station.", "a man next to you", "your bag"),
    ("You are standing in line at the grocery store.", "the customer behind you", "your shopping basket"),
    ("You are sitting in a cafe reading a newspaper.", "the waiter", "your coffee cup"),
    ("You are folding laundry in your living room.", "your roommate", "your clean shirt"),
    ("You are walking your dog in the park.", "a jogger", "your dog's leash"),
    ("You are working at your desk in the office.", "your coworker", "your notebook"),
    ("You are riding the bus to work.", "the passenger beside you", "your umbrella"),
    ("You are cooking pasta in your kitchen.", "your neighbor", "your wooden spoon"),
    ("You are waiting at the dentist's office.", "the receptionist", "your magazine"),
    ("You are sitting in a library with a book.", "the student across the table", "your pencil case"),
    ("You are buying stamps at the post office.", "the clerk", "your wallet"),
    ("You are watering the plants on your balcony.", "your landlord", "your watering can"),
    ("You are eating lunch in the school cafeteria.", "a classmate", "your lunch tray"),
    ("You are sitting in the waiting room of a garage.", "the mechanic", "your car keys"),
    ("You are walking along the beach in the afternoon.", "a fisherman", "your towel"),
    ("You are shopping for shoes at the mall.", "the salesperson", "your shopping bag"),
    ("You are sitting on a bench at a bus stop.", "an old woman", "your backpack"),
    ("You are cleaning the windows of your apartment.", "your brother", "your bucket"),
    ("You are standing in an elevator going up.", "a delivery man", "your phone"),
    ("You are filling your car at a gas station.", "the attendant", "your car door"),
    ("You are sorting papers at the town hall.", "an official", "your folder"),
    ("You are doing homework at the kitchen table.", "your cousin", "your textbook"),
    ("You are waiting for your flight at the airport gate.", "a traveler", "your suitcase"),
    ("You are jogging on a path by the river.", "a cyclist", "your water bottle"),
    ("You are sitting in a movie theater before the film starts.", "the person in the next seat", "your popcorn"),
    ("You are paying for groceries at the checkout.", "the cashier", "your receipt"),
    ("You are planting tomatoes in your garden.", "your neighbor's son", "your shovel"),
    ("You are taking notes in a lecture hall.", "the lecturer", "your laptop"),
    ("You are waiting for a haircut at the barber shop.", "the barber", "your jacket"),
    ("You are sitting in a hotel lobby.", "the concierge", "your room key"),
    ("You are washing dishes after dinner.", "your aunt", "your dish towel"),
    ("You are walking through a museum hall.", "a guard", "your ticket"),
    ("You are standing at a crosswalk waiting for the light.", "a teenager", "your grocery bag"),
    ("You are repairing a bicycle in your garage.", "your friend", "your toolbox"),
    ("You are sitting on a train looking out the window.", "the conductor", "your sandwich"),
    ("You are reading emails on your couch.", "your partner", "your blanket"),
    ("You are waiting for a package at your front door.", "the mail carrier", "your doormat"),
    ("You are browsing books in a bookstore.", "the shop owner", "your scarf"),
    ("You are ironing clothes in the bedroom.", "your sister", "your pillow"),
    ("You are standing in line at the bank.", "the bank teller", "your bank card"),
    ("You are sitting in a park feeding pigeons.", "a gardener", "your bread bag"),
    ("You are waiting in a doctor's waiting room.", "the nurse", "your coat"),
]

# Events per emotion; {person} and {thing} come from the situation. None names the emotion.
EVENTS = {
    "anger": [
        "Suddenly {person} shoves you aside, grabs {thing}, and laughs at you.",
        "Suddenly you find out that {person} stole your work and took the credit and the promotion for it.",
        "Suddenly {person} loudly insults your mother and refuses to apologize.",
        "Suddenly {person} kicks {thing} across the floor on purpose and sneers at you.",
        "Suddenly you learn that {person} lied about you and got you fired.",
        "Suddenly {person} cuts in front of you and tells you to shut up when you object.",
        "Suddenly {person} spits on {thing} and calls you a worthless idiot.",
    ],
    "sadness": [
        "Suddenly you get a call saying that your grandmother has died.",
        "Suddenly you read a message from your partner saying they are leaving you forever.",
        "Suddenly {person} tells you that your old dog was hit by a car and did not survive.",
        "Suddenly you learn that your best friend is moving far away and you will never see her again.",
        "Suddenly you remember that today would have been your late father's birthday.",
        "Suddenly you get a letter saying you were rejected from the only school you ever wanted.",
        "Suddenly {person} tells you that the house you grew up in burned down and nothing was saved.",
    ],
    "happiness": [
        "Suddenly you get a call saying you won the prize you had worked years for.",
        "Suddenly you get a message that you got the job you always dreamed of.",
        "Suddenly an old friend you have missed for years walks up and hugs you.",
        "Suddenly {person} hands you a gift and says you are the kindest person they know.",
        "Suddenly you learn that you passed your final exam with the best score in the class.",
        "Suddenly your sister calls to say she just had a healthy baby girl.",
        "Suddenly {person} tells you that your painting was chosen for the city museum.",
    ],
    "fear": [
        "Suddenly you hear footsteps right behind you and a voice whispers that he has a knife.",
        "Suddenly the floor starts shaking violently and the ceiling begins to crack above you.",
        "Suddenly you smell smoke and see flames blocking the only way out.",
        "Suddenly a huge dog breaks free and charges at you, snarling and baring its teeth.",
        "Suddenly your chest tightens, your arm goes numb, and you cannot breathe.",
        "Suddenly the lights go out and a cold hand grabs your arm in the dark.",
        "Suddenly {person} pulls out a gun and points it straight at your head.",
    ],
    "surprise": [
        "Suddenly {person} turns around and you see it is your cousin who you thought lived abroad.",
        "Suddenly the room fills with confetti and a marching band walks in for no reason.",
        "Suddenly you open {thing} and a live frog jumps out of it.",
        "Suddenly {person} reveals that they are your long-lost twin.",
        "Suddenly a parrot lands on your shoulder and says your name out loud.",
        "Suddenly it starts snowing heavily, although it is the middle of summer.",
        "Suddenly {person} pulls a rabbit out of {thing} and bows.",
    ],
    "disgust": [
        "Suddenly you notice a cockroach crawling out of your half-eaten sandwich.",
        "Suddenly {person} sneezes all over your food and keeps eating from it.",
        "Suddenly you step in a pile of vomit that soaks through your shoe.",
        "Suddenly you smell rotten meat and see maggots crawling in the trash beside you.",
        "Suddenly {person} picks their nose and wipes it on {thing}.",
        "Suddenly you find a clump of someone else's hair in your soup.",
        "Suddenly {person} spits a chewed piece of gum into your hand.",
    ],
}
SUFFIX = " I feel"  # the last-token residual is read here

# Neutral openings: no emotional content, but each ends by inviting the model to name a feeling,
# so that a word-level judge can read which emotion a (steered) continuation expresses.
NEUTRAL_PROMPTS = [
    "This morning I walked to the library, and I felt",
    "Yesterday I cleaned the kitchen, and I felt",
    "Today I took the bus to work, and I felt",
    "Last weekend I visited my aunt, and I felt",
    "After lunch I went for a walk, and I felt",
    "Tonight I am cooking dinner at home, and I feel",
    "On Monday I had a meeting at the office, and I felt",
    "This afternoon I read a book in the garden, and I felt",
    "Earlier today I went to the post office, and I felt",
    "Last night I watched the news, and I felt",
    "This evening I called my brother, and I felt",
    "On Sunday I went to the market, and I felt",
]


def scenarios():
    rows = []
    for s, (situation, person, thing) in enumerate(SITUATIONS):
        for e, emotion in enumerate(EMOTIONS):
            templates = EVENTS[emotion]
            template = (s + e) % len(templates)
            event = templates[template].format(person=person, thing=thing)
            rows.append({"scenario": s, "emotion": emotion, "template": template, "situation": situation,
                         "event": event, "prompt": f"{situation} {event}{SUFFIX}"})
    return rows


def main():
    rows = scenarios()
    (HERE / "scenarios.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (HERE / "neutral_prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in NEUTRAL_PROMPTS))
    print(f"{len(rows)} scenario prompts ({len(SITUATIONS)} situations x {len(EMOTIONS)} emotions), "
          f"{len(NEUTRAL_PROMPTS)} neutral prompts")


if __name__ == "__main__":
    main()
