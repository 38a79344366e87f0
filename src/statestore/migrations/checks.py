"""Checks on open and after the last step: newer stores, names, unique fields, records, drift of declarations."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from statestore.codec import dumps
from statestore.errors import (
    CorruptStoreError,
    MigrationError,
    SchemaDriftError,
    SchemaMismatchError,
    SchemaTooNewError,
    ValidationError,
)
from statestore.migrations.context import RETIRED, JsonDict
from statestore.query import value_key
from statestore.schema import (
    Collection,
    KeyValue,
    Log,
    Schema,
    StoredSchemas,
)

if TYPE_CHECKING:
    from statestore.store import Store

__all__ = [
    "check_names",
    "drift",
    "is_current",
    "records_checked_by_caller",
    "refuse_drift",
    "refuse_newer",
    "same_type_text",
    "step_error",
    "verify_records",
    "verify_unique",
]


def refuse_newer(store: Store, stored: StoredSchemas) -> None:
    for sch in store.schemas:
        got = stored.get(sch.name)
        if got is not None and got[0] > sch.version:
            raise SchemaTooNewError(store.location, sch.name, got[0], sch.version)


def check_names(store: Store, stored: StoredSchemas) -> None:
    """A name one schema in the store uses (or keeps, retired) cannot be declared by another."""
    for other, (_version, desc) in stored.items():
        for key in ("collections", "logs", *RETIRED):
            for item in desc.get(key, ()):
                owner = store._owner.get(item.get("name"))
                if owner is not None and owner.name != other:
                    raise SchemaMismatchError(
                        store.location,
                        f"{item['name']!r} of schema {owner.name!r} is already used by schema {other!r} in this store",
                    )


def verify_unique(store: Store, coll: Collection[Any]) -> None:
    """Stored records must already satisfy the declared unique fields (same check on every backend)."""
    for group in coll.unique:
        seen: dict[tuple[Any, ...], KeyValue] = {}
        for key, _rev, data in store._scan(coll, {}, copy=False):
            values = tuple(data.get(f) for f in group)
            if any(v is None for v in values):
                continue
            marker = tuple(value_key(v) for v in values)
            if marker in seen:
                raise SchemaMismatchError(
                    store.location,
                    f"collection {coll.name!r}: records {seen[marker]!r} and {key!r} share unique "
                    f"{', '.join(group)} = {', '.join(map(repr, values))}",
                )
            seen[marker] = key


#: Set by a caller that reads every record back itself after migrating (the legacy
#: importer, which turns what fails into rejects instead of failing the step).
_caller_checks_records: ContextVar[bool] = ContextVar("statestore_caller_checks_records", default=False)


@contextlib.contextmanager
def records_checked_by_caller() -> Iterator[None]:
    """Within the block, the last migration step does not refuse records the code cannot read: the caller checks."""
    token = _caller_checks_records.set(True)
    try:
        yield
    finally:
        _caller_checks_records.reset(token)


def verify_records(store: Store, sch: Schema, version: int) -> None:
    """After the last step every record and entry must read back as the code declares it (else the step fails)."""
    if sch.is_described or _caller_checks_records.get():
        return
    for coll in sch.collections:
        try:
            rows = store._scan(coll, {}, copy=False)
        except CorruptStoreError as exc:
            # A stored key the declared key cannot be (a file name "k" for an int key, say): the
            # declarations, not the store, are wrong for it, and the step rolls back.
            raise step_error(store, sch, version, "up", f"after the migration {coll.name}: {exc}") from None
        for key, _rev, data in rows:
            try:
                store.codec.decode(coll.name, coll.type, data, key)
            except ValidationError as exc:
                raise step_error(store, sch, version, "up", f"after the migration {exc}") from None
    for log in sch.logs:
        for seq, stream, _v, _at, data in store._entries(log, stream=None, prefix=None, after=0, limit=None):
            try:
                store.codec.decode(log.name, log.type, data, stream, seq)
            except ValidationError as exc:
                raise step_error(store, sch, version, "up", f"after the migration {exc}") from None


def is_current(store: Store, stored: StoredSchemas) -> bool:
    """Whether every schema is stored at the code's version with the code's description."""
    for sch in store.schemas:
        got = stored.get(sch.name)
        if got is None or got[0] != sch.version:
            return False
        if {k: v for k, v in got[1].items() if k not in RETIRED} != sch.describe():
            return False
    return True


def drift(schema: Schema, description: JsonDict) -> list[str]:
    """Every incompatible difference between ``schema``'s declarations and a stored description of the same version.

    Incompatible (listed): a changed key; a field removed, renamed or
    retyped; a field added without a default; a field that loses its default
    (records written before it was added may lack it); the same changes in an
    attrs class the fields hold at any depth; a value removed from an enum
    they hold; a collection or log the store keeps retired declared again
    with such a change. Compatible (and so not listed): a new field with a
    default, enum values added, indexes and unique fields added or removed,
    new collections and logs, a collection or log no longer declared (the
    store keeps it, retired). A description written before nested shapes and
    defaults were kept says nothing about them: those are not compared.
    """
    out: list[str] = []
    stored: dict[Any, JsonDict] = {}
    stored_logs: dict[Any, JsonDict] = {}
    # Retired first, so a declared one of the same name wins.
    for part, into in (
        ("retired", stored),
        ("collections", stored),
        ("retired_logs", stored_logs),
        ("logs", stored_logs),
    ):
        for d in description.get(part, ()):
            if isinstance(d, dict):
                into[d.get("name")] = d
    decls: list[tuple[str, Collection[Any] | Log[Any], Any]] = [
        *(("collection", c, stored.get(c.name)) for c in schema.collections),
        *(("log", lg, stored_logs.get(lg.name)) for lg in schema.logs),
    ]
    for what, decl, old in decls:
        if old is None:
            continue
        name = f"{what} {decl.name!r}"
        if isinstance(decl, Collection) and list(old.get("key", ())) != list(decl.key_fields):
            out.append(f"{name}: key changed from {list(old.get('key', ()))} to {list(decl.key_fields)}")
        now = decl.describe()
        _field_drift(name, old, now, out)
        old_shapes, new_shapes = old.get("shapes"), now.get("shapes", {})
        if not isinstance(old_shapes, dict):
            continue
        for cls in sorted(set(old_shapes) & set(new_shapes)):
            was, shape = old_shapes[cls], new_shapes[cls]
            if not isinstance(was, dict):
                continue
            if "enum" in shape:
                if isinstance(was.get("enum"), list):
                    kept = {dumps(v) for v in shape["enum"]}
                    for value in was["enum"]:
                        if dumps(value) not in kept:
                            out.append(f"{name}: enum {cls!r}: value {value!r} removed")
                elif "fields" in was:
                    out.append(f"{name}: {cls!r} changed from a class to an enum")
            elif "enum" in was:
                out.append(f"{name}: {cls!r} changed from an enum to a class")
            else:
                _field_drift(f"{name}: class {cls!r}", was, shape, out)
    return out


def _field_drift(name: str, old: JsonDict, now: JsonDict, out: list[str]) -> None:
    """``drift``'s field comparison of one record class (or a class nested in it): stored ``old``, declared ``now``."""
    was = old.get("fields", {})
    was = dict(was) if isinstance(was, dict) else {}
    fields = now["fields"]
    defaults = set(now.get("defaults", ()))
    for field in was:
        if field not in fields:
            out.append(f"{name}: field {field!r} removed or renamed")
        elif was[field] != fields[field] and same_type_text(str(was[field])) != same_type_text(str(fields[field])):
            out.append(f"{name}: field {field!r} changed type from {was[field]} to {fields[field]}")
    for field in fields:
        if field not in was and field not in defaults:
            out.append(f"{name}: field {field!r} added without a default")
    old_defaults = old.get("defaults", ())
    for field in old_defaults if isinstance(old_defaults, list) else ():
        if field in was and field in fields and field not in defaults:
            out.append(f"{name}: field {field!r} lost its default (records written before it was added may lack it)")


_QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
_GENERIC_ALIASES = {"List": "list", "Dict": "dict", "Tuple": "tuple", "Set": "set", "FrozenSet": "frozenset"}


def same_type_text(text: str) -> str:
    """A stored type name in one spelling, so a respelled type is not drift.

    ``Optional[X]`` and ``Union[A, B]`` become ``X | None`` and ``A | B``,
    ``List[...]`` (and the other typing aliases) ``list[...]``, and a
    module-qualified class name its own name: what ``ruff --fix`` or moving
    a class to another module changes in the text, not in the type.
    """
    if "'" in text or '"' in text:
        return text  # a Literal's strings may hold any character: compared as written
    try:
        node, rest = _parse_type(text.replace(" ", ""), 0)
    except IndexError:
        return text
    return node if rest >= len(text.replace(" ", "")) else text


def _parse_type(text: str, i: int) -> tuple[str, int]:
    """The canonical text of the type starting at ``text[i]`` (with its ``|`` members), and where it ends."""
    members = []
    while True:
        start = i
        while i < len(text) and text[i] not in "[],|":
            i += 1
        name = text[start:i]
        if _QUALIFIED.match(name):
            name = name.rsplit(".", 1)[-1]
        args: list[str] = []
        if i < len(text) and text[i] == "[":
            i += 1
            while True:
                arg, i = _parse_type(text, i)
                args.append(arg)
                if i < len(text) and text[i] == ",":
                    i += 1
                    continue
                i += 1  # the closing bracket
                break
        if name == "Optional" and len(args) == 1:
            members += [*args[0].split(" | "), "None"]
        elif name == "Union":
            members += [m for a in args for m in a.split(" | ")]
        else:
            name = _GENERIC_ALIASES.get(name, name)
            members.append(f"{name}[{', '.join(args)}]" if args else name)
        if i < len(text) and text[i] == "|":
            i += 1
            continue
        return " | ".join(members), i


def refuse_drift(store: Store, stored: StoredSchemas) -> None:
    for sch in store.schemas:
        got = stored.get(sch.name)
        if got is None or got[0] != sch.version or sch.is_described:
            continue
        if got[1].get("shapes_of", sch.version) != sch.version:
            continue  # left by a step down (or one of several up): not the shapes of this version
        changes = drift(sch, got[1])
        if changes:
            raise SchemaDriftError(
                "declarations changed without a new version",
                sch.name,
                store.location,
                sch.name,
                sch.version,
                tuple(changes),
            )


def step_error(store: Store, sch: Schema, version: int, direction: str, reason: str) -> MigrationError:
    m = sch.migration(version)
    return MigrationError(store.location, sch.name, version, m.name if m else "", direction, reason)
