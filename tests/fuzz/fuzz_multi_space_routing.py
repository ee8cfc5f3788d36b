"""atheris target: random operation sequences across spaces; every answer belongs to its space.

Each input is decoded into a short sequence of operations (remember,
experience, recall in every mode, get, list, forget, associate, recognize,
reminisce, consolidate) against three spaces that share ids. Memories are
tagged with their space; a model of which ids each space holds is kept
across inputs. Invariant: every memory, id, citation and path a space
returns is that space's own; a get of an id the space does not hold is
``MemoryNotFound``. Expected domain errors (``EngramError``) are fine;
anything else is a finding.

    python tests/fuzz/fuzz_multi_space_routing.py tests/fuzz/corpus/multi_space_routing -atheris_runs=20000
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _instrument import UNDER_TEST, instrument_only

with instrument_only(*UNDER_TEST["multi_space_routing"]):
    from _common import SPACES, make_service

    from engram.core import models as m
    from engram.errors import EngramError, MemoryNotFound
    from engram.service import EngramService  # noqa: F401  (imported here to be instrumented)
    from engram.testing.isolation import scan

SERVICE, LOOP = make_service()
IDS = [f"id{i}" for i in range(8)]
HOLDS: dict[str, set[str]] = {s: set() for s in SPACES}  # ids present (live or suppressed) per space
DIM = 4


def run(coro):  # type: ignore[no-untyped-def]
    return LOOP.run_until_complete(coro)


def check(space: str, result: object) -> None:
    s = scan(m.dump(result) if hasattr(result, "model_dump") else result)
    for tag in s.tags:
        assert tag == space, f"{space} returned a memory of {tag}"
    for sf in s.space_fields:
        assert sf == space, f"{space} answered with memory_space_id {sf}"
    for mid in s.ids:
        assert mid in HOLDS[space] or mid.startswith("belief"), (
            f"{space} returned {mid}, not its own {HOLDS[space]}"
        )


def vector(fdp: atheris.FuzzedDataProvider) -> list[float]:
    v = [float(fdp.ConsumeIntInRange(-4, 4)) for _ in range(DIM)]
    return v if any(v) else [1.0, *v[1:]]


def one_op(fdp: atheris.FuzzedDataProvider) -> None:
    space = SPACES[fdp.ConsumeIntInRange(0, len(SPACES) - 1)]
    mid = IDS[fdp.ConsumeIntInRange(0, len(IDS) - 1)]
    op = fdp.ConsumeIntInRange(0, 11)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    try:
        if op <= 1:
            cls = m.EpisodeInput if op == 1 else m.MemoryInput
            extra = {"when": 1_700_000_000 + fdp.ConsumeIntInRange(0, 10_000)} if op == 1 else {}
            r = run(
                SERVICE.remember(
                    space,
                    cls(
                        id=mid, content=text or "x", embedding=vector(fdp), metadata={"space": space}, **extra
                    ),
                )
            )
            assert r.memory_id == mid
            HOLDS[space].add(mid)
        elif op <= 4:
            mode = ("similarity", "spreading", "hybrid")[op - 2]
            cue = m.Cue(
                embedding=vector(fdp),
                query=text or None,
                mode=mode,
                trace_activation=True,
                max_results=fdp.ConsumeIntInRange(1, 20),
            )
            check(space, run(SERVICE.recall(space, cue)))
        elif op == 5:
            try:
                check(space, run(SERVICE.get_memory(space, mid)))
            except MemoryNotFound:
                assert mid not in HOLDS[space], f"{mid} held by {space} but not found"
            else:
                assert mid in HOLDS[space], f"{space} returned {mid} it never stored"
        elif op == 6:
            check(space, run(SERVICE.list_memories(space, limit=100, include_suppressed=True)))
        elif op == 7:
            delete = fdp.ConsumeBool()
            try:
                run(SERVICE.forget(space, mid, m.ForgetMode.delete if delete else m.ForgetMode.suppress))
            except MemoryNotFound:
                assert mid not in HOLDS[space]
            else:
                assert mid in HOLDS[space], f"forget of {mid} in {space} succeeded, it is not there"
                if delete:
                    HOLDS[space].discard(mid)
        elif op == 8:
            other = IDS[fdp.ConsumeIntInRange(0, len(IDS) - 1)]
            check(space, run(SERVICE.associate(space, m.AssociateInput(source_id=mid, target_id=other))))
        elif op == 9:
            check(space, run(SERVICE.recognize(space, m.RecognizeInput(content=text or "x", threshold=0.0))))
        elif op == 10:
            check(space, run(SERVICE.reminisce(space, m.ReminisceQuery(topic=text or None))))
        else:
            check(space, run(SERVICE.consolidate(space, m.ConsolidateInput(min_cluster=2))))
            check(space, run(SERVICE.list_beliefs(space)))
    except EngramError:
        pass  # domain errors (duplicate id, unknown id, weak cue...) are answers, not findings
    except ValueError:
        pass  # pydantic validation of the generated input (e.g. text too long): rejected before routing


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        one_op(fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
