"""kill -9 of a real server during writes watched by a subscriber, and during an expiry sweep.

After the restart (SPEC §11, resumable feeds and expiry):

* every acknowledged memory that has not expired is there; every expired one is never returned;
* the event log, replayed over SSE from ``since_lsn=0``, holds every acknowledged write's event
  exactly once, at the LSN its receipt named, in strictly increasing (lsn, seq) order, and each
  expired memory's ``expired`` event at most once (exactly once once the sweep has finished);
* every logged event the live subscriber saw before the kill is in the replay, identical: nothing
  is published that was not durable.

Seed: ``ENGRAM_CRASH_SEED`` (printed on failure).
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from engram.testing import EngramProcess
from engram.testing.sse_raw import FrameParser

API = "/api/v1"
SPACE = "feeds"
SEED = int(os.environ.get("ENGRAM_CRASH_SEED", random.randrange(1 << 30)))


class Subscriber(threading.Thread):
    """An SSE subscriber from since_lsn=0 that records every frame until the connection drops."""

    def __init__(self, url: str, *, types: str | None = None, stop_on_heartbeat: bool = False) -> None:
        super().__init__(daemon=True)
        self.url, self.types, self.stop_on_heartbeat = url, types, stop_on_heartbeat
        self.frames: list[dict[str, Any]] = []
        self.first = threading.Event()
        self.done = threading.Event()
        self.status = 0

    def run(self) -> None:
        params: dict[str, Any] = {"since_lsn": 0}
        if self.types:
            params["types"] = self.types
        parser = FrameParser()
        try:
            with httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0, read=30.0)) as c, c.stream(
                    "GET", f"{API}/stream/activities", headers={"X-Memory-Space": SPACE},
                    params=params) as resp:
                self.status = resp.status_code
                for line in resp.iter_lines():
                    if self.stop_on_heartbeat and line == ": heartbeat":
                        return  # idle: the replay is over and nothing live came
                    frame = parser.feed(line)
                    if frame is not None and "data" in frame:
                        self.frames.append(frame)
                        self.first.set()
        except (httpx.HTTPError, OSError):
            pass  # the server was killed
        finally:
            self.done.set()


def wait_swept(url: str, ids: set[str], timeout: float = 60.0) -> None:
    """Until an `expired` event of each of ``ids`` is in the log (replayed, then live)."""
    watcher = Subscriber(url, types="expired")
    watcher.start()
    deadline = time.monotonic() + timeout
    while not ids <= {f["data"]["data"]["memory_id"] for f in list(watcher.frames)}:
        assert time.monotonic() < deadline, f"seed {SEED}: the sweep never finished"
        time.sleep(0.05)


def replay(url: str) -> list[dict[str, Any]]:
    sub = Subscriber(url, stop_on_heartbeat=True)
    sub.start()
    assert sub.done.wait(60), "replay did not finish"
    assert sub.status == 200
    return sub.frames


def check_log(frames: list[dict[str, Any]], acked: dict[str, int], sent: set[str],
              expiring: set[str]) -> dict[str, int]:
    """The replay against what was acknowledged; returns memory id -> count of `expired` events."""
    positions = []
    stored: dict[str, int] = {}
    expired: dict[str, int] = {}
    for f in frames:
        assert f.get("id"), f  # a replay holds logged events only
        lsn, _, seq = f["id"].partition(".")
        positions.append((int(lsn), int(seq or 0)))
        assert int(lsn) == f["data"]["lsn"]
        mid = f["data"]["data"]["memory_id"]
        assert mid in sent, f"an event for a memory never sent: {mid}"
        if f["event"] == "stored":
            assert mid not in stored, f"stored twice: {mid}"
            stored[mid] = int(lsn)
        else:
            assert f["event"] == "expired", f
            assert mid in expiring, f"expired without an expiry: {mid}"
            expired[mid] = expired.get(mid, 0) + 1
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "not in LSN order"
    for mid, lsn in acked.items():
        assert stored.get(mid) == lsn, f"acknowledged write {mid} (lsn {lsn}) replayed as {stored.get(mid)}"
    assert all(n == 1 for n in expired.values()), {m: n for m, n in expired.items() if n != 1}
    return expired


def test_kill9_during_writes_with_a_subscriber(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    settings = {"expiry_sweep_interval_seconds": 0.1, "expiry_sweep_batch": 7,
                "stream_heartbeat_seconds": 0.5}
    srv = EngramProcess.start(tmp_path, [SPACE], settings)
    live = Subscriber(srv.http_url)
    live.start()
    acked: dict[str, int] = {}
    sent: set[str] = set()
    expiring: set[str] = set()
    lock = threading.Lock()
    kill_after = rng.randrange(150, 450)
    killed = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=srv.http_url, timeout=10, headers={"X-Memory-Space": SPACE}) as c:
            for n in range(10_000):
                mid = f"w{w}-{n}"
                body: dict[str, Any] = {"id": mid, "content": f"note {mid}"}
                if n % 3 == 0:
                    body["ttl_seconds"] = 0.2  # swept while the writes go on
                with lock:
                    sent.add(mid)
                    if "ttl_seconds" in body:
                        expiring.add(mid)
                try:
                    resp = c.post(f"{API}/memories/remember", json=body)
                except httpx.HTTPError:
                    assert killed.is_set(), f"seed {SEED}: the server failed before the kill"
                    return
                assert resp.status_code == 201, resp.text
                with lock:
                    acked[mid] = resp.json()["lsn"]
                    if len(acked) >= kill_after and not killed.is_set():
                        killed.set()
                        srv.kill()

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(writer, range(4)))
        assert killed.is_set()
        live.join(30)
        srv = srv.restart()
        keepers = [m for m in acked if m not in expiring]
        wait_swept(srv.http_url, {m for m in acked if m in expiring})  # all expired long ago
        with httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": SPACE}) as c:
            count = c.get(f"{API}/spaces/{SPACE}").json()["memory_count"]
            assert len(keepers) <= count <= len(keepers) + 4  # + writes in flight at the kill (4 writers)
            for mid in keepers:
                assert c.get(f"{API}/memories/{mid}").status_code == 200, f"seed {SEED}: lost {mid}"
            for mid in (m for m in acked if m in expiring):
                assert c.get(f"{API}/memories/{mid}").status_code == 404, f"seed {SEED}: {mid} returned"
        frames = replay(srv.http_url)
        expired = check_log(frames, acked, sent, expiring)
        assert {m for m in acked if m in expiring} <= set(expired)
        by_id = {f["id"]: (f["event"], f["data"]["data"]["memory_id"]) for f in frames}
        seen_live = [f for f in live.frames if f.get("id")]
        assert seen_live, f"seed {SEED}: the live subscriber saw nothing"
        for f in seen_live:  # published only after it was durable
            assert by_id.get(f["id"]) == (f["event"], f["data"]["data"]["memory_id"]), f"seed {SEED}: {f}"
    finally:
        srv.kill()


def test_kill9_during_an_expiry_sweep(tmp_path: Path) -> None:
    # The kill must land inside the sweep, which on a quiet machine lasts well under a second; on
    # a loaded one the first `expired` frame can reach the watcher after the sweep has finished.
    # Then the scenario is run again from the start on a fresh data root (its precondition, not
    # its checks, is what is retried); three misses in a row fail the test.
    misses = []
    for attempt in range(3):
        swept = _expiry_sweep_killed(tmp_path / f"attempt{attempt}")
        if swept is None:
            return
        misses.append(swept)
    raise AssertionError(f"the kill did not land inside the sweep in 3 attempts ({misses})")


def _expiry_sweep_killed(root: Path) -> int | None:
    """One run of the scenario: None when it ran to the end, else the events seen before the kill."""
    root.mkdir()
    # Phase 1: store memories that all expire at one instant, with no periodic sweep.
    srv = EngramProcess.start(root, [SPACE], {"expiry_sweep_interval_seconds": 3600})
    acked: dict[str, int] = {}
    expires_at = time.time() + 8.0
    try:
        def store(part: int) -> None:
            with httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": SPACE}) as c:
                for n in range(part, 480, 4):
                    body: dict[str, Any] = {"id": f"m{n}", "content": f"note {n}"}
                    if n % 4:
                        body["expires_at"] = expires_at
                    resp = c.post(f"{API}/memories/remember", json=body)
                    assert resp.status_code == 201, resp.text
                    acked[f"m{n}"] = resp.json()["lsn"]

        with ThreadPoolExecutor(4) as pool:  # concurrent writers share group commits: faster
            list(pool.map(store, range(4)))
        assert time.time() < expires_at, "storing took too long for this test's clock"
        expiring = {m for m in acked if int(m[1:]) % 4}
        while time.time() <= expires_at + 0.05:
            time.sleep(0.05)
        srv.kill()
        # Phase 2: restart with a small sweep batch; kill as soon as the sweep has begun.
        srv = srv.restart(settings={"expiry_sweep_interval_seconds": 0.05, "expiry_sweep_batch": 3})
        watcher = Subscriber(srv.http_url, types="expired")
        watcher.start()
        assert watcher.first.wait(30), "the sweep never started"
        srv.kill()
        watcher.join(30)
        swept_before = len(watcher.frames)
        assert swept_before > 0
        if swept_before >= len(expiring):
            return swept_before  # the whole sweep ran before the kill landed: not this test's case
        # Phase 3: restart; the sweep finishes; nothing acknowledged and unexpired is lost.
        srv = srv.restart(settings={"expiry_sweep_interval_seconds": 0.05, "stream_heartbeat_seconds": 0.5})
        wait_swept(srv.http_url, expiring)
        with httpx.Client(base_url=srv.http_url, timeout=30, headers={"X-Memory-Space": SPACE}) as c:
            assert c.get(f"{API}/spaces/{SPACE}").json()["memory_count"] == len(acked) - len(expiring)
            for mid in acked:
                code = c.get(f"{API}/memories/{mid}").status_code
                assert code == (404 if mid in expiring else 200), (mid, code)
        frames = replay(srv.http_url)
        expired = check_log(frames, acked, set(acked), expiring)
        assert set(expired) == expiring  # each swept exactly once, across the kill
        by_id = {f["id"]: f for f in frames}
        for f in watcher.frames:
            assert by_id[f["id"]]["data"]["data"]["memory_id"] == f["data"]["data"]["memory_id"]
        return None
    finally:
        srv.kill()
