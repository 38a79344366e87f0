"""Queries beyond equality: the operators of ``find``/``count``/``iter`` and the exact rules they follow.

An application writes ``tasks.find(points=ss.gt(3), status=ss.one_of("todo", "doing"),
order_by="-points", limit=20)``. The view turns the keywords into a
:class:`Query` (operands already in their stored JSON form, checked by the
codec) and hands it to the backend primitive ``Store._query`` (or
``_count_where``). This module is the plain Python model every backend's
answer must equal: :meth:`Query.matches`, :meth:`Query.sort` and
:meth:`Query.apply`. A backend may answer faster (SQL, indexes), but never
differently.

The rules:

* ``field=value`` (or ``eq``) compares stored JSON values; ``None`` matches
  null or a missing field. ``ne(v)`` is its negation (so it matches null).
  ``one_of(a, b)`` matches any of them (``None`` among them: null or missing).
* ``gt``/``ge``/``lt``/``le`` compare values of the same sort (numbers with
  numbers, int and float mixed; strings by code point; datetimes
  chronologically whatever their UTC offsets; booleans false < true); a
  null or missing field never matches a range.
* ``prefix(s)`` matches strings starting with ``s``.
* Order: nulls (and missing fields) first ascending, last descending; ties
  are broken by key, ascending, whatever the direction.
"""

from __future__ import annotations

import datetime
import enum
import json
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from statestore.strict import Mismatch, parse_datetime

__all__ = [
    "KINDS",
    "Condition",
    "Order",
    "Query",
    "Term",
    "field_kind",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    "one_of",
    "prefix",
    "prefix_end",
    "same_value",
    "sort_key",
]

#: What a field holds, for comparing and ordering: ``str``, ``number``,
#: ``bool``, ``datetime`` (ISO text compared as instants) or ``other``
#: (compared as JSON values: null < booleans < numbers < strings < the rest).
KINDS = ("str", "number", "bool", "datetime", "other")

_RANGE_OPS = ("gt", "ge", "lt", "le")


@attrs.frozen
class Condition:
    """A comparison given as a ``find`` keyword's value: made by :func:`gt`, :func:`one_of`..."""

    op: str
    value: Any

    def __repr__(self) -> str:
        if self.op == "in":
            return f"one_of({', '.join(map(repr, self.value))})"
        return f"{self.op}({self.value!r})"


def gt(value: Any) -> Condition:
    """Greater than ``value`` (a null or missing field never matches)."""
    return Condition("gt", value)


def ge(value: Any) -> Condition:
    """Greater than or equal to ``value``."""
    return Condition("ge", value)


def lt(value: Any) -> Condition:
    """Less than ``value`` (a null or missing field never matches)."""
    return Condition("lt", value)


def le(value: Any) -> Condition:
    """Less than or equal to ``value``."""
    return Condition("le", value)


def ne(value: Any) -> Condition:
    """Not equal to ``value``: null and missing fields match unless ``value`` is None."""
    return Condition("ne", value)


def one_of(*values: Any) -> Condition:
    """Equal to any of ``values`` (None among them: null or missing); no values matches nothing."""
    return Condition("in", tuple(values))


def prefix(text: str) -> Condition:
    """A string starting with ``text`` (code point by code point; ``""`` matches every string)."""
    return Condition("prefix", text)


@attrs.frozen
class Term:
    """One checked condition: ``field`` ``op`` ``value`` with the operand in stored JSON form.

    ``op`` is ``eq ne gt ge lt le in prefix``; for ``in`` the value is a tuple.
    """

    field: str
    op: str
    value: Any
    kind: str

    def matches(self, data: dict[str, Any]) -> bool:
        """Whether a stored record's JSON ``data`` meets this condition (missing counts as null)."""
        got = data.get(self.field)
        op = self.op
        if op == "eq":
            return same_value(got, self.value)
        if op == "ne":
            return not same_value(got, self.value)
        if op == "in":
            return any(same_value(got, v) for v in self.value)
        if op == "prefix":
            return isinstance(got, str) and got.startswith(self.value)
        if got is None:
            return False
        a, b = sort_key(self.kind, got), sort_key(self.kind, self.value)
        if a[0] != b[0]:
            return False  # values of different sorts are never in range of each other
        if op == "gt":
            return a > b
        if op == "ge":
            return a >= b
        if op == "lt":
            return a < b
        return a <= b


@attrs.frozen
class Order:
    """One ``order_by`` field: ``descending`` for ``-name``."""

    field: str
    descending: bool
    kind: str


@attrs.frozen
class Query:
    """What ``find``/``count``/``iter`` ask a backend: conditions (ANDed), order, limit, offset."""

    terms: tuple[Term, ...] = ()
    order: tuple[Order, ...] = ()
    limit: int | None = None
    offset: int = 0
    #: Only records after this one in the query's order: (its order fields' stored values, its key).
    #: ``iter`` reads its next batch this way, so a batch never re-reads the ones before it.
    after: tuple[tuple[Any, ...], Any] | None = None

    def matches(self, data: dict[str, Any]) -> bool:
        """Whether a record's JSON data meets every condition (``after`` aside: see :meth:`admits`)."""
        return all(t.matches(data) for t in self.terms)

    def admits(self, key: Any, data: dict[str, Any]) -> bool:
        """Whether the record ``key`` with JSON ``data`` meets every condition and comes after ``after``."""
        if not all(t.matches(data) for t in self.terms):
            return False
        return self.after is None or self.follows(key, data)

    def follows(self, key: Any, data: dict[str, Any]) -> bool:
        """Whether the record comes after ``after`` in this query's order (ties by key)."""
        assert self.after is not None
        values, last = self.after
        for o, value in zip(self.order, values):
            a, b = sort_key(o.kind, data.get(o.field)), sort_key(o.kind, value)
            if a != b:
                return a < b if o.descending else a > b
        return bool(key > last)

    def sort(self, rows: Iterable[Any]) -> list[Any]:
        """Raw records ``(key, revision, data, ...)`` in this query's order, ties by key."""
        out = sorted(rows, key=_first)
        for o in reversed(self.order):
            field, kind = o.field, o.kind
            out.sort(key=lambda r: sort_key(kind, r[2].get(field)), reverse=o.descending)
        return out

    def window(self, rows: list[Any]) -> list[Any]:
        """``rows`` (already ordered) cut to ``offset`` and ``limit``."""
        end = None if self.limit is None else self.offset + self.limit
        return rows[self.offset : end] if self.offset or end is not None else rows

    def apply(self, rows: Iterable[Any]) -> list[Any]:
        """The plain model: filter, order, cut. ``rows`` are raw records in key order."""
        if self.order:
            return self.window(self.sort(r for r in rows if self.admits(r[0], r[2])))
        kept: list[Any] = []
        need = self.need
        for r in rows:
            if need is not None and len(kept) >= need:
                break  # in key order already: the rest come after
            if self.admits(r[0], r[2]):
                kept.append(r)
        return self.window(kept)

    @property
    def unordered(self) -> Query:
        """The same conditions without order, limit, offset or after (what ``count`` asks)."""
        return Query(self.terms)

    @property
    def need(self) -> int | None:
        """How many ordered rows the answer is taken from (offset + limit), None for all."""
        return None if self.limit is None else self.offset + self.limit


def prefix_end(text: str) -> str | None:
    """The smallest string greater than every string starting with ``text`` (None: there is none)."""
    chars = list(text)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates: not storable as UTF-8
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


def _first(row: Any) -> Any:
    return row[0]


_NUMBERS = (int, float)


def same_value(stored: Any, wanted: Any) -> bool:
    """Equality as ``find`` means it: the same JSON value, at any depth.

    null equals only null, true and false only themselves (never 1 or 0, as
    Python's ``True == 1`` would have it), a number any number of the same
    value (1 and 1.0), text only text; arrays and objects member by member.
    """
    ts, tw = type(stored), type(wanted)
    if ts is tw and (ts is str or ts is int or ts is float):
        return bool(stored == wanted)
    if stored is None or wanted is None or ts is bool or tw is bool:
        return stored is wanted
    if ts in _NUMBERS and tw in _NUMBERS:
        return bool(stored == wanted)
    if ts is list and tw is list:
        return len(stored) == len(wanted) and all(same_value(a, b) for a, b in zip(stored, wanted))
    if ts is dict and tw is dict:
        return stored.keys() == wanted.keys() and all(same_value(v, wanted[k]) for k, v in stored.items())
    return False


def value_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value: equal for two values exactly when ``same_value`` says so.

    For unique checks that group many values at once (``1`` and ``1.0`` share
    a key; ``true`` and ``1`` do not).
    """
    tp = type(value)
    if value is None or tp is bool or tp is str:
        return (tp.__name__, value)
    if tp is int or tp is float:
        return ("number", int(value) if tp is float and value.is_integer() else value)
    if tp is list:
        return ("list", tuple(value_key(v) for v in value))
    if tp is dict:
        return ("dict", tuple(sorted((k, value_key(v)) for k, v in value.items())))
    return ("other", repr(value))


def sort_key(kind: str, value: Any) -> tuple[Any, ...]:
    """A total order over stored values of a field of ``kind`` (see the module docstring).

    null < booleans < numbers < datetimes (a ``datetime`` field's parseable
    text) < strings < anything else (by its JSON text). Values of one
    well-typed field are all of one sort, so this only orders them; the
    ranks keep damaged or hand-edited data from raising.
    """
    if value is None:
        return (0,)
    if value is True or value is False:
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        if kind == "datetime":
            try:
                return (3, parse_datetime(value))
            except Mismatch:
                pass
        return (4, value)
    return (5, json.dumps(value, sort_keys=True))


def _optional_inner(tp: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``), else ``tp`` itself."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and origin is getattr(types, "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


_DESCRIBED_KINDS = {"str": "str", "int": "number", "float": "number", "bool": "bool", "datetime": "datetime"}


def field_kind(tp: Any, described: str | None = None, *, strict: bool = True) -> str:
    """The kind (see :data:`KINDS`) of a field declared ``tp``.

    ``described`` is the type's name in a stored description, for
    collections rebuilt without the application's classes (their types are
    ``Any`` but for ``str``/``int``/``float``/``bool``). ``strict`` is False
    for an application's own converter: its datetimes may be stored in any
    form, so they compare as plain JSON values.
    """
    tp = _optional_inner(tp)
    if tp is str:
        return "str"
    if tp is bool:
        return "bool"
    if tp in (int, float):
        return "number"
    if tp is datetime.datetime:
        return "datetime" if strict else "other"
    values: Sequence[Any] = ()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
    elif typing.get_origin(tp) is typing.Literal:
        values = typing.get_args(tp)
    if values:
        if all(type(v) is str for v in values):
            return "str"
        if all(type(v) in (int, float) for v in values):
            return "number"
        if all(type(v) is bool for v in values):
            return "bool"
        return "other"
    if tp is Any and described is not None:
        name = described.removesuffix(" | None").removeprefix("None | ")
        if name.startswith("Optional[") and name.endswith("]"):
            name = name[9:-1]
        kind = _DESCRIBED_KINDS.get(name.removeprefix("datetime."))
        if kind is not None:
            return kind if kind != "datetime" or strict else "other"
    return "other"
