"""Metadata scalars as ``google.protobuf.Value``: one conversion for the server and the gRPC client."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2


def scalar_value(value: Any) -> struct_pb2.Value:
    """A typed metadata value (string, number, bool or None) as a ``Value``; ``TypeError`` otherwise."""
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):  # before int: a bool is an int in Python
        out.bool_value = value
    elif isinstance(value, (int, float)):
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    else:
        raise TypeError(f"metadata value {value!r}: must be a string, number, bool or None")
    return out
