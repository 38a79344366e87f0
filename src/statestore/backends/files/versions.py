"""Lazy read transactions and the old record versions kept for them (a FileStore mixin).

A read transaction is a snapshot as of its start. Loading every collection
and log at the start (the eager snapshot) costs O(store size); a *lazy* one
records only the change head's generation ``g0`` and, per log, where the log
ended, and reads a collection or log when first touched. By then a writer
may have replaced or deleted the record files it needs, so writers keep the
old versions while a lazy reader exists:

* A lazy reader holds ``flock(LOCK_SH)`` on ``.statestore/readers.lock``
  through a descriptor of its own (flock locks belong to the open file
  description, so each transaction opens the file) from before it reads the
  head until it ends; a killed reader's lock goes with it. If the file is
  missing, or the lock is not granted at once, or the head announces a
  journal, the transaction takes the eager snapshot instead: readers never wait.
  So it does when this store's lazy transactions already hold their share of
  descriptors (``descriptor_budget()``, counting readers.lock and one per log
  each): threads reading at once never run a process out of descriptors.
* A writer, before the commit point of a commit that replaces or deletes
  record files, tries ``flock(LOCK_EX | LOCK_NB)`` on its own descriptor.
  Granted: no lazy reader exists and none can register until the writer
  releases it after the head is settled (so any later reader's ``g0`` is at
  least this commit's generation); the writer also deletes versions kept
  earlier. Refused: before its commit point, the writer hard-links (or
  copies) every record file the commit replaces or deletes into
  ``.statestore/versions/<gen>.<hex>/`` (``gen``: the commit's new
  generation) and writes a manifest naming each (collection, file) and
  whether it existed.
* A reader's view of record file F is then: the version in the folder of the
  lowest generation above ``g0`` that lists F, else the file as it is now.
  Every commit after ``g0`` was refused the lock (the reader held it), so it
  listed each file it changed, holding the file as it was just before; the
  earliest such folder holds F as it was at ``g0``. A folder left by a writer
  killed before its commit point holds the files as they were at its own
  start, which by the same argument is F at ``g0`` when it is the earliest:
  harmless, so such folders go only when no reader can need them (below).
* On Linux each lazy reader also marks its ``g0`` on readers.lock (an open
  file description lock on one byte, see ``registrations``), so a writer
  refused the lock deletes the folders no live reader needs: while read
  transactions always overlap, the folder does not grow by one per commit.
  Elsewhere only a writer granted the lock deletes them.

Nothing here is fsynced: readers do not outlive a crash, and the next writer
granted the lock deletes whatever is left.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from statestore.backends.files.cache import ROOT, LogIndex, Rec, Records, Txn, TxnEntry, matches
from statestore.backends.files.fileio import Dir, descriptor_budget, translate, unique_hex
from statestore.backends.files.index import Chain, StaleIndex, candidates, lookup_terms
from statestore.backends.files.journal import LOCK, Head, Journal
from statestore.backends.files.registrations import MARKS, mark, unmark, unneeded
from statestore.errors import CorruptStoreError, StateStoreError
from statestore.schema import Collection, Log
from statestore.store import INTERNAL_LOGS, Mode

__all__ = ["READERS", "VERSIONS", "LazyColls", "LazyLogs", "Versions"]

#: The file lazy readers hold a shared flock on (in ``.statestore/``).
READERS = "readers.lock"
#: The folder of kept versions (in ``.statestore/``).
VERSIONS = "versions"
_MANIFEST = "manifest.json"

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


def _number(text: str) -> bool:
    """Whether a versions folder's name starts with a generation (ASCII digits: ``"²".isdigit()`` too)."""
    return text.isascii() and text.isdigit()


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


class Versions:
    """Lazy read transactions and kept versions for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    path: Path
    mode: Mode
    _sys: Dir | None
    _cache_lock: threading.RLock
    _colls: dict[str, Records]
    _logs: dict[str, LogIndex]
    _readers_fd: int | None  # a writer's own descriptor of readers.lock
    _readers_held: bool  # whether it holds LOCK_EX now (a commit in progress)
    _versions_left: bool  # whether kept versions may exist (kept here, or found at open)
    _own_gen: int  # the generation of this process's last commit that changed record files
    _reader_fds: set[int]  # descriptors of this process's lazy transactions (closed after fork())
    _reader_lock: threading.Lock  # guards _reader_held
    _reader_held: int  # descriptors this store's lazy transactions hold (readers.lock and logs)
    _mutex: threading.Lock  # (FileStore's) threads queue here for the write lock
    _lock_fd: int | None  # (FileStore's) descriptor of write.lock

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

    # ------------------------------------------------------------ writers

    def _open_versions(self) -> None:
        """At a write-mode open: make readers.lock, and note versions left by other processes."""
        self._readers_held = False
        self._versions_left = False
        self._own_gen = -2  # the generation of our last commit that changed record files
        if self.mode == "write" and self._sys is not None:
            self._readers_fd = self._sys.open(READERS, os.O_RDWR, create=True)
            self._versions_left = self._sys.exists(VERSIONS)
            # Left by processes gone (or from before a change head was lost and started again at
            # generation 0, when their numbers would pass for future ones): deleted now if no writer
            # and no reader holds the store, else by the next writer granted readers.lock.
            self._sweep_versions()

    def _guard_readers(self, gen: int, files: list[tuple[str, str]]) -> None:
        """Before the commit point of a commit changing record ``files`` (we hold the write lock).

        Takes readers.lock exclusively if no lazy reader holds it (kept until
        ``_release_readers``), deleting the versions kept so far; otherwise
        keeps the current version of each file for the readers. A failure to
        keep them raises, before the commit point: the commit does not happen.
        """
        files = [(c, n) for c, n in files if c != ROOT]
        if not files or self._sys is None:
            return
        fd = self._readers_fd
        if fd is None:
            fd = self._readers_fd = self._sys.open(READERS, os.O_RDWR, create=True)
        assert fd is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # refused (or no flock here at all: keeping versions is the safe side)
            self._keep_versions(gen, files)
            self._prune_versions(fd, gen)
            return
        self._readers_held = True
        if not self._versions_left and gen != self._own_gen + 1:
            # Another writer committed since our last commit: it may have kept versions (one stat).
            self._versions_left = self._sys.exists(VERSIONS)
        self._own_gen = gen
        if self._versions_left:
            # No reader is registered, and none can register until we release the lock.
            with contextlib.suppress(OSError):
                shutil.rmtree(self._sys.path / VERSIONS)
            self._versions_left = False

    def _release_readers(self) -> None:
        """After the head is settled: lazy readers may register again (their g0 is at least ours)."""
        if self._readers_held:
            self._readers_held = False
            if self._readers_fd is not None:
                with contextlib.suppress(OSError):  # (closing the descriptor would release it too)
                    fcntl.flock(self._readers_fd, fcntl.LOCK_UN)

    def _sweep_versions(self) -> None:
        """At close: delete the versions this process kept if no writer and no lazy reader holds the store.

        Best effort and never waiting (kept versions may hold deleted data: they
        should not outlive the readers they were kept for). If anyone holds
        either lock, the next writer granted readers.lock deletes them.
        """
        if not self._versions_left or self._readers_fd is None or self._sys is None:
            return
        if not self._mutex.acquire(False):
            return  # a thread of ours is writing (or closing): leave it to a later commit
        try:
            fd = self._lock_fd
            if fd is None:
                fd = self._lock_fd = self._sys.open(LOCK, os.O_RDWR, create=True)
            assert fd is not None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another writer: it may be keeping versions right now
            try:
                try:
                    fcntl.flock(self._readers_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # a lazy reader still needs them
                try:
                    shutil.rmtree(self._sys.path / VERSIONS, ignore_errors=True)
                    self._versions_left = False
                finally:
                    fcntl.flock(self._readers_fd, fcntl.LOCK_UN)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _prune_versions(self, fd: int, below: int) -> None:
        """Delete the versions folders of generations below ``below`` that no marked reader needs.

        Called holding the write lock, refused the exclusive readers.lock. A
        reader that marks itself after this looks reads a change head of
        generation ``below - 1`` or later, so needs none of them. Nothing
        happens where readers leave no marks.
        """
        if not MARKS or self._sys is None:
            return
        top = self._sys.subdir(VERSIONS, create=False)
        if top is None:
            return
        try:
            names = top.names()
        except StateStoreError:
            return  # (cannot list it: every folder counts as needed)
        finally:
            top.close()
        named = [(int(gen), name) for gen, name in ((name.partition(".")[0], name) for name in names) if _number(gen)]
        gens = sorted({gen for gen, _ in named if gen < below})
        count = unneeded(fd, gens)
        for gen, name in named:
            if count and gen <= gens[count - 1]:
                shutil.rmtree(self._sys.path / VERSIONS / name, ignore_errors=True)

    def _keep_versions(self, gen: int, files: list[tuple[str, str]]) -> None:
        """Keep the current version of each (collection, file) in ``versions/<gen>.<hex>/`` with a manifest."""
        assert self._sys is not None
        self._versions_left = True
        top = self._sys.subdir(VERSIONS, create=True)
        assert top is not None
        try:
            folder = top.subdir(f"{gen}.{unique_hex()}", create=True)
        finally:
            top.close()
        assert folder is not None
        try:
            listed: list[list[str | None]] = []
            for i, (coll_name, name) in enumerate(files):
                src = self._dir(coll_name)
                kept: str | None = str(i)
                if src is None:
                    kept = None
                else:
                    try:
                        os.link(name, str(i), src_dir_fd=src.fd, dst_dir_fd=folder.fd, follow_symlinks=False)
                    except FileNotFoundError:
                        kept = None
                    except OSError:  # no hard links here (EPERM, EXDEV, EMLINK): copy the bytes
                        raw = src.read(name)
                        if raw is None:
                            kept = None
                        else:
                            folder.write(str(i), raw, sync=False)
                listed.append([coll_name, name, kept])
            # Written last, by rename: a folder without it was never committed, and readers skip it.
            folder.write(_MANIFEST, json.dumps({"gen": gen, "files": listed}).encode("utf-8"), sync=False)
        finally:
            folder.close()

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
            folders = []
            for entry in top.names():
                gen, _, _hex = entry.partition(".")
                if _number(gen) and int(gen) > lazy.gen:
                    folders.append((int(gen), entry))
            for _gen, entry in sorted(folders):
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
            raw = folder.read(_MANIFEST)
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
            raise CorruptStoreError(str(top.path / entry / _MANIFEST), f"not a versions manifest ({exc})") from None

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
