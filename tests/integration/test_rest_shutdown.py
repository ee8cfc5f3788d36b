"""Graceful shutdown over REST: SIGTERM with writes in flight loses no acknowledged write, and an
open SSE stream ends cleanly (an ``end`` event, then the response completes)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import httpx

from engram.testing import EngramProcess

API = "/api/v1"


def test_sigterm_with_writes_in_flight(tmp_path) -> None:
    srv = EngramProcess.start(tmp_path / "s", spaces=["alpha", "beta"])
    acked: dict[str, set[str]] = {"alpha": set(), "beta": set()}
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def writer(n: int) -> None:
        space = "alpha" if n % 2 else "beta"
        with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": space}, timeout=30) as c:
            i = 0
            while not stop.is_set():
                mid = f"w{n}-{i}"
                i += 1
                try:
                    r = c.post(f"{API}/memories/remember", json={"id": mid, "content": f"write {mid}"})
                except httpx.TransportError:
                    return  # refused or cut after the shutdown began: never acknowledged
                if r.status_code != 201:
                    return
                with lock:
                    acked[space].add(mid)
                    if sum(map(len, acked.values())) >= 200:
                        enough.set()

    with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": "alpha"}, timeout=30) as c:
        for mid in ("keep", "gone", "hushed"):
            assert c.post(f"{API}/memories/remember", json={"id": mid, "content": mid}).status_code == 201
        assert c.delete(f"{API}/memories/gone", params={"mode": "delete"}).status_code == 200
        assert c.delete(f"{API}/memories/hushed", params={"mode": "suppress"}).status_code == 200

    stream = httpx.Client(base_url=srv.http_url, timeout=httpx.Timeout(10.0, read=30.0))
    frames: list[str] = []
    with stream.stream("GET", f"{API}/stream/activities", headers={"X-Memory-Space": "alpha"}) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith(": subscribed")
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            assert enough.wait(60), "writers made no progress"
            srv.proc.send_signal(signal.SIGTERM)  # writes are still being sent and committed
            for line in lines:  # the stream must end on its own, with a final `end` event
                frames.append(line)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    stream.close()
    assert srv.proc.wait(30) == 0
    ends = [i for i, line in enumerate(frames) if line == "event: end"]
    assert ends, frames[-10:]
    assert json.loads(frames[ends[-1] + 1].removeprefix("data: "))["reason"] == "server shutting down"
    assert "stored" in "".join(frames)

    again = srv.restart()
    try:
        with httpx.Client(base_url=again.http_url, timeout=30) as c:
            alpha = {"X-Memory-Space": "alpha"}
            assert c.get(f"{API}/memories/keep", headers=alpha).status_code == 200
            assert c.get(f"{API}/memories/gone", headers=alpha).status_code == 404, "a delete is durable"
            assert c.get(f"{API}/memories/hushed", headers=alpha).json()["suppressed"] is True
            for space, ids in acked.items():
                present: set[str] = set()
                cursor: Any = None
                while True:
                    params: dict[str, Any] = {"limit": 1000}
                    if cursor:
                        params["cursor"] = cursor
                    page = c.get(f"{API}/memories", headers={"X-Memory-Space": space}, params=params).json()
                    present |= {m["id"] for m in page["memories"]}
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                missing = ids - present
                assert not missing, (
                    f"{len(missing)} acknowledged writes lost in {space}: {sorted(missing)[:5]}"
                )
                assert len(ids) > 0
    finally:
        again.stop()
