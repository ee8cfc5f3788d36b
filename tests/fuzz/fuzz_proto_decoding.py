"""atheris target: protobuf request decoding and conversion, as the gRPC servicer does it.

The first byte picks a request type; the rest is parsed as that message
(random bytes, or mutations of the valid messages in the corpus). A message
that parses is then converted exactly as the servicer converts it
(``engram.api.grpc.convert``) and its space is resolved
(``EngramService.resolve_space`` with the field and a fuzzed metadata value).

Invariant: the only exceptions are ``DecodeError`` (not a message; gRPC
itself rejects it) and ``EngramError`` (a client mistake, mapped to
INVALID_ARGUMENT / NOT_FOUND); anything else would surface as UNKNOWN.

    python tests/fuzz/fuzz_proto_decoding.py tests/fuzz/corpus/proto_decoding -atheris_runs=50000
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _instrument import UNDER_TEST, instrument_only

with instrument_only(*UNDER_TEST["proto_decoding"]):
    from google.protobuf.message import DecodeError

    from engram.api.grpc import convert
    from engram.api.grpc.gen import service_pb2 as spb
    from engram.errors import EngramError
    from engram.spaces import ids  # noqa: F401  (space resolution validates ids with it: instrumented)

import contextlib

from _common import make_service

SERVICE, _LOOP = make_service()


def _streaming_remember(msg: Any) -> Any:
    which = msg.WhichOneof("item")
    if which == "memory":
        return convert.memory_input(msg.memory)
    if which == "episode":
        return convert.episode_input(msg.episode)
    return None


def _flow(msg: Any) -> Any:
    which = msg.WhichOneof("request")
    if which == "remember":
        return convert.memory_input(msg.remember, "remember")
    if which == "experience":
        return convert.episode_input(msg.experience, "experience")
    if which == "recall":
        return convert.cue(msg.recall, "recall")
    if which == "subscribe":
        return convert.event_types(msg.subscribe.event_types)
    return None


#: request type -> the conversion the servicer applies to it
TARGETS: list[tuple[type, Callable[[Any], Any]]] = [
    (spb.RememberRequest, lambda r: convert.memory_input(r.memory)),
    (spb.ExperienceRequest, lambda r: convert.episode_input(r.episode)),
    (spb.RecallRequest, lambda r: convert.cue(r.cue)),
    (spb.ForgetRequest, lambda r: convert.forget_mode(r.mode)),
    (spb.RecognizeRequest, convert.recognize_input),
    (spb.ReminisceRequest, convert.reminisce_query),
    (spb.ConsolidateRequest, convert.consolidate_input),
    (spb.DreamRequest, convert.consolidate_input),
    (spb.CompleteRequest, convert.complete_input),
    (spb.AssociateRequest, convert.associate_input),
    (spb.StreamRequest, lambda r: convert.event_types(r.event_types)),
    (spb.StreamingRememberRequest, _streaming_remember),
    (spb.StreamingRecallRequest, lambda r: convert.cue(r.cue)),
    (spb.MemoryFlowRequest, _flow),
]


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    cls, conv = TARGETS[data[0] % len(TARGETS)]
    msg = cls()
    try:
        msg.ParseFromString(data[1:])
    except DecodeError:
        return
    with contextlib.suppress(EngramError):
        conv(msg)
    meta = data[-8:].decode("latin-1") if data[0] & 0x80 else None
    with contextlib.suppress(EngramError):
        SERVICE.resolve_space(
            [("field", getattr(msg, "memory_space_id", None)), ("metadata", meta)],
            transport="grpc",
            operation=cls.__name__,
        )


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
