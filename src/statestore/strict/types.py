"""Which types statestore stores, and what a JSON value must be (statestore.strict)."""

from __future__ import annotations

import collections.abc as abc
import datetime as dt
import enum
import json
import math
import types
import typing
from typing import Any, NoReturn

import attrs

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NONE",
    "SCALARS",
    "Mismatch",
    "check_json",
    "fail",
    "inside",
    "kind_of",
    "member_step",
    "short",
    "type_name",
    "type_problem",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NONE = type(None)
SCALARS = (str, int, float, bool, NONE)


class Mismatch(TypeError):
    """A value that does not fit its declared type. ``path`` is where inside the value (``[3]``, ``.name``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def inside(self, step: str) -> Mismatch:
        """The same mismatch, one level further out (``step`` is the index or member it was found under)."""
        return Mismatch(self.message, step + self.path)


def short(value: object, limit: int = 60) -> str:
    """``value`` as JSON (or repr), cut to about ``limit`` characters with an ellipsis."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except RecursionError:  # nested deeper than Python can show
            text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fail(expected: str, value: object) -> NoReturn:
    raise Mismatch(f"expected {expected}, got {short(value)}")


def type_name(tp: Any) -> str:
    """A readable name for a declared type: ``str``, ``list[str]``, ``Color | None``."""
    if tp is NONE or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(short(a) for a in args) + "]"
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else base
    return str(getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None) or tp)


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or (origin is not None and origin is getattr(types, "UnionType", None))


_SEQ = {list, abc.Sequence, abc.MutableSequence, typing.List, typing.Sequence}  # noqa: UP006
_SET = {set, frozenset, abc.Set, abc.MutableSet}
_MAP = {dict, abc.Mapping, abc.MutableMapping}


def kind_of(tp: Any) -> str:
    """Which rule of the table serves ``tp`` (``"?"`` for none)."""
    if tp in (str, int, float, bool):
        return str(tp.__name__)
    if tp is NONE or tp is None:
        return "none"
    if tp is Any:
        return "any"
    if tp is dt.datetime:
        return "datetime"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "enum"
    if isinstance(tp, type) and attrs.has(tp):
        return "attrs"
    if _is_union(tp):
        return "union"
    origin = typing.get_origin(tp) or tp
    if origin is typing.Literal:
        return "literal"
    if origin in _SEQ:
        return "list"
    if origin is tuple:
        return "tuple"
    if origin in _SET:
        return "set"
    if origin in _MAP:
        return "dict"
    return "?"


def _json_scalar(v: Any) -> bool:
    if type(v) is int:
        return INT64_MIN <= v <= INT64_MAX
    if type(v) is float:
        return math.isfinite(v)
    return type(v) in (str, bool, NONE)


def type_problem(tp: Any, *, custom_ok: bool = False) -> str | None:
    """Why values of ``tp`` cannot round-trip through JSON, or None if they can.

    ``custom_ok`` accepts leaf types the table does not know (an
    application's own converter has hooks for them).
    """
    return _problem(tp, custom_ok, set())


def _problem(tp: Any, custom_ok: bool, seen: set[Any]) -> str | None:
    kind = kind_of(tp)
    args = typing.get_args(tp)
    if kind in ("str", "int", "float", "bool", "none", "any", "datetime"):
        return None
    if kind == "enum":
        bad = [m.name for m in tp if not _json_scalar(m.value)]
        return f"enum {tp.__name__}: members {bad} have values that are not JSON scalars" if bad else None
    if kind == "literal":
        bad = [a for a in args if not _json_scalar(a) or isinstance(a, enum.Enum)]
        return f"{type_name(tp)}: {bad} are not JSON scalars" if bad else None
    if kind == "attrs":
        if tp in seen:
            return None
        seen.add(tp)
        try:
            attrs.resolve_types(tp)
        except Exception as exc:
            return f"{tp.__name__}: its annotations cannot be resolved ({exc})"
        for f in attrs.fields(tp):
            if not f.init:
                return (
                    f"{tp.__name__}.{f.name} has init=False: a reader could not give it back its stored value "
                    "(declare it in __init__, or keep it out of the record)"
                )
            got = _problem(f.type, custom_ok, seen)
            if got is not None:
                return f"{tp.__name__}.{f.name}: {got}"
        return None
    if kind == "union":
        ambiguous = _ambiguous(typing.get_args(tp))
        if ambiguous is not None:
            return ambiguous
    if kind in ("union", "list", "set", "tuple"):
        for a in args:
            if a is Ellipsis:
                continue
            got = _problem(a, custom_ok, seen)
            if got is not None:
                return got
        return None
    if kind == "dict":
        if args and args[0] is not str and args[0] is not Any:
            return f"{type_name(tp)}: JSON object keys are strings, so only dict[str, ...] reads back as written"
        return _problem(args[1], custom_ok, seen) if len(args) == 2 else None
    if tp is object:
        return "object is any Python object, not a JSON type (typing.Any holds any JSON value)"
    if tp is bytes or tp is bytearray:
        return f"{type_name(tp)} has no JSON form (store text, or base64 in a str)"
    if custom_ok:
        return None
    return f"{type_name(tp)} has no JSON form statestore knows (pass a converter with hooks for it)"


def _json_kinds(tp: Any) -> set[str]:
    """The kinds of JSON a value of ``tp`` is stored as: a union whose members share one is ambiguous."""
    kind = kind_of(tp)
    if kind in ("str", "datetime"):
        return {"string"}
    if kind == "int":
        return {"integer"}
    if kind == "float":
        return {"float"}  # it may hold an integer too, which then reads back as that same integer
    if kind == "bool":
        return {"bool"}
    if kind == "none":
        return {"null"}
    if kind in ("enum", "literal"):
        values = [m.value for m in tp] if kind == "enum" else list(typing.get_args(tp))
        return {_json_kinds(type(v)).pop() if type(v) is not type(None) else "null" for v in values}
    if kind in ("list", "tuple", "set"):
        return {"array"}
    if kind in ("dict", "attrs"):
        return {"object"}
    if kind == "union":
        return set().union(*(_json_kinds(a) for a in typing.get_args(tp)))
    return {"any"}


def _ambiguous(members: tuple[Any, ...]) -> str | None:
    """Why a reader could not tell which member of a union was written, or None."""
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if "none" in (kind_of(a), kind_of(b)) and "any" in (kind_of(a), kind_of(b)):
                continue  # null reads back as None either way
            if kind_of(a) == "any" or kind_of(b) == "any":
                return f"{type_name(a)} | {type_name(b)}: Any holds what the other member does"
            shared = _json_kinds(a) & _json_kinds(b)
            if shared and not (shared == {"object"} and _attrs_disjoint(a, b)):
                return (
                    f"{type_name(a)} and {type_name(b)} are both stored as JSON {sorted(shared)[0]}: "
                    "a reader could not tell which was written (declare one of them, or a class per case)"
                )
    return None


def _attrs_disjoint(a: Any, b: Any) -> bool:
    """No JSON object fits both: each class requires a field the other does not declare at all."""
    if kind_of(a) != "attrs" or kind_of(b) != "attrs":
        return False
    fa, fb = attrs.fields(a), attrs.fields(b)
    names_a, names_b = {f.name for f in fa}, {f.name for f in fb}
    need_a = {f.name for f in fa if f.default is attrs.NOTHING}
    need_b = {f.name for f in fb if f.default is attrs.NOTHING}
    return bool(need_a - names_b) and bool(need_b - names_a)


# ---------------------------------------------------------------- JSON values (Any)


def check_json(value: Any) -> None:
    """Raise Mismatch unless ``value`` is JSON statestore stores: finite numbers, 64-bit integers, str keys."""
    tp = type(value)
    if tp is str or tp is bool or value is None:
        return
    if tp is int:
        if not INT64_MIN <= value <= INT64_MAX:
            fail("an integer from -2**63 to 2**63-1", value)
        return
    if tp is float:
        if not math.isfinite(value):
            fail("a finite number (NaN and infinities are not JSON)", value)
        return
    if tp is list:
        for i, v in enumerate(value):
            try:
                check_json(v)
            except Mismatch as exc:
                raise exc.inside(f"[{i}]") from None
        return
    if tp is dict:
        for k, v in value.items():
            if type(k) is not str:
                fail("an object with string keys", k)
            try:
                check_json(v)
            except Mismatch as exc:
                raise exc.inside(member_step(k)) from None
        return
    fail("a JSON value", value)


def inside(exc: Exception, step: str) -> Exception:
    """``exc`` (a Mismatch, or cattrs' error for an attrs element) as found at ``step`` inside its container."""
    if isinstance(exc, Mismatch):
        return exc.inside(step)
    return _Nested(step, exc)


class _Nested(Exception):
    """An element's detailed error (cattrs', for an attrs class) and the position of that element."""

    def __init__(self, step: str, error: Exception) -> None:
        super().__init__(step, error)
        self.step = step
        self.error = error


def member_step(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json.dumps(name, ensure_ascii=False)}]"
