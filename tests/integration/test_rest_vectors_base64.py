"""Embeddings as base64 little-endian float32 on REST (docs/rest.md, "Vectors on the wire").

A string in ``embedding`` is the vector's float32 bytes, base64-encoded, on every route
that takes one; it must mean exactly what the JSON array of the same floats means, and
bad strings get the error envelope (400), never a 500 or a stored vector.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from engram.client import EngramClient

API = "/api/v1"
DIM = 8


def b64(values: Any, fmt: str = "<f4") -> str:
    return base64.b64encode(np.asarray(values, dtype=fmt).tobytes()).decode("ascii")


@pytest.fixture(scope="module")
def vec(rest_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server.http_url, headers={"X-Memory-Space": "b64-vectors"},
                      timeout=30) as c:
        resp = c.post(f"{API}/spaces", json={"id": "b64-vectors", "dimension": DIM,
                                             "embedder": {"provider": "none"}})
        assert resp.status_code in (200, 201), resp.text
        yield c


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_base64_remember_stores_the_same_floats_as_a_json_array(vec: httpx.Client) -> None:
    v = unit(1)
    r = vec.post(f"{API}/memories/remember", json={"id": "b64-1", "embedding": b64(v)})
    assert r.status_code == 201, r.text
    got = vec.get(f"{API}/memories/b64-1").json()["embedding"]
    assert np.array_equal(np.asarray(got, dtype=np.float32), v)  # bit for bit, not approximately
    # The same vector as a JSON array, under another id: both are stored identically.
    r = vec.post(f"{API}/memories/remember", json={"id": "json-1", "embedding": v.tolist()})
    assert r.status_code == 201, r.text
    assert vec.get(f"{API}/memories/json-1").json()["embedding"] == got


def test_base64_recall_recognize_and_complete_find_the_vector(vec: httpx.Client) -> None:
    v = unit(2)
    assert vec.post(f"{API}/memories/remember", json={"id": "b64-2", "embedding": v.tolist(),
                                                       "content": "the harbour lantern"}).status_code == 201
    r = vec.post(f"{API}/memories/recall", json={"embedding": b64(v), "max_results": 1, "rank": "similarity"})
    assert r.status_code == 200, r.text
    top = [*r.json()["memories"]["vivid"], *r.json()["memories"]["associated"]][0]
    assert top["memory"]["id"] == "b64-2" and top["similarity"] > 0.999
    r = vec.post(f"{API}/memories/recognize", json={"embedding": b64(v)})
    assert r.status_code == 200, r.text
    assert r.json()["familiarity"] > 0.9
    e = unit(6)
    episode = {"id": "ep-b64", "embedding": e.tolist(), "what": "lantern", "where_location": "harbour",
               "when": "2026-01-02T10:00:00Z"}
    r = vec.post(f"{API}/episodes/remember", json=episode)
    assert r.status_code == 201, r.text
    r = vec.post(f"{API}/complete", json={"embedding": b64(e)})
    assert r.status_code == 200, r.text
    assert "harbour" in r.text


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not base64!!", "base64"),
        (base64.b64encode(b"\x00\x00\x80").decode(), "multiple of 4"),
        (b64([float("nan")] + [0.1] * (DIM - 1)), "finite"),
        (b64([float("inf")] + [0.1] * (DIM - 1)), "finite"),
        (b64([0.0] * DIM), "zeros"),
        ("", "empty"),
    ],
)
def test_bad_base64_embeddings_get_the_envelope(vec: httpx.Client, value: str, says: str) -> None:
    before = [m["id"] for m in vec.get(f"{API}/memories", params={"limit": 1000}).json()["memories"]]
    r = vec.post(f"{API}/memories/remember", json={"id": "bad", "embedding": value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert says in err["message"] and err["suggestion"] and err["example"] is not None
    r = vec.post(f"{API}/memories/recall", json={"embedding": value})
    assert r.status_code == 400, r.text
    after = [m["id"] for m in vec.get(f"{API}/memories", params={"limit": 1000}).json()["memories"]]
    assert after == before  # nothing stored


def test_base64_of_the_wrong_dimension_names_both_sizes(vec: httpx.Client) -> None:
    r = vec.post(f"{API}/memories/remember", json={"embedding": b64(unit(3)[: DIM - 2])})
    assert r.status_code == 400, r.text
    msg = r.json()["error"]["message"]
    assert str(DIM) in msg and str(DIM - 2) in msg


def test_big_endian_bytes_are_a_different_vector(vec: httpx.Client) -> None:
    """The byte order is little-endian: the same floats packed big-endian decode to other values."""
    v = unit(4)
    be = base64.b64encode(struct.pack(f">{DIM}f", *v.tolist())).decode()
    r = vec.post(f"{API}/memories/remember", json={"id": "b64-be", "embedding": be})
    if r.status_code == 201:  # finite by chance: stored, but not as v
        got = np.asarray(vec.get(f"{API}/memories/b64-be").json()["embedding"], dtype=np.float32)
        assert not np.array_equal(got, v)
    else:
        assert r.status_code == 400


def test_the_http_client_sends_base64(rest_server, vec: httpx.Client) -> None:
    seen: list[bytes] = []

    def record(request: httpx.Request) -> None:
        seen.append(request.content)

    http = httpx.Client(base_url=rest_server.http_url, event_hooks={"request": [record]}, timeout=30)
    v = unit(5)
    with EngramClient(rest_server.http_url, space="b64-vectors", http_client=http) as client:
        client.remember(id="client-1", embedding=v.tolist())
        assert np.array_equal(np.asarray(client.get("client-1").embedding, dtype=np.float32), v)
    http.close()
    assert b'"embedding":"' + b64(v).encode() + b'"' in seen[0].replace(b" ", b"")
