"""Small REST and gRPC clients bound to one memory space, for tests and scripts.

    rest = RestSpaceClient(srv.http_url, "alpha")
    rest.remember(content="x", id="m1")          # -> response JSON (dict)
    rest.get("m1")                               # raises ApiError(status=404, code=...) when absent

    grpc_c = GrpcSpaceClient(srv.grpc_target, "alpha")
    grpc_c.remember(content="x", id="m1")        # -> response as a dict (proto field names)
    grpc_c.get_status(lambda: grpc_c.forget("nope"))  # -> "NOT_FOUND"

They are deliberately thin: every call names its space exactly once (the
``X-Memory-Space`` header / the ``memory_space_id`` field), sends exactly
what the SPEC says, and hands back the decoded response untouched so tests
assert on the wire format rather than on a client's interpretation of it.
The product clients (``engram.client.*``) are tested by their own tests.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from .sse_raw import FrameParser


class ApiError(Exception):
    """A non-2xx REST answer: status, error code from the envelope, and the body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.code = str(err.get("code", "")) if isinstance(err, dict) else ""
        super().__init__(f"HTTP {status} {self.code}: {str(body)[:300]}")


class RestSpaceClient:
    """Synchronous REST client for one space (one ``httpx.Client``; use one per thread)."""

    def __init__(self, base_url: str, space: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.space = space
        headers = {"X-Memory-Space": space} if space else {}
        # A plain-http server needs no TLS context, and httpx builds one for every client anyway,
        # loading the CA bundle when verifying: ~20 ms of CPU per client, against ~0.2 ms with
        # verify=False (the isolation matrix and the crash cycles make over a hundred clients).
        verify = self.base_url.startswith("https:")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, verify=verify)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RestSpaceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw ----------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 300:
            raise ApiError(resp.status_code, body)
        return body

    def call_obj(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """``call`` for endpoints that answer a JSON object."""
        body: dict[str, Any] = self.call(method, path, **kw)
        return body

    # -- memories -------------------------------------------------------------------
    def remember(self, **memory: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/memories/remember", json=memory)

    def experience(self, **episode: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/episodes/remember", json=episode)

    def recall(self, **cue: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/memories/recall", json=cue)

    def get(self, memory_id: str) -> dict[str, Any]:
        return self.call_obj("GET", f"/api/v1/memories/{memory_id}")

    def list(self, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self.call_obj("GET", "/api/v1/memories", params=params)

    def list_all(self, limit: int = 500) -> builtins.list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.list(cursor, limit)
            out.extend(page["memories"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def forget(self, memory_id: str, mode: str = "delete") -> dict[str, Any]:
        return self.call_obj("DELETE", f"/api/v1/memories/{memory_id}", params={"mode": mode})

    # -- cognition ----------------------------------------------------------------------
    def recognize(self, **body: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/memories/recognize", json=body)

    def associate(self, source_id: str, target_id: str, strength: float = 0.9) -> dict[str, Any]:
        return self.call_obj(
            "POST",
            "/api/v1/memories/associate",
            json={"source_id": source_id, "target_id": target_id, "strength": strength},
        )

    def reminisce(self, **params: Any) -> dict[str, Any]:
        return self.call_obj("GET", "/api/v1/episodes/reminisce", params=params)

    def consolidate(self, **body: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/consolidate", json=body)

    def beliefs(self) -> dict[str, Any]:
        return self.call_obj("GET", "/api/v1/consolidations")

    def belief(self, belief_id: str) -> dict[str, Any]:
        return self.call_obj("GET", f"/api/v1/consolidations/{belief_id}")

    def complete(self, **body: Any) -> dict[str, Any]:
        return self.call_obj("POST", "/api/v1/complete", json=body)

    # -- spaces, health, metrics ------------------------------------------------------------
    def describe(self, space: str | None = None) -> dict[str, Any]:
        return self.call_obj("GET", f"/api/v1/spaces/{space or self.space}")

    def system_health(self) -> dict[str, Any]:
        return self.call_obj("GET", "/api/v1/system/health")

    def metrics(self) -> str:
        resp = self.request("GET", "/metrics")
        if resp.status_code != 200:
            raise ApiError(resp.status_code, resp.text)
        return resp.text

    def sse(
        self, path: str = "/api/v1/stream/memories", on_open: Callable[[], None] | None = None, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Yield SSE events as ``{"event": name, "data": decoded JSON or text, "id": ...}``.

        ``on_open`` is called once the response headers are in: the server subscribes before it
        sends them, so every event published after that call reaches this stream.
        """
        with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=60.0)) as resp:
            if resp.status_code != 200:
                resp.read()
                raise ApiError(resp.status_code, resp.json() if resp.content else {})
            if on_open is not None:
                on_open()
            parser = FrameParser()
            for line in resp.iter_lines():
                frame = parser.feed(line)
                if frame is not None:
                    frame.setdefault("data", "")
                    yield frame


# ------------------------------------------------------------------------------------ gRPC

_ENUMS = {
    "memory_type": "MEMORY_TYPE_",
    "mode": "RECALL_MODE_",
}


def _proto_dict(msg: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(msg, preserving_proto_field_name=True)


class GrpcSpaceClient:
    """Synchronous gRPC client for one space; responses come back as dicts (proto field names)."""

    def __init__(self, target: str, space: str | None, *, timeout: float = 30.0) -> None:
        import grpc

        from ..api.grpc.gen import memory_pb2, service_pb2, service_pb2_grpc

        self.pb = service_pb2
        self.mpb = memory_pb2
        self.space = space or ""
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target)
        self.stub = service_pb2_grpc.EngramServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcSpaceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def status_of(fn: Callable[[], Any]) -> str:
        """Run ``fn`` and return the gRPC status name it failed with ("OK" if it did not)."""
        import grpc

        try:
            fn()
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"

    def _enum(self, field: str, value: str | None) -> int:
        if not value:
            return 0
        return int(
            self.mpb.DESCRIPTOR.enum_types_by_name[{"memory_type": "MemoryType", "mode": "RecallMode"}[field]]
            .values_by_name[_ENUMS[field] + value.upper()]
            .number
        )

    def _memory_input(self, cls: Any, fields: dict[str, Any]) -> Any:
        from google.protobuf.timestamp_pb2 import Timestamp

        fields = dict(fields)
        if "memory_type" in fields:
            fields["memory_type"] = self._enum("memory_type", fields["memory_type"])
        if "when" in fields and not isinstance(fields["when"], Timestamp):
            ts = Timestamp()
            ts.FromSeconds(int(fields["when"])) if isinstance(
                fields["when"], (int, float)
            ) else ts.FromJsonString(str(fields["when"]))
            fields["when"] = ts
        return cls(**fields)

    def remember(self, **memory: Any) -> dict[str, Any]:
        req = self.pb.RememberRequest(
            memory=self._memory_input(self.mpb.MemoryInput, memory), memory_space_id=self.space
        )
        return _proto_dict(self.stub.Remember(req, timeout=self.timeout))

    def experience(self, **episode: Any) -> dict[str, Any]:
        req = self.pb.ExperienceRequest(
            episode=self._memory_input(self.mpb.EpisodeInput, episode), memory_space_id=self.space
        )
        return _proto_dict(self.stub.Experience(req, timeout=self.timeout))

    def recall(self, **cue: Any) -> dict[str, Any]:
        cue = dict(cue)
        if "mode" in cue:
            cue["mode"] = self._enum("mode", cue["mode"])
        if "memory_type" in cue:
            cue["memory_type"] = self._enum("memory_type", cue["memory_type"])
        req = self.pb.RecallRequest(cue=self.mpb.Cue(**cue), memory_space_id=self.space)
        return _proto_dict(self.stub.Recall(req, timeout=self.timeout))

    def forget(self, memory_id: str, mode: str = "delete") -> dict[str, Any]:
        enum = self.mpb.FORGET_MODE_DELETE if mode == "delete" else self.mpb.FORGET_MODE_SUPPRESS
        req = self.pb.ForgetRequest(memory_id=memory_id, mode=enum, memory_space_id=self.space)
        return _proto_dict(self.stub.Forget(req, timeout=self.timeout))

    def get(self, memory_id: str) -> dict[str, Any]:
        req = self.pb.GetMemoryRequest(memory_id=memory_id, memory_space_id=self.space)
        return _proto_dict(self.stub.GetMemory(req, timeout=self.timeout))

    def list(self, page_token: str = "", page_size: int = 500) -> dict[str, Any]:
        req = self.pb.ListMemoriesRequest(
            page_size=page_size, page_token=page_token, memory_space_id=self.space
        )
        return _proto_dict(self.stub.ListMemories(req, timeout=self.timeout))

    def list_all(self) -> builtins.list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.list(token)
            out.extend(page.get("memories", []))
            token = page.get("next_page_token", "")
            if not token:
                return out

    def recognize(self, **body: Any) -> dict[str, Any]:
        req = self.pb.RecognizeRequest(memory_space_id=self.space, **body)
        return _proto_dict(self.stub.Recognize(req, timeout=self.timeout))

    def associate(self, source_id: str, target_id: str, strength: float = 0.9) -> dict[str, Any]:
        req = self.pb.AssociateRequest(
            source_id=source_id, target_id=target_id, strength=strength, memory_space_id=self.space
        )
        return _proto_dict(self.stub.Associate(req, timeout=self.timeout))

    def reminisce(self, **body: Any) -> dict[str, Any]:
        req = self.pb.ReminisceRequest(memory_space_id=self.space, **body)
        return _proto_dict(self.stub.Reminisce(req, timeout=self.timeout))

    def consolidate(self, **body: Any) -> dict[str, Any]:
        req = self.pb.ConsolidateRequest(memory_space_id=self.space, **body)
        return _proto_dict(self.stub.Consolidate(req, timeout=self.timeout))

    def dream(self, **body: Any) -> builtins.list[dict[str, Any]]:
        req = self.pb.DreamRequest(memory_space_id=self.space, **body)
        return [_proto_dict(r) for r in self.stub.Dream(req, timeout=self.timeout)]

    def complete(self, **body: Any) -> dict[str, Any]:
        req = self.pb.CompleteRequest(memory_space_id=self.space, **body)
        return _proto_dict(self.stub.Complete(req, timeout=self.timeout))

    def introspect(self) -> dict[str, Any]:
        req = self.pb.IntrospectRequest(memory_space_id=self.space)
        return _proto_dict(self.stub.Introspect(req, timeout=self.timeout))

    def get_space(self) -> dict[str, Any]:
        return _proto_dict(
            self.stub.GetSpace(self.pb.GetSpaceRequest(memory_space_id=self.space), timeout=self.timeout)
        )

    def stream(self, event_types: tuple[str, ...] = (), timeout: float | None = None) -> Any:
        """The server stream of this space's events (a call object: iterate it, ``.cancel()`` it)."""
        types: builtins.list[Any] = [
            int(
                self.mpb.DESCRIPTOR.enum_types_by_name["EventType"]
                .values_by_name["EVENT_TYPE_" + t.upper()]
                .number
            )
            for t in event_types
        ]
        req = self.pb.StreamRequest(event_types=types, memory_space_id=self.space)
        return self.stub.Stream(req, timeout=timeout)

    def _cue(self, cue: dict[str, Any]) -> Any:
        cue = dict(cue)
        if "mode" in cue:
            cue["mode"] = self._enum("mode", cue["mode"])
        if "memory_type" in cue:
            cue["memory_type"] = self._enum("memory_type", cue["memory_type"])
        return self.mpb.Cue(**cue)

    def streaming_recall(self, cues: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """One StreamingRecall stream: one request per cue (each naming this space), all answers."""
        reqs = [
            self.pb.StreamingRecallRequest(sequence=i + 1, cue=self._cue(cue), memory_space_id=self.space)
            for i, cue in enumerate(cues)
        ]
        return [_proto_dict(r) for r in self.stub.StreamingRecall(iter(reqs), timeout=self.timeout)]

    def flow(self, timeout: float | None = None) -> Flow:
        """Open a MemoryFlow (bidirectional); see :class:`Flow`."""
        return Flow(self, timeout)


class Flow:
    """One MemoryFlow call: ``send_*`` queue requests (each naming the client's space unless told
    otherwise), ``responses`` is the call's iterator of response messages, ``close()`` half-closes.

        flow = client.flow()
        flow.subscribe(1); flow.remember(2, id="m", content="x"); flow.recall(3, query="x")
        for msg in flow.responses: ...
    """

    def __init__(self, client: GrpcSpaceClient, timeout: float | None) -> None:
        import queue

        self.c = client
        self._requests: queue.Queue[Any] = queue.Queue()
        self.responses = client.stub.MemoryFlow(iter(self._requests.get, None), timeout=timeout)

    def send(self, sequence: int, space: str | None = None, **request: Any) -> None:
        self._requests.put(self.c.pb.MemoryFlowRequest(
            sequence=sequence, memory_space_id=self.c.space if space is None else space, **request
        ))

    def subscribe(self, sequence: int) -> None:
        self.send(sequence, subscribe=self.c.mpb.FlowSubscribe())

    def remember(self, sequence: int, space: str | None = None, **memory: Any) -> None:
        self.send(sequence, space, remember=self.c._memory_input(self.c.mpb.MemoryInput, memory))

    def recall(self, sequence: int, **cue: Any) -> None:
        self.send(sequence, recall=self.c._cue(cue))

    def close(self) -> None:
        """Half-close: the server answers what is open, then ends the call."""
        self._requests.put(None)

    def cancel(self) -> None:
        self.close()
        self.responses.cancel()


def proto_dict(msg: Any) -> dict[str, Any]:
    return _proto_dict(msg)
