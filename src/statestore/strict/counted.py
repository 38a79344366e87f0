"""Counting structure: an attrs record built from JSON, if the JSON holds as many strings as a count says.

A backend that decodes stored text with Python's plain JSON scanner (no
hook per object, no hook per float: about 1.5 µs less per record of two
objects) needs two more facts to be as strict as ``backends.rawjson``: that
no object named a member twice (the plain scanner keeps the last value
without a word), and that no number became infinity. :func:`counted_structurer`
gives a function that structures a decoded dict into its attrs class, as the
strict converter's fast path does, if twice the strings the dict holds
(member names and string values, at every depth) equal the quotes the
backend counted in the text; see ``backends/sqlite/reading.py`` for why
equality proves there was no duplicate.

The function serves only records whose every field is a ``str``, ``int``,
``float``, ``bool`` (each also ``| None``), ``datetime``, a list of
``str``/``int``/``float``/``bool``, or a nested attrs class of the same
kinds (not a recursive one). For any
other class :func:`counted_structurer` returns None. On any value it does
not expect (a missing or extra member, a value of another type, a float
that is not finite, a failing validator) the function returns None and the
caller takes the strict path, which decides and explains.

Each value is checked by a test that refuses every non-finite float (a
``float`` field's own test; every other test accepts no float at all), and
the object must hold exactly its declared members, so a decoded dict the
function accepts holds no infinity anywhere.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Callable
from typing import Any

from statestore.strict.converter import _INLINE, _compile, _Fallback, _inline_list, _plain_fields
from statestore.strict.datetimes import parse_datetime
from statestore.strict.types import NONE, kind_of

__all__ = ["counted_structurer"]

#: ``(o, quotes) -> record`` or None, built once per class.
Counted = Callable[[Any, int], Any]


def counted_structurer(tp: Any) -> Counted | None:
    """The counting structurer of attrs class ``tp`` (see the module docstring), or None if it has none.

    Its result on a dict ``o`` and a count ``quotes`` is what the strict
    converter builds from ``o`` when ``o`` holds exactly such a record and
    twice the strings in ``o`` (member names and string values at every
    depth) equal ``quotes``; None otherwise (the caller then decodes and
    structures the strict way). Lists in the record are the very lists of
    ``o``: only for a dict the caller decoded for this call and drops after.
    """
    scope: dict[str, Any] = {"_Fallback": _Fallback, "_dt": parse_datetime}
    lines = ["def counted(o, quotes):", "    try:"]
    built = _emit(tp, "o", "", scope, lines, set())
    if built is None:
        return None
    make, strings = built
    lines += [
        f"        if 2 * ({strings}) != quotes:",
        "            return None",
        f"        return {make}",
        "    except Exception:",
        "        return None",
    ]
    return _compile("counted", "\n".join(lines) + "\n", scope)


def _optional(tp: Any) -> str | None:
    """For ``X | None`` (``Optional[X]``): the kind of ``X``; None for any other type."""
    members = typing.get_args(tp)
    if len(members) != 2 or NONE not in members:
        return None
    return kind_of(members[0] if members[1] is NONE else members[1])


def _emit(
    tp: Any, obj: str, prefix: str, scope: dict[str, Any], lines: list[str], seen: set[Any]
) -> tuple[str, str] | None:
    """Lines that read and check the fields of ``tp`` from dict ``obj``; (constructor call, string count) or None."""
    fields = _plain_fields(tp)
    if fields is None or tp in seen:
        return None
    seen = seen | {tp}
    cls = f"_cl{prefix}"
    scope[cls] = tp
    ind = "        "
    constant = len(fields)  # the member names
    counts: list[str] = []
    args: list[str] = []  # attrs' __init__ takes fields that are not keyword-only by position, in field order
    keywords: list[str] = []
    for i, f in enumerate(fields):
        v = f"{prefix}v{i}"
        kind = kind_of(f.type)
        lines.append(f"{ind}{v} = {obj}[{f.name!r}]")
        elem = _inline_list(f.type)
        if kind in _INLINE:
            lines.append(f"{ind}if not ({_INLINE[kind].format(v=v)}):")
            lines.append(f"{ind}    raise _Fallback")
            constant += kind == "str"
        elif kind == "union" and _optional(f.type) in _INLINE:
            # X | None for a scalar X: null, or what X's own test accepts (the strict hook's rule).
            lines.append(f"{ind}if {v} is not None and not ({_INLINE[str(_optional(f.type))].format(v=v)}):")
            lines.append(f"{ind}    raise _Fallback")
            if _optional(f.type) == "str":
                counts.append(f"(type({v}) is str)")
        elif kind == "datetime" and f.type is dt.datetime:
            lines.append(f"{ind}if type({v}) is not str:")
            lines.append(f"{ind}    raise _Fallback")
            lines.append(f"{ind}{v} = _dt({v})")
            constant += 1
        elif elem is not None:
            lines.append(f"{ind}if type({v}) is not list:")
            lines.append(f"{ind}    raise _Fallback")
            lines.append(f"{ind}for x in {v}:")
            lines.append(f"{ind}    if not ({elem.format(v='x')}):")
            lines.append(f"{ind}        raise _Fallback")
            if _INLINE["str"] == elem:
                counts.append(f"len({v})")
        elif kind == "attrs":
            lines.append(f"{ind}if type({v}) is not dict:")
            lines.append(f"{ind}    raise _Fallback")
            inner = _emit(f.type, v, f"{v}_", scope, lines, seen)
            if inner is None:
                return None
            make, strings = inner
            lines.append(f"{ind}{v} = {make}")
            counts.append(strings)
        else:
            return None
        (keywords if f.kw_only else args).append(f"{f.name}={v}" if f.kw_only else v)
    lines.append(f"{ind}if len({obj}) != {len(fields)}:")
    lines.append(f"{ind}    raise _Fallback")
    return f"{cls}({', '.join([*args, *keywords])})", " + ".join([str(constant), *counts])
