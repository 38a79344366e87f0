"""Lazy read transactions (a FileStore mixin); writers keep old versions for them (``keeping``).

A read transaction is a snapshot as of its start. Loading every collection
and log at the start (the eager snapshot) costs O(store size); a *lazy* one
records only the change head's generation ``g0`` and, per log, where the log
ended, and reads a collection or log when first touched. By then a writer
may have replaced or deleted the record files it needs, so writers keep the
old versions while a lazy reader exists (``keeping`` says how, and when they
go):

* A lazy reader holds ``flock(LOCK_SH)`` on ``.statestore/readers.lock``
  through a descriptor of its own (flock locks belong to the open file
  description, so each transaction opens the file) from before it reads the
  head until it ends; a killed reader's lock goes with it. If the file is
  missing, or the lock is not granted at once, or the head announces a
  journal, the transaction takes the eager snapshot instead: readers never wait.
  So it does when this store's lazy transactions already hold their share of
  descriptors (``descriptor_budget()``, counting readers.lock and one per log
  each): threads reading at once never run a process out of descriptors.
* On Linux it also marks its ``g0`` on readers.lock (an open file description
  lock on one byte, see ``registrations``), so writers can tell which kept
  versions no live reader needs.
* A reader's view of record file F is then: the version in the folder of the
  lowest generation above ``g0`` that lists F, else the file as it is now.
  Every commit after ``g0`` was refused the lock (the reader held it), so it
  listed each file it changed, holding the file as it was just before; the
  earliest such folder holds F as it was at ``g0``. A folder left by a writer
  killed before its commit point holds the files as they were at its own
  start, which by the same argument is F at ``g0`` when it is the earliest:
  harmless.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from statestore.backends.files.cache import LogIndex, Rec, Records, Txn, TxnEntry, matches
from statestore.backends.files.fileio import Dir, descriptor_budget, translate
from statestore.backends.files.index import Chain, StaleIndex, candidates, lookup_terms
from statestore.backends.files.journal import Head, Journal
from statestore.backends.files.keeping import MANIFEST, READERS, VERSIONS, KeptVersions, kept_folders
from statestore.backends.files.registrations import MARKS, mark, unmark
from statestore.errors import CorruptStoreError, StateStoreError
from statestore.schema import Collection, Log
from statestore.store import INTERNAL_LOGS, Mode

__all__ = ["LazyColls", "LazyLogs", "Versions"]

_R = TypeVar("_R")

LogView = tuple[LogIndex, int, list[TxnEntry]]


class Lazy:
    """What a lazy read transaction holds: its registration, ``g0`` and each log's end at its start."""

    def __init__(self, fd: int, gen: int, logs: dict[str, tuple[int, int, int] | None]) -> None:
        self.fd = fd  # readers.lock, holding LOCK_SH
        self.held = 0  # descriptors reserved for it in the store's share (released when it ends)
        self.gen = gen
        self.logs = logs  # per log: (descriptor, inode, end of its last complete line), None: no file
        self.manifests: dict[str, dict[tuple[str, str], str | None]] = {}  # per versions folder
        self.old: dict[tuple[str, str, str], Rec] = {}  # parsed kept versions, by (folder, collection, name)


def _unregister(fd: int) -> None:
    """Close a reader's descriptor of readers.lock, its mark and lock released first.

    (A child forked meanwhile holds a copy of the descriptor: closing ours
    alone would leave the lock and the mark to it.)
    """
    unmark(fd)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


class LazyColls(dict[str, Records]):
    """A lazy read transaction's collections: each loaded (as of ``g0``) when first looked up."""

    def __init__(self, load: Callable[[str], Records], lazy: Lazy) -> None:
        super().__init__()
        self.load = load
        self.lazy = lazy

    def __missing__(self, name: str) -> Records:
        snap = self[name] = self.load(name)
        return snap


class LazyLogs(dict[str, LogView]):
    """A lazy read transaction's logs: each indexed (up to its end at the start) when first looked up."""

    def __init__(self, load: Callable[[str], LogView], lazy: Lazy) -> None:
        super().__init__()
        self.load = load
        self.lazy = lazy

    def __missing__(self, name: str) -> LogView:
        view = self[name] = self.load(name)
        return view

    def descriptor(self, name: str) -> int | None:
        """The transaction's own descriptor of the log file it saw at its start (None: none)."""
        got = self.lazy.logs.get(name)
        return None if got is None else got[0]


def complete_end(fd: int, size: int) -> int:
    """The end of the last complete line among the first ``size`` bytes of a log file.

    A torn last line (a killed writer's) is cut and written again by the next
    writer: only bytes up to the last newline are stable.
    """
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        nl = os.pread(fd, end - start, start).rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        end = start
    return 0


class Versions(KeptVersions):
    """Lazy read transactions and kept versions for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    path: Path
    mode: Mode
    _sys: Dir | None
    _cache_lock: threading.RLock
    _colls: dict[str, Records]
    _logs: dict[str, LogIndex]
    _reader_fds: set[int]  # descriptors of this process's lazy transactions (closed after fork())
    _reader_lock: threading.Lock  # guards _reader_held
    _reader_held: int  # descriptors this store's lazy transactions hold (readers.lock and logs)

    if TYPE_CHECKING:

        @property
        def collections(self) -> tuple[Collection[Any], ...]: ...

        @property
        def logs(self) -> tuple[Log[Any], ...]: ...

        def _read_head(self) -> Head: ...

        def _journal(self, head: Head) -> Journal | None: ...

        def _consistent(self, fn: Callable[[Head, Journal | None], _R], first: Head | None = None) -> _R: ...

        def _dir(self, name: str, *, create: bool = False) -> Dir | None: ...

        def _read_rec(self, coll: Collection[Any], name: str) -> Rec | None: ...

        def _parse(self, coll: Collection[Any], name: str, raw: bytes | str, path: Any) -> Rec: ...

        def _catch_up(self, coll: Collection[Any], head: Head, journal: Journal | None) -> Records: ...

        def _overlay(self, coll: Collection[Any], journal: Journal | None) -> dict[str, Rec | None]: ...

        def _catch_up_log(self, log: Log[Any], journal: Journal | None) -> LogIndex: ...

        def _extend_index(self, idx: LogIndex, fd: int, limit: int, path: Path) -> None: ...

        def _log_place(self, log_name: str) -> tuple[Dir | None, str]: ...

        def _log_path(self, name: str) -> Path: ...

        def _chain(self, coll: Collection[Any]) -> Chain | None: ...

        def _txn(self) -> Txn | None: ...

        def _read_summary(self, log_name: str) -> tuple[int, int, int, int, int, int] | None: ...

        def _parse_line(self, line: str | bytes, path: Path, lineno: int | None, *, log_file: bool = True) -> Any: ...

        def _summary_tail(
            self, fd: int, path: Path, summary: tuple[int, int, int, int, int, int], limit: int
        ) -> LogIndex | None: ...

    # ------------------------------------------------------------ readers

    def _lazy_begin(self, txn: Txn) -> tuple[bool, Head | None]:
        """Make ``txn`` a lazy read transaction (True), or say the eager snapshot is needed (False).

        Also returns the change head if it was read (the eager snapshot can start from it).
        """
        need = 1 + len(self.logs) + len(INTERNAL_LOGS)  # readers.lock and each log, until it ends
        if self._sys is None or not self._count_descriptors(need):
            return False, None
        try:
            lazy, head = self._lazy_register(self._sys)
        except BaseException:
            self._uncount_descriptors(need)
            raise
        if lazy is None:
            self._uncount_descriptors(need)
            return False, head
        lazy.held = need
        self._reader_fds.add(lazy.fd)
        txn.colls = LazyColls(lambda name: self._lazy_coll(txn, lazy, name), lazy)
        txn.logs = LazyLogs(lambda name: self._lazy_log(lazy, name), lazy)
        return True, head

    def _count_descriptors(self, n: int) -> bool:
        """Count ``n`` more descriptors in this store's lazy transactions' share; False if over it."""
        with self._reader_lock:
            if self._reader_held + n > descriptor_budget():
                return False
            self._reader_held += n
            return True

    def _uncount_descriptors(self, n: int) -> None:
        with self._reader_lock:
            self._reader_held -= n

    def _lazy_register(self, sys_dir: Dir) -> tuple[Lazy | None, Head | None]:
        """Register on readers.lock and read ``g0`` and the logs' ends (None: take the eager snapshot)."""
        try:
            fd = sys_dir.open(READERS, os.O_RDONLY)
        except StateStoreError:
            return None, None
        if fd is None:
            return None, None
        lazy = None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None, None
            if MARKS and not mark(fd, None):  # (writers here delete the versions no marked reader needs)
                _unregister(fd)
                return None, None
            head = self._read_head()  # (only now: a writer that commits after it keeps versions for us)
            lazy = self._lazy_start(fd, head)
            if lazy is not None:
                mark(fd, lazy.gen)  # (if it fails, byte 0 stays marked: every version is kept for us)
        except BaseException:
            if lazy is not None:
                self._lazy_close_logs(lazy)
            _unregister(fd)
            raise
        if lazy is None:
            _unregister(fd)
        return lazy, head

    def _lazy_start(self, fd: int, head: Head) -> Lazy | None:
        """``g0`` and each log's end, both read after registering; None if the head has a journal or moved."""
        if head.gen < 0 or head.journal is not None or head.journal_file:
            return None
        every = (*self.logs, *INTERNAL_LOGS)
        logs: dict[str, tuple[int, int, int] | None] = {}
        lazy = Lazy(fd, head.gen, logs)
        try:
            for log in every:
                folder, file = self._log_place(log.name)
                log_fd = folder.open(file, os.O_RDONLY) if folder is not None else None
                if log_fd is None:
                    logs[log.name] = None
                    continue
                logs[log.name] = (log_fd, 0, 0)
                with translate(self._log_path(log.name)):
                    st = os.fstat(log_fd)
                    logs[log.name] = (log_fd, st.st_ino, complete_end(log_fd, st.st_size))
            # A line appended between the two head reads may belong to a later generation: start again, eagerly.
            if self._read_head().gen != head.gen:
                self._lazy_close_logs(lazy)
                return None
        except StateStoreError:  # (out of descriptors, say): the eager snapshot says what is wrong, if anything
            self._lazy_close_logs(lazy)
            return None
        except BaseException:
            self._lazy_close_logs(lazy)
            raise
        return lazy

    @staticmethod
    def _lazy_close_logs(lazy: Lazy) -> None:
        for got in lazy.logs.values():
            if got is not None:
                with contextlib.suppress(OSError):
                    os.close(got[0])
        lazy.logs.clear()

    def _lazy_end(self, txn: Txn) -> None:
        """A lazy read transaction is over: close its log descriptors and its registration."""
        colls = txn.colls
        if not isinstance(colls, LazyColls):
            return
        lazy = colls.lazy
        self._lazy_close_logs(lazy)
        if lazy.fd in self._reader_fds:
            self._reader_fds.discard(lazy.fd)
            self._uncount_descriptors(lazy.held)
            lazy.held = 0
            _unregister(lazy.fd)

    def _lazy_after_fork(self) -> None:
        """In a fork() child: the parent's registrations are not ours (an inherited one would keep its lock)."""
        for fd in self._reader_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader_fds = set()
        if self._readers_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._readers_fd)
            self._readers_fd = None
        self._readers_held = False

    def _lazy_point(self, coll: Collection[Any], name: str, lazy: Lazy) -> Rec | None:
        """Record file ``name`` of ``coll`` as of ``g0``: the file now, unless a kept version says otherwise."""
        if coll.name in self._colls:
            # Loaded in this process: bring the cache up to date (re-reading only what changed), as outside.
            with self._cache_lock:
                cache, overlay = self._consistent(lambda h, j: (self._catch_up(coll, h, j), self._overlay(coll, j)))
                rec = overlay[name] if name in overlay else cache.records.get(name)
            return self._old_versions(coll, lazy, name).get(name, rec)
        head = self._read_head()
        if head.journal is None and not head.journal_file:
            rec = self._read_rec(coll, name)
        else:
            overlay = self._overlay(coll, self._journal(head))
            rec = overlay[name] if name in overlay else self._read_rec(coll, name)
        # (Looked up after the file was read: every commit that changed it by then is listed.)
        old = self._old_versions(coll, lazy, name)
        return old.get(name, rec)

    def _lazy_coll(self, txn: Txn, lazy: Lazy, coll_name: str) -> Records:
        """The whole of a collection as of ``g0``: the cache brought up to date, with kept versions over it."""
        coll = next(c for c in self.collections if c.name == coll_name)
        with self._cache_lock:
            cache, overlay = self._consistent(lambda h, j: (self._catch_up(coll, h, j), self._overlay(coll, j)))
            old = self._old_versions(coll, lazy, None)
            if not overlay and not old:
                # Shared, not copied: the store copies it before it next changes it.
                cache.shared += 1
                txn.shared.append(cache)
                return cache
            snap = cache.copy()
            for name, rec in overlay.items():
                snap.put(name, rec)
            for name, rec in old.items():
                snap.put(name, rec)
            return snap

    def _old_versions(self, coll: Collection[Any], lazy: Lazy, only: str | None) -> dict[str, Rec | None]:
        """Files of ``coll`` (or only ``only``) changed after ``g0``, as they were at ``g0`` (None: absent)."""
        assert self._sys is not None
        earliest = self._earliest(coll.name, lazy, only)
        if not earliest:
            return {}
        top = self._sys.subdir(VERSIONS, create=False)
        if top is None:  # (only a writer granted the exclusive lock deletes it: never while we hold ours)
            raise CorruptStoreError(str(self._sys.path / VERSIONS), "kept versions vanished while a reader needed them")
        try:
            return {
                name: None if kept is None else self._kept_rec(coll, lazy, top, entry, name, kept)
                for name, (entry, kept) in earliest.items()
            }
        finally:
            top.close()

    def _earliest(self, coll_name: str, lazy: Lazy, only: str | None) -> dict[str, tuple[str, str | None]]:
        """Per file of ``coll_name`` (or only ``only``) changed after ``g0``: the versions folder of the
        lowest generation above ``g0`` listing it, and the name it is kept under there (None: it was absent)."""
        assert self._sys is not None
        top = self._sys.subdir(VERSIONS, create=False)
        if top is None:
            return {}
        out: dict[str, tuple[str, str | None]] = {}
        try:
            for gen, entry in kept_folders(top.names()):
                if gen <= lazy.gen:
                    continue
                listed = lazy.manifests.get(entry)
                if listed is None:
                    listed = self._read_kept_manifest(top, entry)
                    if listed is None:
                        continue  # not written yet: its commit comes after what we read
                    lazy.manifests[entry] = listed
                if only is not None:
                    wanted = [(coll_name, only)] if (coll_name, only) in listed else []
                else:
                    wanted = [k for k in listed if k[0] == coll_name]
                for key in wanted:
                    if key[1] not in out:  # (an earlier generation has it)
                        out[key[1]] = (entry, listed[key])
        finally:
            top.close()
        return out

    def _lazy_rows(self, coll: Collection[Any], where: Mapping[str, Any], lazy: Lazy) -> list[Rec] | None:
        """Records of ``coll`` meeting ``where`` as of ``g0``, from the index files; None: load it instead.

        The candidates: what the index finds at the current head (with the
        files changed since the index's generation, as outside a transaction),
        plus every file changed since ``g0``, taken as it was then. A record
        that met ``where`` at ``g0`` and is not among the files changed since
        is unchanged, so the index finds it. Each candidate is checked.
        """
        if not where or coll.name in self._colls or not coll.lookup_fields:
            return None
        usable = lookup_terms(coll, where)
        if not usable:
            return None
        wanted = dict(where)

        def read(head: Head, journal: Journal | None) -> list[Rec] | None:
            chain = self._chain(coll)
            dirty = None if chain is None else head.changed(coll.name, chain.tip)
            if chain is None or dirty is None:
                return None
            names = candidates(chain, usable)
            overlay = self._overlay(coll, journal)
            # (Listed after the head was read: every commit up to it is in the folders.)
            old = self._old_versions(coll, lazy, None)
            rows = []
            for name in names | dirty | overlay.keys() | old.keys():
                # As of g0: kept if it changed since, else as it is now (unchanged since g0).
                rec = old[name] if name in old else overlay[name] if name in overlay else self._read_rec(coll, name)
                if rec is not None and matches(rec[2], wanted):
                    rows.append(rec)
            return rows

        with self._cache_lock:
            try:
                rows: list[Rec] | None = self._consistent(read)
            except StaleIndex:
                rows = None  # rebuilt by a writer since its header was read: load instead
        if rows is not None:
            rows.sort(key=itemgetter(0))
        return rows

    def _lazy_count(self, coll: Collection[Any], lazy: Lazy) -> int | None:
        """``len()`` of a collection the transaction has not loaded, from its index files; None: load it instead.

        The count at the current head (as outside a transaction), corrected by
        every file changed since ``g0``: +1 if it existed at ``g0``, -1 if it
        exists now. Files changed only after the head counted leave it as it was.
        """
        if not coll.lookup_fields or coll.name in self._colls:
            return None  # (no index files; or loaded here: the view shares the cache)

        def count(head: Head, journal: Journal | None) -> int | None:
            chain = self._chain(coll)
            dirty = None if chain is None else head.changed(coll.name, chain.tip)
            if chain is None or dirty is None:
                return None
            overlay = self._overlay(coll, journal)
            d = self._dir(coll.name)

            def now(name: str) -> bool:
                return overlay[name] is not None if name in overlay else d is not None and d.exists(name)

            n = chain.count()
            for name in dirty | overlay.keys():
                n += now(name) - chain.existed(name)
            # (Listed after the head was read: every commit up to it is in the folders.)
            for name, (_entry, kept) in self._earliest(coll.name, lazy, None).items():
                n += (kept is not None) - now(name)
            return n

        with self._cache_lock:
            try:
                result: int | None = self._consistent(count)
            except StaleIndex:
                result = None  # rebuilt by a writer since its header was read: load instead
        return result

    @staticmethod
    def _read_kept_manifest(top: Dir, entry: str) -> dict[tuple[str, str], str | None] | None:
        folder = top.subdir(entry, create=False)
        if folder is None:
            return None
        try:
            raw = folder.read(MANIFEST)
        finally:
            folder.close()
        if raw is None or not raw.strip():
            # Missing, or empty: a rename that a power cut left without its data (nothing here is
            # fsynced; no reader outlives a power cut, so its commit is not one anyone reads as of).
            return None
        try:  # (written whole, by rename: damage here is someone else's doing)
            doc = json.loads(raw)
            return {(str(c), str(n)): (None if k is None else str(k)) for c, n, k in doc["files"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(str(top.path / entry / MANIFEST), f"not a versions manifest ({exc})") from None

    def _kept_rec(self, coll: Collection[Any], lazy: Lazy, top: Dir, entry: str, name: str, kept: str) -> Rec:
        memo = lazy.old.get((entry, coll.name, name))
        if memo is not None:
            return memo
        folder = top.subdir(entry, create=False)
        raw = folder.read(kept) if folder is not None else None
        if folder is not None:
            folder.close()
        if raw is None:
            # Only a writer granted the exclusive lock deletes versions: never while we hold ours.
            raise CorruptStoreError(str(top.path / entry / kept), "a kept version vanished while a reader needed it")
        rec = self._parse(coll, name, raw, top.path / entry / kept)
        lazy.old[entry, coll.name, name] = rec
        return rec

    def _lazy_log_count(self, log: Log[Any]) -> tuple[int, int] | None:
        """(entries, last seq) of a log this lazy transaction has not touched, from its summary; None: index it.

        As ``_summary_count`` outside a transaction, on the transaction's own
        descriptor up to the end it recorded at its start: the summary counts
        only if it describes that file (same inode) up to at most that end, and
        the line it names as its last is there with the same seq; the lines
        after it, up to that end, are read and checked.
        """
        txn = self._txn()
        logs = txn.logs if txn is not None else None
        if not isinstance(logs, LazyLogs) or log.name in logs or log.name in self._logs:
            return None  # (indexed in this process: the index answers)
        got = logs.lazy.logs.get(log.name)
        if got is None:
            return 0, 0  # no file at the start
        fd, ino, end = got
        summary = self._read_summary(log.name)
        if summary is None:
            return None
        if summary[0] != ino:
            return None
        entries, last_seq = summary[2], summary[4]
        path = self._log_path(log.name)
        with translate(path):
            tail = self._summary_tail(fd, path, summary, end)
        if tail is None:
            return None
        return entries + len(tail.seqs), tail.seqs[-1] if tail.seqs else last_seq

    def _lazy_log(self, lazy: Lazy, log_name: str) -> LogView:
        """A log as of the transaction's start: its index up to the end of its last complete line then."""
        got = lazy.logs.get(log_name)
        if got is None:
            return LogIndex(None), 0, []
        fd, ino, end = got
        log = next(lg for lg in (*self.logs, *INTERNAL_LOGS) if lg.name == log_name)
        with self._cache_lock:
            idx = self._logs.get(log_name)
            if idx is None or idx.ino != ino or idx.end < end:
                with contextlib.suppress(StateStoreError):
                    idx = self._consistent(lambda _h, j: self._catch_up_log(log, j))
            if idx is None or idx.ino != ino or idx.end < end:
                # The file was replaced (a migration) or is being rewritten: index our own descriptor of it.
                idx = LogIndex(ino)
                path = self._log_path(log_name)
                with translate(path):
                    self._extend_index(idx, fd, end, path)
        return idx, bisect.bisect_right(idx.ends, end), []
