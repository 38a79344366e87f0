"""The storage protocol: :class:`Store`, the shared layer every backend builds on.

The typed views over it (``store[COLLECTION]``, ``store[LOG]``) live in
:mod:`statestore.views`; schema checks and migrations in
:mod:`statestore.migrations`.

:class:`Store` is the shared layer. It validates keys, converts records with
the :class:`~statestore.codec.Codec`, enforces compare-and-swap, unique
constraints and stream versions, and builds the convenience operations
(``update``, ``replace_all``, ``find`` on any field) and migrations once for
every backend.

Adding a backend
----------------

A backend is a subclass of :class:`Store` in ``statestore/backends/`` that
implements the primitives of the "backend interface" sections below, and
nothing else. ``docs/backends.md`` lists each one (required or optional, and
what it must answer) and walks through adding a backend. The constructor
opens or creates the store's container and then calls
``self._open_schemas(...)``, which checks, creates, migrates and syncs the
schemas through the primitives. Primitives are only ever called with
validated keys, inside a transaction for every write; they keep results in
key order (``str`` keys by code point, ``int`` keys numerically, composite
keys as tuples) and store JSON exactly as given. The location scheme that
names the backend is added in :mod:`statestore.backends.locations`; the
contract suite in :mod:`statestore.testing` proves the result behaves like
the others. A backend never imports the importer, the command or another
backend.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from statestore.codec import Codec
from statestore.errors import (
    MigrationRequiredError,
    ReadOnlyError,
    SchemaError,
    SchemaTooNewError,
    StateStoreError,
    StoreClosedError,
    UnknownNameError,
)
from statestore.migrations import HistoryRow, migrate, open_schemas, read_history
from statestore.query import Query
from statestore.schema import (
    HISTORY,
    IMPORTS,
    INTERNAL_LOGS,
    REJECTS,
    Collection,
    KeyValue,
    Log,
    RawEntry,
    Schema,
    StoredSchemas,
)
from statestore.transaction import Transaction
from statestore.views import CollectionView, ImportRecord, LogView, Reject

__all__ = [
    "HISTORY",
    "IMPORTS",
    "INTERNAL_LOGS",
    "REJECTS",
    "Durability",
    "Mode",
    "RawEntry",
    "RawRecord",
    "Store",
    "StoredSchemas",
    "schemas_of",
]

T = TypeVar("T")
Mode = Literal["read", "write"]
Durability = Literal["normal", "full"]

#: A raw record as a backend returns it: (key, revision, JSON dict).
RawRecord = tuple[KeyValue, int, dict[str, Any]]


def _decls(schema: Schema) -> list[Collection[Any] | Log[Any]]:
    return [*schema.collections, *schema.logs]


def schemas_of(schema: Schema | Sequence[Schema]) -> tuple[Schema, ...]:
    """One schema or several as a tuple; SchemaError if they are not schemas or share a name."""
    schemas: tuple[Schema, ...] = (schema,) if isinstance(schema, Schema) else tuple(schema)
    if not schemas:
        raise SchemaError("a store needs at least one schema")
    names: dict[str, str] = {}
    for sch in schemas:
        if not isinstance(sch, Schema):
            raise TypeError(f"schema must be a statestore.Schema, not {type(sch).__name__}")
        if sch.name in names:
            raise SchemaError(f"schema {sch.name!r} is given twice")
        names[sch.name] = ""
    seen: dict[str, str] = {}
    for sch in schemas:
        for decl in _decls(sch):
            if decl.name in seen:
                raise SchemaError(
                    f"{decl.name!r} is declared by schemas {seen[decl.name]!r} and {sch.name!r}: "
                    "names are unique across a store"
                )
            seen[decl.name] = sch.name
    return schemas


class _ThreadState(threading.local):
    depth = 0
    migrating = False  # this thread is migrating the store: its writes skip the "schemas moved" check
    checking_moved = False  # this thread is in _schemas_moved (whose own reads may fail the same way)


class Store(ABC):
    """An open store: typed views over its collections and logs, and transactions.

    Get a view with ``store[COLLECTION]`` or ``store[LOG]``. Stores are context
    managers; ``close()`` is idempotent and any later operation raises
    :class:`~statestore.errors.StoreClosedError`. A store may be shared by
    threads: each thread has its own transaction, and a transaction's writes
    are invisible to other threads and processes until it commits.
    """

    #: True when each write primitive (``_write``, ``_remove``, ``_add_entry``)
    #: is all-or-nothing on its own, as an SQL statement is. An operation that
    #: makes one such write as its last step then needs no savepoint inside an
    #: enclosing transaction: there would be nothing for it to undo.
    _atomic_writes = False

    _canonical_text = True  # False: never reads it, so "" stands for private plain JSON (Codec.encode(text=False))

    #: True when a plain equality ``find`` is best answered by ``_scan`` on the
    #: lookup fields (and Python for the rest); False sends it to ``_query``,
    #: for a backend whose ``_query`` also filters fields without a lookup.
    _equality_through_scan = True

    #: Schemas this object took down a version (name -> (stored version, code's version)):
    #: their collections and logs are neither read nor written through it (``_reading``).
    _went_down: Mapping[str, tuple[int, int]] = {}

    def __init__(self, location: str, schema: Schema | Sequence[Schema], *, mode: Mode, codec: Codec) -> None:
        self.location = location
        #: The schemas the store was opened with (an app made of parts may bring several).
        self.schemas = schemas_of(schema)
        #: The first (usually the only) schema.
        self.schema = self.schemas[0]
        self._owner: dict[str, Schema] = {d.name: sch for sch in self.schemas for d in _decls(sch)}
        self.mode: Mode = mode
        self.codec = codec
        for sch in self.schemas:
            for decl in _decls(sch):
                for field, tp in decl.field_types.items():
                    codec.check_type(f"{sch.name}.{decl.name}", field, tp)
        self._closed = False
        self._thread = _ThreadState()
        self._forks = _forks
        self._views: dict[str, CollectionView[Any] | LogView[Any]] = {}

    # ------------------------------------------------------------ public API

    @overload
    def __getitem__(self, decl: Collection[T]) -> CollectionView[T]: ...

    @overload
    def __getitem__(self, decl: Log[T]) -> LogView[T]: ...

    def __getitem__(self, decl: Collection[T] | Log[T]) -> CollectionView[T] | LogView[T]:
        view = self._views.get(decl.name)
        if view is None or view.decl is not decl:
            owner = self._owner.get(decl.name)
            own = owner and (owner.collection(decl.name) or owner.log(decl.name))
            # The schema's own declaration, or one identical to it: a look-alike
            # with another key or other indexes would write records the store
            # does not index or key that way.
            names = ", ".join(s.name for s in self.schemas)
            if own is None or type(own) is not type(decl) or own.type is not decl.type:
                raise UnknownNameError(decl.name, names)
            if own is not decl and own.describe() != decl.describe():
                raise UnknownNameError(decl.name, names)
            view = CollectionView(self, decl) if isinstance(decl, Collection) else LogView(self, decl)
            self._views[decl.name] = view
        return view

    @property
    def collections(self) -> tuple[Collection[Any], ...]:
        """Every collection the store's schemas declare."""
        return tuple(c for sch in self.schemas for c in sch.collections)

    @property
    def logs(self) -> tuple[Log[Any], ...]:
        """Every log the store's schemas declare."""
        return tuple(lg for sch in self.schemas for lg in sch.logs)

    def migrate(self, to: int, *, schema: str | None = None, backup: bool = True) -> list[HistoryRow]:
        """Bring the store's copy of a schema to version ``to``, up or down; return the steps run.

        Going down runs each migration's ``down`` from the stored version to
        ``to + 1``; a migration without ``down`` refuses (MigrationError)
        before anything runs. Going up runs ``up`` steps, at most to the
        code's version. ``schema`` names the schema when the store was opened
        with several. A backup is taken first (``backup=False`` skips it).
        After a downgrade the store holds an older version than this code:
        this object's reads and writes of that schema's collections and logs
        raise MigrationRequiredError (its declarations no longer describe what
        the store holds; history(), imports() and rejects() still work), until
        it migrates up again; close it and run the older application.
        Reopening it with this code would migrate it up again.
        """
        return migrate(self, to, schema=schema, backup=backup)

    def history(self, schema: str | None = None) -> list[HistoryRow]:
        """The migration history of a schema (default: the first), oldest first."""
        self._reading()
        return read_history(self, schema or self.schema.name)

    def imports(self) -> list[ImportRecord]:
        """The legacy files this store was imported from (path, size, mtime, sha256, counts, when)."""
        self._reading()
        rows = self._entries(IMPORTS, stream=None, prefix=None, after=0, limit=None)
        return [
            ImportRecord(
                d["path"],
                d["into"],
                d["size"],
                d["mtime"],
                d["sha256"],
                d["imported"],
                d["rejected"],
                datetime.fromisoformat(at),
                d["root"],
                d["version"],
            )
            for _seq, _stream, _v, at, d in rows
        ]

    def rejects(self) -> list[Reject]:
        """Records a legacy import quarantined, with where they were and why."""
        self._reading()
        rows = self._entries(REJECTS, stream=None, prefix=None, after=0, limit=None)
        return [Reject(**d) for _seq, _stream, _v, _at, d in rows]

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Run the block atomically across collections and logs.

        On an exception everything the block wrote is rolled back and the
        exception propagates. Transactions nest: an inner block that fails is
        rolled back alone (a savepoint) while the outer one may go on. A write
        transaction holds the store's write lock until it ends, so other
        writers wait (up to the busy timeout). In read mode the block is a
        consistent read snapshot and every write raises ReadOnlyError.
        """
        self._check_open()
        return Transaction(self)

    def close(self) -> None:
        """Close the store; closing twice does nothing."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location} {self.mode}>"

    # ------------------------------------------------------------ helpers

    def _state(self) -> _ThreadState:
        if _forks != self._forks:
            # A forked child must not inherit the parent's open transaction.
            self._forks = _forks
            self._thread = _ThreadState()
            self._after_fork()
        return self._thread

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self.location)

    def _writing(self, operation: str, *, single: bool = False) -> contextlib.AbstractContextManager[None]:
        """The transaction a write operation runs in.

        ``single`` says the operation runs no caller code and makes at most one
        primitive write, as its last step; inside an open transaction on a
        backend with atomic writes it then skips its savepoint (a third of the
        cost of an insert in a batch).
        """
        if self._closed:
            raise StoreClosedError(self.location)
        if self.mode != "write":
            raise ReadOnlyError(self.location, operation)
        if single and self._atomic_writes and self._state().depth:
            return contextlib.nullcontext()
        return Transaction(self)  # what transaction() returns, without checking twice

    def _open_write(self, operation: str, *, single: bool = False) -> int:
        """What entering ``_writing(operation, single=single)`` does, without a context manager object.

        The same checks and errors (StoreClosedError, ReadOnlyError). Returns
        what ``_close_write`` takes: the depth of the block it opened, or -1
        when it opened none (``single``, inside a transaction, on a backend
        with atomic writes). ``update`` and ``append`` use the two (about
        3,000 instructions less a call than the ``with`` statement).
        """
        if self._closed:
            raise StoreClosedError(self.location)
        if self.mode != "write":
            raise ReadOnlyError(self.location, operation)
        if single and self._atomic_writes and self._state().depth:
            return -1
        return self._open_block(True)

    def _close_write(self, depth: int, failed: bool) -> None:
        """Ends what ``_open_write`` opened (``_close_block``; nothing for -1)."""
        if depth >= 0:
            self._close_block(depth, failed)

    def _open_block(self, write: bool) -> int:
        """Opens one transaction block of this thread: BEGIN at depth 0, a savepoint inside.

        Returns the depth it was opened at, which ``_close_block`` takes. What
        ``Transaction`` and ``_open_write`` (a block without a context manager
        object) both do.
        """
        state = self._thread if _forks == self._forks else self._state()  # _state(), without its call
        depth = state.depth
        if depth == 0:
            self._begin(write=write)
        else:
            self._savepoint(f"statestore_{depth}")
        state.depth = depth + 1
        return depth

    def _close_block(self, depth: int, failed: bool) -> None:
        """Closes the block ``_open_block`` opened at ``depth``: rolls it back when ``failed``, else commits
        (at depth 0) or releases its savepoint. A failed COMMIT is rolled back and raised."""
        (self._thread if _forks == self._forks else self._state()).depth = depth
        if failed:
            if depth == 0:
                self._rollback()
            else:
                self._rollback_to(f"statestore_{depth}")
        elif depth == 0:
            try:
                self._commit()
            except BaseException:
                self._rollback()
                raise
        else:
            self._release(f"statestore_{depth}")

    def _reading(self, name: str | None = None) -> None:
        """Before a read; ``name``: of a declared collection or log, which this object must still be able to read.

        After ``migrate`` took a schema down a version, this object's
        declarations no longer describe what the store holds (a collection
        renamed back reads as empty, records of the old shape fail to decode):
        reading that schema's collections and logs raises
        MigrationRequiredError, as writing does, until it migrates up again.
        """
        self._check_open()
        self._state()
        if self._went_down and name is not None:
            owner = self._owner.get(name)
            if owner is not None and owner.name in self._went_down:
                stored, code = self._went_down[owner.name]
                raise MigrationRequiredError(self.location, owner.name, stored, code)

    def _open_schemas(self, *, check_history: bool = True, backup: bool = True) -> None:
        """Check the stored schemas against the code's; in write mode create, migrate and sync.

        Called by each backend's constructor once the store's container exists.
        """
        open_schemas(self, check_history=check_history, backup=backup)

    @property
    def _migrating(self) -> bool:
        """True in the thread that is migrating the store (not in the others sharing the object)."""
        return self._state().migrating

    def _check_schemas_current(self, stored: StoredSchemas | None = None) -> None:
        """Refuse to write once the store's schemas moved since this object checked them.

        Backends call this at the start of a write transaction when their
        cheap marker says the stored schemas changed: another process
        migrated the store (or this one went down a version). Writing records
        shaped for the old version would corrupt the new one, so that raises
        MigrationRequiredError (the store is older than this code) or
        SchemaTooNewError (newer). ``stored``: the stored schemas if read already.
        """
        if self._migrating:
            return
        stored = self._read_schemas() if stored is None else stored
        for sch in self.schemas:
            got = stored.get(sch.name)
            if got is not None and got[0] > sch.version:
                raise SchemaTooNewError(self.location, sch.name, got[0], sch.version)
            if got is not None and got[0] < sch.version:
                raise MigrationRequiredError(self.location, sch.name, got[0], sch.version)

    def _schemas_moved(self, stored: StoredSchemas | None = None) -> StateStoreError | None:
        """When a table or folder this object expects is missing: why, if another process migrated the store.

        SchemaTooNewError or MigrationRequiredError (as a write would raise)
        when the stored schemas moved since this object opened, else None (the
        caller reports the damage it found). Backends call it only on that
        failure path, so reads pay nothing for it. ``stored``: as for
        ``_check_schemas_current``.
        """
        state = self._state()
        if state.migrating or state.checking_moved:
            return None
        state.checking_moved = True
        try:
            self._check_schemas_current(stored)
        except SchemaTooNewError as exc:
            return exc
        except MigrationRequiredError as exc:
            # (Unless this object took the schema down itself: ``_reading`` refuses its reads.)
            return None if exc.schema in self._went_down else exc
        except StateStoreError:
            return None
        finally:
            state.checking_moved = False
        return None

    # ------------------------------------------------------------ backend interface

    def _read_schemas(self) -> StoredSchemas:
        """The schemas the store holds (inside a transaction: as that transaction sees them)."""
        raise NotImplementedError

    def _set_schema(self, name: str, version: int, description: dict[str, Any]) -> None:
        """Record a schema's version and description, inside the current write transaction."""
        raise NotImplementedError

    def _sync_structure(self, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool) -> None:
        """Make tables/folders for these declarations inside the write transaction.

        With ``full`` also the indexes, generated columns and unique
        constraints the declarations ask for (and none they do not).
        """
        raise NotImplementedError

    def _structure_ok(self) -> bool:
        """False when opening must take the write path even though the schemas are current."""
        return True

    def _drop(self, decl: Collection[Any] | Log[Any]) -> None:
        """Remove an (emptied) collection's or a log's storage inside the write transaction."""
        raise NotImplementedError

    def _replace_entries(self, log: Log[Any], entries: Sequence[RawEntry]) -> None:
        """Replace every entry of ``log`` (same seqs, new data) inside the write transaction."""
        raise NotImplementedError

    def _migration_lock(self) -> contextlib.AbstractContextManager[None]:
        """A lock held across the whole migration of a store, so racing openers migrate once."""
        return contextlib.nullcontext()

    def _backup(self, label: str) -> Path | None:
        """Copy the store consistently next to itself (name holding ``label``); None if it cannot be kept."""
        return None

    def _wait_for_entries(self, log: Log[Any], poll: float, limit: float | None) -> None:
        """Wait before ``follow`` looks for new entries again: ``poll`` seconds, at most ``limit``.

        A backend that can be told about appends (PostgreSQL's LISTEN/NOTIFY)
        may return as soon as one commits, and wait longer than ``poll`` (never
        past ``limit``; None is no limit) while nothing happens.
        """
        time.sleep(poll if limit is None else min(poll, limit))

    def _after_migration(self) -> None:  # noqa: B027 - optional hook
        """Forget whatever the process cached about the store's shape or logs."""

    def _write_many(self, coll: Collection[Any], rows: Iterable[tuple[KeyValue, int, dict[str, Any], str]]) -> None:
        """``_write`` for each (key, revision, data, text): bulk loads (imports, copies) may do it faster."""
        for key, revision, data, text in rows:
            self._write(coll, key, revision, data, text)

    def _add(self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str) -> int | None:
        """Store ``data`` at revision 1 if ``key`` is absent and return None; else write nothing, return its revision.

        Called inside a write transaction, for collections without unique
        fields (their checks come first). A backend may do it in one step.
        """
        current = self._revision(coll, key)
        if current is None:
            self._write(coll, key, 1, data, text)
        return current

    def _write_alone(
        self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str, *, replace: bool
    ) -> int | None:
        """Write ``data`` in one atomic step of its own, outside any transaction, if the backend can.

        Called by ``insert`` (``replace=False``: only if ``key`` is absent)
        and ``put`` without ``expect_revision`` (``replace=True``: the stored
        revision plus one, or 1) before they open a transaction, for
        collections without unique fields; returns the new revision. None
        means nothing was written and the caller takes the transaction path,
        which finds out why (the key is stored, the store is closed or
        read-only, another writer holds the store, the schemas moved) and
        says so. The default always declines.
        """
        return None

    def _append_alone(
        self, log: Log[Any], stream: str, data: dict[str, Any], text: str, *, expect_version: int | None
    ) -> tuple[int, int, datetime] | None:
        """Append one entry in one atomic step of its own, outside any transaction, if the backend can.

        Called by ``LogView.append`` before it opens a transaction, with the
        stream checked and the record encoded (``data``, canonical JSON
        ``text``). Returns (seq, version, stamp): the new entry's seq, its
        version (the stream's last plus one) and the UTC time it carries,
        taken under the store's write lock as the transaction path takes it
        (so ``at`` never goes backwards as ``seq`` grows). None means nothing
        was written and the caller takes the transaction path, which finds out
        why (a transaction is open in this thread, the store is closed or
        read-only, ``expect_version`` is not the stream's version, another
        writer holds the store, the schemas moved) and says so. The default
        always declines.
        """
        return None

    def _add_entries(self, log: Log[Any], rows: Iterable[tuple[str, int, str, dict[str, Any], str]]) -> None:
        """``_add_entry`` for each (stream, version, at, data, text), in order: for bulk loads."""
        for stream, version, at, data, text in rows:
            self._add_entry(log, stream, version, at, data, text)

    def _entry_count(self, log: Log[Any]) -> int:
        """The number of entries in ``log``: backends count without decoding them."""
        return len(self._entries(log, stream=None, prefix=None, after=0, limit=None))

    # ------------------------------------------------------------ backend interface (data)

    def _after_fork(self) -> None:  # noqa: B027 - optional hook
        """Drop per-process resources (connections, locks) inherited through fork()."""

    @abstractmethod
    def _begin(self, *, write: bool) -> None:
        """Start a transaction; a write transaction excludes other writers."""

    @abstractmethod
    def _commit(self) -> None:
        """Make the transaction's writes durable and visible (per durability)."""

    @abstractmethod
    def _rollback(self) -> None:
        """Discard the transaction's writes."""

    @abstractmethod
    def _savepoint(self, name: str) -> None:
        """Mark a point inside the transaction that ``_rollback_to`` returns to."""

    @abstractmethod
    def _release(self, name: str) -> None:
        """Forget a savepoint, keeping its writes in the enclosing transaction."""

    @abstractmethod
    def _rollback_to(self, name: str) -> None:
        """Undo the writes made since the savepoint and forget it."""

    @abstractmethod
    def _close(self) -> None:
        """Release every resource; called once."""

    @abstractmethod
    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        """(revision, data) of ``key``, or None.

        With ``copy=False`` the caller only reads ``data`` (or decodes it into
        new objects), so a backend may return a dict it keeps, such as a
        cached one. With ``copy=True`` (the default) the dict is the caller's.
        """

    @abstractmethod
    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        """The revision of ``key``, or None if absent."""

    @abstractmethod
    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        """Store ``data`` (canonical JSON ``text``) under ``key`` at ``revision``, replacing any."""

    @abstractmethod
    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        """Delete ``key``; True if it existed."""

    @abstractmethod
    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        """Records whose fields equal ``where`` (JSON scalars, on lookup fields only), in key order.

        An empty ``where`` returns every record. ``copy`` is as for ``_get``.
        """

    def _get_decoded(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, Any] | None:
        """``_get`` with the record structured (SQLite: in one pass, same answer and errors); None if absent."""
        got = self._get(coll, key, copy=copy)
        return None if got is None else (got[0], self.codec.decode(coll.name, coll.type, got[1], key))

    def _scan_decoded(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Any] | None:
        """``_scan`` then ``codec.decode_rows`` (``where``: lookup fields = str or None); None: not offered."""
        return None

    def _query(self, coll: Collection[Any], query: Query, *, copy: bool = True) -> list[RawRecord]:
        """Records meeting ``query``'s conditions, in its order (ties by key), cut to its offset and limit.

        The answer must equal :meth:`Query.apply` over every record: this
        default is exactly that, over ``_scan`` (equality conditions on
        lookup fields go to ``_scan`` so the backend's indexes serve them),
        so a backend that does not implement it keeps working. A backend
        overrides it to push conditions, order and limit down (SQL,
        indexes). ``copy`` is as for ``_get``.
        """
        lookup = coll.lookup_fields
        where: dict[str, Any] = {}
        for term in query.terms:
            if term.op == "eq" and term.field in lookup and term.field not in where and _scalar(term.value):
                where[term.field] = term.value
        return query.apply(self._scan(coll, where, copy=copy))

    def _count_where(self, coll: Collection[Any], query: Query) -> int:
        """How many records meet ``query``'s conditions (it has no order, limit or offset).

        The default counts what ``_query`` returns without copying records;
        records are never decoded into objects.
        """
        if not query.terms:
            return self._count(coll)
        return len(self._query(coll, query, copy=False))

    @abstractmethod
    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        """Every key, in key order."""

    @abstractmethod
    def _count(self, coll: Collection[Any]) -> int:
        """The number of records."""

    @abstractmethod
    def _stream_version(self, log: Log[Any], stream: str) -> int:
        """The version of the last entry in ``stream``; 0 when empty."""

    @abstractmethod
    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        """Append an entry and return its ``seq`` (greater than every earlier one)."""

    @abstractmethod
    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        """Entries with ``seq > after`` in ``stream`` (exact) or under ``prefix``, by seq."""

    @abstractmethod
    def _last_seq(self, log: Log[Any]) -> int:
        """The highest seq in the log; 0 when empty."""


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


#: How many times this process is a fork() child of the one that imported statestore: a store
#: compares it with the count it was opened (or last reset) at, instead of a getpid() per call.
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # every POSIX system; Windows has no fork()
    os.register_at_fork(after_in_child=_count_fork)
