"""The strict cattrs converter and its generated fast paths (statestore.strict)."""

from __future__ import annotations

import collections.abc as abc
import datetime as dt
import json
import math
import typing
from collections.abc import Callable
from typing import Any

import attrs

from statestore.strict.datetimes import parse_datetime
from statestore.strict.types import (
    INT64_MAX,
    INT64_MIN,
    NONE,
    SCALARS,
    Mismatch,
    check_json,
    fail,
    inside,
    kind_of,
    member_step,
    short,
    type_name,
)

if typing.TYPE_CHECKING:
    import cattrs

__all__ = ["make_strict_converter"]

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
            (NONE, _s_none, _u_none),
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
            if type(v) in SCALARS:
                got = table.get((type(v), v))
                if got is not None:
                    return got
            fail(f"{name} ({', '.join(short(m.value) for m in tp)})", v)

        return structure

    def _u_enum(self, tp: Any) -> Callable[[Any], Any]:
        name = tp.__name__

        def unstructure(v: Any) -> Any:
            if isinstance(v, tp):
                return v.value
            fail(f"a {name} member", v)

        return unstructure

    def _s_literal(self, tp: Any) -> Callable[[Any, Any], Any]:
        allowed = {(type(a), a) for a in typing.get_args(tp)}
        name = type_name(tp)

        def structure(v: Any, _: Any) -> Any:
            if type(v) in SCALARS and (type(v), v) in allowed:
                return v
            fail(name, v)

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
                fail(f"{name} (a JSON array)", v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(elem(x, et))
                except Exception as exc:
                    raise inside(exc, f"[{i}]") from None
            return out

        return structure

    def _u_list(self, tp: Any) -> Callable[[Any], Any]:
        elem = self._u(self._elem(tp))
        name = type_name(tp)
        origin = typing.get_origin(tp) or tp
        accept: Any = list if origin in (list, typing.List) else (list, tuple)  # noqa: UP006

        def unstructure(v: Any) -> Any:
            if not isinstance(v, accept) or isinstance(v, str):
                fail(name, v)
            out: list[Any] = []
            for i, x in enumerate(v):
                try:
                    out.append(elem(x))
                except Exception as exc:
                    raise inside(exc, f"[{i}]") from None
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
                fail(f"{name} (a JSON array)", v)
            out = []
            for i, x in enumerate(v):
                h, t = hooks[0] if homogeneous else hooks[i]
                try:
                    out.append(h(x, t))
                except Exception as exc:
                    raise inside(exc, f"[{i}]") from None
            return tuple(out)

        return structure

    def _u_tuple(self, tp: Any) -> Callable[[Any], Any]:
        ets, homogeneous = self._tuple_types(tp)
        hooks = [self._u(t) for t in ets]
        name = type_name(tp)

        def unstructure(v: Any) -> Any:
            if not isinstance(v, tuple) or (not homogeneous and len(v) != len(hooks)):
                fail(name, v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append((hooks[0] if homogeneous else hooks[i])(x))
                except Exception as exc:
                    raise inside(exc, f"[{i}]") from None
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
                fail(f"{type_name(tp)} (an array without repeated elements)", v)
            return out

        return structure

    def _u_set(self, tp: Any) -> Callable[[Any], Any]:
        elem = self._u(self._elem(tp))
        name = type_name(tp)

        def unstructure(v: Any) -> Any:
            if not isinstance(v, (set, frozenset)):
                fail(name, v)
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
                fail(f"{name} (a JSON object)", v)
            out = {}
            for k, x in v.items():
                try:
                    out[k] = val(x, vt)
                except Exception as exc:
                    raise inside(exc, member_step(k)) from None
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
                fail(name, v)
            out: dict[str, Any] = {}
            for k, x in v.items():
                if type(k) is not str:
                    fail(f"{name} (string keys)", k)
                try:
                    out[k] = val(x)
                except Exception as exc:
                    raise inside(exc, member_step(k)) from None
            return out

        return unstructure

    # ---------------------------------------------------- unions

    def _s_union(self, tp: Any) -> Callable[[Any, Any], Any]:
        members = typing.get_args(tp)
        name = type_name(tp)
        if len(members) == 2 and NONE in members:
            other = members[0] if members[1] is NONE else members[1]
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
            fail(name, v)

        return structure

    def _u_union(self, tp: Any) -> Callable[[Any], Any]:
        members = typing.get_args(tp)
        name = type_name(tp)
        if len(members) == 2 and NONE in members:
            other = self._u(members[0] if members[1] is NONE else members[1])
            return lambda v: None if v is None else other(v)  # the member's own error says more
        hooks = [self._u(m) for m in members]

        def unstructure(v: Any) -> Any:
            if v is None and NONE in members:
                return None
            for h in hooks:
                try:
                    return h(v)
                except Mismatch:
                    continue
            fail(name, v)

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
                    fail(f"{name} (a JSON object)", v)
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
                    fail(f"a {name}" + (f" (not the subclass {type(v).__name__})" if isinstance(v, tp) else ""), v)
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
    if kind_of(tp) != "list" or (typing.get_origin(tp) or tp) not in (list, typing.List):  # noqa: UP006
        return None
    args = typing.get_args(tp)
    return _INLINE.get(kind_of(args[0])) if args else None


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
        kind = kind_of(f.type)
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
    out: list[tuple[str, str]] = []
    for n, f in enumerate(fields):
        v = f"v{n}"
        kind = kind_of(f.type)
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
        out.append((f.name, f"{f.name!r}: {v}"))
    # The dict is built in sorted key order: the canonical text's encoder sorts its items,
    # and a list already in order costs the sort one comparison per key.
    items = ", ".join(item for _name, item in sorted(out))
    lines += [f"        return {{{items}}}", "    except Exception:", "        pass", "    return _slow(i)"]
    return _compile("unstructure", "\n".join(lines) + "\n", scope)


_MISSING = object()


class _Fallback(Exception):
    """Raised inside a generated fast path: the detailed path decides (and explains)."""


def _is(kind: str) -> Callable[[Any], bool]:
    return lambda tp: kind_of(tp) == kind


# Plain functions for the scalar rules: cattrs calls one per field, so each is as short as it can be.


def _s_str(v: Any, _: Any) -> Any:
    if type(v) is str:
        return v
    fail("str", v)


def _u_str(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, str):  # a str subclass (a StrEnum member) is a str: stored as its text
        return str.__str__(v)
    fail("str", v)


def _s_int(v: Any, _: Any) -> Any:
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    fail("int" if type(v) is not int else "an int from -2**63 to 2**63-1", v)


def _u_int(v: Any) -> Any:
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX:
        return int(v)  # an IntEnum member is an int: stored as its number
    fail("int" if not isinstance(v, int) or isinstance(v, bool) else "an int from -2**63 to 2**63-1", v)


def _s_float(v: Any, _: Any) -> Any:
    if type(v) is float:
        if math.isfinite(v):
            return v
    elif type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    fail("float (a finite number)", v)


def _u_float(v: Any) -> Any:
    if type(v) is float and math.isfinite(v):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX:
        return int(v)
    fail("float (a finite number)", v)


def _s_bool(v: Any, _: Any) -> Any:
    if v is True or v is False:
        return v
    fail("bool (true or false)", v)


def _u_bool(v: Any) -> Any:
    return _s_bool(v, None)


def _s_none(v: Any, _: Any) -> Any:
    if v is None:
        return None
    fail("None (null)", v)


def _u_none(v: Any) -> Any:
    return _s_none(v, None)


def _s_datetime(v: Any, _: Any) -> Any:
    if type(v) is not str:
        fail("a datetime (an ISO 8601 string)", v)
    return parse_datetime(v)


def _u_datetime(v: Any) -> Any:
    if not isinstance(v, dt.datetime):
        fail("a datetime", v)
    offset = v.utcoffset()
    if offset is None:
        fail("a datetime with a timezone (a naive one is ambiguous)", v.isoformat())
    if offset.seconds % 60 or offset.microseconds:
        # A zone's local mean time before standard time (Europe/Amsterdam in 1900: +00:19:32):
        # ISO 8601 has no such offset. Convert it to UTC, or to a zone with whole minutes.
        fail("a datetime whose UTC offset is whole minutes", v.isoformat())
    return v.isoformat()


def _s_any(v: Any, _: Any) -> Any:
    check_json(v)
    return v


def _u_any(v: Any) -> Any:
    check_json(v)
    return v
