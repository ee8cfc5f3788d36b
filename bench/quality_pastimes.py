"""Storylines of the recall-quality data set: hobbies, health, studies (see bench/quality_stories.py)."""

from __future__ import annotations

from quality_words import (
    BODY,
    BOOKS,
    CITIES,
    EXAMS,
    INSTRUMENTS,
    RACES,
    ROOMS,
    SPORTS,
    VOLUNTEER,
    WHEN_PAST,
    Builder,
    Ctx,
    Event,
    Story,
    q,
)


def music(c: Ctx) -> Story:
    r, o = c.r, c.o
    instrument = r.choice(sorted(INSTRUMENTS))
    teacher, piece = c.name(), r.choice(INSTRUMENTS[instrument])
    ev = [
        Event(
            f"I signed up for {instrument} lessons! My teacher, {teacher}, is patient "
            "with my clumsy fingers.",
            "Have you picked up anything new lately?",
            f"The {instrument}! I always wanted to learn that.",
            "Thirty minutes of practice every evening, the neighbours love me.",
            desc=f"starting {instrument} lessons",
        ),
        Event(
            f"{teacher} thinks I am ready to play {piece} at the spring recital. I am terrified.",
            None,
            "You will be great. I am coming to watch.",
            desc="the recital news",
            min_days=21,
        ),
    ]
    qs = [
        q("single-hop", f"What instrument is {o} learning?", (("music", 0),), instrument),
        q("single-hop", f"Who teaches {o} the {instrument}?", (("music", 0),), teacher),
        q(
            "multi-hop",
            f"What will {o} play on the {instrument} at the recital?",
            (("music", 0), ("music", 1)),
            piece,
        ),
        q(
            "temporal",
            f"When did {o} start taking {instrument} lessons?",
            (("music", 0),),
            "shortly before {date0}",
        ),
        q(
            "paraphrase",
            (f"Which musical skill has {o} been picking up?", f"Is {o} studying music?"),
            (("music", 0),),
            instrument,
        ),
        q(
            "paraphrase",
            (f"Which composition will {o} perform on stage?", f"What song is {o} performing live?"),
            (("music", 1),),
            piece,
        ),
    ]
    return Story("music", ev, qs)


def injury(c: Ctx) -> Story:
    r, o = c.r, c.o
    sport, part, physio = c.pick(SPORTS), c.pick(BODY), c.name()
    when = r.choice(WHEN_PAST)
    ev = [
        Event(
            f"Honestly not great. I hurt my {part} playing {sport} {when}, so I am stuck on the sofa.",
            "How are you doing?",
            "Oh no! Ice it and rest, please do not push it.",
            desc=f"hurting the {part}",
        ),
        Event(
            f"Good news: {physio}, my physio, says I can go back to training next week if I take it slowly.",
            "Is it healing?",
            "That is great news. Go easy at first.",
            desc="the physio's all-clear",
            min_days=10,
        ),
    ]
    qs = [
        q("single-hop", f"How did {o} hurt their {part}?", (("injury", 0),), sport),
        q("multi-hop", f"Who is treating {o}'s {part}?", (("injury", 0), ("injury", 1)), physio),
        q(
            "temporal",
            f"When did {o} get injured playing {sport}?",
            (("injury", 0),),
            f"{when}, before {{date0}}",
        ),
        q(
            "paraphrase",
            (
                f"What accident happened to {o} during a game?",
                f"Did {o} get hurt doing a match?",
                f"Why was {o} laid up at home?",
            ),
            (("injury", 0),),
            part,
        ),
        q(
            "paraphrase",
            (f"When may {o} resume exercising?", f"Is {o} cleared for sport?"),
            (("injury", 1),),
            "next week",
        ),
    ]
    return Story("injury", ev, qs)


def race(c: Ctx) -> Story:
    r, o = c.r, c.o
    kind, city = c.pick(RACES), c.pick(CITIES)
    lo, hi = {
        "10k": (42, 70),
        "half marathon": (95, 150),
        "marathon": (200, 330),
        "sprint triathlon": (70, 110),
    }[kind]
    minutes = r.randint(lo, hi)
    hours = f"{minutes // 60}:{minutes % 60:02d}" if minutes >= 60 else f"{minutes} minutes"
    ev = [
        Event(
            f"I signed up for the {city} {kind}. Training plan starts tomorrow, four runs a week.",
            "Any goals for the next few months?",
            "You are braver than me. Good luck with the training!",
            desc=f"signing up for the {kind}",
        ),
        Event(
            f"I did it! Finished in {hours} and my legs are completely destroyed. "
            "Never again, until next year.",
            f"Did you survive the {city} {kind}?",
            f"{hours}! That is amazing, well done!",
            ask_evidence=True,
            desc=f"the {city} {kind}",
            min_days={"10k": 21, "marathon": 60}.get(kind, 40),
        ),
    ]
    qs = [
        q("single-hop", f"Which race did {o} sign up for?", (("race", 0),), f"{city} {kind}"),
        q("single-hop", f"What was {o}'s finishing time in the {kind}?", (("race", 1),), hours),
        q("temporal", f"When did {o} run the {city} {kind}?", (("race", 1),), "shortly before {date1}"),
        q(
            "paraphrase",
            (f"Is {o} preparing for an athletic competition?", f"What endurance event has {o} entered?"),
            (("race", 0),),
            kind,
        ),
        q(
            "paraphrase",
            (f"How quickly did {o} complete the course?", f"How fast was {o} on race day?"),
            (("race", 1),),
            hours,
        ),
    ]
    return Story("race", ev, qs)


def exam(c: Ctx) -> Story:
    r, o = c.r, c.o
    name, month = c.pick(EXAMS), r.choice(("in three weeks", "next month", "in about a month"))
    ev = [
        Event(
            f"I am studying for the {name}, it is {month}. Flashcards on the bus, practice papers "
            "every night.",
            "You seem tired lately, everything okay?",
            "You will smash it. Do not forget to sleep.",
            desc=f"starting to study for the {name}",
        ),
        Event(
            "I passed!!! Results came out this morning, I actually screamed in the kitchen.",
            "Any news on the results?",
            "I knew you would! So proud of you.",
            desc=f"passing the {name}",
            min_days=14,
        ),
    ]
    qs = [
        q("single-hop", f"What exam is {o} preparing for?", (("exam", 0),), name),
        q("multi-hop", f"Did {o} pass the {name}?", (("exam", 0), ("exam", 1)), "yes"),
        q(
            "temporal",
            f"When did {o} get the {name} results?",
            (("exam", 0), ("exam", 1)),
            "the day of {date1}",
        ),
        q(
            "paraphrase",
            (f"How is {o} getting ready for the test?", f"What revision method does {o} use?"),
            (("exam", 0),),
            "flashcards",
        ),
        q(
            "paraphrase",
            (f"Was {o} successful in the assessment?", f"Did {o} succeed in that test?"),
            (("exam", 1),),
            "yes",
        ),
    ]
    return Story("exam", ev, qs)


def renovation(c: Ctx) -> Story:
    r, o = c.r, c.o
    room, builder, colour = c.pick(ROOMS), c.name(), r.choice(("sage green", "navy", "terracotta"))
    ev = [
        Event(
            f"We are finally redoing the {room}. Our builder, {builder}, starts on Monday, "
            "so chaos incoming.",
            "Any big projects at home?",
            "Exciting! Renovations always take twice as long though.",
            desc=f"starting the {room} renovation",
        ),
        Event(
            f"{builder} finished the tiles yesterday and we painted the walls {colour}. It looks amazing.",
            None,
            f"{colour.title()}, bold choice! Pictures please.",
            desc="finishing the renovation",
            min_days=14,
        ),
    ]
    qs = [
        q("single-hop", f"Which room is {o} renovating?", (("renovation", 0),), room),
        q(
            "multi-hop",
            f"What colour did {o} paint the {room}?",
            (("renovation", 0), ("renovation", 1)),
            colour,
        ),
        q(
            "temporal",
            f"When did the builder start work on {o}'s {room}?",
            (("renovation", 0),),
            "the Monday after {date0}",
        ),
        q(
            "paraphrase",
            (f"Is {o} doing any construction at their home?", f"What is being rebuilt at {o}'s?"),
            (("renovation", 0),),
            room,
        ),
    ]
    return Story("renovation", ev, qs)


def bookclub(c: Ctx) -> Story:
    o = c.o
    (title, author), host = c.pick(BOOKS), c.name()
    ev = [
        Event(
            f"I joined a book club! {host} hosts it, and this month we are reading {title} by {author}.",
            "Read anything good recently?",
            f"I loved {title}. Tell me what you think when you finish.",
            desc="joining the book club",
        ),
        Event(
            f"The discussion at {host}'s place got heated, half of us hated the ending. Great wine though.",
            "How did the meeting go?",
            "Ha, the best book clubs are the ones with arguments.",
            desc="the book club meeting",
            min_days=7,
        ),
    ]
    qs = [
        q("single-hop", f"What book is {o}'s book club reading?", (("bookclub", 0),), title),
        q(
            "multi-hop",
            f"How did {o}'s book club feel about the ending of {title}?",
            (("bookclub", 0), ("bookclub", 1)),
            "divided",
        ),
        q("temporal", f"When did {o} join a book club?", (("bookclub", 0),), "shortly before {date0}"),
        q(
            "paraphrase",
            (f"Is {o} part of any reading group?", f"Which novel is {o} reading with friends?"),
            (("bookclub", 0),),
            title,
        ),
    ]
    return Story("bookclub", ev, qs)


def volunteer(c: Ctx) -> Story:
    r, o = c.r, c.o
    place, day = c.pick(VOLUNTEER), r.choice(("Saturday", "Sunday", "Wednesday evening"))
    ev = [
        Event(
            f"I started volunteering at {place} every {day}. It is the best part of my week.",
            "What have you been up to outside work?",
            "That is lovely. How did you find it?",
            desc=f"starting at {place}",
        ),
        Event(
            f"They asked me to coordinate the {day} volunteers now. More emails, but I like it.",
            None,
            "A promotion for doing good, I love it.",
            desc="becoming a coordinator",
            min_days=30,
        ),
    ]
    qs = [
        q("single-hop", f"Where does {o} volunteer?", (("volunteer", 0),), place),
        q(
            "multi-hop",
            f"What role does {o} have now at {place}?",
            (("volunteer", 0), ("volunteer", 1)),
            "coordinator",
        ),
        q("temporal", f"When did {o} start volunteering?", (("volunteer", 0),), "shortly before {date0}"),
        q(
            "paraphrase",
            (f"Does {o} do any unpaid charity work?", f"How does {o} help the community?"),
            (("volunteer", 0),),
            place,
        ),
    ]
    return Story("volunteer", ev, qs)


def baking(c: Ctx) -> Story:
    r, o = c.r, c.o
    starter = r.choice(("Doughbi Wan", "Bready Mercury", "Clint Yeastwood", "Gerald", "Sir Loaf"))
    ev = [
        Event(
            f"I am learning to bake sourdough. My starter lives in a jar on the fridge "
            f"and is named {starter}.",
            "Picked up any lockdown-style hobbies?",
            f"{starter}, that is brilliant. Bring me a loaf!",
            desc="starting sourdough",
        ),
        Event(
            f"{starter} finally produced a proper loaf: crispy crust, big holes. Took me six attempts.",
            None,
            "Six attempts is nothing, that is a win.",
            desc="the first good loaf",
            min_days=7,
        ),
    ]
    qs = [
        q("single-hop", f"What is the name of {o}'s sourdough starter?", (("baking", 0),), starter),
        q(
            "multi-hop",
            f"How many tries did {o} need for a good sourdough loaf?",
            (("baking", 0), ("baking", 1)),
            "six",
        ),
        q(
            "temporal",
            f"When did {o} bake their first successful sourdough?",
            (("baking", 0), ("baking", 1)),
            "shortly before {date1}",
        ),
        q(
            "paraphrase",
            (f"What new kitchen pastime has {o} taken up?", f"Does {o} make bread at home?"),
            (("baking", 0),),
            "sourdough",
        ),
    ]
    return Story("baking", ev, qs)


PASTIMES: dict[str, Builder] = {
    "music": music,
    "injury": injury,
    "race": race,
    "exam": exam,
    "renovation": renovation,
    "bookclub": bookclub,
    "volunteer": volunteer,
    "baking": baking,
}
