"""One error table: every error class carries its HTTP status, gRPC status and CLI exit code."""

from __future__ import annotations

import pytest

from engram import errors
from engram.cli.output import exit_code_for
from engram.errors import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EngramError,
    _all_subclasses,
)


def test_every_class_is_drawn_in_the_tree_and_has_its_exit_code() -> None:
    doc = errors.__doc__ or ""
    for cls in _all_subclasses(EngramError)[1:]:
        if cls.__module__ != "engram.errors":
            continue  # test-local subclasses
        assert f" {cls.__name__} " in doc, f"{cls.__name__} is not drawn in errors.py's tree"
        if issubclass(cls, errors.EngramConnectionError):
            expected = EXIT_UNREACHABLE
        elif issubclass(cls, errors.NotFound):
            expected = EXIT_NOT_FOUND
        elif issubclass(cls, errors.InvalidInput):
            expected = EXIT_USAGE
        else:
            expected = EXIT_ERROR
        assert cls.exit_code == expected, cls


def test_client_side_errors_live_in_the_tree() -> None:
    from engram.api.grpc.errors import NotBuiltYet
    from engram.client.grpc import GrpcTransportError
    from engram.client.http import EngramConnectionError

    assert (NotBuiltYet, EngramConnectionError, GrpcTransportError) == (
        errors.NotBuiltYet, errors.EngramConnectionError, errors.GrpcTransportError)


@pytest.mark.parametrize(("status", "code"), [(401, EXIT_ERROR), (403, EXIT_ERROR), (429, EXIT_ERROR),
                                              (404, EXIT_NOT_FOUND), (422, EXIT_USAGE), (400, EXIT_USAGE)])
def test_a_new_class_gets_its_exit_code_from_its_http_status(status: int, code: int) -> None:
    cls = type("NewError", (EngramError,), {"code": "NEW", "http_status": status})
    assert cls.exit_code == code
    assert exit_code_for(cls("x")) == code


def test_an_explicit_exit_code_wins_and_is_inherited() -> None:
    parent = type("Parent", (EngramError,), {"http_status": 401, "exit_code": 7})
    child = type("Child", (parent,), {"code": "CHILD"})
    assert parent.exit_code == 7 and child.exit_code == 7
    assert exit_code_for(child("x")) == 7
