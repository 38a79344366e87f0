"""Schema migrations: record-level steps that run the same on every backend.

A :class:`~statestore.schema.Migration` changes stored JSON through a
:class:`MigrationContext` (``map_records``, ``rename_collection``,
``drop_collection``, ``map_entries``, raw reads and writes), which is built
from the backend's record primitives, so the same migration gives the same
store on SQLite and on files. Physical structure (tables, generated columns,
indexes, folders) is not a migration: it follows the declarations on open.

Each step runs in one write transaction together with its history row (an
entry of the internal ``_statestore_history`` log, one stream per schema) and
the new version. Openers that race each other serialize on the store's
migration lock, so each step runs once; a backup is taken before the first.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from statestore.codec import dumps
from statestore.errors import (
    MigrationError,
    MigrationHistoryError,
    MigrationRequiredError,
    ReadOnlyError,
    SchemaDriftError,
    SchemaMismatchError,
    SchemaTooNewError,
    StateStoreError,
    ValidationError,
)
from statestore.schema import (
    HISTORY,
    INTERNAL_LOGS,
    Collection,
    KeyValue,
    Log,
    Migration,
    RawEntry,
    Schema,
    StoredSchemas,
    migration_checksum,
)
from statestore.views import CollectionView

if TYPE_CHECKING:
    from statestore.store import Store

_log = logging.getLogger("statestore")
__all__ = ["HistoryRow", "MigrationContext", "migrate", "open_schemas", "read_history"]

JsonDict = dict[str, Any]
#: Keys of a stored description listing what the store keeps that the code no longer declares.
_RETIRED = ("retired", "retired_logs")


@attrs.frozen
class HistoryRow:
    """One step in a schema's history, as kept in the store.

    ``direction`` is ``"create"`` (the store was created at ``version``),
    ``"up"`` or ``"down"`` (migration ``version`` was applied or undone).
    ``checksum`` is :meth:`Migration.checksum` of the declaration that ran.
    """

    schema: str
    version: int
    name: str
    checksum: str
    direction: str
    applied_at: datetime


def read_history(store: Store, schema: str) -> list[HistoryRow]:
    """Every history row of ``schema``, oldest first."""
    rows = store._entries(HISTORY, stream=schema, prefix=None, after=0, limit=None)
    return [
        HistoryRow(
            schema,
            int(data.get("version", 0)),
            str(data.get("name", "")),
            str(data.get("checksum", "")),
            str(data.get("direction", "")),
            datetime.fromisoformat(at),
        )
        for _seq, _stream, _version, at, data in rows
    ]


def append_history(store: Store, schema: str, version: int, name: str, direction: str) -> None:
    """Add a history row inside the current write transaction."""
    data = {
        "version": version,
        "name": name,
        "checksum": migration_checksum(version, name),
        "direction": direction,
    }
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    current = store._stream_version(HISTORY, schema)
    store._add_entry(HISTORY, schema, current + 1, at, data, dumps(data))


class _Run:
    """What the steps of one migration run share: the shape of the store as the steps change it.

    A stored description lists the collections and logs the store holds,
    including ``retired`` ones (kept in the store, no longer declared by the
    code). Renames and drops change it step by step, so after a downgrade the
    description names what the older code will find.
    """

    def __init__(self, stored: StoredSchemas) -> None:
        self.collections: dict[str, dict[str, JsonDict]] = {}
        self.logs: dict[str, dict[str, JsonDict]] = {}
        for name, (_version, desc) in stored.items():
            items = [*desc.get("collections", ()), *desc.get("retired", ())]
            self.collections[name] = {c["name"]: c for c in items}
            self.logs[name] = {lg["name"]: lg for lg in (*desc.get("logs", ()), *desc.get("retired_logs", ()))}
        self.dropped: set[str] = set()
        self.extra: dict[str, Collection[Any]] = {}

    def collection(self, name: str) -> JsonDict | None:
        return next((c[name] for c in self.collections.values() if name in c), None)

    def log(self, name: str) -> JsonDict | None:
        return next((lg[name] for lg in self.logs.values() if name in lg), None)

    def renamed(self, schema: str, old: str, new: Collection[Any]) -> None:
        for colls in self.collections.values():
            colls.pop(old, None)
        self.collections.setdefault(schema, {})[new.name] = new.describe()
        self.dropped.add(old)
        self.dropped.discard(new.name)

    def dropped_collection(self, name: str) -> None:
        for colls in self.collections.values():
            colls.pop(name, None)
        self.dropped.add(name)

    def description(self, schema: str, base: JsonDict) -> JsonDict:
        """``base`` with the collections and logs the store holds now."""
        desc = {k: v for k, v in base.items() if k not in _RETIRED}
        desc["collections"] = list(self.collections.get(schema, {}).values())
        desc["logs"] = list(self.logs.get(schema, {}).values())
        return desc

    def final(self, schema: Schema) -> JsonDict:
        """The code's description, plus the collections the store keeps that the code no longer declares."""
        desc = schema.describe()
        declared = {c.name for c in schema.collections}
        retired = [c for n, c in self.collections.get(schema.name, {}).items() if n not in declared]
        if retired:
            desc["retired"] = retired
        logs = {lg.name for lg in schema.logs}
        retired_logs = [lg for n, lg in self.logs.get(schema.name, {}).items() if n not in logs]
        if retired_logs:
            desc["retired_logs"] = retired_logs
        return desc


class MigrationContext:
    """What a migration's ``up`` or ``down`` function gets: record-level access to the store.

    Records are plain JSON dicts (the stored form), whatever the
    application's classes look like now. A collection or log is named by
    string; it may be one the code declares, or one only the store still
    holds (renamed or dropped by this code). Every change joins the step's
    transaction: if the function raises, nothing it did is kept.
    """

    def __init__(self, store: Store, run: _Run, schema: Schema, version: int, name: str, direction: str) -> None:
        self.store = store
        self.schema = schema
        #: The migration's version, and whether it is being applied ("up") or undone ("down").
        self.version = version
        self.name = name
        self.direction = direction
        self._run = run
        self._views: dict[str, CollectionView[Any]] = {}
        #: (collection, key) being processed, for error messages.
        self.at: tuple[str, KeyValue | None] = ("", None)

    # ------------------------------------------------------------ declarations

    def _fail(self, reason: str, collection: str = "", key: KeyValue | None = None) -> MigrationError:
        return MigrationError(
            self.store.location, self.schema.name, self.version, self.name, self.direction, reason, collection, key
        )

    def _collection(self, name: str) -> Collection[Any]:
        if name not in self._run.dropped:
            owner = self.store._owner.get(name)
            decl = owner.collection(name) if owner is not None else None
            if decl is not None:
                return decl
            if name in self._run.extra:
                return self._run.extra[name]
            desc = self._run.collection(name)
            if desc is not None:
                return Collection.described(desc)
        raise self._fail(f"no collection {name!r} in the store or the code", name)

    def _log(self, name: str) -> Log[Any]:
        if name not in self._run.dropped:
            owner = self.store._owner.get(name)
            decl = owner.log(name) if owner is not None else None
            if decl is not None:
                return decl
            desc = self._run.log(name)
            if desc is not None:
                return Log.described(desc)
        raise self._fail(f"no log {name!r} in the store or the code", name)

    def _key(self, decl: Collection[Any], data: object) -> KeyValue:
        if not isinstance(data, dict):
            raise self._fail(f"a record must be a dict, not {type(data).__name__}", decl.name, self.at[1])
        view = self._views.get(decl.name)
        if view is None or view.decl is not decl:
            view = self._views[decl.name] = CollectionView(self.store, decl)
        missing = [f for f in decl.key_fields if f not in data]
        if missing:
            raise self._fail(f"record has no key field {missing[0]!r}", decl.name, self.at[1])
        try:
            return view._key(decl.key_of(data))
        except ValidationError as exc:
            raise self._fail(exc.reason, decl.name, self.at[1]) from None

    def _text(self, decl_name: str, key: KeyValue | None, data: JsonDict) -> str:
        try:
            return dumps(data)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"record is not JSON: {exc}", decl_name, key) from None

    # ------------------------------------------------------------ reading

    def records(self, collection: str) -> list[JsonDict]:
        """Every record of ``collection`` as a dict (yours to change), in key order."""
        decl = self._collection(collection)
        return [data for _key, _rev, data in self.store._scan(decl, {})]

    def get(self, collection: str, key: KeyValue) -> JsonDict | None:
        """The record stored under ``key``, or None."""
        got = self.store._get(self._collection(collection), key)
        return None if got is None else got[1]

    def entries(self, log: str) -> list[JsonDict]:
        """Every entry of ``log`` as ``{"seq", "stream", "version", "at", "record"}``, by seq."""
        rows = self.store._entries(self._log(log), stream=None, prefix=None, after=0, limit=None)
        return [{"seq": s, "stream": st, "version": v, "at": at, "record": d} for s, st, v, at, d in rows]

    # ------------------------------------------------------------ writing

    def put(self, collection: str, record: JsonDict) -> None:
        """Store ``record`` (a dict holding its key fields) in ``collection``, replacing any."""
        decl = self._collection(collection)
        key = self._key(decl, record)
        text = self._text(decl.name, key, record)
        current = self.store._revision(decl, key)
        self.store._write(decl, key, (current or 0) + 1, record, text)

    def delete(self, collection: str, key: KeyValue) -> bool:
        """Delete the record under ``key``; True if it existed."""
        return self.store._remove(self._collection(collection), key)

    def map_records(self, collection: str, fn: Callable[[JsonDict], JsonDict | None]) -> int:
        """Pass every record of ``collection`` through ``fn``; return how many changed.

        ``fn`` gets the stored dict and returns the new one (it may change the
        one it got), or None to delete the record. A record whose key fields
        change moves to its new key; if that key is taken, the migration
        fails. A record ``fn`` returns unchanged is not rewritten.
        """
        decl = self._collection(collection)
        store = self.store
        changed = 0
        for key, revision, data in store._scan(decl, {}):
            self.at = (decl.name, key)
            before = self._text(decl.name, key, data)
            new = fn(data)
            if new is None:
                store._remove(decl, key)
                changed += 1
                continue
            new_key = self._key(decl, new)
            text = self._text(decl.name, key, new)
            if new_key == key and text == before:
                continue
            if new_key != key:
                if store._revision(decl, new_key) is not None:
                    raise self._fail(f"the new key {new_key!r} is taken", decl.name, key)
                store._remove(decl, key)
                store._write(decl, new_key, 1, new, text)
            else:
                store._write(decl, key, revision + 1, new, text)
            changed += 1
        self.at = ("", None)
        return changed

    def rename_collection(self, old: str, new: str) -> None:
        """Move every record of ``old`` to ``new`` (keeping revisions) and remove ``old``.

        ``new`` may be a collection the code declares (then its key fields
        apply) or a name of the migration's choosing; it must hold no records.
        """
        src = self._collection(old)
        owner = self.store._owner.get(new)
        dst = owner.collection(new) if owner is not None else None
        if dst is None:
            desc = {**src.describe(), "name": new}
            try:
                dst = Collection.described(desc)
            except StateStoreError as exc:
                raise self._fail(str(exc), new) from None
            self._run.extra[new] = dst
        self._run.dropped.discard(new)
        self.store._sync_structure([dst], [], full=False)
        if self.store._count(dst):
            raise self._fail(f"cannot rename {old!r} to {new!r}: {new!r} already holds records", new)
        for key, revision, data in self.store._scan(src, {}):
            self.at = (old, key)
            new_key = self._key(dst, data)
            self.store._write(dst, new_key, revision, data, self._text(new, new_key, data))
        self.at = ("", None)
        self.store._drop(src)
        self._run.renamed(self.schema.name, old, dst)

    def drop_collection(self, name: str) -> None:
        """Delete ``name`` and every record in it."""
        self.store._drop(self._collection(name))
        self._run.dropped_collection(name)

    def map_entries(self, log: str, fn: Callable[[JsonDict], JsonDict]) -> int:
        """Pass the record of every entry of ``log`` through ``fn``; return how many changed.

        Entries keep their seq, stream, version and timestamp: a log is
        history, so a migration may reshape entries but not remove them.
        """
        decl = self._log(log)
        rows = self.store._entries(decl, stream=None, prefix=None, after=0, limit=None)
        out: list[RawEntry] = []
        changed = 0
        for seq, stream, version, at, data in rows:
            self.at = (decl.name, seq)
            before = self._text(decl.name, seq, data)
            new = fn(data)
            if not isinstance(new, dict):
                raise self._fail(f"fn must return a dict, not {type(new).__name__}", decl.name, seq)
            if self._text(decl.name, seq, new) != before:
                changed += 1
            out.append((seq, stream, version, at, new))
        self.at = ("", None)
        if changed:
            self.store._replace_entries(decl, out)
        return changed


# ---------------------------------------------------------------- opening


def _refuse_newer(store: Store, stored: StoredSchemas) -> None:
    for sch in store.schemas:
        got = stored.get(sch.name)
        if got is not None and got[0] > sch.version:
            raise SchemaTooNewError(store.location, sch.name, got[0], sch.version)


def _check_names(store: Store, stored: StoredSchemas) -> None:
    """A name one schema in the store uses (or keeps, retired) cannot be declared by another."""
    for other, (_version, desc) in stored.items():
        for key in ("collections", "logs", *_RETIRED):
            for item in desc.get(key, ()):
                owner = store._owner.get(item.get("name"))
                if owner is not None and owner.name != other:
                    raise SchemaMismatchError(
                        store.location,
                        f"{item['name']!r} of schema {owner.name!r} is already used by schema {other!r} in this store",
                    )


def verify_history(store: Store, schema: Schema, stored_version: int) -> None:
    """Raise MigrationHistoryError if the applied history disagrees with the declared migrations."""
    applied: dict[int, HistoryRow] = {}
    base = 0
    rows = read_history(store, schema.name)
    if not rows:
        return
    for row in rows:
        if row.direction == "create":
            applied, base = {}, row.version
        elif row.direction == "up":
            applied[row.version] = row
        elif row.direction == "down":
            applied.pop(row.version, None)
    for v in range(base + 1, stored_version + 1):
        declared = schema.migration(v)
        got = applied.get(v)
        name = declared.name if declared is not None else ""
        if got is None:
            if declared is not None:
                raise MigrationHistoryError(
                    store.location,
                    schema.name,
                    v,
                    f"the store never applied {name!r}, yet it is at version {stored_version}",
                )
            continue
        if got.checksum != migration_checksum(v, name):
            what = f"declares {name!r}" if declared is not None else "declares no migration"
            raise MigrationHistoryError(
                store.location,
                schema.name,
                v,
                f"the store applied {got.name or '(no migration)'!r} but the code {what}",
            )


def _verify_unique(store: Store, coll: Collection[Any]) -> None:
    """Stored records must already satisfy the declared unique fields (same check on every backend)."""
    for group in coll.unique:
        seen: dict[tuple[Any, ...], KeyValue] = {}
        for key, _rev, data in store._scan(coll, {}, copy=False):
            values = tuple(data.get(f) for f in group)
            if any(v is None for v in values):
                continue
            marker = tuple(dumps(v) for v in values)
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


def _verify_records(store: Store, sch: Schema, version: int) -> None:
    """After the last step every record and entry must read back as the code declares it (else the step fails)."""
    if sch.is_described or _caller_checks_records.get():
        return
    for coll in sch.collections:
        for key, _rev, data in store._scan(coll, {}, copy=False):
            try:
                store.codec.decode(coll.name, coll.type, data, key)
            except ValidationError as exc:
                raise _step_error(store, sch, version, "up", f"after the migration {exc}") from None
    for log in sch.logs:
        for _seq, stream, _v, _at, data in store._entries(log, stream=None, prefix=None, after=0, limit=None):
            try:
                store.codec.decode(log.name, log.type, data, stream)
            except ValidationError as exc:
                raise _step_error(store, sch, version, "up", f"after the migration {exc}") from None


def _current(store: Store, stored: StoredSchemas) -> bool:
    """Whether every schema is stored at the code's version with the code's description."""
    for sch in store.schemas:
        got = stored.get(sch.name)
        if got is None or got[0] != sch.version:
            return False
        if {k: v for k, v in got[1].items() if k not in _RETIRED} != sch.describe():
            return False
    return True


def drift(schema: Schema, description: JsonDict) -> list[str]:
    """Every incompatible difference between ``schema``'s declarations and a stored description of the same version.

    Compatible (and so not listed): a new field with a default, indexes and
    unique fields added or removed, new collections and logs, a collection
    or log no longer declared (the store keeps it, retired).
    """
    out: list[str] = []
    stored = {d.get("name"): d for d in description.get("collections", ()) if isinstance(d, dict)}
    stored_logs = {d.get("name"): d for d in description.get("logs", ()) if isinstance(d, dict)}
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
        was = dict(old.get("fields", {}))
        now = decl.describe()["fields"]
        defaults = {f.name for f in attrs.fields(decl.type) if f.default is not attrs.NOTHING}
        for field in was:
            if field not in now:
                out.append(f"{name}: field {field!r} removed or renamed")
            elif was[field] != now[field] and same_type_text(str(was[field])) != same_type_text(str(now[field])):
                out.append(f"{name}: field {field!r} changed type from {was[field]} to {now[field]}")
        for field in now:
            if field not in was and field not in defaults:
                out.append(f"{name}: field {field!r} added without a default")
    return out


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


def _refuse_drift(store: Store, stored: StoredSchemas) -> None:
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


def open_schemas(store: Store, *, check_history: bool, backup: bool) -> None:
    """Check, and in write mode create, migrate and sync, the store's schemas (see ``Store._open_schemas``)."""
    stored = store._read_schemas()
    _refuse_newer(store, stored)
    _refuse_drift(store, stored)
    if store.mode == "read":
        for sch in store.schemas:
            got = stored.get(sch.name)
            if got is None:
                raise SchemaMismatchError(store.location, f"the store holds no schema {sch.name!r}")
            if got[0] < sch.version:
                raise MigrationRequiredError(store.location, sch.name, got[0], sch.version)
            if check_history and not sch.is_described:
                verify_history(store, sch, got[0])
        return
    if _current(store, stored) and store._structure_ok():
        if check_history:
            for sch in store.schemas:
                if not sch.is_described:
                    verify_history(store, sch, stored[sch.name][0])
        return
    with store._migration_lock(), _migrating(store):
        stored = store._read_schemas()
        _refuse_newer(store, stored)
        _refuse_drift(store, stored)
        _check_names(store, stored)
        pending = [
            (sch, stored[sch.name][0])
            for sch in store.schemas
            if sch.name in stored and stored[sch.name][0] < sch.version
        ]
        for sch, version in [(s, stored[s.name][0]) for s in store.schemas if s.name in stored]:
            if check_history and not sch.is_described:
                verify_history(store, sch, version)
        for sch, version in pending:
            _check_steps(store, sch, version, sch.version)
        if pending and backup:
            taken = store._backup("-".join(f"{s.name}-v{v}" for s, v in pending))
            _log.info("%s: backed up to %s before migrating", store.location, taken)
        run = _Run(stored)
        for sch, version in pending:
            _run(store, run, sch, version, sch.version)
        with store.transaction():
            stored = store._read_schemas()
            run = _Run(stored)
            for coll in store.collections:
                known = stored.get(store._owner[coll.name].name)
                old = {c["name"]: c for c in known[1].get("collections", ())} if known else {}
                if coll.name in old and old[coll.name].get("unique") != coll.describe()["unique"]:
                    _verify_unique(store, coll)
            store._sync_structure(store.collections, [*store.logs, *INTERNAL_LOGS], full=True)
            for sch in store.schemas:
                got = stored.get(sch.name)
                if got is None:
                    store._set_schema(sch.name, sch.version, sch.describe())
                    append_history(store, sch.name, sch.version, "", "create")
                elif got != (sch.version, run.final(sch)):
                    store._set_schema(sch.name, sch.version, run.final(sch))
        store._after_migration()


# ---------------------------------------------------------------- running steps


@contextlib.contextmanager
def _migrating(store: Store) -> Iterator[None]:
    """While this thread migrates the store, its own writes skip the "schemas moved" check.

    Per thread: another thread sharing the store object is checked as usual,
    so it cannot write old-shaped records between two steps.
    """
    state = store._state()
    state.migrating = True
    try:
        yield
    finally:
        state.migrating = False
        store._after_migration()


def _step_error(store: Store, sch: Schema, version: int, direction: str, reason: str) -> MigrationError:
    m = sch.migration(version)
    return MigrationError(store.location, sch.name, version, m.name if m else "", direction, reason)


def _check_steps(store: Store, sch: Schema, start: int, end: int) -> None:
    """Refuse before anything runs when a step from ``start`` to ``end`` cannot run."""
    if end < start:
        for v in range(start, end, -1):
            m = sch.migration(v)
            if m is not None and m.down is None:
                raise _step_error(store, sch, v, "down", "this migration has no down step; it cannot be undone")


def _run(store: Store, run: _Run, sch: Schema, start: int, end: int) -> list[HistoryRow]:
    steps = range(start + 1, end + 1) if end > start else range(start, end, -1)
    direction = "up" if end > start else "down"
    done: list[HistoryRow] = []
    for v in steps:
        _step(store, run, sch, v, direction)
        done.append(read_history(store, sch.name)[-1])
    return done


def _step(store: Store, run: _Run, sch: Schema, version: int, direction: str) -> None:
    m: Migration | None = sch.migration(version)
    name = m.name if m is not None else ""
    fn = None if m is None else (m.up if direction == "up" else m.down)
    try:
        with store.transaction():
            stored = store._read_schemas()
            current, desc = stored[sch.name]
            expected = version - 1 if direction == "up" else version
            if current != expected:
                raise _step_error(store, sch, version, direction, f"the store is at version {current}, not {expected}")
            store._sync_structure(store.collections, [*store.logs, *INTERNAL_LOGS], full=False)
            ctx = MigrationContext(store, run, sch, version, name, direction)
            if fn is not None:
                try:
                    fn(ctx)
                except MigrationError:
                    raise
                except Exception as exc:
                    collection, key = ctx.at
                    raise MigrationError(
                        store.location,
                        sch.name,
                        version,
                        name,
                        direction,
                        f"{type(exc).__name__}: {exc}",
                        collection,
                        key,
                    ) from exc
            if direction == "up" and version == sch.version:
                for coll in sch.collections:
                    try:
                        _verify_unique(store, coll)
                    except SchemaMismatchError as exc:
                        raise _step_error(store, sch, version, direction, exc.reason) from None
                _verify_records(store, sch, version)
                store._sync_structure(sch.collections, [*sch.logs, *INTERNAL_LOGS], full=True)
                desc = run.final(sch)
            else:
                # Between steps the stored shapes are neither this code's nor that version's own:
                # "shapes_of" keeps the drift check (which compares shapes) from misreading them.
                at = version if direction == "up" else version - 1
                desc = {**run.description(sch.name, desc), "version": at, "shapes_of": sch.version}
            store._set_schema(sch.name, version if direction == "up" else version - 1, desc)
            append_history(store, sch.name, version, name, direction)
            _log.info(
                "%s: schema %s migrated %s through version %d (%s)", store.location, sch.name, direction, version, name
            )
    finally:
        store._after_migration()


def migrate(store: Store, to: int, *, schema: str | None, backup: bool) -> list[HistoryRow]:
    """``Store.migrate``: run the steps from the stored version of a schema to ``to``."""
    store._check_open()
    if store.mode != "write":
        raise ReadOnlyError(store.location, "migrate")
    if schema is None:
        if len(store.schemas) > 1:
            raise ValueError(f"the store holds several schemas; say which: schema={store.schemas[0].name!r}, ...")
        sch = store.schema
    else:
        found = next((s for s in store.schemas if s.name == schema), None)
        if found is None:
            raise ValueError(f"no schema {schema!r} in this store ({', '.join(s.name for s in store.schemas)})")
        sch = found
    if isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= sch.version:
        raise ValueError(f"to must be a version from 1 to {sch.version} (the code's), not {to!r}")
    with store._migration_lock(), _migrating(store):
        stored = store._read_schemas()
        _refuse_newer(store, stored)
        current = stored[sch.name][0]
        if to == current:
            return []
        _check_steps(store, sch, current, to)
        if backup:
            taken = store._backup(f"{sch.name}-v{current}")
            _log.info("%s: backed up to %s before migrating", store.location, taken)
        return _run(store, _Run(stored), sch, current, to)
