"""Backup and restore of whole spaces (SPEC §11, docs/backup.md) over REST and the CLI, on a real server.

The server runs with ``max_body_bytes`` far below the size of a backup, so every restore here
also proves that the upload bypasses the JSON body limit, and with a small ``max_restore_bytes``
so the restore limit can be crossed cheaply.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram.client import EngramClient
from engram.errors import EngramError, InvalidBackup, MemorySpaceExists
from engram.storage import backup as fmt
from engram.testing import EngramProcess

ROOT = Path(__file__).resolve().parents[2]
MAX_RESTORE = 3_000_000
SETTINGS = {"max_body_bytes": 65_536, "max_restore_bytes": MAX_RESTORE}
RECALL_VARIES = frozenset({"memory_space_id", "timing_ms", "query_embedding_ms", "fan", "last_access",
                           "access_count", "activation", "reasoning"})
QUERIES = ("espresso", "Ada at the machine", "beans number3", "third floor office")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngramProcess]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("backup"), spaces=["src"], settings=SETTINGS)
    client = EngramClient(srv.http_url, space="src")
    _populate(client)
    client.close()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: EngramProcess) -> Iterator[EngramClient]:
    with EngramClient(server.http_url, space="src", timeout=60) as c:
        yield c


def _populate(c: EngramClient) -> None:
    """Everything a space holds: episodes, memories with tags and metadata, associations,
    beliefs and consolidation states, reinforced access counts, a suppressed memory."""
    for i in range(8):
        c.experience(f"2026-05-0{i + 1}T09:30:00Z", f"met Ada at the espresso machine on day {i}", id=f"e{i}",
                     who=["Ada"], where_location="third floor")
    for i in range(30):
        c.remember(f"fact {i} about coffee and espresso beans number{i}", id=f"m{i}", tags=["t", f"n{i % 3}"],
                   metadata={"k": str(i)}, confidence=0.5 + i / 100)
    c.associate("m1", "m2", strength=0.7)
    c.associate("m3", "e1", strength=0.4)
    report = c.consolidate(min_cluster=2)
    assert report.beliefs, "consolidation made no belief: the fixture would not cover beliefs"
    for q in QUERIES:
        c.recall(q)  # reinforcement: access counts and last access change (background writes)
    # An acknowledged write queued after the reinforcements: they are committed by now.
    c.forget("m29", mode="suppress")


def _backup(c: EngramClient, space: str) -> bytes:
    buf = io.BytesIO()
    c.backup(space, buf)
    return buf.getvalue()


def _strip(value: Any, drop: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v, drop) for v in value]
    return value


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _rows(data_dir: Path, space: str) -> dict[str, list[tuple[Any, ...]]]:
    """The stored state as the database holds it: memories (activation, access counts, consolidation
    states and embeddings as stored), associations by memory id, beliefs, and the LSN."""
    conn = sqlite3.connect(f"file:{data_dir / space / 'space.db'}?mode=ro", uri=True)
    try:
        return {
            "memories": conn.execute("SELECT * FROM memories ORDER BY rowid").fetchall(),
            "associations": conn.execute(
                "SELECT s.id, t.id, a.strength, a.kind, a.created_at, a.updated_at, a.lsn "
                "FROM associations a JOIN memories s ON s.rowid = a.source "
                "JOIN memories t ON t.rowid = a.target ORDER BY 1, 2"
            ).fetchall(),
            "beliefs": conn.execute("SELECT * FROM beliefs ORDER BY id").fetchall(),
            "meta": conn.execute("SELECT * FROM meta WHERE key IN ('last_lsn', 'dimension', 'embedder') "
                                 "ORDER BY key").fetchall(),
        }
    finally:
        conn.close()


def answers(server: EngramProcess, space: str) -> dict[str, Any]:
    """What a client can learn of a space, with only the space's own name and timings left out.

    ``activation`` in answers is the stored activation decayed to the moment of the request,
    so it is compared to 1e-4 here (two requests are never at the same instant) and exactly as
    stored in ``rows``. Recall uses ``rank=similarity`` (float32-exact cosine order): the
    default cognitive rank also weighs the fan, an index statistic measured in the background
    after a space opens; and recall reinforces what it returns in the background, so it comes
    last and its reinforced fields (and ``reasoning``, which quotes them) are not compared; its
    scores hold time too (recency), so they are compared to 1e-4 while the order, ids and
    contents are compared exactly.
    """
    with EngramClient(server.http_url, space=space, timeout=60) as c:
        desc = c.get_space(space).model_dump(mode="json")
        memories = [c.get(m.id, include_embedding=True).model_dump(mode="json")
                    for m in c.iter_memories(include_suppressed=True)]
        listed = [m.model_dump(mode="json") for m in c.iter_memories(include_suppressed=True)]
        out: dict[str, Any] = {
            "space": _strip(desc, frozenset({"id", "memory_space_id", "storage_bytes", "loaded",
                                             "average_activation"})),
            "memories": _strip(memories, frozenset({"activation"})),
            "list": _strip(listed, frozenset({"activation"})),
            "activation": [round(m["activation"], 4) for m in memories + listed],
            "beliefs": _strip(c.beliefs(limit=1000).model_dump(mode="json"), frozenset({"memory_space_id"})),
            "rows": _rows(server.data_dir, space),
        }
        out["beliefs_each"] = [c.belief(b["id"]).model_dump(mode="json") for b in out["beliefs"]["beliefs"]]
        out["recall"] = [
            _round(_strip(c.recall(q, max_results=8, rank="similarity").model_dump(mode="json"),
                          RECALL_VARIES))
            for q in QUERIES
        ]
    return out


def _identity(client: EngramClient, space: str) -> tuple[Any, ...]:
    """Which memories a space holds and its LSN (reads that change nothing, unlike recall)."""
    c = client.with_space(space)
    return (c.get_space(space).last_lsn, [(m.id, m.content, m.lsn) for m in c.iter_memories()])


def _leftovers(server: EngramProcess) -> list[str]:
    """Working files of backups and restores still in the data root (none once a request is over)."""
    prefixes = (".backup-", ".upload-", ".restore-", ".replaced-")
    return sorted(p.name for p in server.data_dir.iterdir() if p.name.startswith(prefixes))


# -- REST --------------------------------------------------------------------------------------
def test_backup_file_is_a_tar_with_a_checked_manifest(server: EngramProcess, client: EngramClient) -> None:
    resp = httpx.get(f"{server.http_url}/api/v1/spaces/src/backup", timeout=60)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-tar"
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert len(resp.content) > SETTINGS["max_body_bytes"]  # so every restore below bypasses that limit
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        assert tar.getnames() == ["manifest.json", "space.db"]
        raw = tar.extractfile("manifest.json")
        assert raw is not None
        manifest = json.loads(raw.read())
    desc = client.get_space("src")
    assert manifest["format"] == "engram-space-backup" and manifest["format_version"] == 1
    assert manifest["space_id"] == "src" and manifest["last_lsn"] == desc.last_lsn
    assert resp.headers["x-engram-lsn"] == str(desc.last_lsn)
    assert (manifest["counts"]["memories"], manifest["counts"]["episodes"]) == (38, 8)
    assert manifest["counts"]["associations"] >= 2 and manifest["counts"]["beliefs"] >= 1
    assert manifest["dimension"] == 384 and manifest["embedder"]["provider"] == "hash"
    assert _leftovers(server) == []  # the snapshot is gone once sent


def test_restore_as_new_space_answers_like_the_source(server: EngramProcess, client: EngramClient) -> None:
    data = _backup(client, "src")
    before = answers(server, "src")
    receipt = client.restore(io.BytesIO(data), "src-copy")
    assert receipt.memory_space_id == "src-copy" and not receipt.replaced and receipt.source_space_id == "src"
    restored = answers(server, "src-copy")
    for key in before:
        assert restored[key] == before[key], key
    assert receipt.last_lsn == before["space"]["last_lsn"]
    # The restored space is a working space that continues the source's LSN sequence.
    got = client.with_space("src-copy").remember("written after the restore")
    assert got.lsn == receipt.last_lsn + 1
    assert _leftovers(server) == []


def test_restore_into_an_existing_space_needs_replace(server: EngramProcess, client: EngramClient) -> None:
    data = _backup(client, "src")
    client.restore(io.BytesIO(data), "src-twice")
    with pytest.raises(MemorySpaceExists) as exc:
        client.restore(io.BytesIO(data), "src-twice")
    assert exc.value.details["http_status"] == 409
    with pytest.raises(MemorySpaceExists):
        client.restore(io.BytesIO(data), "src")  # not even onto its own source


def test_replace_swaps_an_existing_space_whole(server: EngramProcess, client: EngramClient) -> None:
    target = client.with_space("tgt")
    client.create_space("tgt")
    target.remember("the old space's only memory", id="old-1")
    data = _backup(client, "src")
    receipt = client.restore(io.BytesIO(data), "tgt", replace=True)
    assert receipt.replaced
    assert [m.id for m in target.iter_memories()] != []
    with pytest.raises(EngramError) as exc:
        target.get("old-1")
    assert exc.value.code == "MEMORY_NOT_FOUND"
    assert answers(server, "tgt") == answers(server, "src")
    assert _leftovers(server) == []


def test_backup_taken_while_a_writer_writes_is_consistent(server: EngramProcess,
                                                          client: EngramClient) -> None:
    client.create_space("busy")
    busy = client.with_space("busy")
    stop = threading.Event()
    acked: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def writer() -> None:
        with EngramClient(server.http_url, space="busy") as w:
            i = 0
            while not stop.is_set():
                try:
                    r = w.remember(f"busy memory {i} written during backups", id=f"b{i}")
                except BaseException as exc:  # reported below: the writer must never fail
                    errors.append(exc)
                    return
                acked.append((r.memory_id, r.lsn))
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for round_ in range(3):
            while len(acked) < 20 * (round_ + 1):  # writes are landing while each backup runs
                thread.join(0.01)
                assert not errors, errors
            started = len(acked)
            data = _backup(client, "busy")
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                raw = tar.extractfile("manifest.json")
                assert raw is not None
                manifest = json.loads(raw.read())
            receipt = busy.restore(io.BytesIO(data), f"busy-copy-{round_}")
            copy = busy.with_space(f"busy-copy-{round_}")
            ids = {m.id for m in copy.iter_memories()}
            lsn = manifest["last_lsn"]
            # Exactly the writes committed up to the snapshot's LSN: none torn, none missing.
            assert ids == {mid for mid, at in list(acked) if at <= lsn}
            assert {mid for mid, _ in acked[:started]} <= ids  # acknowledged before: in the backup
            assert len(ids) == manifest["counts"]["memories"] == receipt.counts["memories"]
            assert copy.get_space().last_lsn == lsn
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(acked) > 60


# -- refusals -----------------------------------------------------------------------------------
def _retar(manifest: dict[str, Any], db: bytes, extra: list[tuple[str, bytes]] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        members = [("manifest.json", json.dumps(manifest).encode()), ("space.db", db), *(extra or [])]
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        m, d = tar.extractfile("manifest.json"), tar.extractfile("space.db")
        assert m is not None and d is not None
        return json.loads(m.read()), d.read()


def _index_mismatch(db: bytes, tmp: Path) -> bytes:
    path = tmp / "damaged.db"
    path.write_bytes(db)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_schema SET sql = replace(sql, '(created_at)', '(last_access)') "
                 "WHERE name = 'memories_created'")
    conn.commit()
    conn.close()
    return path.read_bytes()


def _bad_backups(good: bytes, tmp: Path) -> dict[str, bytes]:
    manifest, db = _parts(good)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01  # a bit deep inside space.db
    bad_sum = dict(manifest, database=dict(manifest["database"], sha256="0" * 64))
    newer = dict(manifest, format_version=fmt.FORMAT_VERSION + 1)
    more = manifest["counts"]["memories"] + 1
    lying_counts = dict(manifest, counts=dict(manifest["counts"], memories=more))
    # A database whose index disagrees with its table, with the checksum recomputed to match:
    # only the integrity check can see it.
    damaged = _index_mismatch(db, tmp)
    resummed = dict(manifest, database={"name": "space.db", "bytes": len(damaged),
                                        "sha256": hashlib.sha256(damaged).hexdigest()})
    return {
        "flipped byte": bytes(flipped),
        "cut in half": good[: len(good) // 2],
        "cut short": good[: len(good) - 2000],
        "only the manifest": good[:1024],
        "wrong checksum": _retar(bad_sum, db),
        "newer format": _retar(newer, db),
        "counts lie": _retar(lying_counts, db),
        "damaged pages": _retar(resummed, damaged),
        "extra member": _retar(manifest, db, [("evil.sh", b"echo hi")]),
        "not a backup": b'{"memories": []}\n' * 100,
        "empty": b"",
    }


def test_corrupted_backups_are_refused_and_nothing_is_installed(server: EngramProcess, client: EngramClient,
                                                                tmp_path: Path) -> None:
    good = _backup(client, "src")
    client.create_space("keep")
    client.with_space("keep").remember("must survive every refused replace", id="k1")
    keep_before = _identity(client, "keep")
    for name, data in _bad_backups(good, tmp_path).items():
        resp = httpx.post(f"{server.http_url}/api/v1/spaces/never/restore", content=data, timeout=60)
        assert resp.status_code == 400, (name, resp.text)
        assert resp.json()["error"]["code"] == "INVALID_BACKUP", name
        assert resp.json()["error"]["message"], name
        resp = httpx.post(f"{server.http_url}/api/v1/spaces/keep/restore", params={"replace": "true"},
                          content=data, timeout=60)
        assert resp.status_code == 400, (name, resp.text)
        assert "never" not in [s.id for s in client.iter_spaces()], name
        assert _leftovers(server) == [], name
    assert _identity(client, "keep") == keep_before
    # The refusal names what was wrong.
    with pytest.raises(InvalidBackup, match="newer than this server"):
        client.restore(io.BytesIO(_bad_backups(good, tmp_path)["newer format"]), "never")
    with pytest.raises(InvalidBackup, match="checksum"):
        client.restore(io.BytesIO(_bad_backups(good, tmp_path)["wrong checksum"]), "never")
    with pytest.raises(InvalidBackup, match="integrity"):
        client.restore(io.BytesIO(_bad_backups(good, tmp_path)["damaged pages"]), "never")
    assert not (server.data_dir / "never").exists()


def test_restore_and_backup_errors_use_the_envelope(server: EngramProcess, client: EngramClient) -> None:
    good = _backup(client, "src")
    cases = [
        ("POST", "/api/v1/spaces/Bad!Id/restore", good, 400, "INVALID_MEMORY_SPACE"),
        ("POST", "/api/v1/spaces/ab/restore", good, 400, "INVALID_MEMORY_SPACE"),
        ("GET", "/api/v1/spaces/Bad!Id/backup", None, 400, "INVALID_MEMORY_SPACE"),
        ("GET", "/api/v1/spaces/nobody-here/backup", None, 404, "MEMORY_SPACE_NOT_FOUND"),
        ("POST", "/api/v1/spaces/too-big/restore", good + b"\0" * MAX_RESTORE, 413, "PAYLOAD_TOO_LARGE"),
        ("POST", "/api/v1/spaces/src-e/restore?replace=maybe", good, 400, None),
    ]
    for method, path, content, status, code in cases:
        resp = httpx.request(method, server.http_url + path, content=content, timeout=60)
        assert resp.status_code == status, (path, resp.text)
        err = resp.json()["error"]
        assert code is None or err["code"] == code, (path, err)
        assert err["message"] and err["suggestion"], err
    # A chunked upload (no Content-Length) past the limit is refused too, and not kept.
    def body() -> Iterator[bytes]:
        for _ in range(MAX_RESTORE // 65_536 + 2):
            yield b"\0" * 65_536

    resp = httpx.post(server.http_url + "/api/v1/spaces/too-big/restore", content=body(), timeout=60)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "too-big" not in [s.id for s in client.iter_spaces()]
    assert _leftovers(server) == []
    assert not [r for r in server.log_records() if r.get("level") == "error"]


# -- CLI ----------------------------------------------------------------------------------------
def _engram(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return subprocess.run([sys.executable, "-m", "engram", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def test_cli_backup_then_restore_and_replace(server: EngramProcess, tmp_path: Path) -> None:
    url = ["--url", server.http_url]
    file = tmp_path / "src.engram"
    out = _engram("space", "backup", "src", str(file), *url)
    assert out.returncode == 0, out.stderr
    expected = answers(server, "src")  # the state the file holds (nothing writes src meanwhile)
    said = " ".join(out.stdout.split())
    assert said.startswith(f"backed up space src to {file}: 38 memories (8 episodes)"), said
    assert fmt.verify(file)["space_id"] == "src"
    assert [p.name for p in tmp_path.iterdir()] == ["src.engram"]  # no partial file left beside it

    out = _engram("space", "restore", str(file), "--as", "cli-copy", *url, "--json")
    assert out.returncode == 0, out.stderr
    receipt = json.loads(out.stdout)
    assert receipt["memory_space_id"] == "cli-copy" and receipt["replaced"] is False
    assert answers(server, "cli-copy") == expected

    with EngramClient(server.http_url, space="cli-copy") as c:
        c.remember("a change the replace must undo", id="change")
    out = _engram("space", "restore", str(file), "--as", "cli-copy", *url)
    assert out.returncode == 1 and "MEMORY_SPACE_EXISTS" in out.stderr + out.stdout
    out = _engram("space", "restore", str(file), "--as", "cli-copy", "--replace", *url)
    assert out.returncode == 0, out.stderr
    assert " ".join(out.stdout.split()).startswith("replaced space cli-copy from"), out.stdout
    assert answers(server, "cli-copy") == expected

    broken = tmp_path / "broken.engram"
    broken.write_bytes(file.read_bytes()[:-3000])
    out = _engram("space", "restore", str(broken), "--as", "cli-broken", *url)
    assert out.returncode == 2 and "INVALID_BACKUP" in out.stderr + out.stdout, out.stderr
    out = _engram("space", "backup", "nobody-here", str(tmp_path / "nobody.engram"), *url)
    assert out.returncode == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.engram", "src.engram"]


def test_run_py_resolves_relative_paths_against_the_callers_directory(server: EngramProcess,
                                                                       tmp_path: Path) -> None:
    """``python3 run.py engram ...`` from another directory: relative FILE and --data-dir are the caller's."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "engram", "space", "backup", "src",
                          "rel.engram", "--url", server.http_url, "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[run.py] installing" not in out.stdout  # the installed environment is enough for `engram`
    assert fmt.verify(elsewhere / "rel.engram")["space_id"] == "src"
    assert not (ROOT / "rel.engram").exists()
    # --data-dir: the CLI finds the server through the state file in the caller's ./data
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "engram.state.json").write_text(json.dumps(
        {"pid": server.pid, "host": "127.0.0.1", "http_port": server.http_port}))
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "engram", "space", "get", "src",
                          "--data-dir", "./data", "--json"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["id"] == "src"
