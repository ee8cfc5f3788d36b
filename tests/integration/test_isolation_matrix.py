"""Isolation matrix: 10 spaces, same ids, same contents, same embeddings, REST and gRPC at once.

Every read surface of every space is exercised concurrently over both
transports (``engram.testing.isolation.run_checks``), plus per-space health,
metrics, SSE and gRPC event streams. A check returns violations instead of
asserting, so ``test_planted_leak_is_detected`` can run the same checks
against ``engram.testing.leaky`` (one engine function patched to read a
sibling space) and prove each one fails when a leak exists.
See docs/testing.md ("Isolation matrix" and "Planting a leak").
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import pytest

from engram.testing import EngramProcess, scratch_dir
from engram.testing.clients import ApiError, GrpcSpaceClient, RestSpaceClient, proto_dict
from engram.testing.isolation import (
    CheckResult,
    GrpcOps,
    Ops,
    RestOps,
    SpaceData,
    build_dataset,
    check_flow,
    check_health,
    check_metrics,
    check_stream,
    load,
    run_checks,
)
from engram.testing.report import write_section

SPACES = [f"iso-{i:02d}" for i in range(10)]
#: the stream test's own ten spaces on the same server (its probes must not change the matrix's counts)
STREAM_SPACES = [f"iso-st-{i:02d}" for i in range(10)]
SETTINGS = {"consolidation_interval_seconds": 0, "auto_link_threshold": 0.99}


def _ops(srv: EngramProcess, space: str, transport: str) -> Ops:
    return RestOps(srv.http_url, space) if transport == "rest" else GrpcOps(srv.grpc_target, space)


def _load_all(srv: EngramProcess, data: dict[str, SpaceData]) -> None:
    """Load every space concurrently; even spaces over REST, odd over gRPC."""

    def one(k_sp: tuple[int, str]) -> None:
        k, sp = k_sp
        ops = _ops(srv, sp, "rest" if k % 2 == 0 else "grpc")
        try:
            load(ops, data[sp])
        finally:
            ops.close()

    with ThreadPoolExecutor(len(data)) as pool:
        list(pool.map(one, enumerate(data)))


@pytest.fixture(scope="module")
def matrix_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EngramProcess, dict[str, SpaceData]]]:
    # The data on tmpfs: isolation is tested here, not fsync (the crash tier keeps its data on disk).
    data_dir = scratch_dir("engram-iso-")
    srv = EngramProcess.start(tmp_path_factory.mktemp("iso"), SPACES + STREAM_SPACES, SETTINGS,
                              data_dir=data_dir)
    try:
        data = build_dataset(SPACES)
        _load_all(srv, data)
        yield srv, data
    finally:
        srv.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _fmt(results: list[CheckResult]) -> str:
    bad = [r for r in results if r.violations]
    return "\n".join(f"{r.transport}/{r.space}/{r.name}: {r.violations[:3]}" for r in bad[:20])


def _run_matrix(
    srv: EngramProcess,
    data: dict[str, SpaceData],
    transports: tuple[str, ...] = ("rest", "grpc"),
    only: set[str] | None = None,
) -> list[CheckResult]:
    """Every space through every transport, all at once (2 x 10 concurrent clients)."""

    def one(job: tuple[str, str]) -> list[CheckResult]:
        sp, transport = job
        ops = _ops(srv, sp, transport)
        try:
            return run_checks(ops, data[sp], data, only)
        finally:
            ops.close()

    jobs = [(sp, t) for sp in data for t in transports]
    with ThreadPoolExecutor(len(jobs)) as pool:
        return [r for rs in pool.map(one, jobs) for r in rs]


def test_matrix_rest_and_grpc_concurrently(matrix_server: tuple[EngramProcess, dict[str, SpaceData]]) -> None:
    srv, data = matrix_server
    results = _run_matrix(srv, data)
    write_section(
        "isolation_matrix",
        [dict(asdict(r), passed=not r.violations) for r in results],
        spaces=len(data),
        transports=["rest", "grpc"],
    )
    # 13 checks per space and transport, plus StreamingRecall on gRPC
    assert len(results) == len(SPACES) * (2 * 13 + 1)
    assert not [r for r in results if r.violations], _fmt(results)
    # A check that saw nothing proves nothing: every surface must have returned something to scan.
    empty = [f"{r.transport}/{r.space}/{r.name}" for r in results if r.exercised == 0]
    assert not empty, f"checks that exercised nothing: {empty}"


def test_cross_space_get_is_not_found_on_both_transports(
    matrix_server: tuple[EngramProcess, dict[str, SpaceData]],
) -> None:
    srv, _ = matrix_server
    with (
        RestSpaceClient(srv.http_url, "iso-00") as rest,
        GrpcSpaceClient(srv.grpc_target, "iso-00") as grpc_c,
    ):
        with pytest.raises(ApiError) as err:
            rest.get("own.iso-09.9")
        assert err.value.status == 404 and err.value.code == "MEMORY_NOT_FOUND", err.value.body
        assert "orchard" not in str(err.value.body), (
            "a not-found answer must not reveal the other space's memory"
        )
        assert GrpcSpaceClient.status_of(lambda: grpc_c.get("own.iso-09.9")) == "NOT_FOUND"
        # ... and the id is found in its own space, so the 404 is about the space, not the id.
        assert rest.get("own.iso-00.0")["id"] == "own.iso-00.0"
    with RestSpaceClient(srv.http_url, "iso-09") as rest9:
        assert rest9.get("own.iso-09.9")["metadata"] == {"space": "iso-09"}


def test_health_and_metrics_count_each_space_alone(
    matrix_server: tuple[EngramProcess, dict[str, SpaceData]],
) -> None:
    srv, data = matrix_server
    with RestSpaceClient(srv.http_url, None) as c:
        health = check_health(c.system_health(), data)
        metrics = check_metrics(c.metrics(), data)
    write_section(
        "isolation_health_metrics", [dict(asdict(r), passed=not r.violations) for r in (health, metrics)]
    )
    assert not health.violations, health.violations
    assert health.exercised == len(SPACES)
    assert not metrics.violations, metrics.violations


# ----------------------------------------------------------------------------- streams


def _sse_subscriber(
    srv: EngramProcess, space: str, events: queue.Queue[Any], ready: threading.Event
) -> Callable[[], None]:
    client = RestSpaceClient(srv.http_url, space)

    def run() -> None:
        try:
            for ev in client.sse("/api/v1/stream/memories", on_open=ready.set):
                events.put(ev)
        except Exception as exc:  # delivered to the checker, which reports it
            events.put(exc)
        finally:
            ready.set()

    threading.Thread(target=run, daemon=True).start()
    return client.close


def _grpc_subscriber(
    srv: EngramProcess, space: str, events: queue.Queue[Any], ready: threading.Event
) -> Callable[[], None]:
    client = GrpcSpaceClient(srv.grpc_target, space)
    call = client.stream()

    def run() -> None:
        try:
            call.initial_metadata()  # sent once the server has subscribed
            ready.set()
            for msg in call:
                events.put(proto_dict(msg))
        except Exception as exc:
            events.put(exc)
        finally:
            ready.set()

    threading.Thread(target=run, daemon=True).start()

    def stop() -> None:
        call.cancel()
        client.close()

    return stop


def test_streams_deliver_only_their_own_space(
    matrix_server: tuple[EngramProcess, dict[str, SpaceData]],
) -> None:
    """An SSE subscriber, a gRPC ``Stream`` and a ``MemoryFlow`` (subscribe + remember + recall on one
    flow) per space, all at once, while every space receives probes. The spaces are the matrix
    server's ten stream spaces, which hold nothing but these probes."""
    srv, _ = matrix_server
    write = _ProbeWriters(srv, STREAM_SPACES)

    def one(job: tuple[str, str]) -> CheckResult:
        space, transport = job
        if transport == "flow":
            return check_flow(srv.grpc_target, space, write, STREAM_SPACES)
        events: queue.Queue[Any] = queue.Queue()
        start = _sse_subscriber if transport == "rest" else _grpc_subscriber
        ready = threading.Event()
        stop = start(srv, space, events, ready)
        try:
            ready.wait(20)  # subscribed (or failed, which check_stream then reports): no lost first probe
            return check_stream(
                f"stream-{transport}", transport, space, events, write, STREAM_SPACES, nonce=f".{transport}"
            )
        finally:
            stop()

    jobs = [(sp, t) for sp in STREAM_SPACES for t in ("rest", "grpc", "flow")]
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(one, jobs))
    finally:
        write.close()
    assert {r.name for r in results} == {"stream-rest", "stream-grpc", "flow"}
    write_section("isolation_streams", [dict(asdict(r), passed=not r.violations) for r in results])
    assert not [r for r in results if r.violations], _fmt(results)
    assert all(r.exercised >= 2 for r in results)


# ----------------------------------------------------------------------------- planted leaks

#: leak kind (engram.testing.leaky) -> the matrix checks that must catch it
LEAK_CATCHERS = {
    "get": {"get"},
    "recall": {
        "recall-similarity", "recall-text", "recall-own-vector", "recall-spreading", "recall-hybrid",
        "streaming-recall", "flow",
    },
    "list": {"list"},
    "count": {"introspect", "system-health", "metrics"},
    "cognition": {"recognize"},
    "events": {"stream-rest", "stream-grpc", "flow"},
    "beliefs": {"beliefs"},
    "consolidation": {"dream"},
}


class _ProbeWriters:
    """``write(space, id)`` for the stream checks: one REST client per space, shared by the threads
    that write (httpx clients are thread-safe; making one costs ~25 ms of CPU, so not one per write)."""

    def __init__(self, srv: EngramProcess, spaces: list[str]) -> None:
        self.clients = {sp: RestSpaceClient(srv.http_url, sp) for sp in spaces}

    def __call__(self, space: str, memory_id: str) -> None:
        self.clients[space].remember(id=memory_id, content="probe", metadata={"space": space})

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def leak_spaces(kind: str) -> list[str]:
    """The spaces of the per-space leaky server that leak ``kind`` (to each other only)."""
    return [f"leak-{kind}-{i}" for i in range(3)]


@pytest.fixture(scope="module")
def leaky_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    """One leaky server for every kind (``LEAK_KIND=per-space``): space ``leak-<kind>-<n>`` leaks
    ``kind`` from its group's next space and nothing else, so each demonstration below sees
    exactly one planted leak, without a server start per kind."""
    spaces = [sp for kind in sorted(LEAK_CATCHERS) for sp in leak_spaces(kind)]
    data_dir = scratch_dir("engram-leaky-")
    srv = EngramProcess.start(tmp_path_factory.mktemp("leaky"), spaces, SETTINGS, data_dir=data_dir,
                              module="engram.testing.leaky", env={"LEAK_KIND": "per-space"})
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("kind", sorted(LEAK_CATCHERS))
def test_planted_leak_is_detected(kind: str, leaky_server: EngramProcess) -> None:
    """Run part of the matrix against spaces with one deliberate leak: every catcher must fail."""
    srv = leaky_server
    spaces = leak_spaces(kind)
    data = build_dataset(spaces)
    results: list[CheckResult] = []
    write = _ProbeWriters(srv, spaces)
    try:
        if kind == "events":
            for transport, start in (("rest", _sse_subscriber), ("grpc", _grpc_subscriber)):
                events: queue.Queue[Any] = queue.Queue()
                ready = threading.Event()
                stop = start(srv, spaces[0], events, ready)
                ready.wait(20)
                try:
                    results.append(
                        check_stream(
                            f"stream-{transport}", transport, spaces[0], events, write, spaces,
                            timeout=10, nonce=f".{transport}",
                        )
                    )
                finally:
                    stop()
        else:
            _load_all(srv, data)
            results = _run_matrix(srv, data, only=LEAK_CATCHERS[kind])
            if "system-health" in LEAK_CATCHERS[kind]:
                with RestSpaceClient(srv.http_url, None) as c:
                    results.append(check_health(c.system_health(), data))
                    results.append(check_metrics(c.metrics(), data))
        if "flow" in LEAK_CATCHERS[kind]:
            # After the matrix (its probes would change the counts it checks): the other spaces'
            # probes are what a leaking event bus or recall hands to this flow.
            results.append(check_flow(srv.grpc_target, spaces[0], write, spaces, timeout=10))
    finally:
        write.close()
    caught = {r.name for r in results if r.violations}
    write_section(
        f"leak_demo_{kind}",
        [
            {
                "name": name,
                "passed": name in caught,  # passed = this check caught the planted leak
                "caught_by": sorted(
                    f"{r.transport}/{r.space}" for r in results if r.name == name and r.violations
                ),
                "violation_sample": next(
                    (r.violations[:2] for r in results if r.name == name and r.violations), []
                ),
            }
            for name in sorted(LEAK_CATCHERS[kind])
        ],
        leak=kind,
        expected_catchers=sorted(LEAK_CATCHERS[kind]),
        caught=sorted(caught),
    )
    assert caught == LEAK_CATCHERS[kind], (
        f"leak {kind!r}: caught by {sorted(caught)}, expected all of {sorted(LEAK_CATCHERS[kind])}"
    )



MEANING_SPACES = [f"iso-mean-{i}" for i in range(4)]
LEAKY_MEANING_SPACES = [f"leak-recall-mean-{i}" for i in range(4)]  # a recall leak among themselves
MEANING_SHARED = ["the espresso machine on the third floor is broken again",
                  "quarterly planning moved to the large meeting room"]


def meaning_violations(srv: EngramProcess, spaces: list[str]) -> list[str]:
    """Spaces that embed their own text (hash embedder, created with it explicitly), with the
    same ids and texts in every space plus one memory only each space has (and a near copy,
    so the space makes a link from meaning). Each is asked over REST and gRPC for *another*
    space's own memory by meaning (rank similarity; cognitive with spreading and hybrid, over
    those links): any id that is not its own is a violation."""
    from engram.client.grpc import GrpcClient

    own = {sp: f"{sp} keeps the orange kayak paddle number {k} in locker {k * 7}"
           for k, sp in enumerate(spaces)}
    for sp in spaces:
        with RestSpaceClient(srv.http_url, sp) as c:
            made = c.call("POST", "/api/v1/spaces", json={"id": sp, "embedder": {"provider": "hash"}})
            assert made["embedder"]["provider"] == "hash"
            for i, text in enumerate(MEANING_SHARED):
                c.remember(id=f"shared-{i}", content=text)
            c.remember(id=f"own.{sp}", content=own[sp])
            c.remember(id=f"near.{sp}", content=own[sp] + " today")
    violations = []
    for k, sp in enumerate(spaces):
        allowed = {"shared-0", "shared-1", f"own.{sp}", f"near.{sp}"}
        other = own[spaces[(k + 1) % len(spaces)]]
        with RestSpaceClient(srv.http_url, sp) as rest, GrpcClient(srv.grpc_target, space=sp) as rpc:
            for rank, mode in (("similarity", "similarity"), ("cognitive", "spreading"),
                               ("cognitive", "hybrid")):
                body = rest.recall(query=other, rank=rank, mode=mode, wait_for_embeddings=True,
                                   max_results=50, trace_activation=True)
                items = [it for b in body["memories"].values() for it in b]
                ids = [it["memory"]["id"] for it in items]
                ids += [st["memory_id"] for it in items for st in (it.get("activation_path") or [])]
                got = rpc.recall(other, rank=rank, mode=mode, wait_for_embeddings=True, max_results=50)
                ids += [it.memory.id for it in (*got.memories.vivid, *got.memories.associated)]
                if not ids:
                    violations.append(f"{sp}: {rank}/{mode} found nothing (the probe must exercise it)")
                violations += [f"{sp}: {rank}/{mode} returned {i}" for i in sorted(set(ids) - allowed)]
    return violations


def test_meaning_and_its_links_never_cross_spaces(
    matrix_server: tuple[EngramProcess, dict[str, SpaceData]],
) -> None:
    srv, _ = matrix_server
    violations = meaning_violations(srv, MEANING_SPACES)
    assert not violations, "\n".join(violations)
    for sp in MEANING_SPACES:
        with RestSpaceClient(srv.http_url, sp) as c:
            desc = c.describe(sp)
            assert desc["memory_count"] == 4 and desc["embedding_backlog"] == 0


def test_a_planted_recall_leak_is_caught_by_the_meaning_probe(leaky_server: EngramProcess) -> None:
    assert meaning_violations(leaky_server, LEAKY_MEANING_SPACES), (
        "a recall that reads a sibling space went unnoticed"
    )
