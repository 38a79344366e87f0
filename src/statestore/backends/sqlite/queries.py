"""How SQLite orders and returns values: the helpers that decide whether a query answered in SQL is exact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statestore.query import Query

_NUL = "\\u0000"  # how canonical JSON writes U+0000 inside a string


_SQL_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _cut(value: Any) -> Any:
    """A value as SQLite's json_extract gives it back: text cut at its first NUL."""
    return value.split("\x00", 1)[0] if isinstance(value, str) else value


def _sql_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return 1
    return 2 if isinstance(value, str) else 3


def _sql_compare(a: Sequence[Any], b: Sequence[Any], descending: Sequence[bool]) -> int:
    """-1, 0 or 1 as SQLite orders two rows' ORDER BY values (NULL < numbers < text < blobs)."""
    for x, y, desc in zip(a, b, descending):
        rx, ry = _sql_rank(x), _sql_rank(y)
        c = (rx > ry) - (rx < ry)
        if c == 0 and rx:
            c = (x > y) - (x < y)
        if c:
            return -c if desc else c
    return 0


def _lossless(query: Query, row: tuple[Any, ...]) -> bool:
    """True when no row SQL puts after ``row`` with the same order values can come before it exactly.

    So when each value stands for itself (no NUL, not a datetime), and a
    descending text field's row was sorted among those holding no NUL.
    """
    data, sql_values = row[2], row[3]
    spot = 0
    for o in query.order:
        if o.kind == "str" and o.descending:
            if spot + 1 >= len(sql_values) or sql_values[spot + 1]:
                return False
            spot += 1
        spot += 1
        v = data.get(o.field)
        if v is None or type(v) in (int, float, bool):
            continue
        if o.kind == "datetime" or not isinstance(v, str) or "\x00" in v:
            return False
    return True
