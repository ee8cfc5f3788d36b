"""Generated gRPC code for engram.v1 - DO NOT EDIT.

Regenerate with ``python scripts/gen_proto.py`` (``--check`` verifies it is current).
"""
