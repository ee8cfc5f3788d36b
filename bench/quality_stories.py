"""Storylines of the recall-quality data set (bench/quality_data.py): life events.

A storyline is one thread of a speaker's life told over several sessions: the first
event introduces it (a dog adopted, a job started), later events update or extend it
and often name only the entity ("Max had to go to the vet"). Each builder returns the
events' turns and the questions they answer, by kind:

* single-hop: answerable from one turn;
* multi-hop: needs turns of two or more sessions, linked by an entity;
* temporal: needs the session date of the evidence ("When did ...?");
* paraphrase: several phrasings; quality_data keeps one that shares no content word
  with its evidence, or drops the question.

Answers may name ``{dateN}``: the date of the session holding the storyline's event N.
Hobbies and pastimes are in bench/quality_pastimes.py.
"""

from __future__ import annotations

from quality_pastimes import PASTIMES
from quality_words import (
    BOYS,
    CAR_NICKS,
    CARS,
    CATS,
    CITIES,
    COMPANIES,
    DOGS,
    GIRLS,
    JOBS,
    MEN,
    NAMES,
    PETS,
    PROJECTS,
    TRIPS,
    WHEN_AGO,
    WHEN_PAST,
    WOMEN,
    Builder,
    Ctx,
    Event,
    Story,
    q,
)


def pet(c: Ctx) -> Story:
    r, o, prof = c.r, c.o, c.prof
    dog = r.random() < 0.6
    breed, name = c.pick(DOGS if dog else CATS), c.pick(PETS)
    he, him = r.choice((("he", "him"), ("she", "her")))
    animal = "dog" if dog else "cat"
    prof.update(pet=name, pet_breed=breed, pet_animal=animal)
    when = r.choice(WHEN_PAST)
    intro = r.choice(
        (
            f"Great, actually! I finally adopted a {breed} named {name} from the shelter {when}.",
            f"Big news: {when} we brought home a {breed}. We called {him} {name}, and {he} is perfect.",
            f"I went to the rescue centre {when} and came home with a {breed}. "
            f"{he.title()} is called {name}.",
        )
    )
    ev = [
        Event(
            intro,
            r.choice(("How was your weekend?", "So what is new with you? Anything exciting?")),
            f"Oh my gosh, a {breed}! You have to send me pictures of {name}.",
            f"{name} is still a bit shy, but {he} already sleeps at the foot of my bed.",
            desc=f"adopting {name}",
        ),
        Event(
            r.choice(
                (
                    f"{name} had to go to the vet {r.choice(WHEN_AGO)}, {he} swallowed a sock. "
                    f"{he.title()} is fine, but the bill hurt.",
                    f"Rough week. {name} ate half a chocolate bar and we spent the night "
                    "at the emergency vet.",
                )
            ),
            None,
            f"Poor {name}! Glad it ended well though.",
            desc=f"the emergency with {name}",
            min_days=3,
        ),
    ]
    qs = [
        q("single-hop", f"What is the name of {o}'s {animal}?", (("pet", 0),), name),
        q("single-hop", f"What breed is {o}'s {animal}?", (("pet", 0),), breed),
        q("multi-hop", f"Why did {o}'s {breed} need a vet?", (("pet", 0), ("pet", 1)), "ate something"),
        q("temporal", f"When did {o} adopt {name}?", (("pet", 0),), f"{when}, before {{date0}}"),
        q("temporal", f"When did {name} end up at the vet?", (("pet", 1),), "the week before {date1}"),
        q(
            "paraphrase",
            (
                f"Does {o} share a house with any four-legged companion?",
                f"Has {o} taken in an animal recently?",
                f"Which furry friend joined {o}'s household?",
            ),
            (("pet", 0),),
            name,
        ),
        q(
            "paraphrase",
            (
                f"What health scare did {o}'s animal companion go through?",
                f"Which medical emergency did {o}'s furry friend face?",
            ),
            (("pet", 1),),
            "vet",
        ),
    ]
    if dog and r.random() < 0.5:
        town = c.pick(CITIES)
        ev.append(
            Event(
                f"{name} won second place at the {town} dog show on Sunday! I was ridiculously proud.",
                "Any news from the dog park?",
                f"Second place! {name} is a star.",
                desc=f"the {town} dog show",
                min_days=14,
            )
        )
        qs.append(q("multi-hop", f"What prize did {o}'s {breed} win?", (("pet", 0), ("pet", 2)), "second"))
        qs.append(q("temporal", f"When was the {town} dog show?", (("pet", 2),), "the Sunday before {date2}"))
    return Story("pet", ev, qs)


def move(c: Ctx) -> Story:
    r, o, prof = c.r, c.o, c.prof
    city, partner = c.pick(CITIES), c.name()
    prof.update(city=city, partner=partner)
    with_pet = "pet" in prof
    who = f"{prof['pet']} and I" if with_pet else f"{partner} and I"
    ev = [
        Event(
            r.choice(
                (
                    f"We are seriously thinking about moving to {city}. {partner} got a job offer "
                    "there and it pays well.",
                    f"{partner} and I put in an offer on a flat in {city}! Nothing is signed yet, "
                    "fingers crossed.",
                )
            ),
            "How are things at home?",
            f"{city}? That would be a huge change. I would miss you!",
            desc=f"the offer on the {city} flat",
        ),
        Event(
            r.choice(
                (
                    f"{who} finally moved into the new place last month. Unpacking is taking forever.",
                    f"We did it, the move is done! {who} have been living out of boxes for three weeks.",
                )
            ),
            "Wait, are you all settled in now?",
            "Send me the new address, I will post you a housewarming card.",
            "The neighbours are friendly and there is a bakery on the corner.",
            desc="the move",
            min_days=40,
            after=("pet", 0) if with_pet else None,
        ),
    ]
    qs = [
        q("single-hop", f"Which city were {o} and {partner} thinking of moving to?", (("move", 0),), city),
        q("multi-hop", f"Where does {o} live now?", (("move", 0), ("move", 1)), city),
        q(
            "temporal",
            f"When did {o} finish moving into the new home?",
            (("move", 1),),
            "the month before {date1}",
        ),
        q(
            "paraphrase",
            (f"Why might {o} relocate?", f"What reason did {o} give for possibly relocating?"),
            (("move", 0),),
            "a job offer",
        ),
        q(
            "paraphrase",
            (f"Has {o} settled into a different residence yet?", f"Is {o} still in the old apartment?"),
            (("move", 1),),
            "moved: a new home",
        ),
    ]
    if with_pet:
        qs.append(
            q(
                "multi-hop",
                f"Which city does {o}'s {prof['pet_breed']} live in now?",
                (("pet", 0), ("move", 0), ("move", 1)),
                city,
            )
        )
    return Story("move", ev, qs)


def job(c: Ctx) -> Story:
    o = c.o
    role, company, boss, project = c.pick(JOBS), c.pick(COMPANIES), c.name(), c.pick(PROJECTS)
    ev = [
        Event(
            f"I got it! I start as {'an' if role[0] in 'aeiouAEIOU' else 'a'} {role} at {company} on Monday. "
            "I am nervous and thrilled.",
            "Did you ever hear back about that interview?",
            f"Congratulations! {company} is lucky to have you.",
            "The salary is better too, so goodbye to my old commute.",
            ask_evidence=False,
            desc=f"starting at {company}",
        ),
        Event(
            f"Work update: my boss {boss} wants me to lead the {project} project. Slightly terrifying.",
            "How is the new job treating you?",
            f"That is a big vote of confidence from {boss}.",
            desc=f"getting the {project} project",
            min_days=7,
        ),
        Event(
            f"{boss} called me in on Thursday: I am getting promoted to senior {role}! Less than a year in.",
            None,
            "You deserve it, seriously. Drinks are on me.",
            desc="the promotion",
            min_days=30,
        ),
    ]
    qs = [
        q("single-hop", f"Where does {o} work?", (("job", 0),), company),
        q("single-hop", f"What is {o}'s job?", (("job", 0),), role),
        q("multi-hop", f"Who is {o}'s boss at {company}?", (("job", 0), ("job", 1)), boss),
        q("multi-hop", f"What project does {o} lead at {company}?", (("job", 0), ("job", 1)), project),
        q("temporal", f"When did {o} get promoted?", (("job", 2),), "the Thursday before {date2}"),
        q(
            "temporal",
            f"How long after starting at {company} was {o} promoted?",
            (("job", 0), ("job", 2)),
            "{date0} to {date2}",
        ),
        q(
            "paraphrase",
            (f"Has {o} changed employers recently?", f"Did {o} land a different position?"),
            (("job", 0),),
            company,
        ),
        q(
            "paraphrase",
            (f"Did {o} move up the career ladder?", f"Was {o} given a higher title?"),
            (("job", 2),),
            "senior",
        ),
    ]
    return Story("job", ev, qs)


def trip(c: Ctx) -> Story:
    o = c.o
    country, city, sight = c.pick(TRIPS)
    friend = c.name()
    ev = [
        Event(
            f"{friend} and I finally booked flights to {country}, we leave next week. "
            f"Two weeks, mostly around {city}!",
            "Any holiday plans this year?",
            f"{country}! I am so jealous. You have to try the local food.",
            desc=f"booking the {country} trip",
        ),
        Event(
            f"Just got back! Seeing {sight} was even better than the photos, "
            f"and {friend} got "
            "us lost every single day.",
            "Welcome back! How was it?",
            "I want to see every picture.",
            desc=f"the trip to {country}",
            min_days=21,
            ask_evidence=False,
        ),
    ]
    qs = [
        q("single-hop", f"Where is {o} going on holiday?", (("trip", 0),), country),
        q("single-hop", f"Who is travelling to {country} with {o}?", (("trip", 0),), friend),
        q("multi-hop", f"Which sight did {o} enjoy most in {country}?", (("trip", 0), ("trip", 1)), sight),
        q(
            "temporal",
            f"When did {o} come back from {country}?",
            (("trip", 0), ("trip", 1)),
            "just before {date1}",
        ),
        q(
            "paraphrase",
            (f"What vacation has {o} arranged?", f"Which nation will {o} visit on vacation?"),
            (("trip", 0),),
            country,
        ),
        q(
            "paraphrase",
            (
                f"Did {o}'s companion have a good sense of direction abroad?",
                f"How was the navigation on {o}'s vacation?",
            ),
            (("trip", 1),),
            "no",
        ),
    ]
    return Story("trip", ev, qs)


def baby(c: Ctx) -> Story:
    r, o = c.r, c.o
    rel = r.choice(("sister", "brother", "cousin"))
    sib = c.name({"sister": WOMEN, "brother": MEN}.get(rel, NAMES))
    girl = r.random() < 0.5
    kid = c.pick(GIRLS if girl else BOYS)
    due = r.choice(("any week now", "in a few weeks", "next month"))
    ev = [
        Event(
            f"My {rel} {sib} just told the family they are expecting a baby {due}! Everyone is over "
            "the moon.",
            "How is your family doing?",
            f"That is wonderful, congratulations to {sib}!",
            desc="the pregnancy news",
        ),
        Event(
            f"{sib} had the baby on Thursday! A little {'girl' if girl else 'boy'} called "
            f"{kid}, tiny and loud.",
            None,
            f"Welcome to the world, {kid}!",
            desc=f"the birth of {kid}",
            min_days=7,
        ),
    ]
    qs = [
        q("single-hop", f"Which of {o}'s relatives is expecting a baby?", (("baby", 0),), sib),
        q("multi-hop", f"What is the name of {o}'s {rel}'s baby?", (("baby", 0), ("baby", 1)), kid),
        q("temporal", f"When was {kid} born?", (("baby", 1),), "the Thursday before {date1}"),
        q(
            "paraphrase",
            (
                f"Is a new arrival on the way in {o}'s family?",
                f"Does anyone related to {o} have a child on the way?",
            ),
            (("baby", 0),),
            sib,
        ),
        q(
            "paraphrase",
            (f"Has anybody in {o}'s household given birth?", f"Did {o} become an aunt or uncle?"),
            (("baby", 1),),
            kid,
        ),
    ]
    return Story("baby", ev, qs)


def car(c: Ctx) -> Story:
    o = c.o
    model, nick, place = c.pick(CARS), c.pick(CAR_NICKS), c.pick(CITIES)
    ev = [
        Event(
            f"I finally bought {model}! It is a bit rusty but it runs. We are calling it {nick}.",
            "Did you sort out how to get to work?",
            f"{nick}! I love that. Road trip soon?",
            desc="buying the car",
        ),
        Event(
            f"{nick} broke down on the motorway on the way to {place}. Two hours waiting for the tow truck.",
            None,
            "Nightmare. At least nobody got hurt.",
            desc=f"the breakdown near {place}",
            min_days=3,
        ),
    ]
    bare = model.split(" ", 1)[1]
    qs = [
        q("single-hop", f"What car did {o} buy?", (("car", 0),), model),
        q("multi-hop", f"Where was {o} driving when the {bare} broke down?", (("car", 0), ("car", 1)), place),
        q("temporal", f"When did {o} buy {nick}?", (("car", 0),), "shortly before {date0}"),
        q(
            "paraphrase",
            (f"What vehicle does {o} own?", f"Which automobile did {o} purchase?"),
            (("car", 0),),
            model,
        ),
        q(
            "paraphrase",
            (f"Did {o} have any trouble with the vehicle?", f"What went wrong on {o}'s drive?"),
            (("car", 1),),
            "breakdown",
        ),
    ]
    return Story("car", ev, qs)


STORIES: dict[str, Builder] = {
    "pet": pet,
    "move": move,
    "job": job,
    "trip": trip,
    "baby": baby,
    "car": car,
    **PASTIMES,
}
