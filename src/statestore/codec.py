"""The one place records become JSON and JSON becomes records.

A :class:`Codec` wraps a cattrs converter: by default the strict one of
:mod:`statestore.strict`, which converts nothing (a value must already be of
its declared type, a stored field the class does not declare is an error),
and turns its errors into :class:`~statestore.errors.ValidationError` naming
the collection or log, the key, the field path, the expected type and the
offending value.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import types
import typing
from collections import abc
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

import attrs
import cattrs

from statestore.errors import SchemaError, ValidationError
from statestore.strict import INT64_MAX, INT64_MIN, Mismatch, check_json, make_strict_converter, short, type_problem
from statestore.strict.counted import Counted, counted_structurer
from statestore.strict.types import _Nested

__all__ = ["Codec", "dumps", "loads", "pretty"]


def dumps(data: Any) -> str:
    """Canonical JSON text: sorted keys, compact, UTF-8 characters kept as they are.

    Raises ``ValueError`` for NaN/infinity (not JSON) and ``TypeError`` for
    values JSON cannot hold. A string holding a lone surrogate cannot be stored
    as UTF-8, so such a document is written with ``\\u`` escapes instead, which
    reads back identically.
    """
    text = _CANONICAL.encode(data)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _CANONICAL_ASCII.encode(data)
    return text


# Built once: json.dumps() with any option builds a new JSONEncoder per call,
# which was a fifth of the cost of encoding a ~500-byte record.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_CANONICAL_ASCII = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


loads = json.loads

_string = json.encoder.encode_basestring  # the C escaper, as ensure_ascii=False uses

_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


# Codec.encode's JSON is a tree the hooks built (or checked, check_json) just before:
# it holds no cycle, so the encoder needs no record of the containers it is inside,
# and one encoder serves every call (JSONEncoder.encode builds one per call: a fifth
# of encoding a ~500-byte record). Same bytes and errors as dumps() otherwise.
_TREE = (
    _c_make_encoder(None, _CANONICAL.default, _string, None, ":", ",", True, False, False)
    if _c_make_encoder is not None
    else None
)


def _dumps_tree(data: Any) -> str:
    """:func:`dumps` of JSON data known to hold no cycle (what the codec's hooks return)."""
    if _TREE is None:
        return dumps(data)
    text: str = "".join(_TREE(data, 0))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _CANONICAL_ASCII.encode(data)
    return text


_NULL = type(None)


def _plain_dict(o: dict[Any, Any]) -> bool:
    """True if ``o`` is plain JSON as statestore stores it (what ``check_json`` accepts), else False.

    Exact types only: dict with str keys, list, str, bool, None, an int of 64
    bits, a finite float. The scalars are checked in the loop (a call per value
    made ``check_json`` cost ~2 µs on a 500-byte record). Containers nested
    deeper than Python recurses raise RecursionError.
    """
    for k in o:
        if type(k) is not str:
            return False
    return _plain_values(o.values())


def _plain_values(values: Iterable[Any]) -> bool:
    """:func:`_plain_dict` of the values of a dict or the items of a list."""
    for v in values:
        t = type(v)
        if t is str or t is bool or t is _NULL:
            continue
        if t is int:
            if not INT64_MIN <= v <= INT64_MAX:
                return False
        elif t is float:
            if v - v != 0.0:  # NaN or an infinity
                return False
        elif t is dict:
            if not _plain_dict(v):
                return False
        elif t is not list or not _plain_values(v):
            return False
    return True


def pretty(data: Any) -> str:
    """``json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)``, about twice as fast.

    json's encoder falls back to pure Python whenever ``indent`` is set; this
    writes the same bytes for JSON data (dicts with str keys, lists, str,
    int, float, bool, None). Anything else raises TypeError, NaN and the
    infinities ValueError.
    """
    try:
        return _WRITERS[0][type(data)](data)
    except KeyError:
        pass  # not plain JSON (a tuple, a subclass, a key that is not a str, nested too deep): the walk
    out: list[str] = []
    _pretty(data, "\n", out)
    return "".join(out)


# The fast writer. Per nesting depth, a table of writers by exact type: a scalar's
# text is the same at any depth, a dict or list is written by the writers of its own
# depth, which know its indentation. A dict is written through its layout, made once
# per depth and tuple of keys (a record type's fields, mostly): the keys in sorted
# order, taken out by one itemgetter, and a %-format holding the escaped keys and the
# indentation, filled with the values' texts. A type the table lacks (a KeyError) sends
# the whole document to the walk (_pretty), which writes it or says why it cannot.
_DEPTHS = 48  # deeper containers take the walk
_LAYOUTS_MAX = 512  # layouts kept per depth (dicts of arbitrary keys would grow it without end)


def _float_text(v: float) -> str:
    text = float.__repr__(v)
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"{text} is not JSON")
    return text


def _null_text(_v: None) -> str:
    return "null"


_BOOL_TEXT = {True: "true", False: "false"}
_WRITERS: list[dict[type, Callable[[Any], str]]] = [
    {str: _string, int: int.__repr__, float: _float_text, bool: _BOOL_TEXT.__getitem__, type(None): _null_text}
    for _ in range(_DEPTHS)
]


def _container_writers(depth: int) -> tuple[Callable[[dict[str, Any]], str], Callable[[list[Any]], str]]:
    """The writers of a dict and of a list at nesting ``depth`` (their items are at ``depth + 1``)."""
    writers = _WRITERS[depth + 1]
    layouts: dict[tuple[Any, ...], tuple[Callable[[Any], Any], str, bool]] = {}
    outer = "\n" + "  " * depth
    inner = outer + "  "
    sep, list_open, list_close = "," + inner, "[" + inner, outer + "]"

    def layout(keys: tuple[Any, ...]) -> tuple[Callable[[Any], Any], str, bool]:
        for k in keys:
            if type(k) is not str:
                raise KeyError(k)  # the walk raises TypeError
        order = sorted(keys)
        items = ",".join(inner + _string(k).replace("%", "%%") + ": %s" for k in order)
        if len(layouts) >= _LAYOUTS_MAX:
            layouts.clear()
        got = layouts[keys] = (itemgetter(*order), "{" + items + outer + "}", len(order) == 1)
        return got

    def write_dict(o: dict[str, Any]) -> str:
        if not o:
            return "{}"
        keys = tuple(o)
        got = layouts.get(keys)
        if got is None:
            got = layout(keys)
        values, form, single = got
        if single:
            v = values(o)
            return form % (writers[type(v)](v),)
        return form % tuple([writers[type(v)](v) for v in values(o)])

    def write_list(o: list[Any]) -> str:
        if not o:
            return "[]"
        return list_open + sep.join([writers[type(v)](v) for v in o]) + list_close

    return write_dict, write_list


for _depth in range(_DEPTHS - 1):
    _WRITERS[_depth][dict], _WRITERS[_depth][list] = _container_writers(_depth)
del _depth


def _pretty(o: Any, nl: str, out: list[str]) -> None:
    """The walk: :func:`pretty` of anything, in Python (tuples and subclasses as json writes them)."""
    if isinstance(o, str):
        out.append(_string(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, float):
        if o != o or o in (float("inf"), float("-inf")):
            raise ValueError(f"{o!r} is not JSON")
        out.append(float.__repr__(o))
    elif isinstance(o, (dict, list, tuple)):
        if not o:
            out.append("{}" if isinstance(o, dict) else "[]")
            return
        inner = nl + "  "
        sep = inner
        if isinstance(o, dict):
            out.append("{")
            for k in sorted(o):
                if not isinstance(k, str):
                    raise TypeError(f"JSON object keys must be str, not {type(k).__name__}")
                out.append(sep)
                out.append(_string(k))
                out.append(": ")
                _pretty(o[k], inner, out)
                sep = "," + inner
            out.append(nl + "}")
        else:
            out.append("[")
            for v in o:
                out.append(sep)
                _pretty(v, inner, out)
                sep = "," + inner
            out.append(nl + "]")
    else:
        raise TypeError(f"{type(o).__name__} is not JSON")


def _describe(exc: BaseException) -> tuple[str, str]:
    """A cattrs or strict-codec error as (field path of the first problem, every problem with its path)."""
    problems = list(_problems(exc, "$"))
    if len(problems) == 1:
        return problems[0]
    return problems[0][0], "; ".join(f"{p}: {r}" for p, r in problems)


def _problems(exc: BaseException, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from _problems(sub, f"{path}.{note.name}")
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, cattrs.IterableValidationError):
        with_index, without = exc.group_exceptions()
        for sub, index_note in with_index:
            yield from _problems(sub, f"{path}[{index_note.index}]")
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, cattrs.ForbiddenExtraKeysError):
        names = ", ".join(sorted(exc.extra_fields))
        yield path, f"stored field(s) {names} not declared by {exc.cl.__name__} (add them, or migrate them away)"
    elif isinstance(exc, Mismatch):
        yield path + exc.path, exc.message
    elif isinstance(exc, _Nested):
        yield from _problems(exc.error, path + exc.step)
    elif isinstance(exc, KeyError):
        yield path, "required field missing"
    else:
        yield path, f"{type(exc).__name__}: {exc}"


_IMMUTABLE_TYPES = (str, int, float, bool, type(None), bytes, datetime.datetime, datetime.date, datetime.time)
_SEQUENCES = {list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet}
_MAPPINGS = {dict, abc.Mapping, abc.MutableMapping}


def _fresh_type(tp: Any, seen: set[Any]) -> bool:
    """Whether cattrs' JSON preset builds new objects for every mutable part of a ``tp`` (see Codec.fresh)."""
    if tp in _IMMUTABLE_TYPES or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return True
    if isinstance(tp, type) and attrs.has(tp):
        if tp in seen:
            return True  # a recursive type: decided by its other fields
        seen.add(tp)
        try:
            attrs.resolve_types(tp)
        except Exception:  # an annotation that cannot be resolved: assume the worst
            return False
        return all(_fresh_type(f.type, seen) for f in attrs.fields(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return True
    if origin is typing.Union or (origin is not None and origin is getattr(types, "UnionType", None)):
        return all(_fresh_type(a, seen) for a in args)
    if origin in _SEQUENCES and args:
        return all(a is Ellipsis or _fresh_type(a, seen) for a in args)
    if origin in _MAPPINGS and len(args) == 2:
        return _fresh_type(args[0], seen) and _fresh_type(args[1], seen)
    return False


@functools.lru_cache(maxsize=1)
def _default_converter() -> cattrs.Converter:
    # Shared by every store that brings no converter of its own: building one
    # costs ~0.5 ms, and its generated (un)structure functions are reused
    # rather than regenerated for every open. Customise by passing your own.
    return make_strict_converter()


class Codec:
    """Converts records of declared attrs types to JSON dicts and back.

    Without ``converter`` the strict converter of :mod:`statestore.strict`
    serves every store: nothing is converted, undeclared stored fields are
    refused, integers stay within 64 bits, datetimes carry a zone. An
    application's own cattrs ``converter`` (with hooks for its own types) is
    used as it is: its rules are the application's, and only its output is
    checked to be JSON (finite numbers, 64-bit integers, string keys) on
    every write.
    """

    def __init__(self, converter: cattrs.Converter | None = None) -> None:
        self.converter: cattrs.Converter = converter if converter is not None else _default_converter()
        self._own_hooks = converter is not None
        self._fresh: dict[Any, bool] = {}
        # Hooks by type, looked up once: cattrs' dispatch costs ~0.2 µs a call.
        self._unstructurers: dict[Any, Callable[[Any], Any]] = {}
        self._structurers: dict[Any, Callable[[Any, Any], Any]] = {}
        self._counted: dict[Any, Counted | None] = {}

    def check_type(self, what: str, field: str, tp: Any) -> None:
        """Raise SchemaError if values of ``tp`` (field ``field`` of ``what``) cannot be read back as written."""
        problem = type_problem(tp, custom_ok=self._own_hooks)
        if problem is not None:
            raise SchemaError(f"field {field!r} cannot be stored: {problem}", what)

    def fresh(self, tp: Any) -> bool:
        """True if structuring a ``tp`` builds every mutable part anew from the JSON it gets.

        Then a backend may hand its cached JSON to :meth:`decode` without
        copying it first: the record cannot alias the cache. True for attrs
        classes whose fields are scalars, enums, datetimes, and lists, tuples,
        sets and ``dict[str, ...]`` of such, nested to any depth; False for
        ``Any``, bare ``list``/``dict`` and any other type, and always False
        with an application's own converter (its hooks may return what they
        are given).
        """
        if self._own_hooks:
            return False
        got = self._fresh.get(tp)
        if got is None:
            got = self._fresh[tp] = _fresh_type(tp, set())
        return got

    def encode(
        self, what: str, tp: type[Any], record: object, key: Any = None, *, text: bool = True
    ) -> tuple[dict[str, Any], str]:
        """Unstructure ``record`` into (JSON dict, canonical JSON text).

        Raises ValidationError if ``record`` is not a ``tp``, a field holds a
        value of another type than declared, or the result is not JSON.

        With ``text=False`` (a backend that writes its own text and never reads
        the canonical one, ``Store._canonical_text``) the text is ``""`` when the
        dict is plain JSON (exact dict, list, str, int of 64 bits, finite float,
        bool, None; str keys) that shares no mutable part with ``record`` (the
        strict converter and a type :meth:`fresh` accepts): the backend may keep
        it as it is. Otherwise the canonical text is computed as with
        ``text=True``. The same records are accepted and refused either way
        (a dict that is not plain JSON takes the ``text=True`` checks).
        """
        if type(record) is not tp and not (self._own_hooks and isinstance(record, tp)):
            # Only the class itself: a subclass's own fields would be lost without a word.
            raise ValidationError(what, key, "", f"expected a {tp.__name__}, got {type(record).__name__}")
        try:
            hook = self._unstructurers.get(tp)
            if hook is None:
                hook = self._unstructurers[tp] = self.converter.get_unstructure_hook(tp)
            data = hook(record)
            if self._own_hooks:
                check_json(data)
        except Exception as exc:
            path, reason = _describe(exc)
            raise ValidationError(what, key, path, reason) from None
        if not text and not self._own_hooks and self.fresh(tp):
            try:
                # What json refuses, it refuses too (and more: then the text's checks below decide).
                if type(data) is dict and _plain_dict(data):
                    return data, ""
            except RecursionError:
                pass
        try:
            return data, _dumps_tree(data)
        except (TypeError, ValueError) as exc:
            raise ValidationError(what, key, "$", f"not JSON-serialisable: {exc}") from None

    def decode(self, what: str, tp: type[Any], data: Any, key: Any = None, seq: int | None = None) -> Any:
        """Structure a stored JSON dict into a ``tp``.

        Raises ValidationError naming the field path when the stored data
        does not fit the declared type: a value of another type, a required
        field missing, a field the class does not declare. For a log entry,
        ``key`` is its stream and ``seq`` its seq (the error names both).
        """
        try:
            hook = self._structurers.get(tp)
            if hook is None:
                hook = self._structurers[tp] = self.converter.get_structure_hook(tp)
            return hook(data, tp)
        except Exception as exc:
            path, reason = _describe(exc)
            raise ValidationError(what, key, path, f"stored data does not fit {tp.__name__}: {reason}", seq) from None

    def decode_rows(self, what: str, tp: type[Any], rows: Iterable[tuple[Any, Any, Any]]) -> list[Any]:
        """:meth:`decode` of each ``(key, _, data)`` row, in order (the hook looked up once, not per row).

        The first row that does not fit raises ValidationError naming its key, as :meth:`decode` does.
        """
        hook = self._structurers.get(tp)
        if hook is None:
            hook = self._structurers[tp] = self.converter.get_structure_hook(tp)
        out = []
        for key, _rev, data in rows:
            try:
                out.append(hook(data, tp))
            except Exception:
                out.append(self.decode(what, tp, data, key))  # raises, saying which field and why
        return out

    def counted(self, tp: Any) -> Counted | None:
        """The counting structurer of ``tp`` (``statestore.strict.counted``), or None.

        None for a class it does not serve, and always with an application's
        own converter (its hooks decide what a record is, not the strict rules).
        """
        if self._own_hooks:
            return None
        try:
            return self._counted[tp]
        except KeyError:
            got = self._counted[tp] = counted_structurer(tp)
            return got

    def value(self, what: str, field: str, tp: Any, value: object) -> Any:
        """The JSON form of ``value`` for a field of type ``tp`` (what ``find`` compares).

        ``None`` is always accepted (it finds records where the field is null
        or missing); any other value must fit ``tp`` as a record's would, else
        ValidationError.
        """
        if value is None:
            return None
        try:
            out = self.converter.unstructure(value, tp)
            if self._own_hooks:
                check_json(out)
            dumps(out)
        except Exception as exc:
            path, reason = _describe(exc)
            raise ValidationError(
                what, None, f"$.{field}{path[1:]}", f"cannot search for {short(value)}: {reason}"
            ) from None
        return out
