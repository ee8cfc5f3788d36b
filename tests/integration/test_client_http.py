"""The Python HTTP clients (sync and async) against a real ``engram start`` process.

One server per module; each test works in its own spaces so the tests do not
depend on each other's order.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engram.client import AsyncEngramClient, CreatedSpace, EngramClient, EngramConnectionError, ServerEvent
from engram.core.models import (
    Association,
    Belief,
    BeliefPage,
    Completion,
    ConsolidationReport,
    ForgetReceipt,
    Memory,
    MemoryPage,
    RecallResult,
    Recognition,
    Reminiscence,
    SpaceDeletion,
    SpaceDescriptor,
    SpacePage,
    SpaceStats,
    StoreReceipt,
)
from engram.errors import (
    DimensionMismatch,
    EngramError,
    InvalidInput,
    InvalidMemorySpace,
    MemoryNotFound,
    MemorySpaceNotFound,
    NotFound,
)
from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("client-http"), spaces=["alpha", "beta"])
    yield srv
    srv.stop()


@pytest.fixture
def client(server: EngramProcess) -> Iterator[EngramClient]:
    with EngramClient(server.http_url, space="alpha") as c:
        yield c


def closed_port_url() -> str:
    """A URL nobody listens on: bind a free port, then close it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fresh_space(client: EngramClient, name: str) -> EngramClient:
    client.create_space(name)
    return client.with_space(name)


# ----------------------------------------------------------------------------- sync client


def test_space_administration(client: EngramClient) -> None:
    made = client.create_space("admin-1", dimension=3)
    assert isinstance(made, CreatedSpace) and isinstance(made, SpaceDescriptor)
    assert made.created and made.id == "admin-1" and made.dimension == 3
    again = client.create_space("admin-1")
    assert again.created is False and again.id == "admin-1"

    page = client.list_spaces(limit=1000)
    assert isinstance(page, SpacePage)
    ids = [s.id for s in page.spaces]
    assert ids == sorted(ids) and {"alpha", "beta", "admin-1"} <= set(ids)
    first = client.list_spaces(limit=1)
    assert len(first.spaces) == 1 and first.next_cursor
    assert {s.id for s in client.iter_spaces(page_size=1)} == set(ids)

    desc = client.get_space("admin-1")
    assert isinstance(desc, SpaceDescriptor) and desc.memory_count == 0
    assert client.get_space().id == "alpha", "get_space() defaults to the client's space"

    gone = client.delete_space("admin-1")
    assert isinstance(gone, SpaceDeletion) and gone.deleted and gone.id == "admin-1"
    with pytest.raises(MemorySpaceNotFound) as info:
        client.get_space("admin-1")
    assert "engram space create" in info.value.suggestion


def test_remember_get_list_forget(client: EngramClient) -> None:
    mem = fresh_space(client, "crud-1")
    receipt = mem.remember("the espresso machine is on the third floor", id="m-1", tags=["office"],
                           metadata={"floor": "3"}, confidence=0.9)
    assert isinstance(receipt, StoreReceipt)
    assert receipt.memory_id == "m-1" and receipt.lsn > 0
    other = mem.remember("the printer jams on Mondays")
    assert other.memory_id and other.memory_id != "m-1"

    got = mem.get("m-1")
    assert isinstance(got, Memory)
    assert got.content.startswith("the espresso")
    assert got.tags == ["office"] and got.metadata == {"floor": "3"}

    page = mem.list_memories(limit=1)
    assert isinstance(page, MemoryPage) and page.total == 2 and len(page.memories) == 1 and page.next_cursor
    assert [m.id for m in mem.iter_memories(page_size=1)] == ["m-1", other.memory_id]
    assert mem.list(limit=10).total == 2, "list is the SPEC's short name for list_memories"

    forgotten = mem.forget("m-1")
    assert isinstance(forgotten, ForgetReceipt) and forgotten.mode.value == "suppress"
    assert [m.id for m in mem.iter_memories()] == [other.memory_id]
    assert "m-1" in [m.id for m in mem.iter_memories(include_suppressed=True)]

    mem.forget("m-1", mode="delete")
    with pytest.raises(MemoryNotFound):
        mem.get("m-1")


def test_space_is_set_once_and_isolates(client: EngramClient, server: EngramProcess) -> None:
    client.remember("alpha-only fact", id="iso-1")
    beta = client.with_space("beta")
    assert beta.space == "beta" and client.space == "alpha"
    with pytest.raises(MemoryNotFound):
        beta.get("iso-1")
    beta.remember("beta-only fact", id="iso-1")
    assert client.get("iso-1").content == "alpha-only fact"
    assert beta.get("iso-1").content == "beta-only fact"
    with EngramClient(server.http_url, space="beta") as own:
        assert own.get("iso-1").content == "beta-only fact"


def test_recall_by_text_get_and_by_embedding_post(client: EngramClient) -> None:
    mem = fresh_space(client, "recall-1")
    mem.remember("the espresso machine is on the third floor", id="coffee", embedding=[1.0, 0.0, 0.0, 0.0])
    mem.remember("the bike shed is behind the parking lot", id="bikes", embedding=[0.0, 1.0, 0.0, 0.0])

    by_text = mem.recall("espresso", max_results=5)
    assert isinstance(by_text, RecallResult)
    found = [i.memory.id for b in (by_text.memories.vivid, by_text.memories.associated) for i in b]
    assert found and found[0] == "coffee"

    by_vector = mem.recall(embedding=[0.0, 0.9, 0.1, 0.0], max_results=1)
    top = (by_vector.memories.vivid + by_vector.memories.associated)[0]
    assert top.memory.id == "bikes" and 0.0 <= top.confidence.value <= 1.0

    with pytest.raises(DimensionMismatch) as info:
        mem.remember("wrong size", embedding=[1.0, 2.0])
    assert "4" in info.value.message and info.value.code == "EMBEDDING_DIMENSION_MISMATCH"


def test_cognition_methods(client: EngramClient) -> None:
    mem = fresh_space(client, "cog-1")
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ids = []
    for n, (text, vec) in enumerate([("standup with the infra team", [1.0, 0.1, 0.0]),
                                     ("standup with the infra team again", [1.0, 0.12, 0.0]),
                                     ("standup with infra, third day", [0.98, 0.1, 0.01])]):
        r = mem.experience(t0 + timedelta(days=n), text, where_location="room 4", who=["ana", "bo"],
                           embedding=vec, importance=0.6)
        ids.append(r.memory_id)
    assert mem.get(ids[0]).where_location == "room 4"

    rec = mem.recognize("standup with the infra team")
    assert isinstance(rec, Recognition) and rec.recognized and rec.matches

    link = mem.associate(ids[0], ids[2], strength=0.7)
    assert isinstance(link, Association) and link.source_id == ids[0] and link.target_id == ids[2]

    rem = mem.reminisce("standup")
    assert isinstance(rem, Reminiscence) and [e.id for e in rem.episodes] == ids
    window = mem.reminisce(time_start=t0 + timedelta(hours=12), time_end=t0 + timedelta(days=1, hours=1))
    assert [e.id for e in window.episodes] == [ids[1]]
    assert [e.id for e in mem.reminisce(embedding=[1.0, 0.1, 0.0]).episodes]

    report = mem.consolidate(min_cluster=2, similarity=0.9)
    assert isinstance(report, ConsolidationReport) and report.beliefs
    beliefs = mem.beliefs()
    assert isinstance(beliefs, BeliefPage) and beliefs.beliefs
    one = mem.belief(beliefs.beliefs[0].id)
    assert isinstance(one, Belief) and {c.episode_id for c in one.citations} <= set(ids)
    with pytest.raises(NotFound):
        mem.belief("no-such-belief")

    done = mem.complete(what="standup", where_location="room 4")
    assert isinstance(done, Completion) and done.best.fields

    stats = mem.introspect()
    assert isinstance(stats, SpaceStats) and stats.memory_space_id == "cog-1" and stats.memories == 3


def test_typed_errors(client: EngramClient, server: EngramProcess) -> None:
    with (
        EngramClient(server.http_url, space="no-such-space") as ghost,
        pytest.raises(MemorySpaceNotFound) as info,
    ):
        ghost.remember("x")
    err = info.value
    assert isinstance(err, NotFound) and isinstance(err, LookupError) and isinstance(err, EngramError)
    assert err.code == "MEMORY_SPACE_NOT_FOUND" and "alpha" not in err.message, "never lists other spaces"
    assert err.suggestion and err.details.get("http_status") == 404
    with EngramClient(server.http_url, space="no-such-space") as ghost, pytest.raises(MemorySpaceNotFound):
        next(ghost.stream("memories", types=["stored"]))
    with pytest.raises(ValueError):
        next(client.stream("no-such-stream"))

    with EngramClient(server.http_url, space="Bad Space!") as bad, pytest.raises(InvalidMemorySpace) as info2:
        bad.recall("x")
    assert isinstance(info2.value, (InvalidInput, ValueError)) and info2.value.suggestion

    with pytest.raises(InvalidInput):
        client.remember("")  # neither content nor embedding
    with pytest.raises(MemoryNotFound):
        client.get("does/not/exist?")


def test_unreachable_server_raises_connection_error() -> None:
    with (
        EngramClient(closed_port_url(), space="alpha", timeout=5) as c,
        pytest.raises(EngramConnectionError) as info,
    ):
        c.remember("x")
    assert isinstance(info.value, ConnectionError) and info.value.code == "SERVER_UNREACHABLE"
    assert "cannot reach" in info.value.message and "engram start" in info.value.suggestion


def test_no_space_falls_back_with_deprecation_warning(server: EngramProcess) -> None:
    with EngramClient(server.http_url) as c, pytest.warns(DeprecationWarning):
        receipt = c.remember("stored without naming a space")
    assert receipt.memory_space_id in ("", "default")


def test_health_and_metrics(client: EngramClient) -> None:
    assert client.health()["status"] in ("ok", "degraded")
    assert client.alive()
    system = client.system_health()
    assert "spaces" in system
    text = client.metrics()
    assert "# TYPE" in text and "engram_" in text


def test_stream_delivers_this_space_only(client: EngramClient) -> None:
    mem = fresh_space(client, "stream-1")
    events: queue.Queue[ServerEvent | BaseException] = queue.Queue()
    stop = threading.Event()

    def listen() -> None:
        try:
            with EngramClient(client.base_url, space="stream-1") as own:
                for event in own.stream("activities"):
                    events.put(event)
                    if stop.is_set():
                        return
        except BaseException as exc:  # surfaced to the test thread below
            events.put(exc)

    threading.Thread(target=listen, daemon=True).start()
    client.with_space("beta").remember("noise in another space")
    # The subscription starts asynchronously: keep writing until our event shows up.
    seen: list[ServerEvent] = []
    for n in range(200):
        receipt = mem.remember(f"streamed fact {n}")
        try:
            item = events.get(timeout=0.25)
        except queue.Empty:
            continue
        if isinstance(item, BaseException):
            raise item
        seen.append(item)
        break
    stop.set()
    mem.remember("wake the listener so it can stop")
    assert seen, "no SSE event arrived"
    event = seen[0]
    assert event.event == "stored" and event.lsn and event.lsn > 0
    assert event.data["memory_space_id"] == "stream-1"
    assert receipt.lsn >= event.lsn


# ----------------------------------------------------------------------------- async client


def test_async_client_end_to_end(server: EngramProcess) -> None:
    async def main() -> None:
        async with AsyncEngramClient(server.http_url, space="alpha") as c:
            made = await c.create_space("async-1")
            assert made.created
            mem = c.with_space("async-1")
            receipts = await asyncio.gather(*(mem.remember(f"async fact {i}", id=f"a-{i}",
                                                           embedding=[1.0, float(i), 0.5])
                                              for i in range(20)))
            assert all(isinstance(r, StoreReceipt) for r in receipts)
            assert len({r.lsn for r in receipts}) == 20

            got = await mem.get("a-3")
            assert isinstance(got, Memory) and got.content == "async fact 3"
            page = await mem.list_memories(limit=5)
            assert page.total == 20 and page.next_cursor
            assert len([m async for m in mem.iter_memories(page_size=7)]) == 20
            assert {s.id async for s in c.iter_spaces()} >= {"alpha", "beta", "async-1"}

            result = await mem.recall("fact", max_results=3)
            assert isinstance(result, RecallResult)
            by_vec = await mem.recall(embedding=[1.0, 3.0, 0.5], max_results=1)
            assert (by_vec.memories.vivid + by_vec.memories.associated)[0].memory.id == "a-3"

            assert isinstance(await mem.recognize("async fact 3"), Recognition)
            assert isinstance(await mem.associate("a-1", "a-2"), Association)
            when = datetime(2026, 2, 1, tzinfo=UTC)
            ep = await mem.experience(when, "async episode", embedding=[1.0, 1.0, 1.0])
            rem = await mem.reminisce("episode")
            assert ep.memory_id in [e.id for e in rem.episodes]
            assert isinstance(await mem.consolidate(), ConsolidationReport)
            assert isinstance(await mem.beliefs(), BeliefPage)
            assert isinstance(await mem.complete(what="async episode"), Completion)
            assert (await mem.introspect()).memories == 21
            assert isinstance(await mem.forget("a-0", mode="delete"), ForgetReceipt)

            with pytest.raises(MemoryNotFound):
                await mem.get("a-0")
            with pytest.raises(MemorySpaceNotFound):
                await c.with_space("nope-nope").get("x")

            # the stream: subscribe, then write until the event arrives
            stream = mem.stream("memories")
            first = asyncio.ensure_future(stream.__anext__())
            for i in range(200):
                await mem.remember(f"streamed {i}")
                done, _ = await asyncio.wait({first}, timeout=0.25)
                if done:
                    break
            event = first.result()
            assert event.data["memory_space_id"] == "async-1" and event.lsn
            await stream.aclose()

            assert (await c.health())["status"] in ("ok", "degraded")
            assert "# TYPE" in await c.metrics()
            assert isinstance(await c.delete_space("async-1"), SpaceDeletion)

        async with AsyncEngramClient(closed_port_url(), space="alpha", timeout=5) as dead:
            with pytest.raises(EngramConnectionError):
                await dead.remember("x")

    asyncio.run(main())


def test_http_client_does_not_import_grpc() -> None:
    """The gRPC clients load on first access only, so a missing grpcio never breaks the HTTP client."""
    import subprocess
    import sys

    code = ("import sys, engram.client as c; print('grpc' in sys.modules); "
            "print(c.EngramGrpcClient is not None and 'engram.client.grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
