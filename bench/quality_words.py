"""Words of the recall-quality data set: pools, the shapes of a storyline, and small talk.

bench/quality_data.py builds conversations from them; bench/quality_stories.py and
bench/quality_pastimes.py hold the storylines. Everything here is written as people
chat, independently of how any system ranks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# fmt: off
WOMEN = (
    "Maria", "Aisha", "Priya", "Hannah", "Chloe", "Fatima", "Sofia", "Leila", "Ingrid", "Naomi", "Yuki",
    "Elena", "Grace", "Amara", "Freya", "Clara", "Rosa", "Zara", "Mei", "Anika", "Tessa", "Lena", "Julia",
    "Ines", "Nadia",
)
MEN = (
    "Tom", "Daniel", "Lucas", "Mateo", "Kenji", "Oliver", "Ethan", "Marcus", "Rafael", "Samuel", "Jonas",
    "Tariq", "Felix", "Diego", "Omar", "Nikhil", "Ben", "Hugo", "Patrick", "Luis", "Kwame", "Ravi", "Sean",
    "Victor", "Caleb",
)
NAMES = WOMEN + MEN
CITIES = (
    "Porto", "Lisbon", "Valencia", "Lyon", "Leipzig", "Krakow", "Ghent", "Bologna", "Edinburgh", "Galway",
    "Austin", "Denver", "Portland", "Montreal", "Vancouver", "Melbourne", "Wellington", "Osaka", "Seville",
    "Utrecht", "Bristol", "Gothenburg", "Tallinn", "Ljubljana",
)
DOGS = ("beagle", "labrador", "corgi", "dachshund", "border collie", "greyhound", "spaniel", "husky")
CATS = ("tabby", "Siamese", "Maine Coon", "ragdoll", "black cat", "Bengal")
PETS = ("Max", "Luna", "Biscuit", "Pepper", "Milo", "Olive", "Rocky", "Nala", "Waffles", "Juno", "Ziggy",
        "Mochi", "Bruno", "Hazel", "Pickles", "Otis")
TRIPS = (  # country, city, sight
    ("Japan", "Kyoto", "the bamboo forest"), ("Peru", "Cusco", "Machu Picchu"),
    ("Iceland", "Reykjavik", "the Blue Lagoon"), ("Italy", "Rome", "the Colosseum"),
    ("Morocco", "Marrakech", "the Majorelle Garden"), ("Norway", "Bergen", "the fjords"),
    ("Vietnam", "Hanoi", "Ha Long Bay"), ("Greece", "Athens", "the Acropolis"),
    ("Mexico", "Oaxaca", "Monte Alban"), ("Canada", "Banff", "Lake Louise"),
    ("Egypt", "Cairo", "the pyramids"), ("Portugal", "Madeira", "the levada trails"),
)
JOBS = ("data analyst", "ICU nurse", "product designer", "chemistry teacher", "sous chef", "web developer",
        "physiotherapist", "accountant", "architect", "paramedic", "librarian", "marketing manager")
COMPANIES = ("Northwind Logistics", "Brightpath Health", "Lumen Studio", "Harbor and Pine", "Cobalt Robotics",
             "Greenleaf Foods", "Atlas Insurance", "Fernhill Clinic", "Redwood Analytics", "Quayside Bistro",
             "Kestrel Games", "Bluebell Schools")
PROJECTS = ("warehouse automation", "patient portal", "spring menu", "rebranding", "data migration",
            "mobile app", "budget review", "new clinic wing")
INSTRUMENTS = {
    "piano": ("Clair de Lune", "the Moonlight Sonata", "a Chopin nocturne"),
    "cello": ("the Bach cello suite in G", "The Swan", "Elgar's Salut d'Amour"),
    "violin": ("Meditation from Thais", "a Vivaldi concerto", "Ashokan Farewell"),
    "guitar": ("Blackbird", "Romanza", "a flamenco soleares"),
    "saxophone": ("Take Five", "Careless Whisper", "Summertime"),
    "ukulele": ("Somewhere Over the Rainbow", "Riptide", "a Hawaiian folk song"),
}
SPORTS = ("five-a-side football", "basketball", "tennis", "bouldering", "volleyball", "squash", "netball")
BODY = ("ankle", "wrist", "knee", "shoulder")
RACES = ("half marathon", "10k", "marathon", "sprint triathlon")
CARS = ("a used Honda Civic", "an old Volvo estate", "a second-hand Mini", "a Toyota Corolla",
        "a VW camper van", "a little Fiat Panda")
GIRLS = ("Ava", "Lily", "Mila", "Isla", "Zoe", "Amelia", "Noor", "Emma", "Iris", "Maya")
BOYS = ("Leo", "Noah", "Arlo", "Theo", "Ezra", "Omar", "Finn", "Kai", "Jasper", "Milan")
CAR_NICKS = ("Betsy", "the Beast", "Rusty", "Blue Thunder", "Clementine", "Gus")
EXAMS = ("CPA", "cloud architect certification", "project management certification", "bar exam",
         "Japanese proficiency test", "sommelier level two", "driving test", "actuarial exam")
ROOMS = ("kitchen", "bathroom", "attic", "garden shed", "living room")
BOOKS = (("Piranesi", "Susanna Clarke"), ("Middlemarch", "George Eliot"), ("Project Hail Mary", "Andy Weir"),
         ("Pachinko", "Min Jin Lee"), ("The Overstory", "Richard Powers"), ("Circe", "Madeline Miller"),
         ("The Remains of the Day", "Kazuo Ishiguro"), ("Lonesome Dove", "Larry McMurtry"))
VOLUNTEER = ("the food bank", "the animal shelter", "the library's reading club for kids",
             "the community garden", "the hospice on Elm Street", "the refugee support centre")
DISHES = ("ramen", "paella", "tacos", "a Thai green curry", "lasagne", "dumplings", "shakshuka", "pho")
SHOWS = ("that baking competition", "the new detective series", "a documentary about octopuses",
         "the football highlights", "that dating show everyone hates", "a nature series about deserts")
WHEN_PAST = ("last weekend", "on Saturday", "yesterday", "on Tuesday", "a few days ago", "last Friday")
WHEN_AGO = ("last week", "two weeks ago", "the other day", "on Monday", "at the weekend")
# fmt: on


@dataclass
class Event:
    say: str  # the owner's turn that carries the fact: the evidence
    ask: str | None = None  # the other speaker's turn before it
    react: str | None = None  # the other speaker's answer to it
    more: str | None = None  # the owner's follow-up (colour, not the fact)
    ask_evidence: bool = False  # the prompt carries part of the fact: evidence too
    desc: str = ""  # noun phrase for relative-time questions ("adopting Max")
    after: tuple[str, int] | None = None  # (storyline kind, event) of the same owner that must come first
    min_days: int = 0  # at least this long after the storyline's previous event (a birth, a trip...)


Ref = tuple[str, int]  # (storyline kind, event index) of the same owner


@dataclass
class Question:
    kind: str  # single-hop | multi-hop | temporal | paraphrase
    texts: tuple[str, ...]  # one phrasing, or paraphrase candidates in order of preference
    refs: tuple[Ref, ...]
    answer: str


@dataclass
class Story:
    kind: str
    events: list[Event]
    questions: list[Question] = field(default_factory=list)


@dataclass
class Ctx:
    """What a storyline builder draws from: the conversation's generator, its owner and the other
    speaker, the owner's profile (facts other storylines link to) and the values the conversation
    already uses (so that two storylines never share a pet's or a boss's name)."""

    r: random.Random
    o: str
    p: str
    prof: dict[str, str]
    used: set[str]

    def pick(self, pool: tuple[str, ...] | tuple[tuple[str, ...], ...]) -> Any:
        fresh = [x for x in pool if str(x) not in self.used]
        x = self.r.choice(fresh or list(pool))
        self.used.add(str(x))
        return x

    def name(self, pool: tuple[str, ...] = NAMES) -> str:
        return str(self.pick(tuple(n for n in pool if n not in (self.o, self.p))))


Builder = Callable[[Ctx], Story]


def q(kind: str, text: str | tuple[str, ...], refs: tuple[Ref, ...], answer: str) -> Question:
    return Question(kind, (text,) if isinstance(text, str) else text, refs, answer)


# -- small talk -------------------------------------------------------------------------
def greeting(r: random.Random, a: str, b: str) -> list[str]:
    return [
        r.choice(
            (
                f"Hey {b}! How has your week been? I feel like we have not talked in ages.",
                f"Hi {b}, long time no talk! How are you doing these days?",
                f"Morning {b}! Have you got a minute to catch up? I am on my lunch break.",
                f"{b}! Finally, I have been meaning to call you all week.",
                f"Hello {b}, is now a good time? I have got a few minutes before dinner.",
                f"Hey you! {b}, how are things? It has been a busy couple of weeks here.",
            )
        ),
        r.choice(
            (
                f"Hi {a}! Busy but good, thanks for asking. How about you?",
                f"Hey {a}, so good to hear from you. All fine here, mostly.",
                f"{a}! Perfect timing, I just made a cup of tea and sat down.",
                f"Hey {a}! Honestly a bit tired, but happy to hear from you.",
                "Hi! Yes, perfect, I was just about to message you actually.",
            )
        ),
    ]


def closing(r: random.Random, a: str, b: str) -> list[str]:
    return [
        r.choice(
            (
                "Okay, I need to get going, but this was lovely. Talk soon!",
                "I have to run to a meeting now. Speak later this week?",
                "My battery is dying, so let us catch up again soon, okay?",
            )
        ),
        r.choice(
            (
                f"Bye {a}, take care of yourself and say hi to everyone.",
                "Talk soon! Have a good rest of your day, and do not work too hard.",
                "Sounds good. Speak soon, and good luck with everything!",
            )
        ),
    ]


def bridge(r: random.Random, prompt: bool) -> str:
    """A remark between two blocks that would otherwise give one speaker two turns in a row:
    ``prompt`` asks the other to go on (their news comes next), else a neutral reaction."""
    if prompt:
        return r.choice(
            (
                "Ha, I know exactly what you mean. So what else is going on with you?",
                "Right? It has been one of those weeks. Anyway, any other news?",
                "Totally. Okay, your turn, tell me something good that happened.",
                "Fair enough. And what else have you been up to lately?",
            )
        )
    return r.choice(
        (
            "Ha, I know exactly what you mean, honestly.",
            "Right? It has been one of those weeks for everyone.",
            "Wow, okay. Life moves fast, does it not?",
            "Mm, yeah, that makes sense. It has been a strange few weeks.",
        )
    )


_LEADS = (
    "Anyway, enough about my week.",
    "Okay, change of subject.",
    "So, I have been meaning to ask you.",
    "Before I forget,",
    "Oh, by the way,",
    "Sorry, I got distracted.",
)
_TAILS = {
    "react": (
        "Keep me posted, okay?",
        "Tell me more next time we meet up.",
        "I was just thinking about you the other day, funnily enough.",
        "Life is never boring with you, is it?",
        "What a few weeks you are having.",
        "I mean it, honestly.",
    ),
    "say": (
        "Anyway, that is my news.",
        "Honestly, it has been a lot.",
        "I will tell you more when we meet up.",
        "Not what I expected this year, but here we are.",
        "Still cannot quite believe it, to be honest.",
        "Anyway, how is everything on your side?",
    ),
}


def chatty(r: random.Random, text: str, role: str, p: float = 0.3) -> str:
    """Turns as people type them: a short one always, others sometimes, get a lead-in or a tail."""
    if len(text.split()) >= 8 and r.random() >= p:
        return text
    if role == "ask":
        lead = r.choice(_LEADS)
        return f"{lead} {text[0].lower() + text[1:] if lead.endswith(',') else text}"
    return f"{text} {r.choice(_TAILS['react' if role == 'react' else 'say'])}"


def small_talk(r: random.Random, avoid: set[int] | None = None) -> list[str]:
    """One exchange of chat with no fact anyone asks about (some share words with the facts).
    ``avoid``: exchanges this conversation already used (taken again only when all were)."""
    city, dog, dish, show, name = (r.choice(p) for p in (CITIES, DOGS, DISHES, SHOWS, NAMES))
    sport = r.choice(("football", "tennis", "basketball", "cycling"))
    exchanges = (
        (
            "The weather here has been miserable, rain every single day this week and the wind is brutal.",
            "Same here. I forgot my umbrella twice and got completely soaked walking home from the bus stop.",
        ),
        (
            "Work is absolutely crazy at the moment, my inbox is a disaster and everyone wants updates.",
            "Ugh, I feel that. Everyone wants everything yesterday and nobody says thank you.",
            "Exactly. Roll on the weekend, I am counting the hours.",
        ),
        (
            f"Have you watched {show}? I binged the whole thing on Sunday instead of doing laundry.",
            "Not yet, but everyone at work keeps talking about it. No spoilers, please!",
        ),
        (
            f"I had the best {dish} last night at that new place near the station, you would love it.",
            "Oh, I have been wanting to try that place for weeks. Was it very busy?",
            "Packed, and we waited forty minutes for a table, but it was totally worth the wait.",
        ),
        (
            f"My neighbour's {dog} barked all night again. I got maybe four hours of sleep, if that.",
            "That sounds awful. Have you talked to them about it, or is that too awkward?",
        ),
        (
            f"Did you see the news about the festival in {city}? Looks like it is going ahead this year.",
            f"Yes! I would love to go to {city} one day, the pictures always look incredible.",
        ),
        (
            "I am trying to drink less coffee, it is day three and I have had a headache since breakfast.",
            "Brave. I would last about an hour without my morning cup before biting someone's head off.",
        ),
        (
            f"{name} from my old team says hi, by the way. I bumped into them at the supermarket on Sunday.",
            f"Oh nice, I have not seen {name} in ages. How are they doing these days?",
            "Good, same as ever, still talking nonstop about their allotment and their tomatoes.",
        ),
        (
            "What are you up to tonight? Anything fun planned for the evening, or a quiet one?",
            "Probably pizza and a movie on the sofa, I am exhausted after this week.",
        ),
        (
            "The traffic this morning was unreal, it took me an hour to drive five miles to the office.",
            "That is exactly why I gave up and started cycling. Mostly. When it is not raining.",
        ),
        (
            "I finally cleaned out my wardrobe and found so many clothes I forgot I even owned.",
            "Ha, shopping in your own closet, the cheapest kind of shopping there is.",
        ),
        (
            f"Someone at work brought {dish} for lunch and now the whole office smells amazing.",
            "I would not be able to concentrate at all, honestly. I would just be hungry all afternoon.",
        ),
        (
            "My phone screen cracked again, I dropped it in the car park this morning like an idiot.",
            "Oh no. You really need one of those chunky rubber cases, they are ugly but they work.",
        ),
        (
            "Do you have any good podcast recommendations? My commute is so boring lately.",
            "Try one of those long history series, they make the time fly and you learn something.",
            "Good idea, I will look for one tonight and report back.",
        ),
        (
            f"I saw a {dog} on the train this morning wearing a little yellow raincoat. It made my day.",
            "Stop, that is adorable. Please tell me you took a picture of it.",
        ),
        (
            "The gym was packed last night, I could not get near a single machine for half an hour.",
            "Evening rush, it always calms down after eight. I go early in the morning now.",
        ),
        (
            f"My cousin wants to visit {city} next year, have you ever been there yourself?",
            "Only once, for a long weekend. The old town is lovely but bring comfy shoes, it is all hills.",
        ),
        (
            "I tried to fix the leaky tap myself and somehow made it much, much worse.",
            "Classic. Time to call a plumber before the whole kitchen floods, my friend.",
        ),
        (
            "Is it just me or did this year go by incredibly fast? I blinked and it was gone.",
            "It really did. I still think it is spring half the time.",
        ),
        (
            "I have been sleeping terribly lately, I keep waking up at four in the morning for no reason.",
            "Try no screens before bed, it actually helped me a lot, even if it is annoying.",
        ),
        (
            f"Did you watch the {sport} on Saturday? What a ridiculous ending, I was shouting at the TV.",
            "I missed it, I was at a birthday party. I only saw the score on my phone afterwards.",
        ),
        (
            "I cannot believe how fast this month went. Where does the time go, honestly?",
            "No idea. I still have not done half of the things I promised myself this year.",
        ),
        (
            "My sister keeps sending me videos of her cat knocking things off tables, it is her whole life.",
            "Honestly, those videos are the best part of the internet. Send them my way too.",
        ),
        (
            "I signed up for a pottery class on a whim and my first bowl looks like a potato.",
            "A potato-shaped bowl is still a bowl. I would proudly eat soup out of it.",
        ),
        (
            "The supermarket changed its layout again and I spent twenty minutes looking for the eggs.",
            "They do it on purpose so you walk past everything else, it is a conspiracy.",
        ),
        (
            "We had a power cut last night, so I read by candlelight like it was the eighteen hundreds.",
            "Romantic, or terrifying? I would have been lost without my phone charger.",
        ),
        (
            "My landlord finally fixed the heating, it only took him six weeks to reply to my emails.",
            "Landlords are a special breed. At least you are warm now.",
        ),
        (
            "I have been trying to learn some new recipes, but I keep burning the garlic.",
            "Lower heat and add it later, that is the only trick I know, honestly.",
        ),
        (
            "Random question: do you still have that blue umbrella I left at your place?",
            "I think so, it is by the door. Remind me next time we meet and I will bring it.",
        ),
        (
            "I started going for short walks at lunch and it honestly makes the afternoon so much better.",
            "I should do that. I just sit at my desk eating a sad sandwich every day.",
        ),
        (
            "The neighbours have been renovating for weeks and the drilling starts at eight every morning.",
            "Eight? That is cruel. Earplugs, or move out until they finish.",
        ),
        (
            f"There is a new bakery near me that does {dish} on Fridays, which is a strange combination.",
            "Strange but I would absolutely try it. Bakeries that experiment are the best ones.",
        ),
    )
    fresh = [k for k in range(len(exchanges)) if avoid is None or k not in avoid]
    k = r.choice(fresh or list(range(len(exchanges))))
    if avoid is not None:
        avoid.add(k)
    return list(exchanges[k])
