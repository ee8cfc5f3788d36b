"""Metadata filters (SPEC §11): parse and check once, then evaluate in SQL or in Python.

Grammar (a filter is a JSON object; its entries are AND-ed)::

    filter    := { entry, ... }                  {} = no filter (matches every memory)
    entry     := "$and": [filter, ...]            every filter matches (1 or more)
               | "$or":  [filter, ...]            at least one matches (1 or more)
               | key: scalar                      shorthand for key: {"$eq": scalar}
               | key: { op: operand, ... }        every operator matches (1 or more)
    op        := $eq $ne $gt $gte $lt $lte $in $nin $exists
    scalar    := string | number | true | false | null

Semantics (exactly what :func:`evaluate` computes and both SQL forms compute):

* Values fall in four *classes*: string, number (integers and decimals alike: 3 == 3.0),
  boolean and null. Values of different classes are never equal and never ordered:
  ``{"n": "3"}`` does not match ``n = 3``, and ``true`` is not the number 1.
* ``$eq v``: the key is present and its value is of v's class and equal to v. ``null``
  matches a key present with the value null, never a missing key (use ``$exists``).
* ``$ne v``: not ``$eq v``, so a missing key and a value of another class match.
* ``$in [v...]``: ``$eq`` one of them (``[]`` matches nothing); ``$nin``: not ``$in``, so a
  missing key matches (``[]`` matches everything).
* ``$gt $gte $lt $lte v``: v is a number or a string; the key is present with a value of
  the same class that compares so (numbers numerically; strings by Unicode code point,
  which is UTF-8 byte order). A missing key or another class never matches.
* ``$exists true``: the key is present (with any value, null included); ``false``: absent.

Limits, so a hostile filter stays cheap: nesting of $and/$or at most ``MAX_DEPTH``; at
most ``MAX_CONDITIONS`` conditions (one per operator of a key); at most ``MAX_IN_VALUES``
values over all $in/$nin lists; keys at most 128 characters, strings at most 4096, no
NUL character (SQLite's JSON functions stop at it).

Two SQL forms of one parsed filter:

* :func:`where_sql`: a boolean expression over one row of ``memories`` (its ``metadata``
  column, through ``json_each``), for membership checks, list and delete;
* :func:`rowid_set_sql`: a ``SELECT r`` of the matching rowids drawn from the indexed side
  table ``memory_meta`` (see ``storage.sqlite_store``), for enumerating a selective filter
  without reading the rows.

Both are tested against :func:`evaluate` (tests/unit/test_filters.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Union

MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_IN_VALUES = 1000
MAX_KEY_CHARS = 128
MAX_STRING_CHARS = 4096
#: Integers are exact in SQLite (and here) within 64 bits; beyond, they would turn into floats.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
EXAMPLE = ('{"topic": "billing", "priority": {"$gte": 2}, '
           '"$or": [{"user": "ada"}, {"team": {"$in": ["a", "b"]}}]}')

Scalar = Union[str, int, float, bool, None]  # noqa: UP007 (a runtime alias)


class FilterError(ValueError):
    """A filter that breaks the grammar or a limit; the message names the path (``filter.$or[1].n``)."""


# ----------------------------------------------------------------------------- the parsed form


@dataclass(frozen=True)
class Cond:
    key: str
    op: str  # one of OPERATORS
    operand: Any  # a scalar; a tuple of scalars for $in/$nin; a bool for $exists


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Union[Cond, And, Or]  # noqa: UP007


def kind(value: Any) -> str:
    """The class of a scalar: ``string``, ``number``, ``boolean`` or ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"not a metadata scalar: {type(value).__name__}")


def check_scalar(value: Any, where: str) -> Any:
    """``value`` if it is a storable scalar, else ``FilterError`` naming ``where``.

    The same rule holds for metadata values (core.models) and filter operands."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise FilterError(f"{where}: integer {value} is outside the 64-bit range "
                              f"({INT_MIN} to {INT_MAX}); send it as a string or a decimal")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{where}: numbers must be finite (no NaN or Infinity)")
        return value
    if isinstance(value, str):
        check_text(value, where, MAX_STRING_CHARS)
        return value
    what = "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else \
        type(value).__name__
    raise FilterError(f"{where}: got {what}; values must be a string, number, boolean or null "
                      "(nested objects and arrays are not allowed)")


def check_text(text: str, where: str, limit: int) -> None:
    if len(text) > limit:
        raise FilterError(f"{where}: {len(text)} characters; at most {limit} are allowed")
    if "\x00" in text:
        raise FilterError(f"{where}: the NUL character (\\u0000) is not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"{where}: not valid Unicode (a lone surrogate)") from None


# ----------------------------------------------------------------------------- parsing


class _Budget:
    def __init__(self) -> None:
        self.conditions = 0
        self.in_values = 0


def parse(raw: Any, where: str = "filter") -> Node | None:
    """Check ``raw`` against the grammar and limits; ``None`` for an empty filter (``{}``).

    Raises :class:`FilterError` naming the offending path and what was expected.
    """
    if raw is None:
        return None
    if isinstance(raw, str):  # a JSON-encoded filter (query strings, CLI)
        raw = decode(raw, where)
    if not isinstance(raw, dict):
        raise FilterError(f"{where}: must be a JSON object, got {_what(raw)}; for example {EXAMPLE}")
    if not raw:
        return None
    return _parse_filter(raw, where, 0, _Budget())


def decode(text: str, where: str = "filter") -> Any:
    """A filter sent as JSON text (a query parameter, a CLI option), decoded."""
    if len(text) > 65_536:
        raise FilterError(f"{where}: {len(text)} characters of JSON; at most 65536 are allowed")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FilterError(f"{where}: not valid JSON ({exc}); send a JSON object such as {EXAMPLE}") from None


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return type(value).__name__ if not isinstance(value, (int, float)) else "a number"


def _parse_filter(raw: Any, where: str, depth: int, budget: _Budget) -> Node:
    if not isinstance(raw, dict) or not raw:
        raise FilterError(f"{where}: must be a non-empty JSON object, got "
                          f"{'an empty object' if raw == {} else _what(raw)}")
    parts: list[Node] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise FilterError(f"{where}: keys must be strings")
        path = f"{where}.{key}"
        if key in ("$and", "$or"):
            if depth + 1 > MAX_DEPTH:
                raise FilterError(f"{path}: $and/$or nested more than {MAX_DEPTH} deep")
            if not isinstance(value, list) or not value:
                raise FilterError(f"{path}: must be a non-empty array of filters, got "
                                  f"{'an empty array' if value == [] else _what(value)}")
            children = tuple(_parse_filter(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value))
            parts.append(And(children) if key == "$and" else Or(children))
        elif key.startswith("$"):
            raise FilterError(f"{where}: unknown operator {key!r} at this level; only $and and $or combine "
                              f"filters (operators such as $gt go inside a key: {{\"n\": {{\"$gt\": 1}}}})")
        else:
            check_text(key, f"{where}: key {key[:40]!r}", MAX_KEY_CHARS)
            parts.extend(_parse_key(key, value, path, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_key(key: str, value: Any, path: str, budget: _Budget) -> list[Cond]:
    if isinstance(value, list):
        raise FilterError(f"{path}: got an array; to match any of several values use {{\"$in\": [...]}}")
    if not isinstance(value, dict):
        return [_cond(key, "$eq", value, path, budget)]
    if not value:
        raise FilterError(f"{path}: an empty object; give a value or operators such as {{\"$gte\": 2}}")
    return [_cond(key, op, operand, f"{path}.{op}", budget) for op, operand in value.items()]


def _cond(key: str, op: str, operand: Any, path: str, budget: _Budget) -> Cond:
    budget.conditions += 1
    if budget.conditions > MAX_CONDITIONS:
        raise FilterError(f"{path}: more than {MAX_CONDITIONS} conditions in one filter")
    if op not in OPERATORS:
        hint = "" if op.startswith("$") else " (operators start with $; nested objects are not allowed)"
        raise FilterError(f"{path}: unknown operator {op!r}{hint}; expected one of {', '.join(OPERATORS)}")
    if op == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(f"{path}: expected true or false, got {_what(operand)}")
        return Cond(key, op, operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f"{path}: expected an array of values, got {_what(operand)}")
        budget.in_values += len(operand)
        if budget.in_values > MAX_IN_VALUES:
            raise FilterError(f"{path}: more than {MAX_IN_VALUES} values in $in/$nin lists of one filter")
        return Cond(key, op, tuple(check_scalar(v, f"{path}[{i}]") for i, v in enumerate(operand)))
    check_scalar(operand, path)
    if op in RANGE_OPS and kind(operand) not in ("number", "string"):
        raise FilterError(f"{path}: compares numbers or strings, got {_what(operand)}")
    return Cond(key, op, operand)


# ----------------------------------------------------------------------------- the Python evaluator


def _eq(present: bool, value: Any, operand: Any) -> bool:
    return present and kind(value) == kind(operand) and value == operand


def _test(c: Cond, metadata: dict[str, Any]) -> bool:
    present = c.key in metadata
    value = metadata.get(c.key)
    if c.op == "$exists":
        return present is c.operand
    if c.op == "$eq":
        return _eq(present, value, c.operand)
    if c.op == "$ne":
        return not _eq(present, value, c.operand)
    if c.op == "$in":
        return any(_eq(present, value, v) for v in c.operand)
    if c.op == "$nin":
        return not any(_eq(present, value, v) for v in c.operand)
    if not present or kind(value) != kind(c.operand):
        return False
    if c.op == "$gt":
        return bool(value > c.operand)
    if c.op == "$gte":
        return bool(value >= c.operand)
    if c.op == "$lt":
        return bool(value < c.operand)
    return bool(value <= c.operand)


def evaluate(node: Node | None, metadata: dict[str, Any]) -> bool:
    """Whether a memory with this metadata matches (``None``: no filter, everything matches)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(c, metadata) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, metadata) for c in node.children)
    return _test(node, metadata)


# ----------------------------------------------------------------------------- SQL over one row

#: json_each's ``type`` per class (SQLite JSON1).
_JSON_TYPES = {"null": "'null'", "number": "'integer','real'", "string": "'text'"}


def _json_pred(value: Any, params: list[Any]) -> str:
    """Condition on json_each's (type, atom) meaning "equals ``value``" (class and value)."""
    k = kind(value)
    if k == "boolean":
        return "type = 'true'" if value else "type = 'false'"
    if k == "null":
        return "type = 'null'"
    params.append(value)
    return f"(type IN ({_JSON_TYPES[k]}) AND atom = ?)"


def _row_cond(c: Cond, alias: str, params: list[Any]) -> str:
    if c.op == "$exists":
        params.append(c.key)
        sql = f"EXISTS (SELECT 1 FROM json_each({alias}.metadata) WHERE key = ?)"
        return sql if c.operand else f"NOT {sql}"
    if c.op in ("$in", "$nin"):
        if not c.operand:
            return "0" if c.op == "$in" else "1"
        params.append(c.key)
        preds = " OR ".join(_json_pred(v, params) for v in c.operand)
        sql = f"EXISTS (SELECT 1 FROM json_each({alias}.metadata) WHERE key = ? AND ({preds}))"
        return sql if c.op == "$in" else f"NOT {sql}"
    params.append(c.key)
    if c.op in ("$eq", "$ne"):
        pred = _json_pred(c.operand, params)
        sql = f"EXISTS (SELECT 1 FROM json_each({alias}.metadata) WHERE key = ? AND {pred})"
        return sql if c.op == "$eq" else f"NOT {sql}"
    params.append(c.operand)
    return (f"EXISTS (SELECT 1 FROM json_each({alias}.metadata) WHERE key = ? AND type IN "
            f"({_JSON_TYPES[kind(c.operand)]}) AND atom {RANGE_OPS[c.op]} ?)")


def where_sql(node: Node, alias: str = "memories") -> tuple[str, list[Any]]:
    """A boolean SQL expression over one row of ``memories`` (named ``alias``), and its parameters."""
    params: list[Any] = []

    def walk(n: Node) -> str:
        if isinstance(n, Cond):
            return _row_cond(n, alias, params)
        glue = " AND " if isinstance(n, And) else " OR "
        return "(" + glue.join(walk(ch) for ch in n.children) + ")"

    return walk(node), params


# ----------------------------------------------------------------------------- SQL over the side table

#: ``memory_meta.vtype`` per class (see storage.sqlite_store METADATA_INDEX_SCHEMA).
VTYPE = {"null": 0, "boolean": 1, "number": 2, "string": 3}


def _vt_value(value: Any) -> tuple[int, Any]:
    k = kind(value)
    return VTYPE[k], (int(value) if k == "boolean" else value)


def _set_cond(c: Cond, params: list[Any]) -> str:
    """``SELECT r ...``: rowids matching one condition (negations drawn from ``memories``)."""
    if c.op == "$exists":
        params.append(c.key)
        pos = "SELECT mrowid AS r FROM memory_meta WHERE mkey = ?"
        return pos if c.operand else f"SELECT rowid AS r FROM memories EXCEPT {pos}"
    if c.op in ("$in", "$nin"):
        if not c.operand:
            return ("SELECT rowid AS r FROM memories WHERE 0" if c.op == "$in"
                    else "SELECT rowid AS r FROM memories")
        params.append(c.key)
        preds: list[str] = []
        for v in dict.fromkeys(c.operand):  # (a repeated value says nothing new)
            vt, val = _vt_value(v)
            if val is None:
                preds.append(f"vtype = {vt}")
            else:
                preds.append(f"(vtype = {vt} AND v = ?)")
                params.append(val)
        pos = f"SELECT mrowid AS r FROM memory_meta WHERE mkey = ? AND ({' OR '.join(preds)})"
        return pos if c.op == "$in" else f"SELECT rowid AS r FROM memories EXCEPT {pos}"
    vt, val = _vt_value(c.operand)
    params.append(c.key)
    if c.op in ("$eq", "$ne"):
        if val is None:
            pos = f"SELECT mrowid AS r FROM memory_meta WHERE mkey = ? AND vtype = {vt}"
        else:
            pos = f"SELECT mrowid AS r FROM memory_meta WHERE mkey = ? AND vtype = {vt} AND v = ?"
            params.append(val)
        return pos if c.op == "$eq" else f"SELECT rowid AS r FROM memories EXCEPT {pos}"
    params.append(val)
    return f"SELECT mrowid AS r FROM memory_meta WHERE mkey = ? AND vtype = {vt} AND v {RANGE_OPS[c.op]} ?"


def rowid_set_sql(node: Node) -> tuple[str, list[Any]]:
    """``SELECT r FROM ...``: the rowids of every memory (suppressed included) that matches.

    Conditions read the index ``memory_meta_kv`` (key, class, value); $and is INTERSECT,
    $or is UNION, negations are EXCEPT from all rowids. SQLite does not parenthesise
    compound selects, so each composite is wrapped as ``SELECT r FROM (...)``.
    """
    params: list[Any] = []

    def walk(n: Node) -> str:
        if isinstance(n, Cond):
            return f"SELECT r FROM ({_set_cond(n, params)})"
        glue = " INTERSECT " if isinstance(n, And) else " UNION "
        return "SELECT r FROM (" + glue.join(walk(ch) for ch in n.children) + ")"

    return walk(node), params
