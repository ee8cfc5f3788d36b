"""Health and metrics routes against real servers: liveness, per-space health (an unhealthy space
says why while the others keep serving), Prometheus text with request counters, latency histograms,
memories per space, stream subscribers, and the cap on distinct memory_space label values."""

from __future__ import annotations

import re

import httpx

API = "/api/v1"


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_liveness_and_health(rest_server) -> None:
    with httpx.Client(base_url=rest_server.http_url, timeout=30) as http:
        assert http.get("/health/alive").json() == {"status": "alive"}
        health = http.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["shutting_down"] is False
        assert body["spaces_total"] >= 3 and body["unhealthy_spaces"] == 0
        http.post(f"{API}/memories/remember", headers={"X-Memory-Space": "alpha"}, json={"content": "x"})
        system = http.get(f"{API}/system/health").json()
        alpha = next(s for s in system["spaces"] if s["id"] == "alpha")
        assert alpha["healthy"] is True and alpha["memories"] >= 1 and alpha["last_lsn"] >= 1
        assert alpha["reason"] is None
        one = http.get(f"{API}/system/health", headers={"X-Memory-Space": "beta"}).json()
        assert [s["id"] for s in one["spaces"]] == ["beta"]
        assert http.get(f"{API}/system/health", params={"space": "nope-nope"}).status_code == 404


def test_unhealthy_space_says_why_and_others_serve(module_server_factory) -> None:
    srv = module_server_factory(spaces=["alpha", "broken"], name="unhealthy")
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        for space in ("alpha", "broken"):
            r = http.post(
                f"{API}/memories/remember", headers={"X-Memory-Space": space}, json={"content": "x"}
            )
            assert r.status_code == 201
    srv.stop()
    for path in (srv.data_dir / "broken").glob("space.db*"):
        path.write_bytes(b"this is not a database " * 512)
    again = srv.restart()
    try:
        with httpx.Client(base_url=again.http_url, timeout=30) as http:
            r = http.get(f"{API}/memories", headers={"X-Memory-Space": "broken"})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "MEMORY_SPACE_UNHEALTHY"
            assert http.get(f"{API}/memories", headers={"X-Memory-Space": "alpha"}).status_code == 200
            health = http.get(f"{API}/system/health").json()
            broken = next(s for s in health["spaces"] if s["id"] == "broken")
            assert broken["healthy"] is False and broken["reason"]
            assert health["status"] == "degraded"
            assert http.get("/health").json()["unhealthy_spaces"] == 1
    finally:
        again.stop()


def test_prometheus_text(rest_server) -> None:
    with httpx.Client(base_url=rest_server.http_url, timeout=30) as http:
        for i in range(3):
            http.post(
                f"{API}/memories/remember", headers={"X-Memory-Space": "beta"}, json={"content": f"m{i}"}
            )
        http.get(f"{API}/memories/recall", headers={"X-Memory-Space": "beta"}, params={"query": "m1"})
        http.get("/not/a/route")
        with http.stream("GET", f"{API}/stream/memories", headers={"X-Memory-Space": "beta"}) as stream:
            lines = stream.iter_lines()  # keep the iterator: dropping it closes the response
            assert next(lines).startswith(": subscribed")
            text = http.get("/metrics").text
            assert metric(text, "engram_stream_subscribers", memory_space="beta", transport="rest") == 1
        resp = http.get("/metrics")
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.text
        op = "POST /api/v1/memories/remember"
        assert (
            metric(text, "engram_requests_total", operation=op, memory_space="beta", status="201") or 0
        ) >= 3
        assert (
            metric(text, "engram_request_duration_seconds_count", operation=op, memory_space="beta") or 0
        ) >= 3
        assert (
            metric(
                text, "engram_request_duration_seconds_bucket", operation=op, memory_space="beta", le="+Inf"
            )
            is not None
        )
        assert metric(text, "engram_requests_total", operation="unmatched", status="404") is not None
        assert (metric(text, "engram_memories", memory_space="beta") or 0) >= 3
        assert "# TYPE engram_memory_space_default_fallback_total counter" in text
        assert (metric(text, "engram_spaces_total") or 0) >= 3


def test_memory_space_label_is_capped(module_server_factory) -> None:
    srv = module_server_factory(
        spaces=["s-one", "s-two", "s-three", "s-four"],
        settings={"metrics_space_label_cap": 2},
        name="labelcap",
    )
    with httpx.Client(base_url=srv.http_url, timeout=30) as http:
        for space in ("s-one", "s-two", "s-three", "s-four"):
            r = http.post(
                f"{API}/memories/remember", headers={"X-Memory-Space": space}, json={"content": "x"}
            )
            assert r.status_code == 201
        for i in range(5):  # unknown spaces never take a label value
            http.get(f"{API}/memories", headers={"X-Memory-Space": f"typo-{i}"})
        text = http.get("/metrics").text
    labels = set(re.findall(r'engram_requests_total\{[^}]*memory_space="([^"]+)"', text))
    assert "_other" in labels
    assert not any(label.startswith("typo-") for label in labels)
    assert len(labels - {"_other", "none"}) <= 2
