"""kill -9 under a coalescing StreamingRemember: no acknowledged message is lost.

Streams send memories as fast as the server takes them (so their messages are stored in
batches, one commit per batch), a thread per stream records each acknowledged id, and the
server is SIGKILLed once enough acks arrived, with messages still in flight. After a restart,
every acknowledged id is stored with its content, and nothing is stored that was never sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from engram.api.grpc.gen import memory_pb2 as pb
from engram.api.grpc.gen import service_pb2 as spb
from engram.api.grpc.gen import service_pb2_grpc as spb_grpc
from engram.testing import EngramProcess

SPACE = "crash-stream"
STREAMS = 4
PER_STREAM = 20_000  # far more than are sent before the kill
KILL_AFTER = 1_500  # acknowledged messages, over all streams


def content(mid: str) -> str:
    return f"streamed memory {mid}"


def test_kill_after_acks_loses_no_acknowledged_message(tmp_path: Path) -> None:
    srv = EngramProcess.start(tmp_path, spaces=[SPACE], settings={"embedder": "none"})
    acked: list[str] = []
    sent: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()
    errors: list[BaseException] = []

    def stream(k: int) -> None:
        def requests() -> Iterator[spb.StreamingRememberRequest]:
            for i in range(PER_STREAM):
                mid = f"s{k}-{i}"
                with lock:
                    sent.add(mid)
                yield spb.StreamingRememberRequest(
                    sequence=i, memory=pb.MemoryInput(id=mid, content=content(mid)), memory_space_id=SPACE)

        try:
            with grpc.insecure_channel(srv.grpc_target) as ch:
                for resp in spb_grpc.EngramServiceStub(ch).StreamingRemember(requests(), timeout=120):
                    assert resp.HasField("receipt"), resp
                    with lock:
                        acked.append(resp.receipt.memory_id)
                        if len(acked) >= KILL_AFTER:
                            enough.set()
        except grpc.RpcError as exc:  # the kill: the connection goes away
            if exc.code() != grpc.StatusCode.UNAVAILABLE or not enough.is_set():
                errors.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(k,), daemon=True) for k in range(STREAMS)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(120), "the streams never got enough acknowledgements"
        srv.kill()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with lock:
            acked_now, sent_now = list(acked), set(sent)
        assert len(acked_now) < STREAMS * PER_STREAM, "the kill came after everything was acknowledged"
        srv = srv.restart()
        stored: dict[str, str] = {}
        with grpc.insecure_channel(srv.grpc_target) as ch:
            stub = spb_grpc.EngramServiceStub(ch)
            token = ""
            while True:
                page = stub.ListMemories(spb.ListMemoriesRequest(page_size=1000, page_token=token,
                                                                 memory_space_id=SPACE))
                stored.update((m.id, m.content) for m in page.memories)
                token = page.next_page_token
                if not token:
                    break
        lost = [mid for mid in acked_now if mid not in stored]
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
        assert all(stored[mid] == content(mid) for mid in acked_now)
        assert set(stored) <= sent_now, "stored something never sent"
    finally:
        if srv.running:
            srv.kill()
