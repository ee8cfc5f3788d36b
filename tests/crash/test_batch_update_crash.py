"""kill -9 during a stream of batches and an update storm (SPEC §11, issue 13 item 2 and 3).

A real server takes batches of 40 memories (REST ``POST /api/v1/memories/batch``) from two
threads and PATCHes from two more (each updater owns its keys and updates them one after the
other, content and tag naming the same version); it is SIGKILLed at a random moment, restarted,
and checked:

* every acknowledged batch item is there with its content;
* a batch in flight at the kill is all there or not there at all (one transaction): never half;
* every key holds its last acknowledged version, or the one update in flight after it, whole:
  content and tag of the same version, and the LSN the update was acknowledged with (or later);
* after a graceful stop the full-text index agrees with the rows (FTS5 integrity-check) and
  finds each key by its final text.

Seed: ``ENGRAM_CRASH_SEED``; cycles: ``ENGRAM_CRASH_CYCLES`` (default 2).
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from engram.testing import EngramProcess

SPACE = "crash-batch"
API = "/api/v1"
UPDATERS = 2
KEYS_PER_UPDATER = 10


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, str] = field(default_factory=dict)  # batch item id -> content
    in_flight: list[dict[str, str]] = field(default_factory=list)  # batches with no answer
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (acked version, lsn)
    maybe: dict[str, int] = field(default_factory=dict)  # key -> version sent, not answered
    batches: int = 0
    updates: int = 0


def content_of(key: str, version: int) -> str:
    return f"{key} version {version} about lantern number {version} in the harbour"


def batch_writer(url: str, ledger: Ledger, stop: threading.Event, name: str) -> None:
    n = 0
    with httpx.Client(base_url=url, headers={"X-Memory-Space": SPACE}, timeout=30) as c:
        while not stop.is_set():
            items = {f"{name}-{n}-{i}": f"{name} batch {n} item {i} mentions kite {i}" for i in range(40)}
            n += 1
            try:
                resp = c.post(f"{API}/memories/batch",
                              json={"memories": [{"id": k, "content": v} for k, v in items.items()]})
            except httpx.HTTPError:
                with ledger.lock:
                    ledger.in_flight.append(items)
                return
            assert resp.status_code == 201, resp.text
            body = resp.json()
            assert body["stored"] == 40, body
            with ledger.lock:
                ledger.acked.update(items)
                ledger.batches += 1


def updater(url: str, ledger: Ledger, stop: threading.Event, keys: list[str], rng: random.Random) -> None:
    with httpx.Client(base_url=url, headers={"X-Memory-Space": SPACE}, timeout=30) as c:
        while not stop.is_set():
            key = rng.choice(keys)
            with ledger.lock:
                version = ledger.versions[key][0] + 1
                ledger.maybe[key] = version
            try:
                resp = c.patch(f"{API}/memories/{key}",
                               json={"content": content_of(key, version), "tags": [f"v{version}"]})
            except httpx.HTTPError:
                return
            assert resp.status_code == 200, resp.text
            with ledger.lock:
                ledger.versions[key] = (version, int(resp.json()["lsn"]))
                ledger.maybe.pop(key, None)
                ledger.updates += 1


def check(srv: EngramProcess, ledger: Ledger) -> None:
    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": SPACE}, timeout=30) as c:
        def get(mid: str) -> dict[str, Any] | None:
            resp = c.get(f"{API}/memories/{mid}", params={"include_embedding": "false"})
            assert resp.status_code in (200, 404), resp.text
            return resp.json() if resp.status_code == 200 else None

        listed = {m["id"]: m for m in _all(c)}
        for mid, content in ledger.acked.items():
            assert mid in listed, f"acknowledged batch item {mid} lost"
            assert listed[mid]["content"] == content
        for items in ledger.in_flight:
            present = [mid for mid in items if mid in listed]
            assert len(present) in (0, len(items)), f"half-applied batch: {len(present)} of {len(items)}"
            for mid in present:
                assert listed[mid]["content"] == items[mid]
        for key, (version, lsn) in ledger.versions.items():
            mem = get(key)
            assert mem is not None, f"updated memory {key} lost"
            allowed = {version} | ({ledger.maybe[key]} if key in ledger.maybe else set())
            got = next(v for v in range(version + 2) if mem["content"] == content_of(key, v))
            assert got in allowed, f"{key}: version {got}, acknowledged {version}"
            assert mem["tags"] == ([f"v{got}"] if got else []), f"{key}: content and tags of two updates"
            assert mem["lsn"] >= lsn, f"{key}: LSN went back from the acknowledged {lsn} to {mem['lsn']}"
            if got == version and version:
                assert mem["lsn"] == lsn, f"{key}: same content, another LSN"


def _all(c: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        resp = c.get(f"{API}/memories", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        page = resp.json()
        out += page["memories"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def check_files(root: Path, ledger: Ledger) -> None:
    with sqlite3.connect(root / "data" / SPACE / "space.db") as conn:
        conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
        for key, (version, _lsn) in ledger.versions.items():
            if version and key not in ledger.maybe:
                rows = conn.execute(
                    "SELECT m.id FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid "
                    "WHERE memories_fts MATCH ?", (f'"{key}" AND "lantern" AND "{version}"',)).fetchall()
                assert (key,) in rows, f"{key} not found by its final text"


def test_kill_during_batches_and_updates(tmp_path: Path) -> None:
    seed = int(os.environ.get("ENGRAM_CRASH_SEED", random.randrange(1 << 30)))
    cycles = int(os.environ.get("ENGRAM_CRASH_CYCLES", "2"))
    rng = random.Random(seed)
    root = tmp_path / "data"
    srv = EngramProcess.start(root, [SPACE], {"consolidation_interval_seconds": 0})
    ledger = Ledger()
    keys = [[f"u{t}-{k}" for k in range(KEYS_PER_UPDATER)] for t in range(UPDATERS)]
    try:
        with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": SPACE}, timeout=30) as c:
            for key in (k for group in keys for k in group):
                assert c.put(f"{API}/memories/{key}", json={"content": content_of(key, 0)}).status_code == 201
                ledger.versions[key] = (0, 0)
        for cycle in range(cycles):
            stop = threading.Event()
            threads = [threading.Thread(target=batch_writer,
                                        args=(srv.http_url, ledger, stop, f"c{cycle}w{w}"))
                       for w in range(2)]
            threads += [threading.Thread(target=updater, args=(srv.http_url, ledger, stop, keys[t],
                                                               random.Random(rng.random())))
                        for t in range(UPDATERS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.8, 2.0))
            srv.kill()
            stop.set()
            for t in threads:
                t.join(60)
            assert ledger.batches and ledger.updates, f"nothing acknowledged before the kill (seed {seed})"
            srv = srv.restart()
            check(srv, ledger)
        srv.stop()
        check_files(root, ledger)
    except BaseException:
        print(f"ENGRAM_CRASH_SEED={seed}")
        raise
    finally:
        if srv.running:
            srv.kill()
