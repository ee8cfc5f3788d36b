"""kill -9 of an Engram server on PostgreSQL mid-write loses no acknowledged write (SPEC §13).

Four writers remember through one server; the server is SIGKILLed while they write. A write is
acknowledged only after its transaction committed, so after the kill every acknowledged memory
is in the database with the LSN its receipt gave, and the space's LSNs have no gap: an
interrupted transaction rolled back, giving its LSN back. A restarted server (stateless: nothing
to recover) serves them all and continues the LSN sequence.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from .conftest import PgCluster, fresh_database, start_pg_server
from .test_server import new_space, vec

WRITERS = 4


def test_kill_9_mid_write_keeps_every_acknowledged_write_and_lsns_stay_gapless(
        pg: PgCluster, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "crash")
    srv = start_pg_server(tmp_path / "srv", dsn)
    try:
        sid = new_space(srv)
        acked: dict[str, int] = {}
        lock = threading.Lock()
        go = threading.Event()

        def writer(w: int) -> None:
            with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": sid}, timeout=10) as http:
                go.wait()
                for i in range(100_000):
                    mid = f"w{w}-{i}"
                    try:
                        body = {"id": mid, "content": f"writer {w} item {i}", "embedding": vec(i)}
                        r = http.post("/api/v1/memories/remember", json=body)
                    except httpx.HTTPError:
                        return  # the server died: this write's fate is unknown, so it is not counted
                    if r.status_code != 201:
                        return
                    with lock:
                        acked[mid] = int(r.json()["lsn"])

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
        for t in threads:
            t.start()
        go.set()
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()  # SIGKILL, mid-write: the writers are still sending
        for t in threads:
            t.join(15)
        assert len(acked) >= 200, f"only {len(acked)} writes were acknowledged before the kill"

        # Read as the superuser (RLS does not apply): what the database holds, not what a server says.
        with psycopg.connect(pg.dsn("postgres", conninfo_to_dict(dsn)["dbname"])) as conn:
            rows = dict(conn.execute("SELECT id, lsn FROM engram.memories WHERE space_id = %s",
                                     (sid,)).fetchall())
            last = conn.execute("SELECT last_lsn FROM engram.spaces WHERE space_id = %s", (sid,)).fetchone()
            event_lsns = [r[0] for r in conn.execute(
                "SELECT lsn FROM engram.events WHERE space_id = %s ORDER BY lsn", (sid,))]
        missing = {mid: lsn for mid, lsn in acked.items() if rows.get(mid) != lsn}
        assert not missing, f"acknowledged writes lost or changed: {sorted(missing.items())[:5]}"
        assert last is not None
        assert sorted(rows.values()) == list(range(1, int(last[0]) + 1)), "LSNs have a gap"
        assert event_lsns == list(range(1, int(last[0]) + 1))

        srv = srv.restart()
        with httpx.Client(base_url=srv.http_url, headers={"X-Memory-Space": sid}, timeout=30) as http:
            for mid in list(acked)[:: max(1, len(acked) // 20)]:
                assert http.get(f"/api/v1/memories/{mid}").json()["lsn"] == acked[mid]
            after = http.post("/api/v1/memories/remember",
                              json={"content": "after the crash", "embedding": vec(0)})
            assert after.json()["lsn"] == int(last[0]) + 1
    finally:
        if srv.running:
            srv.stop()
