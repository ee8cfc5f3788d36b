#!/usr/bin/env python3
"""REST under hostile clients: /health latency and server RSS while huge headers, slowloris and a
connection flood hit the same server (the figures of issue 11, re-measured).

    python bench/http_hostile.py [--out bench/results/http_hostile.json]

Phases, each against a fresh ``engram start`` (loopback, default limits unless noted):

* ``huge_headers``  8 clients each sending 64 MB header values, again and again, for ``--seconds``
* ``slowloris``     1,000 connections each holding a half-sent request head (one byte per second)
* ``flood``         under ``ulimit -n 1024``: 1,100 idle connections opened at once

and reports /health P50/P99 from one kept-alive client during the phase (vs. before it), the
server's peak RSS and descriptor count, and how much it logged. Not a test: numbers depend on
the machine; the issue measured /health at 512 ms median and RSS 166 -> 921 MB under the first.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory is sys.path[0], and bench/http.py would shadow the stdlib `http`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from engram.testing import EngramProcess  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def health_latencies(conn: http.client.HTTPConnection, seconds: float, pid: int,
                     peak: dict[str, float]) -> list[float]:
    """/health over one kept-alive connection opened before the attack (an existing client)."""
    out = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/health answered {resp.status}")
        out.append((time.perf_counter() - t0) * 1000)
        peak["rss_mb"] = max(peak.get("rss_mb", 0.0), rss_mb(pid))
        peak["fds"] = max(peak.get("fds", 0), fds(pid))
        time.sleep(0.02)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else 0.0


def huge_header_client(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    chunk = b"a" * 65536
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
            sock.setblocking(False)
            sent = 0
            while sent < 64 * 1024 * 1024 and not stop.is_set():
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    time.sleep(0.002)
                except OSError:
                    break
                try:
                    if sock.recv(64):
                        counts["answered"] = counts.get("answered", 0) + 1
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    break


def slow_heads(port: int, count: int, stop: threading.Event, counts: dict[str, int]) -> None:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    t0 = time.monotonic()
    while not stop.is_set() and socks:
        alive = []
        for sock in socks:
            try:
                sock.send(b"a")
                alive.append(sock)
            except OSError:
                sock.close()
        socks = alive
        counts["open"] = len(socks)
        if not socks:
            counts["all_cut_after_s"] = round(time.monotonic() - t0)
        stop.wait(1.0)
    for sock in socks:
        sock.close()


def run_phase(name: str, settings: dict[str, Any], nofile: int | None, seconds: float,
              attack: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"engram-hostile-{name}-") as tmp:
        srv = EngramProcess.start(Path(tmp), ["alpha"], {"log_level": "info", **settings}, nofile=nofile)
        try:
            peak: dict[str, float] = {}
            conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
            before = health_latencies(conn, 2.0, srv.pid, peak)
            rss_before = rss_mb(srv.pid)
            log_before = srv.log_path.stat().st_size
            stop = threading.Event()
            counts: dict[str, int] = {}
            threads = attack(srv.http_port, stop, counts)
            time.sleep(0.5)
            peak = {}
            during = health_latencies(conn, seconds, srv.pid, peak)
            conn.close()
            stop.set()
            for t in threads:
                t.join()
            return {
                "health_p50_ms_before": pct(before, 0.5), "health_p50_ms_during": pct(during, 0.5),
                "health_p99_ms_during": pct(during, 0.99), "rss_mb_before": round(rss_before, 1),
                "rss_mb_peak_during": round(peak.get("rss_mb", 0.0), 1), "fds_peak": int(peak.get("fds", 0)),
                "log_bytes_during": srv.log_path.stat().st_size - log_before, "attack": counts,
            }
        finally:
            srv.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http_hostile.json")
    args = ap.parse_args()

    def huge(port: int, stop: threading.Event, counts: dict[str, int]) -> list[threading.Thread]:
        ts = [threading.Thread(target=huge_header_client, args=(port, stop, counts)) for _ in range(8)]
        for t in ts:
            t.start()
        return ts

    def slowloris(port: int, stop: threading.Event, counts: dict[str, int]) -> list[threading.Thread]:
        t = threading.Thread(target=slow_heads, args=(port, 1000, stop, counts))
        t.start()
        return [t]

    def flood(port: int, stop: threading.Event, counts: dict[str, int]) -> list[threading.Thread]:
        def hold() -> None:
            socks = []
            for _ in range(1100):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    counts["connect_failed"] = counts.get("connect_failed", 0) + 1
            counts["opened"] = len(socks)
            stop.wait()
            for sock in socks:
                sock.close()

        t = threading.Thread(target=hold)
        t.start()
        return [t]

    results = {
        "huge_headers": run_phase("huge", {}, None, args.seconds, huge),
        "slowloris": run_phase("slowloris", {}, None, max(args.seconds, 15.0), slowloris),
        "flood_ulimit_1024": run_phase("flood", {}, 1024, args.seconds, flood),
    }
    report = {"benchmark": "http_hostile", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "results": results}
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
