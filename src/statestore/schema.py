"""Declaring state: :class:`Collection`, :class:`Log` and :class:`Schema`.

Declarations are checked when they are made, so a typo in a field name or a
name that would make a bad table or folder is a :class:`SchemaError` at import
time of the application, never an SQL or path problem at run time.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import attrs

from statestore.errors import SchemaError

T = TypeVar("T")

#: A stored key: one ``str``/``int`` field, or a tuple of them for a composite key.
KeyValue: TypeAlias = "str | int | tuple[str | int, ...]"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid identifier, else raise :class:`SchemaError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SchemaError(
            f"invalid {what} name {name!r}: use 1-63 characters of [a-z0-9_], starting with a letter",
        )
    if name.startswith("sqlite_"):
        raise SchemaError(f"invalid {what} name {name!r}: names starting with sqlite_ are reserved by SQLite")
    return name


def _fields_of(cls: object, where: str) -> dict[str, Any]:
    if not isinstance(cls, type) or not attrs.has(cls):
        raise SchemaError(f"record type {cls!r} is not an attrs class", where)
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # NameError from a forward reference, mostly
        raise SchemaError(f"cannot resolve the field types of {cls.__name__}: {exc}", where) from None
    return {f.name: f.type for f in attrs.fields(cls)}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _field_tuple(value: str | Sequence[str], where: str, what: str) -> tuple[str, ...]:
    fields = (value,) if isinstance(value, str) else tuple(value)
    if not fields or not all(isinstance(f, str) for f in fields):
        raise SchemaError(f"{what} must be a field name or a tuple of field names", where)
    if len(set(fields)) != len(fields):
        raise SchemaError(f"{what} {fields!r} names a field twice", where)
    return fields


class Collection(Generic[T]):
    """A keyed set of records of one attrs type.

    ``key`` names the key field, or a tuple of fields for a composite key; key
    fields must be declared ``str`` or ``int``. ``indexes`` are fields that
    :meth:`find` looks up through an index; ``unique`` are fields (or tuples of
    fields) whose values no two records may share. ``None`` values are exempt
    from unique constraints, as in SQL.
    """

    def __init__(
        self,
        name: str,
        type: type[T],
        *,
        key: str | Sequence[str],
        indexes: Iterable[str] = (),
        unique: Iterable[str | Sequence[str]] = (),
    ) -> None:
        self.name = check_name(name, "collection")
        where = f"collection {name!r}"
        self.type = type
        self.field_types = _fields_of(type, where)
        self.key_fields = _field_tuple(key, where, "key")
        for f in self.key_fields:
            self._check_field(f, "key", where)
            tp = self.field_types[f]
            if tp not in (str, int):
                raise SchemaError(f"key field {f!r} must be declared str or int, not {_type_name(tp)}", where)
        self.indexes: tuple[str, ...] = tuple(indexes) if not isinstance(indexes, str) else (indexes,)
        if len(set(self.indexes)) != len(self.indexes):
            raise SchemaError(f"indexes {self.indexes!r} name a field twice", where)
        for f in self.indexes:
            self._check_field(f, "index", where)
        if isinstance(unique, str):
            unique = (unique,)
        self.unique: tuple[tuple[str, ...], ...] = tuple(_field_tuple(u, where, "unique") for u in unique)
        for group in self.unique:
            for f in group:
                self._check_field(f, "unique", where)

    def _check_field(self, field: str, what: str, where: str) -> None:
        if field not in self.field_types:
            known = ", ".join(self.field_types)
            raise SchemaError(f"{what} field {field!r} is not a field of {self.type.__name__} ({known})", where)

    @property
    def composite(self) -> bool:
        """True when the key is a tuple of several fields."""
        return len(self.key_fields) > 1

    @property
    def lookup_fields(self) -> tuple[str, ...]:
        """Fields a backend keeps an index on: declared indexes, then unique fields."""
        out = list(self.indexes)
        for group in self.unique:
            out.extend(f for f in group if f not in out)
        return tuple(out)

    def key_of(self, record: T) -> KeyValue:
        """The key of ``record``: a scalar, or a tuple for a composite key."""
        if self.composite:
            return tuple(getattr(record, f) for f in self.key_fields)
        value: KeyValue = getattr(record, self.key_fields[0])
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON description of the collection, stored inside every store."""
        return {
            "name": self.name,
            "type": self.type.__qualname__,
            "key": list(self.key_fields),
            "indexes": list(self.indexes),
            "unique": [list(u) for u in self.unique],
            "fields": {n: _type_name(t) for n, t in self.field_types.items()},
        }

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.type.__name__}, key={self.key_fields!r})"


class Log(Generic[T]):
    """An append-only log of records of one attrs type, split into named streams."""

    def __init__(self, name: str, type: type[T]) -> None:
        self.name = check_name(name, "log")
        self.type = type
        self.field_types = _fields_of(type, f"log {name!r}")

    def describe(self) -> dict[str, Any]:
        """A JSON description of the log, stored inside every store."""
        return {
            "name": self.name,
            "type": self.type.__qualname__,
            "fields": {n: _type_name(t) for n, t in self.field_types.items()},
        }

    def __repr__(self) -> str:
        return f"Log({self.name!r}, {self.type.__name__})"


class Schema:
    """A named, versioned set of collections and logs: what one application stores.

    Collection and log names must be unique across the schema (they share one
    namespace of tables and files).
    """

    def __init__(
        self,
        name: str,
        *,
        version: int,
        collections: Iterable[Collection[Any]],
        logs: Iterable[Log[Any]] = (),
    ) -> None:
        self.name = check_name(name, "schema")
        where = f"schema {name!r}"
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"version must be an int >= 1, not {version!r}", where)
        self.version = version
        self.collections: tuple[Collection[Any], ...] = tuple(collections)
        self.logs: tuple[Log[Any], ...] = tuple(logs)
        seen: set[str] = set()
        for decl in (*self.collections, *self.logs):
            if not isinstance(decl, (Collection, Log)):
                raise SchemaError(f"{decl!r} is not a Collection or Log", where)
            if decl.name in seen:
                raise SchemaError(f"name {decl.name!r} is declared twice", where)
            seen.add(decl.name)

    def collection(self, name: str) -> Collection[Any] | None:
        """The collection called ``name``, or None."""
        return next((c for c in self.collections if c.name == name), None)

    def log(self, name: str) -> Log[Any] | None:
        """The log called ``name``, or None."""
        return next((lg for lg in self.logs if lg.name == name), None)

    def describe(self) -> dict[str, Any]:
        """The schema's JSON description, stored in the store so tools can read it."""
        return {
            "name": self.name,
            "version": self.version,
            "collections": [c.describe() for c in self.collections],
            "logs": [lg.describe() for lg in self.logs],
        }

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, version={self.version})"
