"""FileStore: a store kept as a directory of JSON documents and JSONL logs.

Layout (DESIGN §6)::

    <root>/statestore.json           format, store id, each schema's name, version and description
    <root>/<collection>/<name>.json  one record per file: pretty JSON, keys sorted, UTF-8, with the
                                     key and revision under the reserved member "_statestore"
    <root>/<log>.jsonl               one entry per line: {"at", "record", "seq", "stream", "version"}
    <root>/.statestore/              write.lock, journal.json (a committed transaction being applied),
                                     changes (the change head)

so ``grep -r '"status": "todo"' state/tasks/`` and ``jq`` work on a live
store. File names come from :mod:`statestore._keyname`; every file is 0600 and
every directory 0700; a symbolic link inside the store is refused, never
followed (:mod:`statestore._fsio`).

Writers serialise on ``.statestore/write.lock`` (``filelock.FileLock``, held
from ``_begin`` to ``_commit``/``_rollback``; a thread lock in front of it
serialises threads), so read-check-write sequences of the shared layer
(``update``, CAS, unique constraints, stream versions) are atomic across
processes. A transaction is staged in memory, per thread, and committed
through the journal (:mod:`statestore._journal`). Readers take no lock: they
read the change head before and after (a seqlock), and read a committed
journal in place of the files it is applying, so they never see half a
transaction. Collections are cached in memory and brought up to date from the
change head, re-reading only the files that changed; logs keep a byte-offset
index, extended by reading only the bytes appended since.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from statestore import _keyname
from statestore._filecache import LogIndex, Rec, Records, matches
from statestore._fsio import Dir, translate
from statestore._journal import CHANGES, JOURNAL, LOCK, Head, Journal
from statestore.codec import Codec, dumps, pretty
from statestore.errors import (
    CorruptStoreError,
    MigrationRequiredError,
    SchemaError,
    SchemaMismatchError,
    SchemaTooNewError,
    StateStoreError,
    StoreBusyError,
    StoreNotFoundError,
    ValidationError,
)
from statestore.schema import Collection, KeyValue, Log, Schema, check_name
from statestore.store import Durability, Mode, RawEntry, RawRecord, Store

__all__ = ["FileStore", "record_text"]

FORMAT = 1
MANIFEST = "statestore.json"
INTERNAL = ".statestore"
META = "_statestore"
_R = TypeVar("_R")
_Entry = tuple[int, str, int, str, dict[str, Any], str]  # RawEntry plus its JSONL line
#: Journals up to this size are committed inside the change head rather than as a file.
EMBED_LIMIT = 16 << 10


def record_text(key: KeyValue, revision: int, data: dict[str, Any]) -> str:
    """A record file's text: pretty JSON (2 spaces), keys sorted, UTF-8, trailing newline.

    A document holding a lone surrogate cannot be UTF-8, so it alone is
    written with ``\\u`` escapes, which read back identically.
    """
    doc = dict(data)
    doc[META] = {"key": list(key) if isinstance(key, tuple) else key, "revision": revision}
    text = pretty(doc) + "\n"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return text


def _line(seq: int, stream: str, version: int, at: str, text: str) -> str:
    # Keys in sorted order, compact; ``text`` is the codec's canonical record JSON.
    return (
        f'{{"at":{json.dumps(at)},"record":{text},"seq":{seq},'
        f'"stream":{json.dumps(stream, ensure_ascii=False)},"version":{version}}}\n'
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Lazy:
    """``folder / name``, joined only when an error message needs it."""

    __slots__ = ("folder", "name")

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name

    def __str__(self) -> str:
        return str(self.folder / self.name)


class _Txn:
    """One thread's transaction: staged writes (write mode) or a snapshot (read mode)."""

    def __init__(self, write: bool) -> None:
        self.write = write
        self.records: dict[str, dict[str, Rec | None]] = {}
        self.lines: dict[str, list[_Entry]] = {}
        self.undo: list[tuple[str, str, str, Any]] = []
        self.savepoints: dict[str, int] = {}
        self.colls: dict[str, Records] | None = None
        self.logs: dict[str, tuple[LogIndex, int, list[_Entry]]] = {}
        # A write transaction holds the write lock: the head and the logs it has
        # caught up with cannot change under it, so they are read once.
        self.head: Head | None = None
        self.caught_up: dict[str, tuple[LogIndex, int, list[_Entry]]] = {}


_MISSING = object()


class FileStore(Store):
    """A store in a directory of JSON and JSONL files.

    ``busy_timeout`` is how long a writer waits for another writer (any
    thread or process) before raising StoreBusyError. ``durability="full"``
    fsyncs every file and directory it changes; ``"normal"`` relies on atomic
    renames, which survive a killed process but not a power loss. Mode
    ``"read"`` creates nothing and takes no lock; a missing store raises
    StoreNotFoundError. A store object may be shared by threads and survives
    ``fork()``. Files edited by hand while a process has the store open are
    seen by that process only after the next committed write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema,
        *,
        mode: Mode = "write",
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"files:{self.path}", schema, mode=mode, codec=codec or Codec())
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.durability: Durability = durability
        self.busy_timeout = float(busy_timeout)
        self._sync = durability == "full"
        # Built once: a Path join costs more than the pread it would label.
        self._head_path = self.path / INTERNAL / CHANGES
        self._journal_path = self.path / INTERNAL / JOURNAL
        self._decls: dict[str, Collection[Any]] = {c.name: c for c in schema.collections}
        self._log_paths: dict[str, Path] = {}
        self._log_fds: dict[str, tuple[int, int]] = {}
        self._dirs: dict[str, Dir] = {}
        self._sys: Dir | None = None
        self._lock_fd: int | None = None
        # Kept across fork(): pwrite/pread at explicit offsets share no file position.
        self._local_head_fd: int | None = None
        self._reset_process_state()
        root = Dir.open_root(self.path, create=mode == "write")
        if root is None:
            raise StoreNotFoundError(self.location)
        self._root = root
        try:
            if mode == "write":
                self._sys = root.subdir(INTERNAL, create=True)
                self._open_for_write()
            else:
                self._sys = root.subdir(INTERNAL, create=False)
                manifest = self._read_manifest()
                if manifest is None:
                    raise StoreNotFoundError(self.location)
                self._check_schema(manifest)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ process state

    def _reset_process_state(self) -> None:
        self._local = threading.local()
        self._mutex = threading.Lock()  # threads queue here before contending for the file lock
        self._cache_lock = threading.RLock()
        self._colls: dict[str, Records] = {}
        self._logs: dict[str, LogIndex] = {}
        self._journal_memo: tuple[tuple[int, int, int], Journal | None] | None = None
        self._overlays: dict[str, Any] = {}  # parsed journal contents, for one journal id
        self._overlays_of: str | None = None

    def _after_fork(self) -> None:
        # Locks and caches may have been mid-use by another thread at fork().
        # An inherited lock descriptor shares its flock with the parent's
        # (same open file description): the child must open its own.
        self._reset_process_state()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close(self) -> None:
        for fd in (self._local_head_fd, self._lock_fd, *(fd for fd, _ in self._log_fds.values())):
            if fd is not None:
                os.close(fd)
        self._log_fds.clear()
        self._local_head_fd = self._lock_fd = None
        for d in [*self._dirs.values(), self._sys, self._root]:
            if d is not None:
                d.close()
        self._dirs.clear()
        self._colls, self._logs = {}, {}

    # ------------------------------------------------------------ locking

    def _lock(self) -> None:
        """Take the store's write lock: this process's threads queue on a mutex, processes on flock.

        The lock is ``flock(2)`` on ``.statestore/write.lock`` through a
        descriptor kept open, rather than ``filelock.FileLock``, which reopens
        and checks the lock file on every acquire: ~110 µs against ~2 µs, paid
        by every write. Waiting polls with a growing delay up to
        ``busy_timeout``, then raises StoreBusyError.
        """
        deadline = time.monotonic() + max(self.busy_timeout, 0.0)
        if not self._mutex.acquire(timeout=max(self.busy_timeout, 0.0)):
            raise StoreBusyError(self.location, self.busy_timeout)
        try:
            if self._lock_fd is None:
                assert self._sys is not None
                self._lock_fd = self._sys.open(LOCK, os.O_RDWR, create=True)
            assert self._lock_fd is not None
            delay = 0.0002
            while True:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(self.location, self.busy_timeout) from None
                    time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                    delay = min(delay * 2, 0.01)
        except BaseException:
            self._mutex.release()
            raise

    def _unlock(self) -> None:
        try:
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    # ------------------------------------------------------------ opening

    def _open_for_write(self) -> None:
        """Create the store or bring its description up to date; take the lock only if needed.

        Opening a current store takes no lock, so it succeeds while another
        process holds a long write transaction.
        """
        manifest = self._read_manifest()
        if (
            manifest is not None
            and not self._check_schema(manifest)
            and self._journal(self._read_head()) is None
            and self._sys is not None
            and not self._sys.exists(JOURNAL)  # a power loss can keep the file, not the head's word
            and self._head_fd() is not None
            and all(self._dir(c.name) is not None for c in self.schema.collections)
        ):
            return
        self._lock()
        try:
            assert self._sys is not None
            self._sys.sweep()
            self._recover(probe=True)
            manifest = self._read_manifest()
            if manifest is None:
                others = [n for n in self._root.names() if not n.startswith(".")]
                if others:
                    raise CorruptStoreError(
                        str(self.path), f"directory is not empty and has no {MANIFEST}: not a statestore store"
                    )
                manifest = {"format": FORMAT, "store_id": uuid.uuid4().hex, "schemas": {}}
            if self._check_schema(manifest):
                text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                self._root.write(MANIFEST, text.encode("utf-8"), sync=self._sync)
                if self._sync:
                    self._root.sync()
            if self._head_fd() is None:
                self._write_head(Head(), sync=self._sync)
            for coll in self.schema.collections:
                self._dir(coll.name, create=True)
            for log in self.schema.logs:
                self._repair_tail(log.name)
        finally:
            self._unlock()

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        raw = self._root.read(MANIFEST)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CorruptStoreError(str(path), f"not valid JSON: {exc}", getattr(exc, "lineno", None)) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("schemas"), dict):
            fmt = doc.get("format") if isinstance(doc, dict) else None
            raise CorruptStoreError(str(path), f"unknown store format {fmt!r}")
        return doc

    def _check_schema(self, manifest: dict[str, Any]) -> bool:
        """Check the stored schema against the code's; True if (in write mode) ``manifest`` was updated."""
        schema = self.schema
        entry = manifest["schemas"].get(schema.name)
        description = schema.describe()
        if entry is not None:
            stored = entry.get("version") if isinstance(entry, dict) else None
            if not _is_int(stored):
                raise CorruptStoreError(str(self.path / MANIFEST), f"schema {schema.name!r} has no valid version")
            assert isinstance(stored, int)
            if stored > schema.version:
                raise SchemaTooNewError(self.location, schema.name, stored, schema.version)
            if stored < schema.version and self.mode == "read":
                raise MigrationRequiredError(self.location, schema.name, stored, schema.version)
            if self.mode == "read" or (stored, entry.get("description")) == (schema.version, description):
                return False
        elif self.mode == "read":
            raise SchemaMismatchError(self.location, f"the store holds no schema {schema.name!r}")
        manifest["schemas"][schema.name] = {"version": schema.version, "description": description}
        return True

    def _dir(self, name: str, *, create: bool = False) -> Dir | None:
        d = self._dirs.get(name)
        if d is None:
            d = self._root.subdir(name, create=create)
            if d is not None:
                self._dirs[name] = d
        return d

    # ------------------------------------------------------------ files

    def _parse(self, coll: Collection[Any], name: str, raw: bytes | str, path: Path | _Lazy) -> Rec:
        """The cached form of record file ``name`` read from ``path``; CorruptStoreError names it on any defect."""
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CorruptStoreError(str(path), f"not valid JSON: {exc}", getattr(exc, "lineno", None)) from None
        meta = doc.pop(META, None) if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or not _is_int(meta.get("revision")) or "key" not in meta:
            raise CorruptStoreError(str(path), f'not a statestore record (no valid "{META}" member)')
        stored = meta["key"]
        types = tuple(coll.field_types[f] for f in coll.key_fields)
        parts = stored if coll.composite and isinstance(stored, list) else [stored]
        if len(parts) != len(types) or not all(
            (_is_int(p) if tp is int else isinstance(p, str)) for p, tp in zip(parts, types)
        ):
            raise CorruptStoreError(str(path), f"key {stored!r} does not fit the key of {coll.name!r}")
        key: KeyValue = tuple(parts) if coll.composite else stored
        if _keyname.encode(key) != name:
            raise CorruptStoreError(str(path), f"file name does not match the key {key!r} inside")
        return key, int(meta["revision"]), doc, dumps(doc)

    def _read_rec(self, coll: Collection[Any], name: str) -> Rec | None:
        d = self._dir(coll.name)
        if d is None:
            return None
        raw = d.read(name)
        return None if raw is None else self._parse(coll, name, raw, _Lazy(d.path, name))

    def _head_fd(self, *, create: bool = False) -> int | None:
        """The change head's descriptor, kept open: the head is rewritten in place, never replaced."""
        fd: int | None = self._local_head_fd
        if fd is None and self._sys is not None:
            flags = os.O_RDWR if self.mode == "write" else os.O_RDONLY
            fd = self._local_head_fd = self._sys.open(CHANGES, flags, create=create)
        return fd

    def _read_head(self) -> Head:
        """The change head (read once per write transaction); a head caught mid-rewrite is read again.

        A head that stays torn (a crash in the middle of rewriting it) is
        generation -1: every cache reloads until the next writer resets it.
        It can never hide a committed transaction: the commit write is the one
        that completes before anything is applied.
        """
        txn = self._txn()
        if txn is not None and txn.head is not None:
            return txn.head
        fd = self._head_fd()
        if fd is None:
            return Head()
        for attempt in range(50):
            with translate(self._head_path):
                raw = os.pread(fd, 1 << 16, 0)
                while len(raw) % (1 << 16) == 0 and raw:
                    more = os.pread(fd, 1 << 16, len(raw))
                    if not more:
                        break
                    raw += more
            head = Head.decode(raw)
            if head is not None:
                if txn is not None and txn.write:
                    txn.head = head
                return head
            time.sleep(0.001 * attempt)
        return Head(-1, -1)

    def _write_head(self, head: Head, *, sync: bool) -> None:
        fd = self._head_fd(create=True)
        assert fd is not None
        data = head.encode()
        with translate(self._head_path):
            view, offset = memoryview(data), 0
            while offset < len(data):
                offset += os.pwrite(fd, view[offset:], offset)
            # No truncation: the first line gives the exact lengths the crc
            # covers, so a longer stale tail is ignored (and ftruncate is a
            # metadata write per commit).
            if sync:
                os.fsync(fd)
        txn = self._txn()
        if txn is not None and txn.write:
            txn.head = head

    def _journal(self, head: Head) -> Journal | None:
        """The committed journal being applied: inside the head, or in its own file if large."""
        if head.journal is not None:
            return head.journal
        return self._read_journal() if head.journal_file else None

    def _read_journal(self) -> Journal | None:
        """The committed journal file, if one is being (or was left half) applied."""
        if self._sys is None:
            self._sys = self._root.subdir(INTERNAL, create=False)
            if self._sys is None:
                return None
        fd = self._sys.open(JOURNAL, os.O_RDONLY)
        if fd is None:
            self._journal_memo = None
            return None
        try:
            with translate(self._sys.path / JOURNAL):
                st = os.fstat(fd)
                ident = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._journal_memo is not None and self._journal_memo[0] == ident:
                    return self._journal_memo[1]
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
        finally:
            os.close(fd)
        journal = Journal.decode(b"".join(chunks))
        self._journal_memo = (ident, journal)
        return journal

    def _consistent(self, fn: Callable[[Head, Journal | None], _R]) -> _R:
        """Run ``fn`` until the change head is the same before and after it (a seqlock read)."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        txn = self._txn()
        for attempt in range(1_000_000):
            head = self._read_head()
            result = fn(head, self._journal(head))
            if (txn is not None and txn.write) or self._read_head().gen == head.gen:
                return result  # a writer holding the lock needs no second look
            if time.monotonic() > deadline:
                break
            if attempt >= 2:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        raise StoreBusyError(self.location, self.busy_timeout)

    # ------------------------------------------------------------ caches

    def _overlay(self, coll: Collection[Any], journal: Journal | None) -> dict[str, Rec | None]:
        """The records a committed journal writes into ``coll`` (None: deletes)."""
        if journal is None:
            return {}
        if journal.direct:
            # It names a file being replaced on its own, not a text: read it from
            # disk on every look until the head drops it (even if its writer died).
            return {n: self._read_rec(coll, n) for c, n, _ in journal.records if c == coll.name}
        memo_key = "coll:" + coll.name
        out: dict[str, Rec | None] | None = self._memo(journal).get(memo_key)
        if out is None:
            path = self._journal_path
            out = {
                n: None if t is None else self._parse(coll, n, t, path) for c, n, t in journal.records if c == coll.name
            }
            self._overlays[memo_key] = out
        return out

    def _memo(self, journal: Journal) -> dict[str, Any]:
        if self._overlays_of != journal.txid:
            self._overlays, self._overlays_of = {}, journal.txid
        return self._overlays

    def _catch_up(self, coll: Collection[Any], head: Head, journal: Journal | None) -> Records:
        """Bring the cached records of ``coll`` up to ``head``, re-reading only changed files."""
        cache = self._colls.get(coll.name)
        changed = None if cache is None else head.changed(coll.name, cache.gen)
        if cache is None or changed is None:
            fresh = Records()
            d = self._dir(coll.name)
            for name in d.names() if d is not None else ():
                if not name.startswith(".") and name.endswith(_keyname.SUFFIX):
                    rec = self._read_rec(coll, name)
                    if rec is not None:
                        fresh.put(name, rec)
            cache = self._colls[coll.name] = fresh
        else:
            for name in changed:
                cache.put(name, self._read_rec(coll, name))
        jid = journal.txid if journal is not None else None
        if cache.journal != jid:
            for name in cache.suspects:
                cache.put(name, self._read_rec(coll, name))
            cache.suspects = journal.names(coll.name) if journal is not None else set()
            cache.journal = jid
        cache.gen = head.gen
        return cache

    def _log_overlay(self, log: Log[Any], journal: Journal | None) -> list[_Entry]:
        if journal is None:
            return []
        memo_key = "log:" + log.name
        out: list[_Entry] | None = self._memo(journal).get(memo_key)
        if out is None:
            out = []
            for name, _off, text in journal.logs:
                if name == log.name:
                    for i, line in enumerate(text.splitlines(keepends=True)):
                        out.append((*self._parse_line(line, self._journal_path, i + 1), line))
            self._overlays[memo_key] = out
        return out

    def _parse_line(self, line: str | bytes, path: Path, lineno: int | None) -> RawEntry:
        try:
            doc = json.loads(line)
            seq, stream, version, at, record = (doc[k] for k in ("seq", "stream", "version", "at", "record"))
            if not (_is_int(seq) and isinstance(stream, str) and _is_int(version) and isinstance(at, str)):
                raise TypeError("seq, stream, version or at has the wrong type")
            if not isinstance(record, dict):
                raise TypeError("record is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(str(path), f"bad log entry: {exc}", lineno) from None
        return seq, stream, version, at, record

    def _catch_up_log(self, log: Log[Any], journal: Journal | None) -> LogIndex:
        """Extend the offset index of ``log`` with the complete lines appended since."""
        path = self._log_path(log.name)
        idx = self._logs.get(log.name)
        fd = self._log_fd(log.name)
        if fd is None:
            idx = self._logs[log.name] = LogIndex(None)
            return idx
        with translate(path):
            st = os.fstat(fd)
            limit = st.st_size
            for name, offset, _text in journal.logs if journal is not None else ():
                if name == log.name:
                    limit = offset  # past it the journal is being applied: read the journal instead
            if idx is None or idx.ino != st.st_ino or limit < idx.end:
                idx = LogIndex(st.st_ino)
            while idx.end < limit:
                data = os.pread(fd, min(limit - idx.end, 8 << 20), idx.end)
                cut = data.rfind(b"\n") + 1
                if not data or not cut:
                    break  # a torn last line (a killed writer): ignored until repaired
                pos = idx.end
                for raw in data[:cut].splitlines(keepends=True):
                    seq, stream, version, _at, _rec = self._parse_line(raw, path, len(idx.seqs) + 1)
                    if idx.seqs and seq <= idx.seqs[-1]:
                        raise CorruptStoreError(str(path), f"seq {seq} does not increase", len(idx.seqs) + 1)
                    idx.add(seq, stream, version, pos, pos + len(raw))
                    pos += len(raw)
        self._logs[log.name] = idx
        return idx

    def _log_view(self, log: Log[Any]) -> tuple[LogIndex, int, list[_Entry]]:
        txn = self._txn()
        if txn is not None and txn.colls is not None:
            return txn.logs[log.name]
        if txn is not None and log.name in txn.caught_up:
            return txn.caught_up[log.name]

        def fresh(head: Head, journal: Journal | None) -> tuple[LogIndex, int, list[_Entry]]:
            idx = self._catch_up_log(log, journal)
            return idx, len(idx.seqs), self._log_overlay(log, journal)

        view = self._consistent(fresh)
        if txn is not None and txn.write:
            txn.caught_up[log.name] = view
        return view

    def _coll_view(self, coll: Collection[Any]) -> tuple[Records, Mapping[str, Rec | None]]:
        """The records of ``coll`` and the changes over them this thread sees (call under the cache lock)."""
        txn = self._txn()
        if txn is not None and txn.colls is not None:
            return txn.colls[coll.name], {}
        cache, overlay = self._consistent(lambda h, j: (self._catch_up(coll, h, j), self._overlay(coll, j)))
        if txn is not None and txn.write and coll.name in txn.records:
            return cache, {**overlay, **txn.records[coll.name]}
        return cache, overlay

    # ------------------------------------------------------------ transactions

    def _log_fd(self, log_name: str, *, create: bool = False) -> int | None:
        """A kept descriptor of the log's file (reopened if the file was replaced); None if absent."""
        file = f"{log_name}.jsonl"
        with self._cache_lock:
            got = self._log_fds.get(log_name)
            if got is not None:
                fd, ino = got
                with translate(self._log_path(log_name)):
                    try:
                        same = os.stat(file, dir_fd=self._root.fd, follow_symlinks=False).st_ino == ino
                    except FileNotFoundError:
                        same = False
                if same:
                    return fd
                os.close(fd)
                del self._log_fds[log_name]
            new = self._root.open(file, os.O_RDWR if self.mode == "write" else os.O_RDONLY, create=create)
            if new is not None:
                self._log_fds[log_name] = (new, os.fstat(new).st_ino)
            return new

    def _log_path(self, name: str) -> Path:
        path = self._log_paths.get(name)
        if path is None:
            path = self._log_paths[name] = self.path / f"{name}.jsonl"
        return path

    def _txn(self) -> _Txn | None:
        txn: _Txn | None = getattr(self._local, "txn", None)
        return txn

    def _begin(self, *, write: bool) -> None:
        txn = _Txn(write)
        if write:
            self._lock()
            self._local.txn = txn  # before recovering, so the head it reads is kept for the transaction
            try:
                self._recover()
            except BaseException:
                self._local.txn = None
                self._unlock()
                raise
        else:
            txn.colls, txn.logs = self._snapshot()
            self._local.txn = txn

    def _snapshot(self) -> tuple[dict[str, Records], dict[str, tuple[LogIndex, int, list[_Entry]]]]:
        """Copies of every collection and log as of one generation: a read transaction's view."""

        def take(head: Head, journal: Journal | None) -> Any:
            colls = {}
            for coll in self.schema.collections:
                snap = self._catch_up(coll, head, journal).copy()
                for name, rec in self._overlay(coll, journal).items():
                    snap.put(name, rec)
                colls[coll.name] = snap
            logs = {}
            for log in self.schema.logs:
                idx = self._catch_up_log(log, journal)
                logs[log.name] = (idx, len(idx.seqs), self._log_overlay(log, journal))
            return colls, logs

        with self._cache_lock:
            result: tuple[dict[str, Records], dict[str, tuple[LogIndex, int, list[_Entry]]]]
            result = self._consistent(take)
            return result

    def _commit(self) -> None:
        txn = self._txn()
        self._local.txn = None
        if txn is None or not txn.write:
            return
        try:
            if any(txn.records.values()) or any(txn.lines.values()):
                self._publish(txn)
        finally:
            self._unlock()

    def _rollback(self) -> None:
        txn = self._txn()
        self._local.txn = None
        if txn is not None and txn.write:
            self._unlock()

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
                del txn.lines[owner][before:]
            elif before is _MISSING:
                txn.records[owner].pop(name_, None)
            else:
                txn.records[owner][name_] = before

    def _stage(self, coll: Collection[Any], name: str, rec: Rec | None) -> None:
        txn = self._txn()
        assert txn is not None, "writes happen inside a transaction"
        assert txn.write, "writes happen inside a write transaction"
        staged = txn.records.setdefault(coll.name, {})
        txn.undo.append(("rec", coll.name, name, staged.get(name, _MISSING)))
        staged[name] = rec

    # ------------------------------------------------------------ commit and recovery

    def _publish(self, txn: _Txn) -> None:
        """Commit the staged transaction through the journal (we hold the write lock).

        A journal of up to ``EMBED_LIMIT`` bytes travels inside the change head,
        whose in-place rewrite is the commit point; a larger one is its own
        file, whose atomic rename is.
        """
        assert self._sys is not None
        head = self._read_head()
        records = []
        for coll_name, staged in txn.records.items():
            for name, rec in staged.items():
                records.append((coll_name, name, None if rec is None else record_text(rec[0], rec[1], rec[2])))
        logs = []
        for log_name, entries in txn.lines.items():
            if entries:
                logs.append((log_name, self._repair_tail(log_name), "".join(e[5] for e in entries)))
        gen = max(head.gen, head.base) + 1
        if not records and len(logs) == 1 and len(txn.lines[logs[0][0]]) == 1:
            self._append_alone(txn, head, gen, *logs[0])
            return
        if len(records) == 1 and not logs:
            # One file replaced or deleted is atomic by itself: announce it, no texts.
            journal = Journal(uuid.uuid4().hex, gen, ((records[0][0], records[0][1], None),), (), direct=True)
        else:
            journal = Journal(uuid.uuid4().hex, gen, tuple(records), tuple(logs))
        encoded = journal.encode()
        prepared = self._prepare(records)
        try:
            if len(encoded) <= EMBED_LIMIT:
                committed = head.bump(gen, journal.changes(), journal)
                self._write_head(committed, sync=self._sync)
            else:
                # Announce the file first (readers and recovery look for it only
                # then), and bump before applying: a reader whose read overlaps
                # the apply must see the head move. The rename is the commit.
                committed = head.bump(gen, journal.changes(), None, journal_file=True)
                self._write_head(committed, sync=self._sync)
                self._sys.write(JOURNAL, encoded, sync=self._sync)
                if self._sync:
                    self._sys.sync()
        except BaseException:
            for d, tmp in prepared.values():
                with contextlib.suppress(OSError, StateStoreError):
                    d.remove(tmp)
            raise
        inodes = self._apply(tuple(records), tuple(logs), prepared)
        if committed.journal_file:
            self._sys.remove(JOURNAL)
        self._write_head(committed.settled(), sync=False)
        for (log_name, offset, _text), ino in zip(journal.logs, inodes):
            self._advance_log(txn, log_name, offset, ino)
        with self._cache_lock:
            # Our own writes need not be read back: advance the caches that were current.
            for name, cache in self._colls.items():
                if cache.gen == head.gen and cache.journal is None:
                    for file, rec in txn.records.get(name, {}).items():
                        cache.put(file, rec)
                    cache.gen = gen

    def _append_alone(self, txn: _Txn, head: Head, gen: int, log_name: str, offset: int, line: str) -> None:
        """Commit a transaction that is one log line and nothing else, without a journal.

        A single write of one complete line is all-or-nothing to every reader
        (they ignore a last line without its newline, and the next writer cuts
        it off), so the line itself is the commit; the head is bumped after it
        for followers and caches.
        """
        ino = self._append(log_name, offset, line.encode("utf-8"))
        self._write_head(head.bump(gen, {}, None), sync=False)
        self._advance_log(txn, log_name, offset, ino)

    def _advance_log(self, txn: _Txn, log_name: str, offset: int, ino: int) -> None:
        """Add our own committed lines to the log index if it was current: no need to read them back."""
        with self._cache_lock:
            idx = self._logs.get(log_name)
            if idx is not None and idx.end == offset and idx.ino in (ino, None):
                if idx.ino is None:
                    idx = self._logs[log_name] = LogIndex(ino)
                for seq, stream, version, _at, _data, line in txn.lines[log_name]:
                    size = len(line.encode("utf-8"))
                    idx.add(seq, stream, version, offset, offset + size)
                    offset += size

    def _prepare(self, records: list[tuple[str, str, str | None]]) -> dict[tuple[str, str], tuple[Dir, str]]:
        """Write each new record file to a temporary file beside it, before the commit point.

        So a full disk fails the transaction cleanly; applying is then only
        renames, deletions and log appends.
        """
        prepared: dict[tuple[str, str], tuple[Dir, str]] = {}
        try:
            for coll_name, name, text in records:
                if text is not None:
                    d = self._journal_dir(coll_name, name)
                    prepared[coll_name, name] = (d, d.write_temp(name, text.encode("utf-8"), sync=self._sync))
        except BaseException:
            for d, tmp in prepared.values():
                with contextlib.suppress(OSError, StateStoreError):
                    d.remove(tmp)
            raise
        return prepared

    def _apply(
        self,
        records: tuple[tuple[str, str, str | None], ...],
        logs: tuple[tuple[str, int, str], ...],
        prepared: Mapping[tuple[str, str], tuple[Dir, str]] | None = None,
    ) -> list[int]:
        """Write a journal's files (``prepared`` ones by rename); return the inode of each log written.

        Idempotent: a killed apply is simply run again from the journal.
        """
        touched: set[str] = set()
        for coll_name, name, text in records:
            d = self._journal_dir(coll_name, name)
            if text is None:
                d.remove(name)
            elif prepared is not None and (coll_name, name) in prepared:
                d.rename(prepared[coll_name, name][1], name)
            else:
                d.write(name, text.encode("utf-8"), sync=self._sync)
            touched.add(coll_name)
        inodes = [self._append(log_name, offset, text.encode("utf-8")) for log_name, offset, text in logs]
        if self._sync:
            for coll_name in touched:
                self._dirs[coll_name].sync()
            self._root.sync()
        return inodes

    def _journal_dir(self, coll_name: str, name: str) -> Dir:
        path = self._journal_path
        try:
            check_name(coll_name, "collection")
        except SchemaError:
            raise CorruptStoreError(str(path), f"bad collection name {coll_name!r}") from None
        if "/" in name or "\\" in name or "\0" in name or name.startswith(".") or not name.endswith(".json"):
            raise CorruptStoreError(str(path), f"bad record file name {name!r}")
        d = self._dir(coll_name, create=True)
        assert d is not None
        return d

    def _append(self, log_name: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` of the log, cutting off whatever follows (a half-applied retry)."""
        try:
            check_name(log_name, "log")
        except SchemaError:
            raise CorruptStoreError(str(self._journal_path), f"bad log name {log_name!r}") from None
        file = f"{log_name}.jsonl"
        fd = self._log_fd(log_name, create=True)
        assert fd is not None
        with translate(self._log_path(log_name)):
            st = os.fstat(fd)
            if st.st_size < offset:
                raise CorruptStoreError(str(self.path / file), f"shorter than the {offset} bytes committed")
            if st.st_size > offset:
                os.ftruncate(fd, offset)  # a retried apply, or a torn line: cut it off
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            if self._sync:
                os.fsync(fd)
        return st.st_ino

    def _repair_tail(self, log_name: str) -> int:
        """The end of the last complete line of the log, cutting off a torn last line a crash left."""
        fd = self._log_fd(log_name)
        if fd is None:
            return 0
        with translate(self._log_path(log_name)):
            size = end = os.fstat(fd).st_size
            if not size or os.pread(fd, 1, size - 1) == b"\n":
                return size  # the usual case: nothing torn
            while end > 0:
                start = max(0, end - 65536)
                chunk = os.pread(fd, end - start, start)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    end = start + nl + 1
                    break
                end = start
            if end < size:
                os.ftruncate(fd, end)
            return end

    def _recover(self, *, probe: bool = False) -> None:
        """Finish a transaction a killed writer committed, or drop one it never committed.

        ``journal.json`` is looked for only when the head announces it, or
        with ``probe`` (a write-mode open, or a head torn by a crash): a power
        loss may keep the file but not the announcement.
        """
        assert self._sys is not None
        head = self._read_head()
        if head.gen < 0:
            # Torn by a crash mid-rewrite: start a generation no cache can hold.
            head = Head(time.time_ns(), time.time_ns())
            self._write_head(head, sync=self._sync)
            probe = True
        journal = head.journal
        if journal is None and (head.journal_file or probe):
            raw = self._sys.read(JOURNAL)
            if raw is not None:
                journal = Journal.decode(raw)
                if journal is None:
                    self._sys.remove(JOURNAL)  # not complete, so never committed
                elif head.gen < journal.gen:
                    head = head.bump(journal.gen, journal.changes(), None, journal_file=True)
                    self._write_head(head, sync=False)
        if journal is not None:
            if not journal.direct:
                self._apply(journal.records, journal.logs)
            for coll_name in {c for c, _, _ in journal.records}:
                d = self._dir(coll_name)
                if d is not None:
                    d.sweep()
        if journal is not None or head.journal_file:
            self._sys.remove(JOURNAL)
            self._write_head(head.settled(), sync=False)

    # ------------------------------------------------------------ records

    def _point(self, coll: Collection[Any], key: KeyValue) -> Rec | None:
        name = _keyname.encode(key)
        txn = self._txn()
        if txn is not None and txn.write and name in txn.records.get(coll.name, {}):
            rec = txn.records[coll.name][name]
        elif txn is not None and txn.colls is not None:
            rec = txn.colls[coll.name].records.get(name)
        elif coll.name in self._colls:
            with self._cache_lock:
                cache, changes = self._coll_view(coll)
                rec = changes[name] if name in changes else cache.records.get(name)
        else:
            # A lone record needs no seqlock: each file (and the journal) is replaced atomically.
            overlay = self._overlay(coll, self._journal(self._read_head()))
            rec = overlay[name] if name in overlay else self._read_rec(coll, name)
        if rec is not None and rec[0] != key:
            raise CorruptStoreError(str(self.path / coll.name / name), f"holds key {rec[0]!r}, not {key!r}")
        return rec

    def _get(self, coll: Collection[Any], key: KeyValue) -> tuple[int, dict[str, Any]] | None:
        rec = self._point(coll, key)
        return None if rec is None else (rec[1], json.loads(rec[3]))

    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        rec = self._point(coll, key)
        return None if rec is None else rec[1]

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        if META in data:
            raise ValidationError(coll.name, key, f"$.{META}", "this field name is reserved by the file backend")
        self._stage(coll, _keyname.encode(key), (key, revision, json.loads(text), text))

    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        if self._point(coll, key) is None:
            return False
        self._stage(coll, _keyname.encode(key), None)
        return True

    def _rows(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Rec]:
        with self._cache_lock:
            cache, changes = self._coll_view(coll)
            if where:
                names: set[str] | None = None
                for field, value in where.items():
                    found = cache.lookup(field, value)
                    names = set(found) if names is None else names & found
                rows = [cache.records[n] for n in names or () if n not in changes]
                ordered = False
            elif changes:
                rows = [cache.records[n] for n in cache.names if n not in changes]
                ordered = True
            else:
                return [cache.records[n] for n in cache.names]
        extra = [r for r in changes.values() if r is not None and matches(r[2], dict(where))]
        if extra or not ordered:
            rows.extend(extra)
            rows.sort(key=lambda r: r[0])
        return rows

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[RawRecord]:
        return [(key, rev, json.loads(text)) for key, rev, _data, text in self._rows(coll, where)]

    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        return [r[0] for r in self._rows(coll, {})]

    def _count(self, coll: Collection[Any]) -> int:
        with self._cache_lock:
            cache, changes = self._coll_view(coll)
            if not changes:
                return len(cache.records)
        return len(self._rows(coll, {}))

    # ------------------------------------------------------------ logs

    def _all_lines(self, log: Log[Any]) -> tuple[LogIndex, int, list[_Entry]]:
        """The log's file index (and how much of it counts) plus journal and staged entries after it."""
        with self._cache_lock:
            idx, count, extra = self._log_view(log)
        txn = self._txn()
        if txn is not None and txn.write and txn.lines.get(log.name):
            extra = [*extra, *txn.lines[log.name]]
        return idx, count, extra

    def _stream_version(self, log: Log[Any], stream: str) -> int:
        idx, _count, extra = self._all_lines(log)
        for entry in reversed(extra):
            if entry[1] == stream:
                return entry[2]
        return idx.versions.get(stream, 0)

    def _last_seq(self, log: Log[Any]) -> int:
        idx, count, extra = self._all_lines(log)
        if extra:
            return extra[-1][0]
        return idx.seqs[count - 1] if count else 0

    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        seq = self._last_seq(log) + 1
        txn = self._txn()
        assert txn is not None, "appends happen inside a transaction"
        assert txn.write, "appends happen inside a write transaction"
        lines = txn.lines.setdefault(log.name, [])
        txn.undo.append(("log", log.name, "", len(lines)))
        lines.append((seq, stream, version, at, json.loads(text), _line(seq, stream, version, at, text)))
        return seq

    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        idx, count, extra = self._all_lines(log)
        out: list[RawEntry] = []
        positions = idx.positions(stream=stream, prefix=prefix, after=after, count=count)
        if limit is not None:
            positions = positions[:limit]
        if positions:
            file = f"{log.name}.jsonl"
            fd = self._log_fd(log.name)
            if fd is None:
                raise CorruptStoreError(str(self.path / file), "log file vanished while reading")
            path = self._log_path(log.name)
            with translate(path):
                if os.fstat(fd).st_ino != idx.ino:
                    raise CorruptStoreError(str(self.path / file), "log file replaced while reading")
                for p in positions:
                    raw = os.pread(fd, idx.ends[p] - idx.starts[p], idx.starts[p])
                    out.append(self._parse_line(raw, path, p + 1))
        for seq, s, version, at, data, _line_text in extra:
            if limit is not None and len(out) >= limit:
                break
            if seq <= after or (stream is not None and s != stream):
                continue
            if prefix is not None and not s.startswith(prefix):
                continue
            out.append((seq, s, version, at, json.loads(json.dumps(data))))
        return out
