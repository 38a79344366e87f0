"""What each declared type accepts: the strict converter behind the codec.

A value must already be of its declared type; nothing is converted, in either
direction (a record written, a stored document read):

=========================  ==================================================  ==========================
declared type              JSON it accepts                                     a reader gets
=========================  ==================================================  ==========================
``str``                    a string                                            ``str``
``int``                    an integer from -2**63 to 2**63-1 (not a bool,      ``int``
                           not a float, not a numeric string)
``float``                  a finite number; an integer stays exact             ``float`` (or the ``int``)
``bool``                   ``true`` / ``false``                                ``bool``
``None``, ``X | None``     ``null`` (or what ``X`` accepts)                    ``None``
``datetime``               an ISO 8601 string with ``Z`` or an offset and      an aware ``datetime``
                           0-9 fractional digits (more than 6 only when the
                           extra digits are zeros)
``Enum`` subclass          one of its values, of the same JSON type            the member
``Literal[...]``           one of its values, of the same JSON type            the value
``list[X]``, ``Sequence``  an array of what ``X`` accepts                      ``list``
``tuple[X, ...]``          an array (of the declared length for ``tuple[A,B]``)  ``tuple``
``set[X]``, ``frozenset``  an array without repeated elements                  ``set`` / ``frozenset``
``dict[str, X]``           an object whose values ``X`` accepts                ``dict``
an attrs class             an object with its fields, and no other             an instance
``A | B``                  what one member accepts, taken as it is             that value
``Any``                    any JSON (finite numbers, 64-bit integers)          the JSON value
=========================  ==================================================  ==========================

Anything else (``object``, ``bytes``, a ``dict`` with non-``str`` keys, a
class cattrs has no JSON form for) cannot be read back as written, so
:func:`type_problem` names it and declarations refuse it. Integers beyond
64 bits are refused everywhere, on every backend, since SQLite cannot
index or compare them.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import datetime as dt
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NoReturn

import attrs

if typing.TYPE_CHECKING:
    import cattrs

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "TRUNCATED_TIMES",
    "Mismatch",
    "check_json",
    "keep_truncated_times",
    "make_strict_converter",
    "parse_datetime",
    "short",
    "type_name",
    "type_problem",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NONE = type(None)
_SCALARS = (str, int, float, bool, _NONE)


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


def _fail(expected: str, value: object) -> NoReturn:
    raise Mismatch(f"expected {expected}, got {short(value)}")


def type_name(tp: Any) -> str:
    """A readable name for a declared type: ``str``, ``list[str]``, ``Color | None``."""
    if tp is _NONE or tp is None:
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


def _kind(tp: Any) -> str:
    """Which rule of the table serves ``tp`` (``"?"`` for none)."""
    if tp in (str, int, float, bool):
        return str(tp.__name__)
    if tp is _NONE or tp is None:
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
    return type(v) in (str, bool, _NONE)


def type_problem(tp: Any, *, custom_ok: bool = False) -> str | None:
    """Why values of ``tp`` cannot round-trip through JSON, or None if they can.

    ``custom_ok`` accepts leaf types the table does not know (an
    application's own converter has hooks for them).
    """
    return _problem(tp, custom_ok, set())


def _problem(tp: Any, custom_ok: bool, seen: set[Any]) -> str | None:
    kind = _kind(tp)
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
    kind = _kind(tp)
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
            if "none" in (_kind(a), _kind(b)) and "any" in (_kind(a), _kind(b)):
                continue  # null reads back as None either way
            if _kind(a) == "any" or _kind(b) == "any":
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
    if _kind(a) != "attrs" or _kind(b) != "attrs":
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
            _fail("an integer from -2**63 to 2**63-1", value)
        return
    if tp is float:
        if not math.isfinite(value):
            _fail("a finite number (NaN and infinities are not JSON)", value)
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
                _fail("an object with string keys", k)
            try:
                check_json(v)
            except Mismatch as exc:
                raise exc.inside(_member(k)) from None
        return
    _fail("a JSON value", value)


def _inside(exc: Exception, step: str) -> Exception:
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


def _member(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json.dumps(name, ensure_ascii=False)}]"


# ---------------------------------------------------------------- datetimes

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))\Z",
    re.ASCII,
)

#: While set (by the legacy importer), timestamps with more than 6 fractional
#: digits are cut to microseconds and each original text is appended here.
TRUNCATED_TIMES: ContextVar[list[str] | None] = ContextVar("statestore_truncated_times", default=None)
_truncated = TRUNCATED_TIMES


@contextlib.contextmanager
def keep_truncated_times() -> Iterator[list[str]]:
    """Within the block, cut nanosecond timestamps to microseconds and list each one cut.

    Outside such a block a timestamp whose 7th-9th fractional digits are not
    zero is refused: a Python datetime would lose them. The legacy import
    report counts what was cut, per source.
    """
    seen: list[str] = []
    token = _truncated.set(seen)
    try:
        yield seen
    finally:
        _truncated.reset(token)


def parse_datetime(text: str) -> dt.datetime:
    """An aware datetime from ISO 8601 text with ``Z`` or an offset, on every supported Python.

    Raises Mismatch for anything else: no zone, a date alone, an impossible
    date, or digits beyond microseconds (unless inside :func:`keep_truncated_times`).
    """
    m = _ISO.match(text)
    if m is None:
        _fail("an ISO 8601 timestamp with Z or an offset, e.g. 2024-05-17T12:34:56Z", text)
    year, month, day, hour, minute, second, frac, z, sign, oh, om = m.groups()
    micro = 0
    if frac:
        if len(frac) > 6 and frac[6:].strip("0"):
            seen = _truncated.get()
            if seen is None:
                _fail(f"at most microseconds ({len(frac)} fractional digits would be cut)", text)
            seen.append(text)
        micro = int(frac[:6].ljust(6, "0"))
    if z:
        tz: dt.tzinfo = dt.timezone.utc
    else:
        if int(om) > 59:
            _fail("a UTC offset with minutes from 00 to 59", text)
        offset = dt.timedelta(hours=int(oh), minutes=int(om))
        if offset >= dt.timedelta(hours=24):
            _fail("a UTC offset under 24 hours", text)
        tz = dt.timezone(-offset if sign == "-" else offset)
    try:
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError as exc:
        raise Mismatch(f"expected a valid timestamp, got {short(text)} ({exc})") from None


# ---------------------------------------------------------------- the converter


def make_strict_converter() -> cattrs.Converter:
    """A cattrs converter that converts nothing: see the table in this module's docstring."""
    import cattrs  # here, not at the top: declaring a schema (which checks types) needs no converter

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    _Strict(conv).register()
    return conv


class _Strict:
    """The strict structure and unstructure hooks, registered on one converter."""

    def __init__(self, conv: cattrs.Converter) -> None:
        self.conv = conv
        self._building: set[Any] = set()  # attrs classes whose hooks are being made (recursive types)

    def register(self) -> None:
        c = self.conv
        for tp, s, u in (
            (str, _s_str, _u_str),
            (int, _s_int, _u_int),
            (float, _s_float, _u_float),
            (bool, _s_bool, _u_bool),
            (_NONE, _s_none, _u_none),
            (dt.datetime, _s_datetime, _u_datetime),
        ):
            c.register_structure_hook(tp, s)
            c.register_unstructure_hook(tp, u)
        c.register_structure_hook_func(lambda t: t is Any, _s_any)
        c.register_unstructure_hook_func(lambda t: t is Any, _u_any)
        for kind, sf, uf in (
            ("enum", self._s_enum, self._u_enum),
            ("literal", self._s_literal, self._u_literal),
            ("list", self._s_list, self._u_list),
            ("tuple", self._s_tuple, self._u_tuple),
            ("set", self._s_set, self._u_set),
            ("dict", self._s_dict, self._u_dict),
            ("union", self._s_union, self._u_union),
            ("attrs", self._s_attrs, self._u_attrs),
        ):
            c.register_structure_hook_factory(_is(kind), sf)
            c.register_unstructure_hook_factory(_is(kind), uf)

    def _s(self, tp: Any) -> Callable[[Any, Any], Any]:
        if tp in self._building:  # a recursive type: look its hook up when first used
            found: list[Callable[[Any, Any], Any]] = []

            def lazy(v: Any, t: Any) -> Any:
                if not found:
                    found.append(self.conv.get_structure_hook(tp))
                return found[0](v, t)

            return lazy
        return self.conv.get_structure_hook(tp)

    def _u(self, tp: Any) -> Callable[[Any], Any]:
        if tp in self._building:
            found: list[Callable[[Any], Any]] = []

            def lazy(v: Any) -> Any:
                if not found:
                    found.append(self.conv.get_unstructure_hook(tp))
                return found[0](v)

            return lazy
        return self.conv.get_unstructure_hook(tp)

    # ---------------------------------------------------- enums and literals

    def _s_enum(self, tp: Any) -> Callable[[Any, Any], Any]:
        table = {(type(m.value), m.value): m for m in tp}
        name = tp.__name__

        def structure(v: Any, _: Any) -> Any:
            if type(v) in _SCALARS:
                got = table.get((type(v), v))
                if got is not None:
                    return got
            _fail(f"{name} ({', '.join(short(m.value) for m in tp)})", v)

        return structure

    def _u_enum(self, tp: Any) -> Callable[[Any], Any]:
        name = tp.__name__

        def unstructure(v: Any) -> Any:
            if isinstance(v, tp):
                return v.value
            _fail(f"a {name} member", v)

        return unstructure

    def _s_literal(self, tp: Any) -> Callable[[Any, Any], Any]:
        allowed = {(type(a), a) for a in typing.get_args(tp)}
        name = type_name(tp)

        def structure(v: Any, _: Any) -> Any:
            if type(v) in _SCALARS and (type(v), v) in allowed:
                return v
            _fail(name, v)

        return structure

    def _u_literal(self, tp: Any) -> Callable[[Any], Any]:
        check = self._s_literal(tp)
        return lambda v: check(v, tp)

    # ---------------------------------------------------- containers

    @staticmethod
    def _elem(tp: Any) -> Any:
        args = typing.get_args(tp)
        return args[0] if args else Any

    def _s_list(self, tp: Any) -> Callable[[Any, Any], Any]:
        et = self._elem(tp)
        elem = self._s(et)
        name = type_name(tp)

        def structure(v: Any, _: Any) -> Any:
            if type(v) is not list:
                _fail(f"{name} (a JSON array)", v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(elem(x, et))
                except Exception as exc:
                    raise _inside(exc, f"[{i}]") from None
            return out

        return structure

    def _u_list(self, tp: Any) -> Callable[[Any], Any]:
        elem = self._u(self._elem(tp))
        name = type_name(tp)
        origin = typing.get_origin(tp) or tp
        accept: Any = list if origin in (list, typing.List) else (list, tuple)  # noqa: UP006

        def unstructure(v: Any) -> Any:
            if not isinstance(v, accept) or isinstance(v, str):
                _fail(name, v)
            out: list[Any] = []
            for i, x in enumerate(v):
                try:
                    out.append(elem(x))
                except Exception as exc:
                    raise _inside(exc, f"[{i}]") from None
            return out

        return unstructure

    def _tuple_types(self, tp: Any) -> tuple[Any, bool]:
        args = typing.get_args(tp)
        if not args:
            return (Any,), True
        if len(args) == 2 and args[1] is Ellipsis:
            return (args[0],), True
        return args, False

    def _s_tuple(self, tp: Any) -> Callable[[Any, Any], Any]:
        ets, homogeneous = self._tuple_types(tp)
        hooks = [(self._s(t), t) for t in ets]
        name = type_name(tp)

        def structure(v: Any, _: Any) -> Any:
            if type(v) is not list or (not homogeneous and len(v) != len(hooks)):
                _fail(f"{name} (a JSON array)", v)
            out = []
            for i, x in enumerate(v):
                h, t = hooks[0] if homogeneous else hooks[i]
                try:
                    out.append(h(x, t))
                except Exception as exc:
                    raise _inside(exc, f"[{i}]") from None
            return tuple(out)

        return structure

    def _u_tuple(self, tp: Any) -> Callable[[Any], Any]:
        ets, homogeneous = self._tuple_types(tp)
        hooks = [self._u(t) for t in ets]
        name = type_name(tp)

        def unstructure(v: Any) -> Any:
            if not isinstance(v, tuple) or (not homogeneous and len(v) != len(hooks)):
                _fail(name, v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append((hooks[0] if homogeneous else hooks[i])(x))
                except Exception as exc:
                    raise _inside(exc, f"[{i}]") from None
            return out

        return unstructure

    def _s_set(self, tp: Any) -> Callable[[Any, Any], Any]:
        as_list = self._s_list(tp)
        origin = typing.get_origin(tp) or tp
        make: Callable[[Any], Any] = frozenset if origin is frozenset else set

        def structure(v: Any, t: Any) -> Any:
            items = as_list(v, t)
            out = make(items)
            if len(out) != len(items):
                _fail(f"{type_name(tp)} (an array without repeated elements)", v)
            return out

        return structure

    def _u_set(self, tp: Any) -> Callable[[Any], Any]:
        elem = self._u(self._elem(tp))
        name = type_name(tp)

        def unstructure(v: Any) -> Any:
            if not isinstance(v, (set, frozenset)):
                _fail(name, v)
            # Sorted by their JSON text: a set has no order, and the stored bytes must not depend on hashing.
            return sorted((elem(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))

        return unstructure

    def _s_dict(self, tp: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        val = self._s(vt)
        name = type_name(tp)

        def structure(v: Any, _: Any) -> Any:
            if type(v) is not dict:
                _fail(f"{name} (a JSON object)", v)
            out = {}
            for k, x in v.items():
                try:
                    out[k] = val(x, vt)
                except Exception as exc:
                    raise _inside(exc, _member(k)) from None
            return out

        return structure

    def _u_dict(self, tp: Any) -> Callable[[Any], Any]:
        args = typing.get_args(tp)
        val = self._u(args[1] if len(args) == 2 else Any)
        name = type_name(tp)
        origin = typing.get_origin(tp) or tp
        accept: Any = dict if origin is dict else abc.Mapping

        def unstructure(v: Any) -> Any:
            if not isinstance(v, accept):
                _fail(name, v)
            out: dict[str, Any] = {}
            for k, x in v.items():
                if type(k) is not str:
                    _fail(f"{name} (string keys)", k)
                try:
                    out[k] = val(x)
                except Exception as exc:
                    raise _inside(exc, _member(k)) from None
            return out

        return unstructure

    # ---------------------------------------------------- unions

    def _s_union(self, tp: Any) -> Callable[[Any, Any], Any]:
        members = typing.get_args(tp)
        name = type_name(tp)
        if len(members) == 2 and _NONE in members:
            other = members[0] if members[1] is _NONE else members[1]
            hook = self._s(other)

            def optional(v: Any, _: Any) -> Any:
                return None if v is None else hook(v, other)

            return optional
        hooks = [(self._s(m), m) for m in members]
        from cattrs import BaseValidationError

        def structure(v: Any, _: Any) -> Any:
            for h, m in hooks:
                try:
                    return h(v, m)
                except (Mismatch, BaseValidationError, KeyError):
                    continue
            _fail(name, v)

        return structure

    def _u_union(self, tp: Any) -> Callable[[Any], Any]:
        members = typing.get_args(tp)
        name = type_name(tp)
        if len(members) == 2 and _NONE in members:
            other = self._u(members[0] if members[1] is _NONE else members[1])
            return lambda v: None if v is None else other(v)  # the member's own error says more
        hooks = [self._u(m) for m in members]

        def unstructure(v: Any) -> Any:
            if v is None and _NONE in members:
                return None
            for h in hooks:
                try:
                    return h(v)
                except Mismatch:
                    continue
            _fail(name, v)

        return unstructure

    # ---------------------------------------------------- attrs classes

    def _s_attrs(self, tp: Any) -> Callable[[Any, Any], Any]:
        from cattrs.gen import make_dict_structure_fn

        self._building.add(tp)
        try:
            slow = make_dict_structure_fn(tp, self.conv)
            name = tp.__name__

            def structure(v: Any, t: Any) -> Any:
                if type(v) is not dict:
                    _fail(f"{name} (a JSON object)", v)
                return slow(v, t)

            return _fast_structure(tp, self, structure) or structure
        finally:
            self._building.discard(tp)

    def _u_attrs(self, tp: Any) -> Callable[[Any], Any]:
        self._building.add(tp)
        try:
            hooks = [(f.name, self._u(f.type)) for f in attrs.fields(attrs.resolve_types(tp))]
            name = tp.__name__

            def unstructure(v: Any) -> Any:
                if type(v) is not tp:  # a subclass's own fields would be lost: only the class itself
                    _fail(f"a {name}" + (f" (not the subclass {type(v).__name__})" if isinstance(v, tp) else ""), v)
                out = {}
                for field, hook in hooks:
                    try:
                        out[field] = hook(getattr(v, field))
                    except Mismatch as exc:
                        raise exc.inside(f".{field}") from None
                return out

            return _fast_unstructure(tp, self, unstructure) or unstructure
        finally:
            self._building.discard(tp)


# ---------------------------------------------------------------- generated fast paths
#
# cattrs' generated functions call one hook per field, and a strict hook is a
# Python call where cattrs' own for ``str`` is the C ``str()``: about 1.5 µs
# more for a record of eleven fields. So each attrs class also gets a function
# that checks scalar fields inline (``type(v) is str``) and calls hooks only
# for the others; on anything unexpected it hands the value to the detailed
# path above, which raises the precise error (or, for a value that does fit
# after all, returns the same result).

_INLINE = {
    "str": "type({v}) is str",
    "int": "type({v}) is int and -9223372036854775808 <= {v} <= 9223372036854775807",
    "float": "((type({v}) is float and {v} - {v} == 0.0)"
    " or (type({v}) is int and -9223372036854775808 <= {v} <= 9223372036854775807))",
    "bool": "({v} is True or {v} is False)",
}


def _inline_list(tp: Any) -> str | None:
    """For ``list[str]`` and the like: the inline check of one element, else None."""
    if _kind(tp) != "list" or (typing.get_origin(tp) or tp) not in (list, typing.List):  # noqa: UP006
        return None
    args = typing.get_args(tp)
    return _INLINE.get(_kind(args[0])) if args else None


def _plain_fields(tp: Any) -> list[attrs.Attribute[Any]] | None:
    """The fields of ``tp`` if a generated fast path can serve it (every field in ``__init__`` by its name)."""
    try:
        fields = attrs.fields(attrs.resolve_types(tp))
    except Exception:
        return None
    if any(not f.init or f.alias != f.name or f.converter is not None for f in fields):
        return None
    return list(fields)


def _compile(name: str, source: str, scope: dict[str, Any]) -> Callable[..., Any]:
    exec(compile(source, f"<statestore strict {name}>", "exec"), scope)  # noqa: S102 - source built from field names
    fn: Callable[..., Any] = scope[name]
    return fn


def _fast_structure(tp: Any, strict: _Strict, slow: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any] | None:
    fields = _plain_fields(tp)
    if fields is None:
        return None
    scope: dict[str, Any] = {
        "_cl": tp,
        "_slow": slow,
        "_MISS": _MISSING,
        "_Fallback": _Fallback,
    }
    # A stored field the class does not declare is found by counting: once every declared
    # field was looked up, the dict holds another key exactly when it holds more keys than
    # were found (cheaper than comparing its keys with the declared names).
    lines = [
        "def structure(o, t=None):",
        "    if type(o) is not dict:",
        "        return _slow(o, t)",
        "    try:",
    ]
    required: list[tuple[str, str]] = []
    optional: list[tuple[str, str]] = []
    kw_only = {f.name for f in fields if f.kw_only}
    for i, f in enumerate(fields):
        v = f"v{i}"
        kind = _kind(f.type)
        has_default = f.default is not attrs.NOTHING
        lines.append(f"        {v} = o.get({f.name!r}, _MISS)" if has_default else f"        {v} = o[{f.name!r}]")
        guard = f"{v} is not _MISS and " if has_default else ""
        elem = _inline_list(f.type)
        if kind in _INLINE:
            lines.append(f"        if {guard}not ({_INLINE[kind].format(v=v)}):")
            lines.append("            raise _Fallback")
        elif elem is not None:
            indent = "            " if has_default else "        "
            if has_default:
                lines.append(f"        if {v} is not _MISS:")
            lines.append(f"{indent}if type({v}) is not list:")
            lines.append(f"{indent}    raise _Fallback")
            lines.append(f"{indent}for x in {v}:")
            lines.append(f"{indent}    if not ({elem.format(v='x')}):")
            lines.append(f"{indent}        raise _Fallback")
            lines.append(f"{indent}{v} = {v}.copy()")
        else:
            scope[f"_h{i}"], scope[f"_t{i}"] = strict._s(f.type), f.type
            call = f"_h{i}({v}, _t{i})"
            lines.append(f"        if {v} is not _MISS:" if has_default else "        if True:")
            lines.append(f"            {v} = {call}")
        (optional if has_default else required).append((f.name, v))
    # attrs' __init__ takes the fields that are not keyword-only by position, in field
    # order: passed so, a call costs half as much as by keyword.
    positional = [v for n, v in (*required, *optional) if n not in kw_only]
    positional.sort(key=lambda v: int(v[1:]))  # field order
    args = ", ".join([*positional, *(f"{n}={v}" for n, v in (*required, *optional) if n in kw_only)])
    if optional:
        present = " and ".join(f"{v} is not _MISS" for _n, v in optional)
        lines.append(f"        if {present} and len(o) == {len(fields)}:")
        lines.append(f"            return _cl({args})")
        lines.append(f"        kw = {{{', '.join(f'{n!r}: {v}' for n, v in required)}}}")
        for n, v in optional:
            lines.append(f"        if {v} is not _MISS:")
            lines.append(f"            kw[{n!r}] = {v}")
        lines.append("        if len(kw) != len(o):")
        lines.append("            raise _Fallback")
        lines.append("        return _cl(**kw)")
    else:
        lines.append(f"        if len(o) != {len(fields)}:")
        lines.append("            raise _Fallback")
        lines.append(f"        return _cl({args})")
    lines += ["    except Exception:", "        pass", "    return _slow(o, t)"]
    return _compile("structure", "\n".join(lines) + "\n", scope)


def _fast_unstructure(tp: Any, strict: _Strict, slow: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    fields = _plain_fields(tp)
    if fields is None:
        return None
    scope: dict[str, Any] = {"_cl": tp, "_slow": slow, "_Fallback": _Fallback}
    lines = ["def unstructure(i):", "    if type(i) is not _cl:", "        return _slow(i)", "    try:"]
    out = []
    for n, f in enumerate(fields):
        v = f"v{n}"
        kind = _kind(f.type)
        lines.append(f"        {v} = i.{f.name}")
        elem = _inline_list(f.type)
        if kind in _INLINE:
            lines.append(f"        if not ({_INLINE[kind].format(v=v)}):")
            lines.append("            raise _Fallback")
        elif elem is not None:
            lines.append(f"        if type({v}) is not list:")
            lines.append("            raise _Fallback")
            lines.append(f"        for x in {v}:")
            lines.append(f"            if not ({elem.format(v='x')}):")
            lines.append("                raise _Fallback")
            lines.append(f"        {v} = {v}.copy()")
        else:
            scope[f"_h{n}"] = strict._u(f.type)
            lines.append(f"        {v} = _h{n}({v})")
        out.append(f"{f.name!r}: {v}")
    lines += [f"        return {{{', '.join(out)}}}", "    except Exception:", "        pass", "    return _slow(i)"]
    return _compile("unstructure", "\n".join(lines) + "\n", scope)


_MISSING = object()


class _Fallback(Exception):
    """Raised inside a generated fast path: the detailed path decides (and explains)."""


def _is(kind: str) -> Callable[[Any], bool]:
    return lambda tp: _kind(tp) == kind


# Plain functions for the scalar rules: cattrs calls one per field, so each is as short as it can be.


def _s_str(v: Any, _: Any) -> Any:
    if type(v) is str:
        return v
    _fail("str", v)


def _u_str(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, str):  # a str subclass (a StrEnum member) is a str: stored as its text
        return str.__str__(v)
    _fail("str", v)


def _s_int(v: Any, _: Any) -> Any:
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    _fail("int" if type(v) is not int else "an int from -2**63 to 2**63-1", v)


def _u_int(v: Any) -> Any:
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX:
        return int(v)  # an IntEnum member is an int: stored as its number
    _fail("int" if not isinstance(v, int) or isinstance(v, bool) else "an int from -2**63 to 2**63-1", v)


def _s_float(v: Any, _: Any) -> Any:
    if type(v) is float:
        if math.isfinite(v):
            return v
    elif type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    _fail("float (a finite number)", v)


def _u_float(v: Any) -> Any:
    if type(v) is float and math.isfinite(v):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX:
        return int(v)
    _fail("float (a finite number)", v)


def _s_bool(v: Any, _: Any) -> Any:
    if v is True or v is False:
        return v
    _fail("bool (true or false)", v)


def _u_bool(v: Any) -> Any:
    return _s_bool(v, None)


def _s_none(v: Any, _: Any) -> Any:
    if v is None:
        return None
    _fail("None (null)", v)


def _u_none(v: Any) -> Any:
    return _s_none(v, None)


def _s_datetime(v: Any, _: Any) -> Any:
    if type(v) is not str:
        _fail("a datetime (an ISO 8601 string)", v)
    return parse_datetime(v)


def _u_datetime(v: Any) -> Any:
    if not isinstance(v, dt.datetime):
        _fail("a datetime", v)
    offset = v.utcoffset()
    if offset is None:
        _fail("a datetime with a timezone (a naive one is ambiguous)", v.isoformat())
    if offset.seconds % 60 or offset.microseconds:
        # A zone's local mean time before standard time (Europe/Amsterdam in 1900: +00:19:32):
        # ISO 8601 has no such offset. Convert it to UTC, or to a zone with whole minutes.
        _fail("a datetime whose UTC offset is whole minutes", v.isoformat())
    return v.isoformat()


def _s_any(v: Any, _: Any) -> Any:
    check_json(v)
    return v


def _u_any(v: Any) -> Any:
    check_json(v)
    return v
