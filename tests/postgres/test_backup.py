"""Backup and restore on PostgreSQL, and moving a space between backends (SPEC §11, §13; issue 17).

Real servers: two ``backend = "postgres"`` servers (A, B) on one fresh database, and one SQLite
server. The backup file is the SQLite backup's format (storage/backup.py), so every direction is
checked: PostgreSQL -> file -> PostgreSQL under a new id (restored through A, read through B),
SQLite -> PostgreSQL and PostgreSQL -> SQLite. "Equal" is what a client reads: every memory with
its embedding, the associations, beliefs, the space's LSN and counts. PostgreSQL keeps vectors as
float16 (halfvec): a vector that comes from SQLite is equal to float16 precision, every other
comparison is exact. A refused file (damaged, or well-formed with one bad row at the end) leaves
nothing in the database, and a refused ``replace`` leaves the old space as it was.
"""

from __future__ import annotations

import io
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from engram.client import EngramClient
from engram.core.postgres.schema import SPACE_TABLES
from engram.errors import InvalidBackup, MemorySpaceExists
from engram.storage import backup as fmt
from engram.testing.harness import EngramProcess

from .conftest import PgCluster, fresh_database, pg_servers

VARIES = frozenset({"activation", "memory_space_id"})  # activation: decayed to the moment of reading


@pytest.fixture(scope="module")
def dsn(pg: PgCluster) -> str:
    return fresh_database(pg, "bak")


@pytest.fixture(scope="module")
def servers(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngramProcess, ...]]:
    with pg_servers(dsn, tmp_path_factory) as (a, b):
        lite = EngramProcess.start(tmp_path_factory.mktemp("lite"), settings={"embedder": "hash"})
        try:
            yield a, b, lite
        finally:
            lite.stop()


def populate(url: str) -> str:
    """A new space holding episodes, memories with tags and metadata, explicit associations,
    consolidation's beliefs and states, and a suppressed memory; returns its id."""
    sid = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(url, space=sid, timeout=60) as c:
        c.create_space(sid)
        for i in range(6):
            c.experience(f"2026-05-0{i + 1}T09:30:00Z", f"met Ada at the espresso machine on day {i}",
                         id=f"e{i}", who=["Ada"], where_location="third floor")
        for i in range(20):
            c.remember(f"fact {i} about coffee and espresso beans number{i}", id=f"m{i}",
                       tags=["t", f"n{i % 3}"], metadata={"k": str(i), "n": i, "odd": i % 2 == 1},
                       confidence=0.5 + i / 100)
        c.associate("m1", "m2", strength=0.7)
        c.associate("m3", "e1", strength=0.4, bidirectional=True)
        c.consolidate(min_cluster=2)
        c.forget("m19", mode="suppress")
    return sid


def state(url: str, sid: str) -> dict[str, Any]:
    """What a client reads of space ``sid``; embeddings apart (``vectors``), by memory id."""
    with EngramClient(url, space=sid, timeout=60) as c:
        desc = c.get_space(sid)
        memories = [c.get(m.id, include_embedding=True).model_dump(mode="json")
                    for m in c.iter_memories(include_suppressed=True)]
        vectors = {m["id"]: m.pop("embedding") for m in memories}
        ids = sorted(vectors)
        edges = httpx.get(url + "/api/v1/associations", params={"memory_id": ids, "limit": 1000},
                          headers={"X-Memory-Space": sid}, timeout=30)
        assert edges.status_code == 200, edges.text
        beliefs = c.beliefs(limit=1000).model_dump(mode="json")["beliefs"]
        return {
            "space": (desc.last_lsn, desc.memory_count, desc.dimension),
            "order": [m["id"] for m in memories],  # list order: insertion order on both backends
            "memories": sorted(({k: v for k, v in m.items() if k not in VARIES} for m in memories),
                               key=lambda m: m["id"]),
            "associations": sorted((e["source_id"], e["target_id"], e["strength"], e["kind"])
                                   for e in edges.json()["associations"]),
            "beliefs": sorted(({k: v for k, v in b.items() if k not in VARIES} for b in beliefs),
                              key=lambda b: b["id"]),
            "vectors": vectors,
        }


def backup_of(url: str, sid: str) -> bytes:
    buf = io.BytesIO()
    with EngramClient(url, timeout=60) as c:
        c.backup(sid, buf)
    return buf.getvalue()


def restore(url: str, data: bytes, sid: str, *, replace: bool = False) -> Any:
    with EngramClient(url, timeout=60) as c:
        return c.restore(io.BytesIO(data), sid, replace=replace)


def same_vectors(a: dict[str, Any], b: dict[str, Any], *, atol: float = 0.0) -> None:
    assert sorted(a) == sorted(b)
    for mid, va in a.items():
        vb = b[mid]
        assert (va is None) == (vb is None), mid
        if va is not None:
            assert len(va) == len(vb), mid
            np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=0, atol=atol, err_msg=mid)


def _superuser(pg: PgCluster, dsn: str) -> psycopg.Connection[Any]:
    """The database of ``dsn`` as the superuser (row-level security bypassed: every space's rows)."""
    return psycopg.connect(pg.dsn("postgres", str(conninfo_to_dict(dsn)["dbname"])))


def rows_of(pg: PgCluster, dsn: str, sid: str) -> dict[str, int]:
    """How many rows ``sid`` has in each space table."""
    with _superuser(pg, dsn) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM engram.{t} WHERE space_id = %s",
                                    (sid,)).fetchone()[0]) for t in SPACE_TABLES}


def meta_of(pg: PgCluster, dsn: str, sid: str) -> dict[str, str]:
    with _superuser(pg, dsn) as conn:
        return dict(conn.execute("SELECT key, value FROM engram.space_meta WHERE space_id = %s", (sid,)))


def events_of(pg: PgCluster, dsn: str, sid: str) -> list[tuple[Any, ...]]:
    """The space's event log as stored."""
    with _superuser(pg, dsn) as conn:
        return conn.execute("SELECT lsn, seq, type, memory_id, data, ts FROM engram.events "
                            "WHERE space_id = %s ORDER BY lsn, seq", (sid,)).fetchall()


def to_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.engram"
    path.write_bytes(data)
    return path


def repack(tmp_path: Path, data: bytes, change: str, params: tuple[Any, ...] = (), **manifest_changes: Any
           ) -> bytes:
    """``data`` with SQL ``change`` (a script if no ``params``) applied to its database and the
    manifest's checksum recomputed: a file that passes every check of the format, holding whatever
    the change made."""
    path = to_file(tmp_path, data)
    db = tmp_path / "edit.db"
    manifest = fmt.unpack(path, db)
    conn = sqlite3.connect(db, isolation_level=None)
    if params:
        conn.execute(change, params)
    else:
        conn.executescript(change)
    conn.close()
    manifest.update(manifest_changes)
    manifest["database"].update(bytes=db.stat().st_size, sha256=fmt.sha256_of(db))
    out = b"".join(fmt.archive_chunks(fmt.manifest_bytes(manifest), db, 0))
    db.unlink()
    return out


# -- PostgreSQL -> PostgreSQL ---------------------------------------------------------------------------
def test_round_trip_restored_through_a_is_served_by_b_and_equals_the_source(
        servers: tuple[EngramProcess, ...], pg: PgCluster, dsn: str, tmp_path: Path) -> None:
    a, b, _ = servers
    sid = populate(a.http_url)
    before = state(a.http_url, sid)
    assert before["beliefs"] and before["associations"], "the fixture must cover beliefs and associations"
    assert any(m["consolidation_state"] for m in before["memories"]), "and consolidation states"
    data = backup_of(a.http_url, sid)
    manifest = fmt.read_manifest(to_file(tmp_path, data))
    assert manifest["last_lsn"] == before["space"][0] and manifest["space_id"] == sid
    assert (manifest["counts"]["memories"], manifest["counts"]["episodes"]) == (26, 6)
    counts = manifest["counts"]
    assert (counts["associations"], counts["beliefs"]) == (len(before["associations"]),
                                                           len(before["beliefs"]))
    assert manifest["dimension"] == 384 and manifest["embedder"]["provider"] == "hash"
    logged = events_of(pg, dsn, sid)
    copy = sid + "-copy"
    receipt = restore(a.http_url, data, copy)
    assert (receipt.memory_space_id, receipt.replaced, receipt.source_space_id) == (copy, False, sid)
    assert receipt.last_lsn == before["space"][0]
    after = state(b.http_url, copy)  # restored through A, read through B at once
    for key in ("space", "order", "memories", "associations", "beliefs"):
        assert after[key] == before[key], key
    same_vectors(after["vectors"], before["vectors"])  # halfvec -> float32 -> halfvec: exact
    assert events_of(pg, dsn, copy) == logged  # the event log came along (a resume replays it)
    rows, source_rows = rows_of(pg, dsn, copy), rows_of(pg, dsn, sid)
    # typed metadata rows too (filters work on the copy); the copy's meta also records the embedder;
    # the fans are not in a backup (SQLite keeps none on disk): the maintenance measures them again
    del rows["fans"], source_rows["fans"]
    assert rows == {**source_rows, "space_meta": source_rows["space_meta"] + 1}
    assert {k: v for k, v in meta_of(pg, dsn, copy).items() if k != "embedder"} == meta_of(pg, dsn, sid)
    with EngramClient(b.http_url, space=copy, timeout=60) as c:
        assert [r.memory.id for r in c.recall(filter={"n": 7}).results] == ["m7"]
        assert c.remember("written after the restore").lsn == receipt.last_lsn + 1  # the LSN goes on


def test_replace_swaps_the_space_for_every_server(servers: tuple[EngramProcess, ...]) -> None:
    a, b, _ = servers
    source = populate(a.http_url)
    data = backup_of(b.http_url, source)
    target = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(b.http_url, space=target, timeout=60) as c:
        c.create_space(target)
        c.remember("the old space's only memory", id="old")
    with pytest.raises(MemorySpaceExists):
        restore(a.http_url, data, target)
    assert [m.id for m in EngramClient(b.http_url, space=target).iter_memories()] == ["old"]
    receipt = restore(a.http_url, data, target, replace=True)
    assert receipt.replaced
    got, want = state(b.http_url, target), state(a.http_url, source)
    for key in ("space", "memories", "associations", "beliefs"):
        assert got[key] == want[key], key


# -- refusals -----------------------------------------------------------------------------------------
def test_refused_files_write_nothing(servers: tuple[EngramProcess, ...], pg: PgCluster, dsn: str,
                                     tmp_path: Path) -> None:
    a, b, _ = servers
    sid = populate(a.http_url)
    good = backup_of(a.http_url, sid)
    keep = populate(b.http_url)
    keep_before = state(a.http_url, keep)
    half = len(good) // 2
    flipped = bytearray(good)
    flipped[-2048] ^= 0xFF
    last = "(SELECT max(rowid) FROM memories)"

    def edit(change: str, *params: Any) -> bytes:
        return repack(tmp_path, good, change, params)

    bad = {
        "truncated": (good[:half], "truncated"),
        "flipped byte": (bytes(flipped), "checksum"),
        "not a backup": (b"not a backup" * 100, "not an Engram backup"),
        # Well-formed files (checksums right) whose LAST memory does not fit: everything before it
        # was written in the restore's transaction, and must be gone.
        "wrong vector length": (edit(f"UPDATE memories SET embedding = zeroblob(12) WHERE rowid = {last}"),
                                "dimensions"),
        "vector beyond halfvec": (edit(f"UPDATE memories SET embedding = ? WHERE rowid = {last}",
                                       np.full(384, 1e6, np.float32).tobytes()), "halfvec"),
        "content not text": (edit(f"UPDATE memories SET content = x'00ff' WHERE rowid = {last}"), "content"),
        "metadata not an object": (edit(f"UPDATE memories SET metadata = '[1]' WHERE rowid = {last}"),
                                   "metadata"),
        "a table not a space's": (edit("ALTER TABLE beliefs DROP COLUMN run_id;"), "not a space's"),
        # one edge (a memory may have several: explicit, semantic), or the edit itself fails
        "edge to nowhere": (edit("UPDATE associations SET target = 99999 WHERE (source, target) = "
                                 "(SELECT source, target FROM associations ORDER BY source, target "
                                 "LIMIT 1)"), "association"),
    }
    for name, (data, says) in bad.items():
        new = f"never-{uuid.uuid4().hex[:6]}"
        r = httpx.post(f"{a.http_url}/api/v1/spaces/{new}/restore", content=data, timeout=60)
        assert r.status_code == 400, (name, r.text)
        err = r.json()["error"]
        assert err["code"] == "INVALID_BACKUP" and says in err["message"], (name, err)
        assert set(rows_of(pg, dsn, new).values()) == {0}, name  # nothing, in any table
        with pytest.raises(InvalidBackup):
            restore(b.http_url, data, keep, replace=True)
        assert state(b.http_url, keep) == keep_before, name
    assert not [p for p in a.data_dir.iterdir() if p.name.startswith((".backup-", ".upload-", ".restore-"))]


def test_backup_and_restore_errors_use_the_envelope(servers: tuple[EngramProcess, ...]) -> None:
    a, _, _ = servers
    r = httpx.get(a.http_url + "/api/v1/spaces/nobody-here/backup", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "MEMORY_SPACE_NOT_FOUND"
    r = httpx.post(a.http_url + "/api/v1/spaces/Bad!Id/restore", content=b"x", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_MEMORY_SPACE"


# -- between backends -----------------------------------------------------------------------------------
def _stored(st: dict[str, Any]) -> dict[str, Any]:
    return {k: st[k] for k in ("space", "order", "memories", "associations", "beliefs")}


def test_sqlite_backup_restores_on_postgres_and_back(servers: tuple[EngramProcess, ...]) -> None:
    a, b, lite = servers
    sid = populate(lite.http_url)
    on_sqlite = state(lite.http_url, sid)
    assert on_sqlite["beliefs"] and on_sqlite["associations"]
    to_pg = restore(a.http_url, backup_of(lite.http_url, sid), sid)
    assert to_pg.last_lsn == on_sqlite["space"][0]
    on_pg = state(b.http_url, sid)
    assert _stored(on_pg) == _stored(on_sqlite)
    same_vectors(on_pg["vectors"], on_sqlite["vectors"], atol=1e-3)  # float16 on PostgreSQL
    # and back: PostgreSQL -> SQLite, exact (float16 values are float32 values)
    back = sid + "-back"
    restore(lite.http_url, backup_of(b.http_url, sid), back)
    on_sqlite_again = state(lite.http_url, back)
    assert _stored(on_sqlite_again) == _stored(on_pg)
    same_vectors(on_sqlite_again["vectors"], on_pg["vectors"])


def test_postgres_backup_restores_on_sqlite(servers: tuple[EngramProcess, ...]) -> None:
    a, _, lite = servers
    sid = populate(a.http_url)
    on_pg = state(a.http_url, sid)
    receipt = restore(lite.http_url, backup_of(a.http_url, sid), sid)
    assert receipt.last_lsn == on_pg["space"][0]
    on_sqlite = state(lite.http_url, sid)
    assert _stored(on_sqlite) == _stored(on_pg)
    same_vectors(on_sqlite["vectors"], on_pg["vectors"])
    with EngramClient(lite.http_url, space=sid, timeout=60) as c:
        assert c.remember("after the move").lsn == receipt.last_lsn + 1
        assert [r.memory.id for r in c.recall(filter={"n": 7}).results] == ["m7"]


def test_a_backup_taken_while_another_server_writes_is_one_snapshot(servers: tuple[EngramProcess, ...],
                                                                      tmp_path: Path) -> None:
    """Backups through A while B commits batches: each file holds exactly the writes up to its LSN
    (the rows, the event log and the LSN are read in one REPEATABLE READ transaction)."""
    import threading

    a, b, _ = servers
    sid = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(a.http_url, space=sid, timeout=60) as c:
        c.create_space(sid)
        for n in range(4):  # enough rows that reading them takes a while
            c.remember_batch([{"content": f"bulk {n}-{i}", "id": f"bulk-{n}-{i}"} for i in range(500)])
    receipts: dict[str, int] = {}
    stop = threading.Event()

    def write() -> None:
        with EngramClient(b.http_url, space=sid, timeout=60) as w:
            n = 0
            while not stop.is_set():
                items = [{"content": f"live {n}-{i}", "id": f"w-{n}-{i}"} for i in range(20)]
                got = w.remember_batch(items)
                receipts.update({it["id"]: r.lsn for it, r in zip(items, got.results, strict=True)})
                n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        taken = []
        while len(taken) < 3 or not receipts:
            taken.append(backup_of(a.http_url, sid))
    finally:
        stop.set()
        writer.join()
    inside = 0
    for k, data in enumerate(taken):
        db = tmp_path / f"{k}.db"
        manifest = fmt.unpack(to_file(tmp_path, data), db)
        last = manifest["last_lsn"]
        with sqlite3.connect(db) as conn:
            rows = dict(conn.execute("SELECT id, lsn FROM memories WHERE id LIKE 'w-%'").fetchall())
            top = conn.execute("SELECT max(lsn) FROM events").fetchone()[0]
        assert all(lsn <= last for lsn in rows.values()), k
        assert rows == {mid: lsn for mid, lsn in receipts.items() if lsn <= last}, k
        assert top == last, k  # the log ends at the snapshot's LSN
        inside += len(rows)
    assert inside and max(receipts.values()) > fmt.read_manifest(to_file(tmp_path, taken[0]))["last_lsn"]


def test_a_restarted_server_removes_what_a_crash_left_mid_transfer(dsn: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    left = [data / ".upload-cut.engram", data / ".backup-cut.db"]
    for path in left:
        path.write_bytes(b"half a file")
    (data / ".restore-cut").mkdir()
    srv = EngramProcess.start(tmp_path, settings={"backend": "postgres", "postgres_dsn": dsn,
                                                  "embedder": "hash"}, data_dir=data)
    try:
        working = (".upload-", ".backup-", ".restore-")
        assert not [p.name for p in data.iterdir() if p.name.startswith(working)]
    finally:
        srv.stop()


def test_cli_moves_a_space_from_postgres_to_sqlite_and_back(servers: tuple[EngramProcess, ...],
                                                             tmp_path: Path) -> None:
    """The commands docs/scale-out.md gives for moving a space, against real servers."""
    import os
    import subprocess
    import sys

    def engram(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    a, b, lite = servers
    sid = populate(a.http_url)
    on_pg = state(a.http_url, sid)
    file = tmp_path / "moved.engram"
    out = engram("space", "backup", sid, str(file), "--url", a.http_url)
    assert out.returncode == 0, out.stderr
    assert fmt.verify(file)["space_id"] == sid
    out = engram("space", "restore", str(file), "--as", sid, "--url", lite.http_url, "--json")
    assert out.returncode == 0, out.stderr
    assert _stored(state(lite.http_url, sid)) == _stored(on_pg)
    with EngramClient(lite.http_url, space=sid, timeout=60) as c:
        c.remember("learned on SQLite", id="later")
    back = tmp_path / "back.engram"
    assert engram("space", "backup", sid, str(back), "--url", lite.http_url).returncode == 0
    out = engram("space", "restore", str(back), "--as", sid, "--url", b.http_url)
    assert out.returncode == 1 and "MEMORY_SPACE_EXISTS" in out.stderr + out.stdout
    out = engram("space", "restore", str(back), "--as", sid, "--replace", "--url", b.http_url)
    assert out.returncode == 0, out.stderr
    with EngramClient(a.http_url, space=sid, timeout=60) as c:
        assert c.get("later").content == "learned on SQLite"
        assert c.get_space(sid).last_lsn == on_pg["space"][0] + 1


def test_an_older_sqlite_backup_and_an_empty_space_restore(servers: tuple[EngramProcess, ...],
                                                           tmp_path: Path) -> None:
    """A storage-schema-2 file (before the event log and expiry) restores on PostgreSQL; so does
    a space with nothing in it (no dimension yet), which then takes its first vector's."""
    a, b, lite = servers
    sid = populate(lite.http_url)
    on_sqlite = state(lite.http_url, sid)
    old = repack(tmp_path, backup_of(lite.http_url, sid),
                 "DROP TABLE events; DROP INDEX memories_expires; "
                 "ALTER TABLE memories DROP COLUMN expires_at; "
                 "UPDATE meta SET value = '2' WHERE key = 'schema_version';", schema_version=2)
    restore(a.http_url, old, sid)
    assert _stored(state(b.http_url, sid)) == _stored(on_sqlite)
    empty = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(a.http_url, space=empty, timeout=60) as c:
        c.create_space(empty)
    receipt = restore(b.http_url, backup_of(a.http_url, empty), empty + "-copy")
    assert receipt.last_lsn == 0 and receipt.counts["memories"] == 0
    with EngramClient(a.http_url, space=empty + "-copy", timeout=60) as c:
        assert c.get_space(empty + "-copy").dimension is None
        assert c.remember("the first memory").lsn == 1
        assert c.get_space(empty + "-copy").dimension == 384


def test_two_servers_restoring_one_new_id_at_once(servers: tuple[EngramProcess, ...]) -> None:
    """One restore wins whole; the other is 409 MEMORY_SPACE_EXISTS (not a 400 or a 500), however
    their transactions interleave (the second waits on the first's space row)."""
    import threading

    a, b, _ = servers
    sid = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(a.http_url, space=sid, timeout=60) as c:
        c.create_space(sid)
        for n in range(3):  # big enough that the two restores' transactions overlap
            c.remember_batch([{"content": f"row {n}-{i}", "id": f"r-{n}-{i}"} for i in range(500)])
    data = backup_of(a.http_url, sid)
    for _ in range(3):
        target = f"s-{uuid.uuid4().hex[:10]}"
        gate = threading.Barrier(2)
        outcomes: list[Any] = []

        def go(url: str, target: str = target, gate: threading.Barrier = gate,
               outcomes: list[Any] = outcomes) -> None:
            gate.wait()
            try:
                outcomes.append(restore(url, data, target))
            except Exception as exc:  # the outcome is what the test checks
                outcomes.append(exc)

        threads = [threading.Thread(target=go, args=(srv.http_url,)) for srv in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kinds = sorted(type(o).__name__ for o in outcomes)
        assert kinds == ["MemorySpaceExists", "RestoreReceipt"], outcomes
        with EngramClient(b.http_url, timeout=60) as c:
            got, want = c.get_space(target), c.get_space(sid)
        assert (got.last_lsn, got.memory_count) == (want.last_lsn, want.memory_count) == (1500, 1500)


def test_a_space_default_ttl_moves_with_its_backup(servers: tuple[EngramProcess, ...], pg: PgCluster,
                                                   dsn: str, tmp_path: Path) -> None:
    """A space created with ``default_ttl_seconds`` on SQLite keeps it on PostgreSQL and back: what is
    written after the move without an expiry expires that long after its store, on every server.
    A backup whose TTL is no TTL a space could have is refused with the envelope and writes nothing,
    on either backend."""
    a, b, lite = servers
    sid = f"s-{uuid.uuid4().hex[:10]}"
    with EngramClient(lite.http_url, space=sid, timeout=60) as c:
        c.create_space(sid, default_ttl_seconds=3600)
        c.remember("before the move")
    data = backup_of(lite.http_url, sid)
    restore(a.http_url, data, sid)
    with _superuser(pg, dsn) as su:  # the restored memory's expiry: every server's sweep finds the space
        due = su.execute("SELECT s.next_expiry, (SELECT min(expires_at) FROM engram.memories AS m "
                         "WHERE m.space_id = s.space_id) FROM engram.spaces AS s WHERE space_id = %s",
                         (sid,)).fetchone()
    assert due is not None and due[0] is not None and due[0] == due[1], due

    def expiry_after_a_write(url: str, space: str) -> float:
        with EngramClient(url, space=space, timeout=60) as c:
            t0 = time.time()
            mid = c.remember("after the move").memory_id
            got = c.get(mid).expires_at
            assert got is not None, "the restored space lost its default TTL"
            return got.timestamp() - t0

    assert 3590 < expiry_after_a_write(b.http_url, sid) < 3610  # restored through A, written through B
    back = sid + "-back"
    restore(lite.http_url, backup_of(b.http_url, sid), back)
    assert 3590 < expiry_after_a_write(lite.http_url, back) < 3610
    for value in ("-5", "nan", "soon", "1e99"):
        bad = repack(tmp_path, data, "UPDATE meta SET value = ? WHERE key = 'default_ttl_seconds'", (value,))
        target = f"{sid}-bad"
        for server in (a, lite):  # the file's check is the format's, on both backends
            r = httpx.post(f"{server.http_url}/api/v1/spaces/{target}/restore", content=bad, timeout=60)
            assert r.status_code == 400, (value, r.status_code, r.text)
            assert "default_ttl_seconds" in r.json()["error"]["message"], r.text
        for server in (b, lite):
            assert httpx.get(f"{server.http_url}/api/v1/spaces/{target}", timeout=30).status_code == 404
