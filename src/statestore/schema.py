"""Declaring state: :class:`Collection`, :class:`Log` and :class:`Schema`.

Declarations are checked when they are made, so a typo in a field name or a
name that would make a bad table or folder is a :class:`SchemaError` at import
time of the application, never an SQL or path problem at run time.
"""

from __future__ import annotations

import enum
import hashlib
import keyword
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import attrs

from statestore.errors import SchemaError, ValidationError
from statestore.strict import type_problem

if TYPE_CHECKING:
    from statestore.migrations import MigrationContext

T = TypeVar("T")

#: The record type of collections and logs rebuilt from a stored description
#: (no application code at hand): plain JSON dicts.
RawRecord: TypeAlias = "dict[str, Any]"

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


def check_field_name(name: object, what: str, where: str = "") -> str:
    """Return ``name`` if it can name an attrs field (a Python identifier, not a keyword), else SchemaError.

    Declared fields pass by construction; this is the same check for names
    read from a store's description, which whoever crafted the store chose.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SchemaError(f"invalid {what} name {name!r}: a field name is a Python identifier", where)
    return name


def _names(value: object, what: str, where: str) -> list[str]:
    """A stored list of field names, each checked like a declared one (SchemaError otherwise)."""
    if not isinstance(value, (list, tuple)):
        raise SchemaError(f"{what} must be a list of field names, not {type(value).__name__}", where)
    return [check_field_name(f, what, where) for f in value]


def _described_fields(value: object, where: str) -> dict[str, Any]:
    """The ``fields`` of a stored description: field name -> type, names checked like declared ones."""
    if not isinstance(value, Mapping):
        raise SchemaError(f"fields must be an object of field names and types, not {type(value).__name__}", where)
    out = {}
    for name, tp in value.items():
        check_field_name(name, "field", where)
        if not isinstance(tp, str):
            raise SchemaError(f"field {name!r} has type {tp!r}, not a type name", where)
        out[name] = _DESCRIBED.get(tp, Any)
    return out


def _fields_of(cls: object, where: str) -> dict[str, Any]:
    if not isinstance(cls, type) or not attrs.has(cls):
        raise SchemaError(f"record type {cls!r} is not an attrs class", where)
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # NameError from a forward reference, mostly
        raise SchemaError(f"cannot resolve the field types of {cls.__name__}: {exc}", where) from None
    fields = {f.name: f.type for f in attrs.fields(cls)}
    for f in attrs.fields(cls):
        if not f.init:
            raise SchemaError(
                f"field {f.name!r} has init=False: a reader could not give it back its stored value "
                "(declare it in __init__, or keep it out of the record)",
                where,
            )
    for name, tp in fields.items():
        # Types no converter reads back as written (object, bytes, dict[int, ...]) are
        # refused now; a leaf class the table does not know may have hooks in the
        # application's converter, so that is checked by open_store (Codec.check_type).
        problem = type_problem(tp, custom_ok=True)
        if problem is not None:
            raise SchemaError(f"field {name!r} cannot be stored: {problem}", where)
    return fields


_DESCRIBED: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _shape_fields(cls: type) -> dict[str, Any]:
    """The ``fields`` (name -> type text) and ``defaults`` (names of fields with one) of an attrs class."""
    fields = attrs.fields(cls)
    shape: dict[str, Any] = {"fields": {f.name: _type_name(f.type) for f in fields}}
    defaults = [f.name for f in fields if f.default is not attrs.NOTHING]
    if defaults:
        shape["defaults"] = defaults
    return shape


def _nested_shapes(field_types: Mapping[str, Any]) -> dict[str, Any]:
    """The shape of every attrs class and enum the fields hold, at any depth, by qualified name.

    A class: its ``fields`` and ``defaults`` (as for the record class); an
    enum: ``{"enum": [its values]}``. Stored in the description so that a
    nested class or an enum changed without a new version is drift too.
    """
    out: dict[str, Any] = {}

    def walk(tp: Any) -> None:
        args = typing.get_args(tp)
        if args or typing.get_origin(tp) is not None:
            for arg in args:
                walk(arg)
            return
        if not isinstance(tp, type) or tp.__qualname__ in out:
            return
        if attrs.has(tp):
            out[tp.__qualname__] = {}  # before walking its fields: a class may hold itself
            attrs.resolve_types(tp)
            out[tp.__qualname__] = _shape_fields(tp)
            for f in attrs.fields(tp):
                walk(f.type)
        elif issubclass(tp, enum.Enum):
            out[tp.__qualname__] = {"enum": [m.value for m in tp]}

    for tp in field_types.values():
        walk(tp)
    return out


def _describe_fields(cls: type, field_types: Mapping[str, Any]) -> dict[str, Any]:
    """``fields``, and ``defaults`` and ``shapes`` where there are any, of a record class's description."""
    out = _shape_fields(cls) if attrs.has(cls) else {"fields": {n: _type_name(t) for n, t in field_types.items()}}
    shapes = _nested_shapes(field_types)
    if shapes:
        out["shapes"] = shapes
    return out


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
        """The key of ``record``: a scalar, or a tuple for a composite key.

        For a described collection (records are dicts) a missing key field
        raises KeyError.
        """
        if isinstance(record, dict):
            if self.composite:
                return tuple(record[f] for f in self.key_fields)
            raw: KeyValue = record[self.key_fields[0]]
            return raw
        if self.composite:
            return tuple(getattr(record, f) for f in self.key_fields)
        value: KeyValue = getattr(record, self.key_fields[0])
        return value

    @classmethod
    def described(cls, desc: Mapping[str, Any]) -> Collection[dict[str, Any]]:
        """The collection a stored description (``describe()``'s output) declares, holding plain dicts.

        This is how tools and migrations reach a collection without the
        application's classes: records read back as the JSON dicts they are
        stored as. A description that is not one raises SchemaError.
        """
        if not isinstance(desc, Mapping):
            raise SchemaError(f"not a collection description: {type(desc).__name__}", "stored description")
        where = f"stored description of collection {desc.get('name')!r}"
        try:
            coll: Collection[dict[str, Any]] = object.__new__(Collection)
            coll.name = check_name(desc["name"], "collection")
            coll.type = dict
            coll.field_types = _described_fields(desc["fields"], where)
            coll.key_fields = _field_tuple(_names(desc["key"], "key", where), where, "key")
            coll.indexes = tuple(_names(desc.get("indexes", []), "index", where))
            unique = desc.get("unique", [])
            if not isinstance(unique, list):
                raise SchemaError(f"unique must be a list, not {type(unique).__name__}", where)
            coll.unique = tuple(_field_tuple(_names(u, "unique", where), where, "unique") for u in unique)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"not a collection description ({type(exc).__name__}: {exc})", where) from None
        for f in coll.key_fields:
            if coll.field_types.get(f) not in (str, int):
                raise SchemaError(f"key field {f!r} is not declared str or int", where)
        for f in (*coll.indexes, *(f for group in coll.unique for f in group)):
            if f not in coll.field_types:
                raise SchemaError(f"field {f!r} is not a described field", where)
        coll._description = dict(desc)  # type: ignore[attr-defined]
        return coll

    def describe(self) -> dict[str, Any]:
        """A JSON description of the collection, stored inside every store."""
        described = getattr(self, "_description", None)
        if described is not None:
            return dict(described)
        return {
            "name": self.name,
            "type": self.type.__qualname__,
            "key": list(self.key_fields),
            "indexes": list(self.indexes),
            "unique": [list(u) for u in self.unique],
            **_describe_fields(self.type, self.field_types),
        }

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.type.__name__}, key={self.key_fields!r})"


def check_text(value: str, what: str, key: Any, path: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(what, key, path, "text is not valid Unicode (lone surrogate)") from None


def check_key(decl: Collection[Any], key_types: tuple[Any, ...], key: object) -> KeyValue:
    """``key`` if it can be a key of ``decl`` (whose key fields have ``key_types``), else ValidationError.

    Each part must be of its field's type exactly (a bool is not an int), an int
    must fit in 64 bits (what every backend stores) and a text must be valid
    Unicode (no lone surrogate). ``CollectionView`` answers the common keys
    before calling this; the legacy importer checks every key read with it.
    """
    parts = key if decl.composite else (key,)
    if not isinstance(parts, tuple) or len(parts) != len(key_types):
        want = f"a tuple of {len(key_types)} values" if decl.composite else "a single value"
        raise ValidationError(decl.name, key, "", f"key must be {want} ({', '.join(decl.key_fields)})")
    for name, tp, part in zip(decl.key_fields, key_types, parts):
        if type(part) is not tp and not (isinstance(part, tp) and not isinstance(part, bool)):
            raise ValidationError(
                decl.name, key, f"$.{name}", f"key field must be {tp.__name__}, got {type(part).__name__}"
            )
        if tp is str:
            check_text(part, decl.name, key, f"$.{name}")
        elif not -(2**63) <= part <= 2**63 - 1:
            # SQLite integers are 64-bit: refuse what not every backend can store.
            raise ValidationError(decl.name, key, f"$.{name}", "int key must fit in 64 bits")
    return key  # type: ignore[return-value]  # checked part by part above


class Log(Generic[T]):
    """An append-only log of records of one attrs type, split into named streams."""

    def __init__(self, name: str, type: type[T]) -> None:
        self.name = check_name(name, "log")
        self.type = type
        self.field_types = _fields_of(type, f"log {name!r}")

    @classmethod
    def described(cls, desc: Mapping[str, Any]) -> Log[dict[str, Any]]:
        """The log a stored description declares, holding plain dicts (see ``Collection.described``)."""
        if not isinstance(desc, Mapping):
            raise SchemaError(f"not a log description: {type(desc).__name__}", "stored description")
        try:
            log: Log[dict[str, Any]] = object.__new__(Log)
            log.name = check_name(desc["name"], "log")
            log.type = dict
            log.field_types = _described_fields(desc.get("fields", {}), f"stored description of log {log.name!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"not a log description ({type(exc).__name__}: {exc})", "stored description") from None
        log._description = dict(desc)  # type: ignore[attr-defined]
        return log

    @classmethod
    def internal(cls, name: str) -> Log[dict[str, Any]]:
        """One of statestore's own logs (``_statestore_…``): migration history, import provenance."""
        log: Log[dict[str, Any]] = object.__new__(Log)
        log.name = name
        log.type = dict
        log.field_types = {}
        log._description = {"name": name, "type": "dict", "fields": {}}  # type: ignore[attr-defined]
        return log

    def describe(self) -> dict[str, Any]:
        """A JSON description of the log, stored inside every store."""
        described = getattr(self, "_description", None)
        if described is not None:
            return dict(described)
        return {
            "name": self.name,
            "type": self.type.__qualname__,
            **_describe_fields(self.type, self.field_types),
        }

    def __repr__(self) -> str:
        return f"Log({self.name!r}, {self.type.__name__})"


@attrs.frozen
class Migration:
    """One step of a schema's history: what turns version ``version - 1`` into ``version``.

    ``up`` (and ``down``, which undoes it, if given) are called with a
    :class:`~statestore.migrations.MigrationContext` inside one transaction
    together with the history row. ``version`` is 2 or more. The history row
    keeps :meth:`checksum`, which covers the version and the name: give a
    migration whose behaviour changes after release a new name, and stores
    that applied the old one will say so instead of silently differing.
    """

    version: int
    name: str
    up: Callable[[MigrationContext], object]
    down: Callable[[MigrationContext], object] | None = None

    def __attrs_post_init__(self) -> None:
        where = f"migration {self.version!r}"
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 2:
            raise SchemaError(
                f"version must be an int >= 2 (version 1 is where every schema starts), not {self.version!r}", where
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise SchemaError("a migration needs a name (a short description)", where)
        if not callable(self.up):
            raise SchemaError("up must be a function taking the migration context", where)
        if self.down is not None and not callable(self.down):
            raise SchemaError("down must be a function taking the migration context, or None", where)

    def checksum(self) -> str:
        """A digest of the migration's declaration (version and name), kept in the history."""
        return migration_checksum(self.version, self.name)


def migration_checksum(version: int, name: str) -> str:
    """The checksum kept in the history for a migration declared as ``version``/``name``."""
    return hashlib.sha256(f"{version}\n{name}".encode()).hexdigest()[:16]


class Schema:
    """A named, versioned set of collections and logs: what one application stores.

    Collection and log names must be unique across the schema (they share one
    namespace of tables and files). ``migrations`` lead older stores to
    ``version`` (see :class:`Migration`); a version step without one changes
    no data.
    """

    def __init__(
        self,
        name: str,
        *,
        version: int,
        collections: Iterable[Collection[Any]],
        logs: Iterable[Log[Any]] = (),
        migrations: Iterable[Migration] = (),
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
        steps: dict[int, Migration] = {}
        for m in migrations:
            if not isinstance(m, Migration):
                raise SchemaError(f"{m!r} is not a Migration", where)
            if m.version in steps:
                raise SchemaError(f"two migrations to version {m.version}", where)
            if m.version > version:
                raise SchemaError(f"migration {m.version} ({m.name}) is beyond the schema's version {version}", where)
            steps[m.version] = m
        self.migrations: tuple[Migration, ...] = tuple(steps[v] for v in sorted(steps))
        #: True for a schema rebuilt from a store's description (no application code, no migrations).
        self.is_described = False

    @classmethod
    def described(cls, desc: Mapping[str, Any]) -> Schema:
        """The schema a stored description declares, with collections and logs of plain dicts.

        Collections and logs the description lists as retired (kept in the
        store, no longer declared by the application) are included.
        """
        if not isinstance(desc, Mapping):
            raise SchemaError(f"not a schema description: {type(desc).__name__}", "stored description")
        try:
            name, version = desc["name"], desc["version"]
            parts = {part: desc.get(part, []) for part in ("collections", "retired", "logs", "retired_logs")}
            for part, value in parts.items():
                if not isinstance(value, list):
                    raise SchemaError(f"{part} must be a list, not {type(value).__name__}", "stored description")
            # Retired ones too: the store still holds them, though the code no longer declares them.
            collections = [Collection.described(c) for c in (*parts["collections"], *parts["retired"])]
            logs = [Log.described(lg) for lg in (*parts["logs"], *parts["retired_logs"])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(f"not a schema description ({type(exc).__name__}: {exc})", "stored description") from None
        schema = cls(name, version=version, collections=collections, logs=logs)
        schema.is_described = True
        return schema

    def migration(self, version: int) -> Migration | None:
        """The migration to ``version``, or None if that step changes no data."""
        return next((m for m in self.migrations if m.version == version), None)

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


# ---------------------------------------------------------------- what every store keeps

#: A raw log entry as a backend returns it: (seq, stream, version, at, JSON dict).
RawEntry: TypeAlias = "tuple[int, str, int, str, dict[str, Any]]"
#: What a store holds about each schema: name -> (version, description).
StoredSchemas: TypeAlias = "dict[str, tuple[int, dict[str, Any]]]"

#: statestore's own log of every migration step, one stream per schema.
HISTORY = Log.internal("_statestore_history")
#: Provenance of a legacy import: one entry per source file read (statestore.legacy).
IMPORTS = Log.internal("_statestore_imports")
#: Records a legacy import quarantined (on_error="quarantine"), verbatim, with why.
REJECTS = Log.internal("_statestore_rejects")
#: Internal logs every store has, whatever its schemas.
INTERNAL_LOGS: tuple[Log[Any], ...] = (HISTORY, IMPORTS, REJECTS)
