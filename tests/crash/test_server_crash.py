"""Crash recovery of a real server: SIGKILL under concurrent multi-space load, then verify.

Each cycle starts ``engram start`` on the same data root, runs writers in
several spaces over REST and gRPC at once (remember, experience, associate,
delete) plus a consolidation loop, records every *acknowledged* operation in
a ledger, SIGKILLs the process at a random moment (in some cycles right as a
consolidation is requested), restarts it and checks:

* every acknowledged write is present in its own space, with its own content
  and tag, and in no other space;
* every acknowledged delete stays deleted;
* nothing appears that was never sent (only in-flight ops may go either way);
* beliefs cite episodes of their own space; associations reference existing
  memories (checked in SQLite after a graceful stop);
* the data root holds exactly the documented layout.

Injected damage (torn WAL tail, corrupted page) in one space leaves the other
spaces serving, and the damaged space is either repaired (correct data) or
reported unhealthy, never silently wrong.

Seed: ``ENGRAM_CRASH_SEED`` (printed on failure). Cycles: 3 by default,
``ENGRAM_CRASH_CYCLES`` (default 25) in the slow tier; see docs/testing.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engram.datadir import LOCK_NAME
from engram.testing import EngramProcess
from engram.testing.clients import ApiError, GrpcSpaceClient, RestSpaceClient
from engram.testing.report import write_section

SPACES = ["crash-a", "crash-b", "crash-c", "crash-d"]
SETTINGS = {"consolidation_interval_seconds": 0}
SPACE_FILES = {
    "space.json",
    "space.db",
    "space.db-wal",
    "space.db-shm",
    "vectors.usearch",
    "vectors.usearch.json",
}


def vec(n: int) -> list[float]:
    r = random.Random(n)
    return [round(r.uniform(-1, 1), 4) or 0.5 for _ in range(8)]


@dataclass
class Ledger:
    """What the clients were told. ``maybe_*``: in flight at the crash, outcome unknown."""

    acked: dict[str, dict[str, str]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # space -> id -> content
    episodes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    deleted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    maybe_written: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    maybe_deleted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: int = 0

    def count(self) -> int:
        with self.lock:
            return self.ops


class Writer(threading.Thread):
    def __init__(
        self,
        srv: EngramProcess,
        space: str,
        transport: str,
        cycle: int,
        ledger: Ledger,
        rng: random.Random,
        stop: threading.Event,
        acked_cb: Any,
        killing: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.space, self.transport, self.cycle, self.ledger = space, transport, cycle, ledger
        self.rng, self.stop, self.acked_cb, self.killing = rng, stop, acked_cb, killing
        self.client: Any = (
            RestSpaceClient(srv.http_url, space, timeout=10)
            if transport == "rest"
            else GrpcSpaceClient(srv.grpc_target, space, timeout=10)
        )
        self.mine: list[str] = []
        self.error: BaseException | None = None
        self.error_after_kill = False  # the kill had begun when the error came

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                roll = self.rng.random()
                if roll < 0.15 and len(self.mine) > 2:
                    self._forget_one(self.mine.pop(self.rng.randrange(len(self.mine))))
                elif roll < 0.25 and len(self.mine) > 2:
                    a, b = self.rng.sample(self.mine, 2)
                    self.client.associate(a, b, 0.7)
                else:
                    self._write(n, episode=roll > 0.85)
                with self.ledger.lock:
                    self.ledger.ops += 1
                self.acked_cb()
        except BaseException as exc:  # the server was killed under us (expected) or a real error
            self.error, self.error_after_kill = exc, self.killing.is_set()
        finally:
            self.client.close()

    def _write(self, n: int, episode: bool) -> None:
        mid = f"{self.space}.{self.transport}.{self.cycle}.{n}"
        content = f"{mid} payload {'episode' if episode else 'note'}"
        with self.ledger.lock:
            self.ledger.maybe_written[self.space][mid] = content
        body: dict[str, Any] = {
            "id": mid,
            "embedding": vec(hash(mid) & 0xFFFF),
            "metadata": {"space": self.space},
        }
        if episode:
            self.client.experience(what=content, when=1_700_000_000 + n, **body)
        else:
            self.client.remember(content=content, **body)
        with self.ledger.lock:
            del self.ledger.maybe_written[self.space][mid]
            self.ledger.acked[self.space][mid] = content
            if episode:
                self.ledger.episodes[self.space].add(mid)
        if not episode:  # episodes are never deleted, so citations must always resolve
            self.mine.append(mid)

    def _forget_one(self, mid: str) -> None:
        with self.ledger.lock:
            self.ledger.maybe_deleted[self.space].add(mid)
        self.client.forget(mid, "delete")
        with self.ledger.lock:
            self.ledger.maybe_deleted[self.space].discard(mid)
            self.ledger.deleted[self.space].add(mid)
            self.ledger.acked[self.space].pop(mid, None)


def run_cycle(
    srv: EngramProcess, cycle: int, ledger: Ledger, rng: random.Random, during_consolidation: bool
) -> dict[str, Any]:
    """Load until a random number of acknowledged ops, then SIGKILL. Returns what happened."""
    stop = threading.Event()
    target = rng.randint(40, 160)
    reached = threading.Event()
    consolidating = threading.Event()
    killing = threading.Event()  # set right before the SIGKILL: an error before it is a server bug

    def acked() -> None:
        if ledger.count() >= target:
            reached.set()

    base = ledger.count()
    target += base
    writers = [
        Writer(srv, sp, t, cycle, ledger, random.Random(rng.random()), stop, acked, killing)
        for sp in SPACES
        for t in ("rest", "grpc")
    ]
    consolidations = 0

    dream_interrupted = False
    # (exception, the kill had begun) of the consolidator thread: it reaches the assertions below
    consolidator_errors: list[tuple[BaseException, bool]] = []

    def consolidator() -> None:
        """Consolidate in a loop. In kill-during-consolidation cycles it streams gRPC ``Dream`` runs
        and sets ``consolidating`` on the first streamed step, i.e. while a run is in progress."""
        nonlocal consolidations, dream_interrupted
        try:
            if during_consolidation:
                with GrpcSpaceClient(srv.grpc_target, SPACES[0], timeout=30) as g:
                    try:
                        while not stop.is_set():
                            req = g.pb.DreamRequest(memory_space_id=SPACES[0], min_cluster_size=2)
                            for _step in g.stub.Dream(req, timeout=30):
                                consolidating.set()
                            consolidations += 1
                    except Exception:
                        dream_interrupted = killing.is_set()  # the kill cut a Dream stream short
                        raise
                return
            with RestSpaceClient(srv.http_url, SPACES[0], timeout=10) as c:
                while not stop.is_set():
                    consolidating.set()
                    c.consolidate()
                    consolidations += 1
        except BaseException as exc:
            consolidator_errors.append((exc, killing.is_set()))

    threads = [*writers, threading.Thread(target=consolidator, daemon=True)]
    for t in threads:
        t.start()
    if not reached.wait(60):
        stop.set()
        raise AssertionError(
            f"cycle {cycle}: only {ledger.count() - base} ops acknowledged in 60 s; "
            f"writer errors: {[repr(w.error) for w in writers if w.error]}\n{srv.logs()[-3000:]}"
        )
    if during_consolidation:
        consolidating.clear()
        # a Dream run has streamed its first step: kill mid-consolidation
        assert consolidating.wait(30), f"cycle {cycle}: no Dream step in 30 s: {consolidator_errors!r}"
    killing.set()
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    errors = [(w.error, w.error_after_kill) for w in writers if w.error is not None] + consolidator_errors
    # Only the kill may stop a thread, and only as a lost connection: an error before the kill,
    # or any other error (a 5xx, gRPC INTERNAL/UNKNOWN, a bad answer) is a server bug.
    unexpected = [
        f"{'after' if after else 'BEFORE'} the kill: {exc!r}"
        for exc, after in errors
        if not (after and _is_disconnect(exc))
    ]
    return {
        "violations": unexpected,
        "cycle": cycle,
        "acked_ops": ledger.count() - base,
        "kill_after": target - base,
        "during_consolidation": during_consolidation,
        "consolidations_acked": consolidations,
        "dream_interrupted": dream_interrupted,
    }


def _is_disconnect(exc: BaseException) -> bool:
    """The connection was lost: what a SIGKILLed server looks like to a client, and nothing else.

    gRPC reports a dead peer as UNAVAILABLE; INTERNAL or UNKNOWN are server errors, not a kill.
    httpx reports it as a network error (reset, refused, closed) or as the server disconnecting
    without an answer; a timeout or an HTTP error status is not a kill.
    """
    import grpc
    import httpx

    if isinstance(exc, grpc.RpcError):
        return bool(exc.code() == grpc.StatusCode.UNAVAILABLE)
    return isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError))


def verify(srv: EngramProcess, ledger: Ledger) -> list[str]:
    problems: list[str] = []
    for sp in SPACES:
        with RestSpaceClient(srv.http_url, sp) as c:
            listed = {m["id"]: m for m in c.list_all()}
            for mid, content in ledger.acked[sp].items():
                if mid in ledger.maybe_deleted[sp]:
                    continue
                m = listed.get(mid)
                if m is None:
                    problems.append(f"{sp}: acknowledged write {mid} lost")
                elif m["content"] != content or m["metadata"] != {"space": sp}:
                    problems.append(f"{sp}: {mid} came back different: {m['content']!r} {m['metadata']}")
            for mid in ledger.deleted[sp]:
                if mid in listed:
                    problems.append(f"{sp}: acknowledged delete {mid} is back")
            allowed = set(ledger.acked[sp]) | set(ledger.maybe_written[sp]) | ledger.maybe_deleted[sp]
            for mid, m in listed.items():
                if mid not in allowed:
                    problems.append(
                        f"{sp}: {mid} present but never acknowledged or in flight here (tag {m['metadata']})"
                    )
            beliefs = c.beliefs().get("beliefs", [])
            eps = ledger.episodes[sp] | {
                m for m in ledger.maybe_written[sp] if "episode" in ledger.maybe_written[sp][m]
            }
            for b in beliefs:
                for cit in b.get("citations", []):
                    if cit["episode_id"] not in eps:
                        problems.append(
                            f"{sp}: belief {b['id']} cites {cit['episode_id']}, not an episode here"
                        )
                    elif cit["episode_id"] not in listed:
                        problems.append(f"{sp}: belief {b['id']} cites missing episode {cit['episode_id']}")
    return problems


def verify_offline(data_dir: Path) -> list[str]:
    """With the server stopped: layout as documented, and referential integrity inside each database."""
    problems = []
    for entry in sorted(data_dir.iterdir()):
        if entry.name == LOCK_NAME and entry.is_file():
            continue  # the data-dir lock (engram.datadir): kept on purpose, never deleted
        if not entry.is_dir():
            problems.append(f"unexpected file at the data root: {entry.name}")
            continue
        files = {p.name for p in entry.iterdir()}
        if not {"space.json", "space.db"} <= files:
            problems.append(f"{entry.name}: missing space.json/space.db ({sorted(files)})")
        extra = files - SPACE_FILES
        if extra:
            problems.append(f"{entry.name}: undocumented files {sorted(extra)}")
        marker = json.loads((entry / "space.json").read_text())
        if marker.get("id", entry.name) != entry.name:
            problems.append(f"{entry.name}: marker names {marker.get('id')}")
        conn = sqlite3.connect(f"file:{entry / 'space.db'}?mode=ro", uri=True)
        try:
            for col in ("source", "target"):
                n = conn.execute(
                    f"SELECT count(*) FROM associations a LEFT JOIN memories m ON a.{col} = m.rowid "
                    "WHERE m.rowid IS NULL"
                ).fetchone()[0]
                if n:
                    problems.append(f"{entry.name}: {n} associations with a dangling {col}")
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                problems.append(f"{entry.name}: integrity_check: {ok}")
            ids = {r[0] for r in conn.execute("SELECT id FROM memories")}
            for mid in ids:
                if not (mid.startswith(entry.name + ".") or entry.name == "default"):
                    problems.append(f"{entry.name}: holds {mid} of another space")
        finally:
            conn.close()
    return problems


def crash_cycles(root: Path, cycles: int, seed: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the cycles, appending each cycle's record (with its ``violations``) to ``history`` as it
    goes, so a failing run still reports what it saw."""
    rng = random.Random(seed)
    ledger = Ledger()
    srv = EngramProcess.start(root, SPACES, SETTINGS)
    try:
        for cycle in range(cycles):
            history.append(run_cycle(srv, cycle, ledger, rng, during_consolidation=cycle % 2 == 1))
            assert not history[-1]["violations"], (
                f"seed {seed} cycle {cycle}: {history[-1]['violations']}\n{srv.logs()[-3000:]}"
            )
            srv = srv.restart()
            problems = verify(srv, ledger)
            history[-1]["violations"] += problems
            assert not problems, f"seed {seed} cycle {cycle}:\n" + "\n".join(problems[:30])
        srv.stop()
        problems = verify_offline(srv.data_dir)
        history.append({"cycle": "offline", "violations": problems})
        assert not problems, f"seed {seed}:\n" + "\n".join(problems[:30])
    finally:
        if srv.running:
            srv.kill()
    return {
        "acked_writes": sum(len(v) for v in ledger.acked.values()),
        "acked_deletes": sum(len(v) for v in ledger.deleted.values()),
    }


def _crash_cycles_reported(section: str, root: Path, cycles: int) -> dict[str, Any]:
    """crash_cycles, with the report section written whatever happens (a failure is reported too)."""
    seed = _seed()
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"seed": seed}
    error = None
    try:
        summary.update(crash_cycles(root, cycles, seed, history))
        return summary
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        checks = [{"name": f"cycle-{c['cycle']}", **c} for c in history]
        if error is not None:
            checks.append({"name": "run", "error": error})
        write_section(section, checks, **summary)


def _seed() -> int:
    return int(os.environ.get("ENGRAM_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))


def _short_cycles(workdir: Path) -> dict[str, Any]:
    """The default tier's 3 cycles. Their data is on disk (durability is what they test), never on
    the tmpfs work directory the background runs get; removed when they pass."""
    root = Path(tempfile.mkdtemp(prefix="engram-crash-"))
    summary = _crash_cycles_reported("crash_cycles", root / "crash", cycles=3)
    shutil.rmtree(root, ignore_errors=True)
    return summary


def background_run(item: pytest.Item) -> tuple[str, Callable[[Path], Any]] | None:
    """For tests/conftest.py: the short crash cycles start with the tier and are checked last. Most
    of their CPU is in their servers; the test process's part is writer threads that mostly wait,
    so they overlap the tier's other tests well."""
    if not isinstance(item, pytest.Function) or item.originalname != "test_crash_cycles":
        return None
    return "crash_cycles", _short_cycles


def test_crash_cycles(request: pytest.FixtureRequest, background: Any) -> None:
    summary = background.result(request.node)
    assert summary["acked_writes"] > 50 and summary["acked_deletes"] > 0


@pytest.mark.slow
def test_crash_cycles_long(tmp_path: Path) -> None:
    cycles = int(os.environ.get("ENGRAM_CRASH_CYCLES", "25"))
    _crash_cycles_reported("crash_cycles_long", tmp_path / "crash", cycles=cycles)


# ----------------------------------------------------------------------------- injected damage

DAMAGE_SPACES = ["dmg-torn", "dmg-page", "dmg-ok1", "dmg-ok2"]


def _fill(srv: EngramProcess, n: int = 30) -> dict[str, dict[str, str]]:
    """Write ``n`` memories into every damage space, the spaces in parallel (writes in order per space)."""
    written: dict[str, dict[str, str]] = {sp: {} for sp in DAMAGE_SPACES}

    def one(sp: str) -> None:
        with RestSpaceClient(srv.http_url, sp) as c:
            for i in range(n):
                mid = f"{sp}.{i}"
                content = f"{mid} " + "lorem ipsum " * 40
                c.remember(id=mid, content=content, embedding=vec(i), metadata={"space": sp})
                written[sp][mid] = content

    threads = [threading.Thread(target=one, args=(sp,)) for sp in DAMAGE_SPACES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(w) == n for w in written.values()), {sp: len(w) for sp, w in written.items()}
    return written


def _corrupt_table_page(db: Path) -> None:
    """Overwrite the root page of the ``memories`` table (after folding the WAL into the file)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'memories'").fetchone()[0]
    finally:
        conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(random.Random(7).randbytes(page_size))
        f.flush()
        os.fsync(f.fileno())


def test_injected_damage_isolated_to_one_space(tmp_path: Path) -> None:
    srv = EngramProcess.start(tmp_path / "dmg", DAMAGE_SPACES, SETTINGS)
    checks: list[dict[str, Any]] = []  # reported whatever happens: a failure is in the report too
    try:
        written = _fill(srv)
        srv.kill()  # WAL holds the recent commits
        wal = srv.data_dir / "dmg-torn" / "space.db-wal"
        assert wal.exists() and wal.stat().st_size > 4096, "expected a WAL after SIGKILL"
        with open(wal, "r+b") as f:  # tear the final frame in half
            f.truncate(wal.stat().st_size - 2000)
        _corrupt_table_page(srv.data_dir / "dmg-page" / "space.db")
        srv = srv.restart()
        # Healthy spaces serve every acknowledged write.
        for sp in ("dmg-ok1", "dmg-ok2"):
            with RestSpaceClient(srv.http_url, sp) as c:
                got = {m["id"]: m["content"] for m in c.list_all()}
            assert got == written[sp], f"{sp} lost or changed data next to a damaged space"
            checks.append({"name": f"{sp}-serves", "memories": len(got)})
        # Torn tail: discarded, not fatal; what is served is exactly what was written (a prefix of it).
        with RestSpaceClient(srv.http_url, "dmg-torn") as c:
            got = {m["id"]: m["content"] for m in c.list_all()}
        assert got, "the torn WAL tail took the whole space with it"
        for mid, content in got.items():
            assert written["dmg-torn"].get(mid) == content, f"dmg-torn served {mid} wrongly"
        order = list(written["dmg-torn"])
        assert sorted(got, key=order.index) == order[: len(got)], "torn tail: survivors are not a prefix"
        checks.append(
            {"name": "torn-tail-recovered", "kept": len(got), "written": len(order)}
        )
        # Corrupted page: unhealthy (503) or correct, never silently wrong.
        with RestSpaceClient(srv.http_url, "dmg-page") as c:
            try:
                got = {m["id"]: m["content"] for m in c.list_all()}
            except ApiError as exc:
                assert exc.status == 503 and exc.code == "MEMORY_SPACE_UNHEALTHY", exc
                got = None
            if got is not None:
                assert got == written["dmg-page"], "damaged space answered with wrong data"
        with RestSpaceClient(srv.http_url, None) as c:
            health = c.system_health()
        entry = {s["id"]: s for s in health["spaces"]}
        assert entry["dmg-page"]["healthy"] is False or got == written["dmg-page"], entry["dmg-page"]
        assert entry["dmg-ok1"]["healthy"] and entry["dmg-ok2"]["healthy"] and entry["dmg-torn"]["healthy"]
        assert health["status"] == "degraded"
        checks.append({"name": "corrupt-page-reported", "health": entry["dmg-page"]})
        # Health asked in the damaged space's name reports that space, unhealthy, with the reason
        # (on this server rather than one more start, stop, corruption and restart of its own).
        with RestSpaceClient(srv.http_url, "dmg-page") as c:
            named = c.system_health()
        assert named["spaces"][0]["id"] == "dmg-page" and named["spaces"][0]["healthy"] is False, named
        assert named["spaces"][0]["reason"], named
        checks.append({"name": "health-naming-the-damaged-space", "health": named["spaces"][0]})
        # Writes to healthy spaces keep working after the damage was found.
        with RestSpaceClient(srv.http_url, "dmg-ok1") as c:
            c.remember(id="dmg-ok1.after", content="after damage", metadata={"space": "dmg-ok1"})
            assert c.get("dmg-ok1.after")["content"] == "after damage"
        checks.append({"name": "healthy-space-writes-after-damage"})
    except BaseException as exc:
        checks.append({"name": "run", "error": f"{type(exc).__name__}: {exc}"[:4000]})
        raise
    finally:
        write_section("crash_injected_damage", checks)
        srv.stop() if srv.running else None


def test_only_connection_loss_counts_as_the_kill() -> None:
    """What a writer may die of once the kill began: a lost connection, never a server error."""
    import grpc
    import httpx

    class Failed(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    assert _is_disconnect(Failed(grpc.StatusCode.UNAVAILABLE))
    assert _is_disconnect(httpx.ReadError("reset")) and _is_disconnect(httpx.ConnectError("refused"))
    assert _is_disconnect(httpx.RemoteProtocolError("server disconnected"))
    assert _is_disconnect(ConnectionResetError())
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.CANCELLED, grpc.StatusCode.FAILED_PRECONDITION):
        assert not _is_disconnect(Failed(code)), code
    assert not _is_disconnect(httpx.ReadTimeout("slow")) and not _is_disconnect(ApiError(500, {}))
