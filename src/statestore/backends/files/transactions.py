"""The file backend's transactions: begin, snapshot, commit, rollback, savepoints (a FileStore mixin).

A write transaction holds the write lock from ``_begin`` to ``_commit`` or
``_rollback`` and is staged in memory, per thread (:class:`~statestore.backends.files.cache.Txn`);
:mod:`statestore.backends.files.commit` publishes it. A read transaction
is lazy where it can be (:mod:`statestore.backends.files.versions`), else a
snapshot of every collection and log taken at its start. ``_write_alone``
writes one record outside any transaction with the same steps and files.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from statestore.backends.files import names as keynames
from statestore.backends.files.cache import (
    MANIFEST,
    META,
    MISSING,
    ROOT,
    LogIndex,
    Rec,
    Records,
    Txn,
    TxnEntry,
    owned_json,
    record_text,
)
from statestore.backends.files.fileio import Dir, Kept
from statestore.backends.files.journal import Head, Journal
from statestore.errors import LAST_REVISION, StateStoreError
from statestore.schema import Collection, KeyValue, Log
from statestore.store import INTERNAL_LOGS, Mode, StoredSchemas

if TYPE_CHECKING:
    from statestore.store import _ThreadState

__all__ = ["Local", "Transactions"]

_R = TypeVar("_R")


class Local(threading.local):
    """Per-thread state: the thread's open transaction (None in every thread until it begins one)."""

    txn: Txn | None = None


class Transactions:
    """Transactions for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore (and Store).
    mode: Mode
    _root: Dir
    _local: Local
    _cache_lock: threading.RLock
    _dirs: Kept[Dir]
    _closed: bool
    _schema_gen: int  # the change head's generation when the schemas were last checked
    _indexed: tuple[Collection[Any], ...] | None  # collections with index files

    if TYPE_CHECKING:

        @property
        def collections(self) -> tuple[Collection[Any], ...]: ...

        @property
        def logs(self) -> tuple[Log[Any], ...]: ...

        @property
        def _migrating(self) -> bool: ...

        def _state(self) -> _ThreadState: ...

        def _check_schemas_current(self, stored: StoredSchemas | None = None) -> None: ...

        def _lock(self) -> None: ...

        def _unlock(self) -> None: ...

        def _read_head(self) -> Head: ...

        def _recover(self, *, probe: bool = False) -> None: ...

        def _check_moved(self, head: Head) -> None: ...

        def _consistent(self, fn: Callable[[Head, Journal | None], _R], first: Head | None = None) -> _R: ...

        def _catch_up(self, coll: Collection[Any], head: Head, journal: Journal | None) -> Records: ...

        def _overlay(self, coll: Collection[Any], journal: Journal | None) -> dict[str, Rec | None]: ...

        def _catch_up_log(self, log: Log[Any], journal: Journal | None) -> LogIndex: ...

        def _log_overlay(self, log: Log[Any], journal: Journal | None) -> list[TxnEntry]: ...

        def _lazy_begin(self, txn: Txn) -> tuple[bool, Head | None]: ...

        def _lazy_end(self, txn: Txn) -> None: ...

        def _publish(self, txn: Txn) -> None: ...

        def _publish_record(
            self,
            txn: Txn,
            head: Head,
            coll_name: str,
            name: str,
            text: str,
            canonical: str | None,
            d: Dir | None = None,
        ) -> None: ...

        def _index_commit(self, txn: Txn, before: Head, collections: Sequence[Collection[Any]]) -> None: ...

        def _point(self, coll: Collection[Any], key: KeyValue, name: str | None = None) -> Rec | None: ...

    def _txn(self) -> Txn | None:
        return self._local.txn

    def _begin(self, *, write: bool) -> None:
        txn = Txn(write)
        if write:
            self._lock()
            self._local.txn = txn  # before recovering, so the head it reads is kept for the transaction
            try:
                head = self._read_head()
                if head.gen < 0 or head.journal is not None or head.journal_file:
                    self._recover()  # (a sound head: it would do nothing)
                self._check_schema_gen()
            except BaseException:
                self._local.txn = None
                self._unlock()
                raise
        else:
            lazy, first = self._lazy_begin(txn)
            if not lazy:
                (txn.colls, txn.logs), txn.shared = self._snapshot(first)
            try:
                # Checked as a read outside a transaction is (inside one, reads answer as of its
                # start and do not look): another process's migration is a SchemaTooNewError.
                self._check_moved(first if first is not None else self._read_head())
            except BaseException:
                self._local.txn = txn
                self._rollback()
                raise
            self._local.txn = txn

    def _check_schema_gen(self) -> None:
        """In a write transaction: refuse to write if another process migrated the store since we checked.

        The change head names the root files each generation changed, so a
        manifest rewrite (a schema's version moving) since the generation we
        last checked sends us to ``Store._check_schemas_current``.
        """
        head = self._read_head()
        if head.gen == self._schema_gen or self._migrating:
            return
        changed = head.changed(ROOT, self._schema_gen)
        if changed is None or MANIFEST in changed:
            self._check_schemas_current()
        self._schema_gen = head.gen

    def _snapshot(
        self, first: Head | None = None
    ) -> tuple[tuple[dict[str, Records], dict[str, tuple[LogIndex, int, list[TxnEntry]]]], list[Records]]:
        """Every collection and log as of one generation: a read transaction's view.

        A collection's cache is shared with the snapshot rather than copied;
        the store copies it before changing it (``_unshared``). Logs are
        append-only: the snapshot keeps the index and how many lines count.
        ``first``: the change head as the caller just read it, if it did.
        """

        shared: list[Records] = []

        def take(head: Head, journal: Journal | None) -> Any:
            self._release_snapshot(shared)  # an earlier attempt of the seqlock's
            colls = {}
            for coll in self.collections:
                snap = self._catch_up(coll, head, journal)
                overlay = self._overlay(coll, journal)
                if overlay:
                    snap = snap.copy()
                    for name, rec in overlay.items():
                        snap.put(name, rec)
                else:
                    # Shared, not copied (O(1), not O(N)): the cache is copied before it next changes.
                    snap.shared += 1
                    shared.append(snap)
                colls[coll.name] = snap
            logs = {}
            for log in (*self.logs, *INTERNAL_LOGS):  # internal ones too: history() inside a read transaction
                idx = self._catch_up_log(log, journal)
                logs[log.name] = (idx, len(idx.seqs), self._log_overlay(log, journal))
            return colls, logs

        with self._cache_lock:
            result: tuple[dict[str, Records], dict[str, tuple[LogIndex, int, list[TxnEntry]]]]
            result = self._consistent(take, first)
            return result, shared

    def _release_snapshot(self, shared: list[Records]) -> None:
        """A read transaction is over: the caches it shared may change in place again (if no other holds them)."""
        with self._cache_lock:
            for cache in shared:
                cache.shared -= 1
            shared.clear()

    def _commit(self) -> None:
        txn = self._txn()
        if txn is None or not txn.write:
            self._local.txn = None
            if txn is not None:
                self._lazy_end(txn)
                self._release_snapshot(txn.shared)
            return
        try:
            if any(txn.records.values()) or any(txn.lines.values()) or txn.files:
                self._commit_staged(txn)
        finally:
            self._local.txn = None
            self._unlock()

    def _commit_staged(self, txn: Txn) -> None:
        """Publish this thread's write transaction ``txn`` (staged, non-empty; we hold the lock), keep indexes up.

        Still this thread's transaction while publishing, so the head and log
        descriptors it checked under the lock are not checked again.
        """
        checked = self._schema_gen == (txn.head.gen if txn.head is not None else None)
        before = txn.head if txn.head is not None else self._read_head()
        self._publish(txn)
        self._index_after(txn, before)
        if checked and MANIFEST not in txn.files and txn.head is not None:
            self._schema_gen = txn.head.gen  # our own commit moved no schema
        for name in txn.rmdirs:
            self._dirs.pop(name)  # closed once no thread uses it
            # Emptied by the transaction; a file someone put there keeps it.
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=self._root.fd)

    def _index_after(self, txn: Txn, before: Head) -> None:
        """Bring the index files up to a commit of ``txn`` made on ``before`` (every commit moves the generation)."""
        indexed = self._indexed
        if indexed is None:  # (the declarations never change once opened)
            indexed = self._indexed = tuple(c for c in self.collections if c.lookup_fields)
        self._index_commit(txn, before, indexed)

    def _alone(self) -> Txn | None:
        """Begin a write of one step outside any transaction (``_write_alone``, ``_append_alone``).

        Returns the transaction it runs in, holding the write lock, recovered
        and checked as ``_begin`` does; None (nothing taken) when this thread
        is inside a transaction or migrating, or the store is closed or
        read-only: the caller then takes the transaction path, which says why.
        A failure of the recovery or the schema check also returns None (and
        releases the lock): the transaction path runs them again and raises.
        Another writer holding the store is waited for as ``_begin`` waits
        (StoreBusyError after ``busy_timeout``).
        """
        if self._closed or self.mode != "write":
            return None
        state = self._state()  # (first: a fork() child drops the parent's transaction here)
        if state.depth or state.migrating or self._local.txn is not None:
            return None
        self._lock()
        txn = Txn(True)
        self._local.txn = txn
        try:
            head = self._read_head()
            if head.gen < 0 or head.journal is not None or head.journal_file:
                self._recover()  # (a sound head: it would do nothing)
                head = self._read_head()
            if head.gen != self._schema_gen:
                self._check_schema_gen()
        except StateStoreError:
            self._local.txn = None
            self._unlock()
            return None
        except BaseException:
            self._local.txn = None
            self._unlock()
            raise
        return txn

    def _write_alone(
        self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str, *, replace: bool
    ) -> int | None:
        """One record written as a transaction of its own would write it, without the transaction's layers.

        The same steps, files and order as ``insert``/``put`` in a transaction
        of their own (the lock, recovery and schema check of ``_begin``, the
        commit of ``_commit``): only the shared layer's staging is skipped.
        None (nothing written) when the key is stored and ``replace`` is false,
        or whenever ``_alone`` declines.
        """
        if META in data:
            return None  # the transaction path says why
        txn = self._alone()
        if txn is None:
            return None
        try:
            name = keynames.encode(key)
            try:
                rec = self._point(coll, key, name)
            except StateStoreError:
                return None  # (a damaged record: the transaction path reports it)
            if rec is not None and (not replace or rec[1] >= LAST_REVISION):
                return None  # (at the last revision: the transaction path refuses it)
            revision = 1 if rec is None else rec[1] + 1
            head = txn.head
            if head is None:
                txn.records[coll.name] = {name: (key, revision, owned_json(data, text))}
                self._commit_staged(txn)
                return revision
            # Staged as given: only read (the index's values) until a cache takes its own copy.
            txn.records[coll.name] = {name: (key, revision, data)}
            checked = self._schema_gen == head.gen
            self._publish_record(txn, head, coll.name, name, record_text(key, revision, data), text)
            self._index_after(txn, head)
            if checked and txn.head is not None:
                self._schema_gen = txn.head.gen  # our own commit moved no schema
            return revision
        finally:
            self._end_alone()

    def _end_alone(self) -> None:
        """End what ``_alone`` began (committed or not): no transaction in this thread, the lock released."""
        self._local.txn = None
        self._unlock()

    def _rollback(self) -> None:
        txn = self._txn()
        self._local.txn = None
        if txn is not None and txn.write:
            self._unlock()
        elif txn is not None:
            self._lazy_end(txn)
            self._release_snapshot(txn.shared)

    def _savepoint(self, name: str) -> None:
        txn = self._txn()
        assert txn is not None
        txn.savepoints[name] = len(txn.undo)

    def _release(self, name: str) -> None:
        txn = self._txn()
        assert txn is not None
        txn.savepoints.pop(name, None)

    def _rollback_to(self, name: str) -> None:
        txn = self._txn()
        assert txn is not None
        mark = txn.savepoints.pop(name)
        while len(txn.undo) > mark:
            kind, owner, name_, before = txn.undo.pop()
            if kind == "log":
                if owner in txn.lines:  # (a rewrite since may have taken the lines in)
                    del txn.lines[owner][before:]
            elif kind == "logtrim":
                count, length = before
                del txn.rewritten[owner][count:]
                file = f"{owner}.jsonl"
                txn.files[file] = (txn.files.get(file) or "")[:length]
            elif kind == "logstate":
                text, rewritten, lines = before
                _restore(txn.files, f"{owner}.jsonl", text)
                _restore(txn.rewritten, owner, rewritten)
                _restore(txn.lines, owner, lines)
            elif before is MISSING:
                txn.records[owner].pop(name_, None)
            else:
                txn.records[owner][name_] = before

    def _save_log_state(self, txn: Txn, log_name: str) -> None:
        """Remember a log's staged state (file text, rewritten entries, appended lines) for a savepoint."""
        file = f"{log_name}.jsonl"
        before = (
            txn.files.get(file, MISSING),
            list(txn.rewritten[log_name]) if log_name in txn.rewritten else MISSING,
            list(txn.lines[log_name]) if log_name in txn.lines else MISSING,
        )
        txn.undo.append(("logstate", log_name, "", before))

    def _stage(self, coll: Collection[Any], name: str, rec: Rec | None) -> None:
        txn = self._txn()
        assert txn is not None, "writes happen inside a transaction"
        assert txn.write, "writes happen inside a write transaction"
        staged = txn.records.setdefault(coll.name, {})
        txn.undo.append(("rec", coll.name, name, staged.get(name, MISSING)))
        staged[name] = rec


def _restore(staged: dict[str, Any], key: str, value: Any) -> None:
    """Put back what a savepoint saw under ``key`` (MISSING: nothing)."""
    if value is MISSING:
        staged.pop(key, None)
    else:
        staged[key] = value
