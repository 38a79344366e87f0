"""What a migration step gets (:class:`MigrationContext`), and the descriptions a run of steps builds (:class:`Run`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statestore.codec import dumps
from statestore.errors import (
    MigrationError,
    StateStoreError,
    ValidationError,
)
from statestore.schema import (
    Collection,
    KeyValue,
    Log,
    RawEntry,
    Schema,
    StoredSchemas,
)
from statestore.strict import Mismatch, check_json
from statestore.views import CollectionView

if TYPE_CHECKING:
    from statestore.store import Store

__all__ = ["RETIRED", "JsonDict", "MigrationContext", "Run"]


JsonDict = dict[str, Any]
#: Keys of a stored description listing what the store keeps that the code no longer declares.
RETIRED = ("retired", "retired_logs")


class Run:
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
        desc = {k: v for k, v in base.items() if k not in RETIRED}
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

    def __init__(self, store: Store, run: Run, schema: Schema, version: int, name: str, direction: str) -> None:
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
        missing = [f for f in decl.key_fields if f not in data]
        if missing:
            raise self._fail(f"record has no key field {missing[0]!r}", decl.name, self.at[1])
        return self._given_key(decl, decl.key_of(data), self.at[1])

    def _given_key(self, decl: Collection[Any], key: object, at: KeyValue | None) -> KeyValue:
        """``key`` checked as the API checks keys (a str for a str key field, an int for an int one...)."""
        view = self._views.get(decl.name)
        if view is None or view.decl is not decl:
            view = self._views[decl.name] = CollectionView(self.store, decl)
        try:
            return view._key(key)
        except ValidationError as exc:
            raise self._fail(exc.reason, decl.name, at) from None

    def _text(self, decl_name: str, key: KeyValue | None, data: JsonDict, *, given: bool = True) -> str:
        """The stored text of a record or entry a step gives, which must be JSON exactly as it will be stored.

        What ``json.dumps`` would convert (an object key that is not a str, a
        tuple, an int past 64 bits) or cannot write (NaN) is a MigrationError
        naming where: the step fails and rolls back, nothing is stored.
        (``given=False``: data read from the store, only compared.)
        """
        try:
            if given:
                check_json(data)
            return dumps(data)
        except Mismatch as exc:
            raise self._fail(f"record is not JSON as stored: at ${exc.path}: {exc.message}", decl_name, key) from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise self._fail(f"record is not JSON: {exc}", decl_name, key) from None

    # ------------------------------------------------------------ reading

    def records(self, collection: str) -> list[JsonDict]:
        """Every record of ``collection`` as a dict (yours to change), in key order."""
        decl = self._collection(collection)
        return [data for _key, _rev, data in self.store._scan(decl, {})]

    def get(self, collection: str, key: KeyValue) -> JsonDict | None:
        """The record stored under ``key``, or None; a key of the wrong type fails the step (MigrationError)."""
        decl = self._collection(collection)
        got = self.store._get(decl, self._given_key(decl, key, key))
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
        """Delete the record under ``key``; True if it existed; a key of the wrong type fails the step."""
        decl = self._collection(collection)
        return self.store._remove(decl, self._given_key(decl, key, key))

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
            before = self._text(decl.name, key, data, given=False)
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
        In a down step the code's declarations are those of a later version,
        so ``new`` takes ``old``'s shape and key fields whatever the code
        declares under that name (a later version may have given the name to
        another collection).
        """
        src = self._collection(old)
        owner = self.store._owner.get(new) if self.direction == "up" else None
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
            before = self._text(decl.name, seq, data, given=False)
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
