#!/usr/bin/env python3
"""A seeded conversational-memory data set for the recall-quality benchmark (bench/quality.py).

    python bench/quality_data.py [--conversations 12] [--seed 0] [--out FILE]

In the spirit of LoCoMo: each conversation is a chat between two people over 8-12
sessions, days to weeks apart in 2025-2026, of 12-25 alternating turns. Each speaker
has 4-5 storylines (bench/quality_stories.py: a dog adopted, a job, a trip, an
injury...) whose events are told over several sessions, usually in answer to the
other speaker's question, and whose later events often name only the entity ("Max
had to go to the vet"). Small talk fills the rest: greetings, weather, work, TV, some
of it sharing words with the facts. Questions (25-40 per conversation) name their
evidence turns and are of four kinds:

* single-hop: one turn answers it;
* multi-hop: turns of two or more sessions, linked by an entity;
* temporal: "When did ...?", the answer needs the session date of the evidence
  (stored as each turn's time), or what a speaker did in the days after an event;
* paraphrase: no content word in common with the evidence turn, checked here with a
  stopword list and suffix stemming; a question whose every phrasing overlaps is
  dropped. The two speakers' names do not count: they are who, not what.

Nothing here knows how any system ranks; the same seed gives the same data.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quality_stories import STORIES, Ctx, Event, Story
from quality_words import NAMES, bridge, chatty, closing, greeting, small_talk

KINDS = ("single-hop", "multi-hop", "temporal", "paraphrase")
EVENTS_PER_SESSION = 3
QUESTIONS_MAX, QUESTIONS_MIN = 40, 25

# NLTK's English stopwords and a few more auxiliaries: what is left is a content word.
STOPWORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own
    same so than too very s t can will just don should now d ll m o re ve y would could might must
    shall also
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ions", "ion", "edly", "ed", "ies", "es",
             "ly", "er", "est", "s")  # fmt: skip


def stem(word: str) -> str:
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[: -len(suf)] + ("y" if suf == "ies" else "")
    return word


def content_stems(text: str, ignore: frozenset[str] = frozenset()) -> set[str]:
    words = _WORD.findall(text.lower().replace("'s ", " "))
    return {stem(w) for w in words if w not in STOPWORDS and w not in ignore}


def shares_content(a: set[str], b: set[str]) -> bool:
    """Same stem, or a common prefix of 5+ letters (adopt/adoption, photo/photograph): strict on purpose."""
    return any(x == y or (len(x) >= 5 and len(y) >= 5 and x[:5] == y[:5]) for x in a for y in b)


@dataclass
class Turn:
    id: str
    session: int
    speaker: str
    text: str
    when: datetime


@dataclass
class Placed:
    owner: str
    story: Story
    event: Event
    index: int
    session: int
    evidence: list[str]  # turn ids, filled when the session is written


def _dates(r: random.Random, n: int) -> list[datetime]:
    t = datetime(2025, 1, 4, tzinfo=UTC) + timedelta(days=r.randint(0, 330))
    out = []
    for _ in range(n):
        out.append(t.replace(hour=r.randint(8, 21), minute=r.randint(0, 59)))
        t += timedelta(days=r.choice((2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 21, 25, 30)))
    return out


def _schedule(r: random.Random, stories: list[tuple[str, Story]], dates: list[datetime]) -> list[Placed]:
    """Each storyline's events in increasing sessions (1-3 apart, and far enough apart in days for what
    happens between them), at most a few facts per session."""
    n = len(dates)
    load = [0] * n
    at: dict[tuple[str, str, int], int] = {}
    placed: list[Placed] = []
    for owner, story in stories:
        prev = -1
        for i, ev in enumerate(story.events):
            lo = prev + r.randint(1, 3) if i else r.randint(0, max(0, n - 2 * len(story.events)))
            if ev.after is not None:
                dep = at.get((owner, *ev.after))
                if dep is None:
                    break
                lo = max(lo, dep + 1)
            soonest = dates[prev] + timedelta(days=ev.min_days) if i else dates[0]
            s = next((k for k in range(lo, n) if load[k] < EVENTS_PER_SESSION and dates[k] >= soonest), None)
            if s is None:
                break  # the rest of this storyline did not happen (yet)
            load[s] += 1
            at[(owner, story.kind, i)] = prev = s
            placed.append(Placed(owner, story, ev, i, s, []))
    return placed


def _write_session(
    r: random.Random, cid: str, si: int, when: datetime, a: str, b: str, events: list[Placed], said: set[int]
) -> list[Turn]:
    """Greeting, the session's storyline events and small talk in random order, a goodbye; speakers
    strictly alternate (a short bridging remark is added where two blocks would not)."""
    target = r.randint(12, 25)
    Line = tuple[str | None, str, Placed | None, bool]  # speaker, text, event, is evidence
    blocks: list[list[Line]] = []
    for pl in events:
        other, ev = (b if pl.owner == a else a), pl.event
        block: list[Line] = []
        if ev.ask and (ev.ask_evidence or r.random() < 0.7):
            block.append((other, chatty(r, ev.ask, "ask"), pl, ev.ask_evidence))
        block.append((pl.owner, chatty(r, ev.say, "say"), pl, True))
        if ev.react and r.random() < 0.8:
            block.append((other, chatty(r, ev.react, "react"), None, False))
            if ev.more and r.random() < 0.6:
                block.append((pl.owner, chatty(r, ev.more, "say"), None, False))
        blocks.append(block)
    n_facts = sum(map(len, blocks))
    while 4 + n_facts + sum(map(len, blocks)) - n_facts < target:
        blocks.append([(None, chatty(r, t, "say", 0.15), None, False) for t in small_talk(r, said)])
    r.shuffle(blocks)
    first, second = (a, b) if r.random() < 0.5 else (b, a)
    hello = greeting(r, first, second)
    lines: list[Line] = [(first, hello[0], None, False), (second, hello[1], None, False)]
    for block in blocks:
        last = lines[-1][0]
        if block[0][0] is None:  # small talk: whoever did not speak last opens it
            order = [b if last == a else a, last]
            block = [(order[k % 2], *rest) for k, (_, *rest) in enumerate(block)]
        elif block[0][0] == last:
            # e.g. the owner spoke last and now tells news unasked: the other asks them to go on
            owner_first = block[0][2] is not None and block[0][0] == block[0][2].owner
            lines.append((b if last == a else a, bridge(r, prompt=owner_first), None, False))
        lines += block
    last = lines[-1][0]
    nxt = b if last == a else a
    bye = closing(r, str(nxt), str(last))
    lines += [(nxt, bye[0], None, False), (last, bye[1], None, False)]
    turns, t = [], when
    for k, (spk, text, pl, is_evidence) in enumerate(lines):
        turn = Turn(f"{cid}-s{si:02d}-t{k:02d}", si, str(spk), text, t)
        turns.append(turn)
        if is_evidence and pl is not None:
            pl.evidence.append(turn.id)
        t += timedelta(seconds=r.randint(15, 120))
    return turns


def _questions(
    r: random.Random, placed: list[Placed], turns: dict[str, Turn], dates: list[datetime], a: str, b: str
) -> list[dict[str, Any]]:
    names = frozenset({a.lower(), b.lower()})
    at = {(pl.owner, pl.story.kind, pl.index): pl for pl in placed}
    out: list[dict[str, Any]] = []
    stories = {(pl.owner, pl.story.kind): pl.story for pl in placed}
    for (owner, _kind), story in stories.items():
        for q in story.questions:
            refs = [at.get((owner, *ref)) for ref in q.refs]
            if any(x is None for x in refs):
                continue  # an event the schedule left out
            evidence = [tid for x in refs if x is not None for tid in x.evidence]
            sessions = {turns[tid].session for tid in evidence}
            if q.kind == "multi-hop" and len(sessions) < 2:
                continue
            text = q.texts[0]
            if q.kind == "paraphrase":
                ev_words = set().union(*(content_stems(turns[tid].text) for tid in evidence))
                options = list(q.texts)
                r.shuffle(options)
                text = next((t for t in options if not shares_content(content_stems(t, names), ev_words)), "")
                if not text:
                    continue
            dates_of = {f"date{x.index}": f"{dates[x.session]:%d %B %Y}" for x in refs if x is not None}
            answer = q.answer
            for key, val in dates_of.items():
                answer = answer.replace("{" + key + "}", val)
            out.append({"kind": q.kind, "question": text, "evidence": evidence, "answer": answer})
    # what a speaker did in the days after an event: the anchor turn and the later one
    by_owner_session = Counter((pl.owner, pl.session) for pl in placed)
    rel = []
    for x in placed:
        for y in placed:
            gap = (dates[y.session] - dates[x.session]).days
            alone = by_owner_session[(y.owner, y.session)] == 1  # the only event of the owner that session
            if x.owner == y.owner and x.story is not y.story and 3 <= gap <= 10 and alone:
                rel.append((x, y))
    for x, y in r.sample(rel, min(2, len(rel))):
        out.append(
            {
                "kind": "temporal",
                "question": f"What was {x.owner} up to about a week after {x.event.desc}?",
                "evidence": x.evidence + y.evidence,
                "answer": y.event.desc,
            }
        )
    return out


def _balanced(r: random.Random, qs: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` questions, taken round-robin over the kinds (random within each)."""
    pools = {k: [q for q in qs if q["kind"] == k] for k in KINDS}
    for p in pools.values():
        r.shuffle(p)
    out: list[dict[str, Any]] = []
    while len(out) < limit and any(pools.values()):
        for k in KINDS:
            if pools[k] and len(out) < limit:
                out.append(pools[k].pop())
    return out


def conversation(r: random.Random, ci: int) -> dict[str, Any]:
    cid = f"c{ci:02d}"
    a, b = r.sample(NAMES, 2)
    n = r.randint(8, 12)
    used: set[str] = {a, b}
    stories: list[tuple[str, Story]] = []
    taken: set[str] = set()
    for owner, other in ((a, b), (b, a)):
        # two people rarely live the same storyline; pets are the exception (both may have one)
        pool = [k for k in STORIES if k not in taken or k == "pet"]
        kinds = sorted(r.sample(pool, r.randint(4, 5)), key=list(STORIES).index)
        taken.update(kinds)
        prof: dict[str, str] = {}
        for kind in kinds:  # in STORIES order: a storyline may link to one built before it (pet -> move)
            stories.append((owner, STORIES[kind](Ctx(r, owner, other, prof, used))))
    r.shuffle(stories)
    stories.sort(key=lambda s: any(ev.after for ev in s[1].events))  # linked storylines scheduled last
    dates = _dates(r, n)
    placed = _schedule(r, stories, dates)
    turns: dict[str, Turn] = {}
    sessions = []
    said: set[int] = set()  # small talk used so far
    for si in range(n):
        here = [pl for pl in placed if pl.session == si]
        r.shuffle(here)
        st = _write_session(r, cid, si, dates[si], a, b, here, said)
        turns.update((t.id, t) for t in st)
        sessions.append(
            {
                "index": si,
                "date": dates[si].isoformat(),
                "turns": [{"id": t.id, "speaker": t.speaker, "text": t.text, "when": t.when.isoformat()}
                          for t in st],
            }
        )  # fmt: skip
    qs = _balanced(r, _questions(r, placed, turns, dates, a, b), QUESTIONS_MAX)
    for k, q in enumerate(qs):
        q["id"] = f"{cid}-q{k:02d}"
    return {"id": cid, "speakers": [a, b], "sessions": sessions, "questions": qs}


def generate(conversations: int = 12, seed: int = 0) -> dict[str, Any]:
    r = random.Random(seed)
    convs = [conversation(r, i) for i in range(conversations)]
    turns = [t for c in convs for s in c["sessions"] for t in s["turns"]]
    words = [len(t["text"].split()) for t in turns]
    qs = [q for c in convs for q in c["questions"]]
    return {
        "seed": seed,
        "conversations": convs,
        "counts": {
            "conversations": len(convs),
            "sessions": sum(len(c["sessions"]) for c in convs),
            "turns": len(turns),
            "words_per_turn": {
                "min": min(words),
                "mean": round(sum(words) / len(words), 1),
                "max": max(words),
            },
            "questions": len(qs),
            "questions_per_conversation": [len(c["questions"]) for c in convs],
            "by_kind": {k: sum(q["kind"] == k for q in qs) for k in KINDS},
            "evidence_turns_per_question": round(sum(len(q["evidence"]) for q in qs) / max(1, len(qs)), 2),
        },
    }


def dumps(ds: dict[str, Any]) -> str:
    """The data set as JSON with one turn or question per line: small, and readable in a diff."""

    def rows(items: list[dict[str, Any]], indent: str) -> str:
        return ",\n".join(indent + json.dumps(x, ensure_ascii=False) for x in items)

    def session(s: dict[str, Any]) -> str:
        head = f'   {{"index": {s["index"]}, "date": {json.dumps(s["date"])}, "turns": [\n'
        return head + rows(s["turns"], "    ") + "\n   ]}"

    convs = []
    for c in ds["conversations"]:
        head = f'  {{"id": {json.dumps(c["id"])}, "speakers": {json.dumps(c["speakers"])}, "sessions": [\n'
        sessions = ",\n".join(session(s) for s in c["sessions"])
        convs.append(head + sessions + '\n  ], "questions": [\n' + rows(c["questions"], "   ") + "\n  ]}")
    top = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in ds.items() if k != "conversations"]
    return "{\n" + ",\n".join(top) + ',\n "conversations": [\n' + ",\n".join(convs) + "\n ]\n}\n"


def sample(ds: dict[str, Any], turns: int = 14) -> str:
    """A readable excerpt: the first turns of the first conversation and one question of each kind."""
    c = ds["conversations"][0]
    text = {t["id"]: t for s in c["sessions"] for t in s["turns"]}
    lines = [f"conversation {c['id']}: {c['speakers'][0]} and {c['speakers'][1]}"]
    for s in c["sessions"][:2]:
        lines.append(f"  session {s['index']} ({s['date'][:10]})")
        lines += [f"    {t['id']} {t['speaker']}: {t['text']}" for t in s["turns"][: turns // 2]]
    for kind in KINDS:
        q = next((q for q in c["questions"] if q["kind"] == kind), None)
        if q:
            lines.append(f"  [{kind}] {q['question']}  (answer: {q['answer']})")
            lines += [
                f"      evidence {e} ({text[e]['when'][:10]}): {text[e]['text']}" for e in q["evidence"]
            ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the data set as JSON here")
    args = ap.parse_args()
    ds = generate(args.conversations, args.seed)
    print(sample(ds))
    print(json.dumps(ds["counts"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dumps(ds))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
