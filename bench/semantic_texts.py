"""The texts bench/semantic.py writes and asks: seeded, varied, diary-like.

``texts`` makes ~200-character notes (what someone did, where, when, and how it went);
``questions`` makes distinct natural-language questions of 8-20 words about the same
world (people, activities, places, times), so both the full-text and the vector side of
recall have something to find. The vocabulary is small (~800 distinct words), so each
question's words match about 30 % of the notes: a hard case for the full-text part.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

# fmt: off
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Lucas", "Sofia", "Daniel", "Mei",
         "Jonas", "Fatima", "Ivan", "Chloe", "Noah", "Grace", "Mateo", "Olga", "Samir", "Hannah", "Diego",
         "Yuki", "Kwame", "Ingrid", "Rafael"]
WHEN = ["On Monday morning", "Last Tuesday", "Early on Wednesday", "On Thursday evening", "Last Friday night",
        "On Saturday afternoon", "On a rainy Sunday", "Yesterday", "Two weeks ago", "Over the long weekend",
        "During the spring holiday", "Late last night", "At lunchtime today", "In early March"]
# (past, base, gerund, object)
ACTS = [
    ("fixed", "fix", "fixing", "the leaking kitchen tap"),
    ("painted", "paint", "painting", "the fence behind the garage"),
    ("booked", "book", "booking", "train tickets to the coast"),
    ("cooked", "cook", "cooking", "a spicy lentil soup for the neighbours"),
    ("planted", "plant", "planting", "tomatoes and basil in the raised beds"),
    ("returned", "return", "returning", "three overdue novels to the library"),
    ("reviewed", "review", "reviewing", "the quarterly budget with the finance team"),
    ("debugged", "debug", "debugging", "a memory leak in the payment service"),
    ("practised", "practise", "practising", "the piano piece for the recital"),
    ("cleaned", "clean", "cleaning", "the garage and the old bicycles"),
    ("ordered", "order", "ordering", "a new mattress and two pillows"),
    ("visited", "visit", "visiting", "an elderly aunt at the care home"),
    ("photographed", "photograph", "photographing", "the harbour at sunrise"),
    ("organised", "organise", "organising", "a surprise party for a colleague"),
    ("wrote", "write", "writing", "a long letter to an old school friend"),
    ("repaired", "repair", "repairing", "the flat tyre on the cargo bike"),
    ("baked", "bake", "baking", "sourdough bread and cinnamon rolls"),
    ("walked", "walk", "walking", "the dog along the river path"),
    ("assembled", "assemble", "assembling", "the new bookshelf in the study"),
    ("renewed", "renew", "renewing", "the car insurance and the passport"),
    ("translated", "translate", "translating", "the user manual into Spanish"),
    ("interviewed", "interview", "interviewing", "two candidates for the design role"),
    ("hiked", "hike", "hiking", "the ridge trail above the lake"),
    ("migrated", "migrate", "migrating", "the old database to the new cluster"),
    ("sold", "sell", "selling", "the old sofa to a student from across town"),
    ("tuned", "tune", "tuning", "the violin before the evening rehearsal"),
    ("drafted", "draft", "drafting", "a grant proposal for the museum archive"),
    ("replaced", "replace", "replacing", "the broken hinge on the wardrobe door"),
    ("knitted", "knit", "knitting", "a striped scarf for the winter market"),
    ("measured", "measure", "measuring", "the living room for new curtains"),
    ("sorted", "sort", "sorting", "a box of old family photographs"),
    ("vaccinated", "vaccinate", "vaccinating", "the cat at the veterinary clinic"),
    ("presented", "present", "presenting", "the survey results to the steering committee"),
    ("harvested", "harvest", "harvesting", "apples from the orchard behind the school"),
    ("calibrated", "calibrate", "calibrating", "the telescope for the meteor shower"),
    ("refunded", "refund", "refunding", "a customer who received the wrong parcel"),
]
PLACES = ["at home", "in the office", "at the community garden", "near the train station",
          "at the cafe on Elm Street", "in the village hall", "at the university library", "by the harbour",
          "at a friend's flat", "in the workshop", "at the farmers market", "in the hospital waiting room",
          "at the climbing gym", "on the night ferry", "in the school car park", "at the town hall",
          "in the allotment shed", "at the airport lounge"]
REASONS = ["the shop ran out of parts", "the instructions were missing a page", "it started to rain heavily",
           "a neighbour kept asking questions", "the tools were in the wrong box",
           "the bus was forty minutes late"]
FEELINGS = ["relieved", "proud", "exhausted", "quietly happy", "a little frustrated", "surprisingly calm"]
TROUBLES = ["finding the right screws", "keeping to the schedule", "the cold wind",
            "getting everyone to agree", "the heavy traffic", "reading the old handwriting"]
JUDGEMENTS = ["reasonable", "far too much", "a bargain", "fair"]
LATER = ["next month", "after the holidays", "in the autumn", "next weekend", "once the weather improves"]
SECOND_SENTENCES = [
    "It took longer than expected because {reason}, but {name} felt {feeling} afterwards.",
    "{name} said the hardest part was {trouble} and wants to try again {later}.",
    "Everyone agreed it went well, although {trouble} caused a short delay.",
    "The whole thing cost about {cost} euros, which {name} thought was {judgement}.",
    "Afterwards {name} {past2} {obj2} and went to bed early, tired but {feeling}.",
]
QUESTIONS = [
    "What did {name} do {place} {when}?",
    "Who {past} {obj} {place} {when}?",
    "When did {name} {base} {obj}, and how long did it take?",
    "How did {name} feel after {gerund} {obj} {place}?",
    "Why was there a delay while {name} was {gerund} {obj}?",
    "How much did it cost when {name} {past} {obj}?",
    "Did anyone mention {gerund} {obj} {place} in the last few weeks?",
    "Remind me what happened {when} when {name} {past} {obj}.",
]
# fmt: on


def texts(n: int, seed: int) -> list[str]:
    """``n`` varied ~200-character diary-like notes (deterministic for a seed)."""
    rng = np.random.default_rng(seed)

    def pick(xs: Sequence[Any]) -> Any:
        return xs[int(rng.integers(len(xs)))]

    out = []
    for _ in range(n):
        name, (past, _b, _g, obj), place = pick(NAMES), pick(ACTS), pick(PLACES)
        then = pick(ACTS)
        second = pick(SECOND_SENTENCES).format(
            name=name,
            reason=pick(REASONS),
            feeling=pick(FEELINGS),
            trouble=pick(TROUBLES),
            later=pick(LATER),
            cost=int(rng.integers(12, 480)),
            judgement=pick(JUDGEMENTS),
            past2=then[0],
            obj2=then[3],
        )
        text = f"{pick(WHEN)}, {name} {past} {obj} {place}. {second}"
        if len(text) < 170:
            text += f" {name} wrote it down in the family calendar."
        out.append(text)
    return out


def questions(n: int, seed: int, exclude: Collection[str] = ()) -> list[str]:
    """``n`` distinct natural-language questions of 8-20 words about the notes' world."""
    rng = np.random.default_rng(seed)

    def pick(xs: Sequence[Any]) -> Any:
        return xs[int(rng.integers(len(xs)))]

    seen: set[str] = set(exclude)
    out: list[str] = []
    while len(out) < n:
        past, base, gerund, obj = pick(ACTS)
        q = pick(QUESTIONS).format(
            name=pick(NAMES),
            place=pick(PLACES),
            when=pick(WHEN).lower(),
            past=past,
            base=base,
            gerund=gerund,
            obj=obj,
        )
        if 8 <= len(q.split()) <= 20 and q not in seen:
            seen.add(q)
            out.append(q)
    return out
