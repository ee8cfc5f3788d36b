"""Metadata filters (SPEC §11, ``engram.core.filters``) as SQL over ``engram.memory_meta``.

:func:`where` turns a parsed filter into one parenthesised boolean expression over a row of
``engram.memories`` (its ``space_id`` and ``id``), for the ``{filter}`` slot of the statements in
``queries.py``. Each condition is an ``EXISTS`` (or ``NOT EXISTS``) on the typed side table, and
every such subquery fixes ``space_id = %(space)s`` itself, so the expression never reaches
another space (and Citus keeps the statement on one shard).

The classes of ``core.filters`` are ``memory_meta.vtype``: 0 null, 1 boolean (``vnum`` 0/1),
2 number (``vnum``, numeric, the exact value of the int or float), 3 string (``vtext``, compared
with ``COLLATE "C"``: UTF-8 byte order, which is code point order); 4 (anything else) never
matches. Operand values are bound parameters (``%(f0)s``, ``%(f1)s``...): never SQL text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import sql

from ..filters import RANGE_OPS, VTYPE, And, Cond, Node, kind

#: The expression of "no filter".
EVERYTHING = sql.SQL("TRUE")

_META = ("EXISTS (SELECT 1 FROM engram.memory_meta mm WHERE mm.space_id = %(space)s "
         "AND mm.memory_id = engram.memories.id AND mm.mkey = {key}")


def number(value: Any) -> Decimal:
    """The exact numeric of a number or boolean (``Decimal(0.1)`` is the double's exact value)."""
    return Decimal(int(value)) if isinstance(value, bool) else Decimal(value)


class _Builder:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> sql.Placeholder:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def equals(self, value: Any) -> sql.Composable:
        """``mm`` holds ``value`` (same class, equal value)."""
        k = kind(value)
        vt = sql.Literal(VTYPE[k])
        if k == "null":
            return sql.SQL("mm.vtype = {}").format(vt)
        if k == "string":
            return sql.SQL("(mm.vtype = {} AND mm.vtext = {})").format(vt, self.bind(value))
        return sql.SQL("(mm.vtype = {} AND mm.vnum = {})").format(vt, self.bind(number(value)))

    def exists(self, key: str, pred: sql.Composable | None, negate: bool) -> sql.Composable:
        body = sql.SQL(_META).format(key=self.bind(key))
        if pred is not None:
            body = sql.SQL("{} AND {}").format(body, pred)
        out = sql.SQL("{})").format(body)
        return sql.SQL("NOT {}").format(out) if negate else out

    def cond(self, c: Cond) -> sql.Composable:
        if c.op == "$exists":
            return self.exists(c.key, None, negate=not c.operand)
        if c.op in ("$in", "$nin"):
            values = list(dict.fromkeys((kind(v), v) for v in c.operand))  # 1 and 1.0: one value
            if not values:
                return sql.SQL("FALSE" if c.op == "$in" else "TRUE")
            preds = sql.SQL(" OR ").join(self.equals(v) for _, v in values)
            return self.exists(c.key, sql.SQL("({})").format(preds), negate=c.op == "$nin")
        if c.op in ("$eq", "$ne"):
            return self.exists(c.key, self.equals(c.operand), negate=c.op == "$ne")
        op = sql.SQL(RANGE_OPS[c.op])
        if kind(c.operand) == "string":
            pred = sql.SQL('mm.vtype = 3 AND mm.vtext COLLATE "C" {} {}').format(op, self.bind(c.operand))
        else:
            pred = sql.SQL("mm.vtype = 2 AND mm.vnum {} {}").format(op, self.bind(number(c.operand)))
        return self.exists(c.key, pred, negate=False)

    def walk(self, node: Node) -> sql.Composable:
        if isinstance(node, Cond):
            return self.cond(node)
        glue = sql.SQL(" AND " if isinstance(node, And) else " OR ")
        return sql.SQL("({})").format(glue.join(self.walk(ch) for ch in node.children))


def where(node: Node | None) -> tuple[sql.Composable, dict[str, Any]]:
    """``(expression, parameters)`` of ``node`` for a ``{filter}`` slot (``TRUE`` for no filter)."""
    if node is None:
        return EVERYTHING, {}
    b = _Builder()
    return sql.SQL("({})").format(b.walk(node)), b.params
