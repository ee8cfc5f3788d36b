"""SSE subscribers on raw asyncio sockets: hundreds of them from one process, or one that never reads.

    sub = await RawSubscriber.open("127.0.0.1", port, "alpha")    # subscribed once this returns
    assert sub.status == 200
    task = asyncio.ensure_future(sub.consume())                    # reads and parses frames
    ...
    await sub.wait_for(lambda s: "m-1" in s.stored_ids, timeout=10)
    sub.close()

``RawSubscriber.open(..., rcvbuf=4096)`` shrinks the socket's receive buffer before
connecting, so a subscriber that then stops reading (``sub.stall()``) fills its TCP window
after a few kilobytes: the server, not the kernel, has to deal with the backlog.

No HTTP library is involved: the request is written by hand and the chunked body is
decoded here, so thousands of subscribers cost one socket and one small task each, and
the bytes the server sent are what is parsed (heartbeat comments, ``lagged``, ``end``).

:class:`FrameParser` is the test suite's one SSE parser: it turns lines of a
``text/event-stream`` into wire-level frames (dicts), and is used here, by
``engram.testing.clients.RestSpaceClient.sse`` and by ``tests/integration/test_sse.py``.
(The Python client has its own, ``engram.client``'s ``SSEParser``: it returns typed
events, and tests check the wire with this one rather than trust the client.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

_EVENT = re.compile(rb"^event: (\w+)$", re.M)


class FrameParser:
    """Lines of a ``text/event-stream`` in, frames out: ``{"event": ..., "id": ..., "data": ...}``.

    ``data`` (present when the frame had ``data:`` lines) is the joined lines decoded as JSON,
    or the text when it is not JSON. Comment lines (heartbeats, ``: subscribed``) are kept in
    ``comments``, in order.
    """

    def __init__(self) -> None:
        self.comments: list[str] = []
        self._frame: dict[str, Any] = {}
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        """One line, without its newline; returns the frame a blank line completes."""
        if line == "":
            if not self._data and not self._frame:
                return None
            frame = self._frame
            if self._data:
                raw = "\n".join(self._data)
                try:
                    frame["data"] = json.loads(raw)
                except ValueError:
                    frame["data"] = raw
            self._frame, self._data = {}, []
            return frame
        if line.startswith(":"):
            self.comments.append(line)
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        else:
            self._frame[name] = value
        return None


class RawSubscriber:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # the body of a refusal (status != 200)
        self.frames: list[dict[str, Any]] = []  # every event frame: {"event", "id", "data"}
        self.comments = 0
        self.stored_ids: set[str] = set()
        self.counts: dict[str, int] = {}
        self.eof = False  # the server completed the response (or closed the connection)
        self.reset = False  # the connection was reset (aborted) by the server
        self.keep_frames = True
        # light: count frames by event type and spot ``watch_ids`` without decoding JSON (cheap
        # enough for hundreds of subscribers in one process)
        self.light = False
        self.watch_ids: set[str] = set()
        self._pending = b""  # decoded body bytes not yet forming a whole frame
        self._changed = asyncio.Event()

    # -- connect -------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        space: str | None,
        path: str = "/api/v1/stream/activities",
        query: str = "",
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        source: str | None = None,
    ) -> RawSubscriber:
        """Connect, send the request and read the response head (and a refusal's body).

        ``source`` binds the client end to that address first (e.g. ``127.0.0.2``: on Linux every
        127.0.0.0/8 address is local), so one test can be several clients by peer address."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        except BaseException:
            sock.close()
            raise
        sub = cls(reader, writer)
        lines = [f"GET {path}{'?' + query if query else ''} HTTP/1.1", f"Host: {host}:{port}",
                 "Accept: text/event-stream"]
        if space is not None:
            lines.append(f"X-Memory-Space: {space}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await asyncio.wait_for(sub._read_head(), timeout)
        except BaseException:
            sub.close()
            raise
        return sub

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        if self.status != 200:
            length = int(self.headers.get("content-length", "0"))
            self.body = await self.reader.readexactly(length) if length else b""
            return
        # The server writes the "subscribed" comment only once the subscription exists.
        while not self.comments and not self.eof:
            await self._read_chunk()

    def error(self) -> dict[str, Any]:
        """A refusal's decoded envelope ``{"code", "message", ...}``."""
        return dict(json.loads(self.body)["error"])

    # -- read ----------------------------------------------------------------------------------
    async def consume(self) -> None:
        """Read frames until the stream ends; never raises for a closed or reset connection."""
        try:
            while not self.eof:
                await self._read_chunk()
        except ConnectionResetError:
            self.reset = True
            self.eof = True
            self._changed.set()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.eof = True  # closed before the response was complete
            self._changed.set()

    async def _read_chunk(self) -> None:
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await self.reader.readuntil(b"\r\n")
            self.eof = True
            self._changed.set()
            return
        data = await self.reader.readexactly(size + 2)
        self._feed(data[:-2])

    def _feed(self, data: bytes) -> None:
        self._pending += data
        *blocks, self._pending = self._pending.split(b"\n\n")
        if self.light:
            for block in blocks:
                if block.startswith(b":"):
                    self.comments += 1
                    continue
                found = _EVENT.search(block)
                event = found.group(1).decode() if found else "message"
                self.counts[event] = self.counts.get(event, 0) + 1
                for memory_id in self.watch_ids:
                    if f'"memory_id":"{memory_id}"'.encode() in block:
                        self.stored_ids.add(memory_id)
            self._changed.set()
            return
        for block in blocks:
            parser = FrameParser()
            for line in block.decode().split("\n"):
                parser.feed(line)
            self.comments += len(parser.comments)
            frame = parser.feed("")
            if frame is None or "data" not in frame:
                continue
            event = str(frame.get("event", "message"))
            self.counts[event] = self.counts.get(event, 0) + 1
            if event == "stored":
                self.stored_ids.add(str(frame["data"]["data"]["memory_id"]))
            if self.keep_frames:
                self.frames.append(frame)
        self._changed.set()

    async def wait_for(self, pred: Callable[[RawSubscriber], bool], timeout: float) -> bool:
        """Wait (while ``consume`` runs) until ``pred(self)`` holds or the stream ends; the final truth."""
        deadline = time.monotonic() + timeout
        while not pred(self) and not self.eof:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return pred(self)

    def stall(self) -> None:
        """Stop reading from the socket for good: with a small ``rcvbuf`` the TCP window closes
        after a few kilobytes, and what the server sends next waits on the server's side."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    def tcp_state(self) -> int:
        """The socket's TCP state (Linux ``tcpi_state``): 1 established, 7 closed (reset), 8 close-wait."""
        sock = self.writer.get_extra_info("socket")
        return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()
