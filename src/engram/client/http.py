"""HTTP clients for Engram: ``EngramClient`` (sync) and ``AsyncEngramClient`` (asyncio).

    from engram.client import EngramClient

    with EngramClient("http://127.0.0.1:7432", space="agent-7") as mem:
        receipt = mem.remember("the espresso machine is on the third floor", tags=["office"])
        result = mem.recall("espresso")            # GET; recall(embedding=[...]) POSTs
        for item in result.results:                # best first; result.memories buckets them
            print(item.memory.content, item.confidence.category)

The space is chosen once, at construction (``space=``), and sent as the
``X-Memory-Space`` header on every data-plane call; ``client.with_space(id)``
gives a client for another space over the same connection pool. Space
administration (``create_space`` ...) and operations (``health``, ``metrics``)
send no header. Results are the engine's pydantic models; server errors are
raised as the engine's own exceptions (``MemorySpaceNotFound``,
``MemoryNotFound``, ``DimensionMismatch`` ...), and a server that cannot be
reached raises :class:`EngramConnectionError`.

Both classes are written out in full (rather than generated at runtime) so
that editors and type checkers see every signature; ``AsyncEngramClient``
lives in ``_http_async.py`` and mirrors this one method for method: a change
to a signature here is made there too (the integration tests call both).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

import httpx
from pydantic import BaseModel

from ..core.models import (
    Association,
    BatchReceipt,
    Belief,
    BeliefPage,
    Completion,
    ConsolidationReport,
    DeleteReceipt,
    EmbedderChoice,
    ForgetReceipt,
    Memory,
    MemoryPage,
    RecallResult,
    Recognition,
    ReembedStatus,
    Reminiscence,
    SpaceDeletion,
    SpaceDescriptor,
    SpacePage,
    SpaceStats,
    StoreReceipt,
    UpdateReceipt,
)
from ..errors import EngramConnectionError
from ..spaces.backup import RestoreReceipt
from ..tls import client_ssl_context
from ._http_async import AsyncEngramClient
from ._http_common import (
    API,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    STREAMS,
    CreatedSpace,
    Query,
    ServerEvent,
    SSEParser,
    auth_headers,
    batch_items,
    body,
    error_from_response,
    filter_json,
    params,
    segment,
    space_headers,
    stream_params,
    translate_transport_error,
)
from ._http_common import Base as _Base
from ._http_common import check as _check
from ._http_common import embedder as _embedder
from ._http_common import filter_body as _filter
from ._http_common import mapping as _map
from ._http_common import stream_path as _stream_path
from ._http_common import strings as _strs
from ._http_common import vector as _vector

__all__ = [
    "STREAMS",
    "AsyncEngramClient",
    "CreatedSpace",
    "EngramClient",
    "EngramConnectionError",
    "ServerEvent",
]

M = TypeVar("M", bound=BaseModel)


class EngramClient(_Base):
    """Synchronous client over ``httpx.Client``; use as a context manager or call ``close()``."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, space: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None, headers: Mapping[str, str] | None = None,
        api_key: str | None = None, ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``ca_file``: a PEM file of the CA that signed an https server's certificate (else the
        system's trust store)."""
        super().__init__(base_url, space)
        self._owns = http_client is None
        verify: ssl.SSLContext | bool = client_ssl_context(ca_file) if ca_file else True
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=timeout,
                                                 headers=auth_headers(headers, api_key), verify=verify)

    def with_space(self, space: str) -> EngramClient:
        """A client for another space sharing this one's connections (close the original only)."""
        return EngramClient(self.base_url, space=space, http_client=self._http)

    def close(self) -> None:
        if self._owns:
            self._http.close()

    def __enter__(self) -> EngramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, scoped: bool = True, json: Any = None,
                 params: Query | None = None) -> httpx.Response:
        headers = space_headers(self.space) if scoped else {}
        try:
            resp = self._http.request(method, self.base_url + path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, self.base_url) from exc
        return _check(resp)

    def _call(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate(self._request(method, path, **kw).json())

    def _json(self, method: str, path: str) -> dict[str, Any]:
        data = self._request(method, path, scoped=False).json()
        return data if isinstance(data, dict) else {"value": data}

    def iter_spaces(self, *, page_size: int = 100) -> Iterator[SpaceDescriptor]:
        """Every space, following cursors."""
        cursor: str | None = None
        while True:
            page = self.list_spaces(cursor=cursor, limit=page_size)
            yield from page.spaces
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def stream(
        self, kind: str = "activities", *, types: Iterable[str] | None = None,
        min_importance: float | None = None, min_confidence: float | None = None,
        last_event_id: str | None = None, since_lsn: int | None = None,
    ) -> Iterator[ServerEvent]:
        """Server-Sent Events of this client's space (``kind``: activities, memories, consolidation).

        A generator: it holds the connection open until you stop iterating (``break``, or
        ``close()`` on the generator). Heartbeat comments are skipped; a ``lagged`` event
        says how many events this subscriber missed.

        Resume: pass the ``id`` of the last event you processed as ``last_event_id`` (only
        logged events carry one; keep the last non-None id), or ``since_lsn`` for every event
        after that LSN. The logged events after it are replayed, then live ones follow with no
        gap or duplicate; a ``reset`` event says the point was older than the server's log.
        """
        query = stream_params(types, {"min_importance": min_importance, "min_confidence": min_confidence,
                                      "since_lsn": since_lsn})
        headers = {**space_headers(self.space), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", self.base_url + _stream_path(kind), params=query, headers=headers,
                                   timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp)
                parser = SSEParser()
                for line in resp.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, self.base_url) from exc

    # -- spaces (administration: no space header) ---------------------------------------------
    def create_space(
        self, space_id: str, *, dimension: int | None = None,
        embedder: str | Mapping[str, Any] | EmbedderChoice | None = None, model: str | None = None,
        default_ttl_seconds: float | None = None,
    ) -> CreatedSpace:
        """Create a space (idempotent: an existing one comes back with ``created=False``).

        ``embedder``: a provider (``"local"``, ``"openai"``, ``"hash"``, ``"none"``) with an optional
        ``model=``, or ``{"provider", "model"}``; omitted: the server's default embedder.
        """
        payload = body(id=space_id, dimension=dimension, embedder=_embedder(embedder, model),
                       default_ttl_seconds=default_ttl_seconds)
        resp = self._request("POST", f"{API}/spaces", json=payload,
                             scoped=False)
        return CreatedSpace.model_validate({**resp.json(), "created": resp.status_code == 201})

    def list_spaces(self, *, cursor: str | None = None, limit: int | None = None) -> SpacePage:
        """One page of spaces, sorted by id; pass ``next_cursor`` back for the next."""
        return self._call(SpacePage, "GET", f"{API}/spaces", params=params(cursor=cursor, limit=limit),
                          scoped=False)

    def get_space(self, space_id: str | None = None) -> SpaceDescriptor:
        """Descriptor and statistics of ``space_id`` (default: this client's space)."""
        sid = self._space_or(space_id)
        return self._call(SpaceDescriptor, "GET", f"{API}/spaces/{segment(sid)}", scoped=False)

    def reembed(self, space_id: str | None = None, *, provider: str | None = None,
                model: str | None = None) -> ReembedStatus:
        """Start (or resume) re-embedding ``space_id`` (default: this client's space) with ``provider``
        and ``model`` (omitted: the server's default embedder); returns its progress at once. The space
        switches to the new embedder when every memory has its new vector: poll :meth:`reembed_status`
        until ``state == "idle"``."""
        sid = self._space_or(space_id)
        return self._call(ReembedStatus, "POST", f"{API}/spaces/{segment(sid)}/reembed",
                          json=_embedder(provider, model), scoped=False)

    def reembed_status(self, space_id: str | None = None) -> ReembedStatus:
        """Progress of re-embedding ``space_id`` (default: this client's space); ``idle`` when none runs."""
        sid = self._space_or(space_id)
        return self._call(ReembedStatus, "GET", f"{API}/spaces/{segment(sid)}/reembed", scoped=False)

    def delete_space(self, space_id: str) -> SpaceDeletion:
        """Erase a space and everything in it; returns what was removed."""
        return self._call(SpaceDeletion, "DELETE", f"{API}/spaces/{segment(space_id)}", scoped=False)

    # -- API keys (admin key needed; SPEC §10) ---------------------------------------------
    def create_key(self, role: str, *, spaces: Sequence[str] | None = None, name: str = "",
                   expires_in_seconds: float | None = None) -> dict[str, Any]:
        """A new API key: ``{key_id, key (the token, shown only here), name, role, spaces, ...}``."""
        body = {"name": name, "role": role, "spaces": list(spaces) if spaces is not None else None,
                "expires_in_seconds": expires_in_seconds}
        data: dict[str, Any] = self._request("POST", f"{API}/keys", scoped=False, json=body).json()
        return data

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's id, name, role, spaces and dates (never tokens)."""
        keys: list[dict[str, Any]] = self._json("GET", f"{API}/keys")["keys"]
        return keys

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key at once; returns its record."""
        return self._json("DELETE", f"{API}/keys/{segment(key_id)}")

    def backup(self, space_id: str, dest: BinaryIO, *,
               progress: Callable[[int, int | None], None] | None = None) -> int:
        """Write a backup of ``space_id`` (docs/backup.md) into the open binary file ``dest``; returns bytes.

        ``progress(done, total)`` is called as bytes arrive (``total`` from Content-Length).
        The bytes are not checked here: :func:`engram.storage.backup.read_manifest` and
        ``unpack`` do that (``engram space backup`` checks before renaming the file into place).
        """
        path = f"{API}/spaces/{segment(space_id)}/backup"
        timeout = httpx.Timeout(self._http.timeout.connect, read=self._http.timeout.read)
        done = 0
        try:
            with self._http.stream("GET", self.base_url + path, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(resp)
                total = int(resp.headers["content-length"]) if "content-length" in resp.headers else None
                for chunk in resp.iter_bytes(1 << 18):
                    dest.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, self.base_url) from exc
        return done

    def restore(self, source: BinaryIO, space_id: str, *, replace: bool = False, size: int | None = None,
                progress: Callable[[int, int | None], None] | None = None) -> RestoreReceipt:
        """Restore the backup read from ``source`` (an open binary file) as space ``space_id``.

        Without ``replace`` the space must not exist (``MemorySpaceExists``). ``progress(sent, size)``
        is called as the upload goes.
        """
        def chunks() -> Iterator[bytes]:
            sent = 0
            while chunk := source.read(1 << 20):
                sent += len(chunk)
                if progress is not None:
                    progress(sent, size)
                yield chunk

        headers = {"content-type": "application/x-tar"}
        if size is not None:
            headers["content-length"] = str(size)
        path = f"{API}/spaces/{segment(space_id)}/restore"
        try:
            resp = self._http.post(self.base_url + path, content=chunks(), headers=headers,
                                   params={"replace": "true"} if replace else None)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc, self.base_url) from exc
        return RestoreReceipt.model_validate(_check(resp).json())

    # -- memories ---------------------------------------------------------------------------------
    def remember(
        self, content: str = "", *, id: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        decay_rate: float | None = None, auto_link: bool | None = None,
        ttl_seconds: float | None = None, expires_at: datetime | str | float | None = None,
    ) -> StoreReceipt:
        """Store a memory; returns once it is durable."""
        payload = body(content=content, id=id, embedding=_vector(embedding), confidence=confidence,
                       tags=_strs(tags), memory_type=memory_type, metadata=_map(metadata),
                       decay_rate=decay_rate, auto_link=auto_link, ttl_seconds=ttl_seconds,
                       expires_at=expires_at)
        return self._call(StoreReceipt, "POST", f"{API}/memories/remember", json=payload)

    def remember_batch(self, memories: Iterable[Mapping[str, Any] | BaseModel]) -> BatchReceipt:
        """Store 1 to 1,000 memories in one durable commit (``POST /api/v1/memories/batch``).

        Each item is a dict (or ``MemoryInput``) of ``remember``'s fields. An invalid item fails
        alone: ``result.results[i].error`` says why, the others are stored. ``result.stored``
        counts the stored ones.
        """
        payload = {"memories": batch_items(memories)}
        return self._call(BatchReceipt, "POST", f"{API}/memories/batch", json=payload)

    def update_memory(
        self, memory_id: str, content: str = "", *, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        decay_rate: float | None = None,
    ) -> UpdateReceipt:
        """Create or replace a memory (``PUT``): fields not given take their defaults.

        ``result.created`` says whether it was created. Associations are kept.
        """
        payload = body(content=content, embedding=_vector(embedding), confidence=confidence,
                       tags=_strs(tags), memory_type=memory_type, decay_rate=decay_rate,
                       metadata=None if metadata is None else dict(metadata))
        return self._call(UpdateReceipt, "PUT", f"{API}/memories/{segment(memory_id)}", json=payload)

    def patch_memory(
        self, memory_id: str, *, content: str | None = None, embedding: Sequence[float] | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        memory_type: str | None = None, metadata: Mapping[str, Any] | None = None,
        decay_rate: float | None = None,
    ) -> UpdateReceipt:
        """Change only the given fields of an existing memory (``PATCH``); ``MemoryNotFound`` if absent."""
        payload = body(content=content, embedding=_vector(embedding), confidence=confidence,
                       tags=_strs(tags), memory_type=memory_type, decay_rate=decay_rate,
                       metadata=None if metadata is None else dict(metadata))
        return self._call(UpdateReceipt, "PATCH", f"{API}/memories/{segment(memory_id)}", json=payload)

    def experience(
        self, when: datetime | str | float, what: str = "", *, content: str | None = None,
        id: str | None = None, embedding: Sequence[float] | None = None,
        where_location: str | None = None, who: Sequence[str] | None = None, why: str | None = None,
        how: str | None = None, emotional_valence: float | None = None,
        importance: float | None = None,
        confidence: float | None = None, tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None, decay_rate: float | None = None,
        auto_link: bool | None = None, ttl_seconds: float | None = None,
        expires_at: datetime | str | float | None = None,
    ) -> StoreReceipt:
        """Store an episode (a memory with when/what/where/who/why/how)."""
        payload = body(when=when, what=what, content=content, id=id, embedding=_vector(embedding),
                       where_location=where_location, who=_strs(who), why=why, how=how,
                       emotional_valence=emotional_valence, importance=importance, confidence=confidence,
                       tags=_strs(tags), metadata=_map(metadata), decay_rate=decay_rate, auto_link=auto_link,
                       ttl_seconds=ttl_seconds, expires_at=expires_at)
        return self._call(StoreReceipt, "POST", f"{API}/episodes/remember", json=payload)

    def store(self, item: Mapping[str, Any]) -> StoreReceipt:
        """Store a ready-made memory or episode body (an episode if it has ``when``)."""
        route = "episodes" if item.get("when") is not None else "memories"
        return self._call(StoreReceipt, "POST", f"{API}/{route}/remember", json=dict(item))

    def recall(
        self, query: str | None = None, *, embedding: Sequence[float] | None = None,
        threshold: float | None = None, max_results: int | None = None, mode: str | None = None,
        tags: Sequence[str] | None = None, memory_type: str | None = None,
        time_start: datetime | str | None = None, time_end: datetime | str | None = None,
        location: str | None = None, participants: Sequence[str] | None = None,
        trace_activation: bool | None = None, max_hops: int | None = None, rank: str | None = None,
        wait_for_embeddings: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> RecallResult:
        """Recall by cue: GET with query parameters, or POST when an embedding or a filter is given.

        ``rank``: ``"cognitive"`` (default, fused order) or ``"similarity"`` (pure cosine order);
        ``wait_for_embeddings=True`` waits until earlier writes have their vectors; ``filter``: a
        metadata filter (docs/rest.md "Metadata filters"), applied inside the search.
        """
        cue = dict(query=query, threshold=threshold, max_results=max_results, mode=mode, tags=_strs(tags),
                   memory_type=memory_type, time_start=time_start, time_end=time_end, location=location,
                   participants=_strs(participants), trace_activation=trace_activation, max_hops=max_hops,
                   rank=rank, wait_for_embeddings=wait_for_embeddings)
        if embedding is not None or filter is not None:
            payload = body(embedding=_vector(embedding), filter=_filter(filter), **cue)
            return self._call(RecallResult, "POST", f"{API}/memories/recall", json=payload)
        return self._call(RecallResult, "GET", f"{API}/memories/recall", params=params(**cue))

    def get(self, memory_id: str, *, include_embedding: bool | None = None) -> Memory:
        """One memory by id (``MemoryNotFound`` if this space has no such memory)."""
        return self._call(Memory, "GET", f"{API}/memories/{segment(memory_id)}",
                          params=params(include_embedding=include_embedding))

    def list_memories(
        self, *, cursor: str | None = None, limit: int | None = None, memory_type: str | None = None,
        include_suppressed: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> MemoryPage:
        """One page of memories in storage order; pass ``next_cursor`` back for the next.

        ``filter``: only memories whose metadata matches (docs/rest.md "Metadata filters")."""
        query = params(cursor=cursor, limit=limit, memory_type=memory_type,
                       include_suppressed=include_suppressed, filter=filter_json(filter))
        return self._call(MemoryPage, "GET", f"{API}/memories", params=query)

    def iter_memories(
        self, *, page_size: int = 200, memory_type: str | None = None,
        include_suppressed: bool | None = None, filter: Mapping[str, Any] | None = None,
    ) -> Iterator[Memory]:
        """Every memory of the space, following cursors page by page."""
        cursor: str | None = None
        while True:
            page = self.list_memories(cursor=cursor, limit=page_size, memory_type=memory_type,
                                      include_suppressed=include_suppressed, filter=filter)
            yield from page.memories
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def forget(self, memory_id: str, *, mode: str = "suppress") -> ForgetReceipt:
        """``mode="suppress"`` hides it from recall (reversible); ``"delete"`` erases it. Durable."""
        return self._call(ForgetReceipt, "DELETE", f"{API}/memories/{segment(memory_id)}",
                          params=params(mode=mode))

    def delete_memories(self, filter: Mapping[str, Any], *, mode: str = "suppress") -> DeleteReceipt:
        """Forget every memory whose metadata matches ``filter`` (not empty), in one durable write."""
        return self._call(DeleteReceipt, "POST", f"{API}/memories/delete",
                          json=body(filter=_filter(filter), mode=mode))

    # -- cognition --------------------------------------------------------------------------------
    def recognize(
        self, content: str | None = None, *, embedding: Sequence[float] | None = None,
        threshold: float | None = None, max_matches: int | None = None,
    ) -> Recognition:
        """Is this content/embedding already known (familiarity with confidence)?"""
        payload = body(content=content, embedding=_vector(embedding), threshold=threshold,
                       max_matches=max_matches)
        return self._call(Recognition, "POST", f"{API}/memories/recognize", json=payload)

    def associate(
        self, source_id: str, target_id: str, *, strength: float | None = None,
        bidirectional: bool | None = None,
    ) -> Association:
        """Create or strengthen an edge between two memories of this space."""
        payload = body(source_id=source_id, target_id=target_id, strength=strength,
                       bidirectional=bidirectional)
        return self._call(Association, "POST", f"{API}/memories/associate", json=payload)

    def reminisce(
        self, topic: str | None = None, *, embedding: Sequence[float] | None = None,
        time_start: datetime | str | None = None, time_end: datetime | str | None = None,
        limit: int | None = None,
    ) -> Reminiscence:
        """Episodes about a topic (or near an embedding: POST) and/or in a time window, in time order."""
        if embedding is not None:
            payload = body(topic=topic, embedding=_vector(embedding), time_start=time_start,
                           time_end=time_end,
                           limit=limit)
            return self._call(Reminiscence, "POST", f"{API}/episodes/reminisce", json=payload)
        query = params(topic=topic, time_start=time_start, time_end=time_end, limit=limit)
        return self._call(Reminiscence, "GET", f"{API}/episodes/reminisce", params=query)

    def consolidate(self, *, min_cluster: int | None = None,
                    similarity: float | None = None) -> ConsolidationReport:
        """Run consolidation now: cluster episodes into beliefs."""
        payload = body(min_cluster=min_cluster, similarity=similarity)
        return self._call(ConsolidationReport, "POST", f"{API}/consolidate", json=payload)

    def beliefs(self, *, cursor: str | None = None, limit: int | None = None) -> BeliefPage:
        """Beliefs produced by consolidation, with citations to their source episodes."""
        return self._call(BeliefPage, "GET", f"{API}/consolidations", params=params(cursor=cursor,
                                                                                    limit=limit))

    def belief(self, belief_id: str) -> Belief:
        """One belief by id (``BeliefNotFound`` otherwise)."""
        return self._call(Belief, "GET", f"{API}/consolidations/{segment(belief_id)}")

    def complete(
        self, *, what: str | None = None, when: datetime | str | None = None,
        where_location: str | None = None, who: Sequence[str] | None = None, why: str | None = None,
        how: str | None = None, embedding: Sequence[float] | None = None,
        max_hypotheses: int | None = None, min_confidence: float | None = None,
    ) -> Completion:
        """Pattern completion from partial episode fields, with per-field source attribution."""
        payload = body(what=what, when=when, where_location=where_location, who=_strs(who), why=why, how=how,
                       embedding=_vector(embedding), max_hypotheses=max_hypotheses,
                       min_confidence=min_confidence)
        return self._call(Completion, "POST", f"{API}/complete", json=payload)

    def introspect(self) -> SpaceStats:
        """Statistics of this client's space (counts by type and state, associations, beliefs, index)."""
        return self._call(SpaceStats, "GET", f"{API}/system/introspect")

    # -- operations -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health``: overall status."""
        return self._json("GET", "/health")

    def alive(self) -> dict[str, Any]:
        """``GET /health/alive``: liveness only."""
        return self._json("GET", "/health/alive")

    def system_health(self) -> dict[str, Any]:
        """``GET /api/v1/system/health``: per-space status (memories, last LSN, healthy and why not)."""
        return self._json("GET", f"{API}/system/health")

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text format."""
        return self._request("GET", "/metrics", scoped=False).text

    # keep the short names the SPEC uses
    list = list_memories

