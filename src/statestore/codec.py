"""The one place records become JSON and JSON becomes records.

A :class:`Codec` wraps a cattrs converter (by default cattrs' JSON preset, so
datetimes, enums, nested attrs classes, lists, dicts and optionals round-trip)
and turns its errors into :class:`~statestore.errors.ValidationError` naming the
collection, the key and the field path.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import types
import typing
from collections import abc
from typing import Any

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from statestore.errors import ValidationError

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

# json's C encoder (absent on some Pythons) writes a container of scalars at
# one indentation level exactly as indent=2 would, given that level's
# separators; pretty() hands it every such container instead of walking it in
# Python (a record's nested objects and lists: ~40 % of its cost).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_FLAT = frozenset({str, int, float, bool, type(None)})  # exact types: subclasses take the walk
_flat_encoders: dict[str, Any] = {}


def _not_json(o: object) -> None:
    raise TypeError(f"{type(o).__name__} is not JSON")


def _flat(o: Any, inner: str) -> str | None:
    """``o`` (a non-empty dict or list) at indentation ``inner`` if it holds only scalars, else None."""
    if _c_make_encoder is None:
        return None
    if type(o) is dict:
        for k, v in o.items():
            if type(k) is not str or type(v) not in _FLAT:
                return None
    elif type(o) is list:
        for v in o:
            if type(v) not in _FLAT:
                return None
    else:
        return None
    enc = _flat_encoders.get(inner)
    if enc is None:
        enc = _flat_encoders[inner] = _c_make_encoder(
            None, _not_json, _string, None, ": ", "," + inner, True, False, False
        )
    text: str = "".join(enc(o, 0))
    return text[0] + inner + text[1:-1] + inner[:-2] + text[-1]


def pretty(data: Any) -> str:
    """``json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)``, about twice as fast.

    json's encoder falls back to pure Python whenever ``indent`` is set; this
    writes the same bytes for JSON data (dicts with str keys, lists, str,
    int, float, bool, None). Anything else raises TypeError.
    """
    out: list[str] = []
    _pretty(data, "\n", out)
    return "".join(out)


def _pretty(o: Any, nl: str, out: list[str]) -> None:
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
        flat = _flat(o, inner)
        if flat is not None:
            out.append(flat)
            return
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
    """Split a cattrs error into (field path, reason)."""
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        messages = cattrs.transform_error(exc)
        paths, reasons = [], []
        for msg in messages:
            reason, _, path = msg.rpartition(" @ ")
            paths.append(path or "$")
            reasons.append(reason or msg)
        if len(messages) == 1:
            return paths[0], reasons[0]
        return paths[0], "; ".join(f"{p}: {r}" for p, r in zip(paths, reasons))
    return "$", f"{type(exc).__name__}: {exc}"


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
    return make_converter()


class Codec:
    """Converts records of declared attrs types to JSON dicts and back.

    ``converter`` may be an application's own cattrs converter with its hooks
    (without one, all stores share cattrs' JSON preset converter);
    its unstructured output must be JSON (dicts, lists, str, int, float, bool,
    None), which is checked on every write.
    """

    def __init__(self, converter: cattrs.Converter | None = None) -> None:
        self.converter: cattrs.Converter = converter if converter is not None else _default_converter()
        self._own_hooks = converter is not None
        self._fresh: dict[Any, bool] = {}

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

    def encode(self, what: str, tp: type[Any], record: object, key: Any = None) -> tuple[dict[str, Any], str]:
        """Unstructure ``record`` into (JSON dict, canonical JSON text).

        Raises ValidationError if ``record`` is not a ``tp`` or does not make JSON.
        """
        if not isinstance(record, tp):
            raise ValidationError(what, key, "", f"expected a {tp.__name__}, got {type(record).__name__}")
        try:
            data = self.converter.unstructure(record, tp)
        except Exception as exc:
            path, reason = _describe(exc)
            raise ValidationError(what, key, path, f"cannot convert to JSON: {reason}") from None
        try:
            return data, dumps(data)
        except (TypeError, ValueError) as exc:
            raise ValidationError(what, key, "$", f"not JSON-serialisable: {exc}") from None

    def decode(self, what: str, tp: type[Any], data: Any, key: Any = None) -> Any:
        """Structure a stored JSON dict into a ``tp``.

        Raises ValidationError naming the field path when the stored data no
        longer fits the declared type (a field removed, a type changed).
        """
        try:
            return self.converter.structure(data, tp)
        except Exception as exc:
            path, reason = _describe(exc)
            raise ValidationError(what, key, path, f"stored data does not fit {tp.__name__}: {reason}") from None

    def value(self, what: str, field: str, tp: Any, value: object) -> Any:
        """The JSON form of ``value`` for a field of type ``tp`` (what ``find`` compares)."""
        try:
            out = self.converter.unstructure(value, tp)
            dumps(out)
        except Exception as exc:
            raise ValidationError(what, None, f"$.{field}", f"cannot compare with {value!r}: {exc}") from None
        return out
