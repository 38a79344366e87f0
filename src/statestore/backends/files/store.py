"""FileStore: a store kept as a directory of JSON documents and JSONL logs.

Layout (DESIGN §6)::

    <root>/statestore.json           format, store id, each schema's name, version and description
    <root>/<collection>/<name>.json  one record per file: pretty JSON, keys sorted, UTF-8, with the
                                     key and revision under the reserved member "_statestore"
    <root>/<log>.jsonl               one entry per line: {"at", "record", "seq", "stream", "version"}
    <root>/.statestore/              write.lock, journal.json (a committed transaction being applied),
                                     changes (the change head), migrate.lock, history.jsonl (the
                                     migration history) and statestore's other internal logs,
                                     readers.lock and versions/ (read transactions: versions.py)

so ``grep -r '"status": "todo"' state/tasks/`` and ``jq`` work on a live
store. File names come from :mod:`statestore.backends.files.names`; every file is 0600 and
every directory 0700; a symbolic link inside the store is refused, never
followed (:mod:`statestore.backends.files.fileio`).

Writers serialise on ``.statestore/write.lock`` (``filelock.FileLock``, held
from ``_begin`` to ``_commit``/``_rollback``; a thread lock in front of it
serialises threads), so read-check-write sequences of the shared layer
(``update``, CAS, unique constraints, stream versions) are atomic across
processes. A transaction is staged in memory, per thread, and committed
through the journal (:mod:`statestore.backends.files.journal`). Readers take no lock: they
read the change head before and after (a seqlock), and read a committed
journal in place of the files it is applying, so they never see half a
transaction. A read transaction registers with a shared flock on
``.statestore/readers.lock`` (never waiting: refused, it loads its snapshot at
once) and reads what it touches when it touches it, through the old versions
writers keep for it (:mod:`statestore.backends.files.versions`). Collections
are cached in memory and brought up to date from the change head,
re-reading only the files that changed; logs keep a byte-offset index,
extended by reading only the bytes appended since.

Where things are: this module opens stores, locks and caches;
:mod:`statestore.backends.files.transactions` begins and ends transactions;
:mod:`statestore.backends.files.records` reads, stages and queries records;
:mod:`statestore.backends.files.commit` commits and recovers;
:mod:`statestore.backends.files.journal` defines the journal and change head formats;
:mod:`statestore.backends.files.log` reads and appends logs; :mod:`statestore.backends.files.names`
maps keys to file names; :mod:`statestore.backends.files.fileio` does link-safe atomic file
I/O; :mod:`statestore.backends.files.cache` holds record texts, transactions and caches.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from statestore.backends import rawjson
from statestore.backends.files import names as keynames
from statestore.backends.files.appending import LogAppends
from statestore.backends.files.cache import (
    INTERNAL,
    MANIFEST,
    META,
    ROOT,
    Lazy,
    LogIndex,
    Rec,
    Records,
    is_int,
    owned_json,
    paused_gc,
    record_text,
)
from statestore.backends.files.commit import Commits
from statestore.backends.files.fileio import TMP_PREFIX, Dir, FileHandle, Kept, descriptor_budget
from statestore.backends.files.indexing import IndexFiles
from statestore.backends.files.journal import CHANGES, JOURNAL, LOCK, Head, Journal
from statestore.backends.files.keeping import READERS, VERSIONS
from statestore.backends.files.log import LogFiles, entry_line
from statestore.backends.files.records import RecordAccess
from statestore.backends.files.transactions import Local, Transactions
from statestore.backends.files.versions import Versions
from statestore.backends.fs import backup_label, migration_lock, place_backup
from statestore.codec import Codec, dumps
from statestore.errors import (
    LAST_REVISION,
    CorruptStoreError,
    SchemaError,
    StateStoreError,
    StoreBusyError,
    StoreNotFoundError,
)
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Durability, Mode, RawEntry, Store, StoredSchemas

__all__ = ["FileStore", "record_text"]

FORMAT = 1
MIGRATE_LOCK = "migrate.lock"
_R = TypeVar("_R")


class FileStore(Transactions, RecordAccess, Commits, LogFiles, LogAppends, IndexFiles, Versions, Store):
    """A store in a directory of JSON and JSONL files.

    ``busy_timeout`` is how long a writer waits for another writer (any
    thread or process) before raising StoreBusyError. ``durability="full"``
    fsyncs every file and directory it changes; ``"normal"`` relies on atomic
    renames, which survive a killed process but not a power loss. Mode
    ``"read"`` creates nothing and never waits for a lock: plain reads take
    none, and a read transaction takes a shared ``flock`` on
    ``.statestore/readers.lock`` without waiting (if it is refused, or the file
    is missing, the transaction loads its whole snapshot at its start
    instead); a missing store raises StoreNotFoundError. A store object may
    be shared by threads and survives ``fork()``. Files edited by hand while
    a process has the store open are seen by that process only after the next
    committed write. A write-mode store makes ``.statestore/readers.lock``;
    while a read transaction is registered on it, writers keep the old
    versions of the record files they change in ``.statestore/versions/``
    (deleted once no reader is registered: :mod:`.versions`).
    """

    # Record files are written by record_text from the data; the canonical text was only a fallback
    # for data that is not plain JSON (cache.owned_json), which the codec still gives one for.
    _canonical_text = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema | Sequence[Schema],
        *,
        mode: Mode = "write",
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
        check_history: bool = True,
        backup: bool = True,
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
        self._log_paths: dict[str, Path] = {}
        # At most a few folders and log files are kept open, whatever their number (a limit of 64 descriptors).
        budget = descriptor_budget()
        self._log_fds: Kept[FileHandle] = Kept(budget)
        self._dirs: Kept[Dir] = Kept(budget)
        self._sys: Dir | None = None
        self._lock_fd: int | None = None
        # Kept across fork(): pwrite/pread at explicit offsets share no file position.
        self._local_head_fd: int | None = None
        self._schema_gen = -1  # the change head's generation when the schemas were last checked
        self._read_gen = -1  # the same, for reads (_check_moved)
        self._indexed: tuple[Collection[Any], ...] | None = None  # collections with index files
        self._readers_fd: int | None = None
        self._readers_held = self._versions_left = False
        self._reset_process_state()
        root = Dir.open_root(self.path, create=mode == "write")
        if root is None:
            raise StoreNotFoundError(self.location)
        self._root = root
        try:
            if mode == "write":
                self._sys = root.subdir(INTERNAL, create=True)
                self._open_for_write()
                self._open_versions()
            else:
                self._sys = root.subdir(INTERNAL, create=False)
                if self._read_manifest() is None:
                    raise StoreNotFoundError(self.location)
            # Taken before the schemas are checked: a migration after it is seen by the first write
            # (and the first read, which must not read a renamed or dropped collection as empty).
            self._schema_gen = self._read_gen = self._read_head().gen
            self._open_schemas(check_history=check_history, backup=backup)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ process state

    def _reset_process_state(self) -> None:
        self._local = Local()
        self._mutex = threading.Lock()  # threads queue here before contending for the file lock
        self._cache_lock = threading.RLock()
        self._colls: dict[str, Records] = {}
        self._logs: dict[str, LogIndex] = {}
        self._journal_memo: tuple[tuple[int, int, int], Journal | None] | None = None
        self._summaries: dict[str, tuple[int, int]] = {}
        self._head_memo: tuple[bytes, Head] | None = None  # the change head's bytes last read or written, parsed
        self._overlays: dict[str, Any] = {}  # parsed journal contents, for one journal id
        self._overlays_of: str | None = None
        self._reader_fds: set[int] = set()
        self._reader_lock = threading.Lock()
        self._reader_held = 0
        self._reset_index_state()

    def _after_fork(self) -> None:
        # Locks and caches may have been mid-use by another thread at fork().
        # An inherited lock descriptor shares its flock with the parent's
        # (same open file description): the child must open its own.
        self._close_index()
        self._lazy_after_fork()
        self._reset_process_state()
        self._dirs.after_fork()
        self._log_fds.after_fork()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close(self) -> None:
        with contextlib.suppress(OSError, StateStoreError):
            self._sweep_versions()
        for fd in (self._local_head_fd, self._lock_fd, self._readers_fd, *self._reader_fds):
            if fd is not None:
                os.close(fd)
        self._readers_fd, self._reader_fds, self._reader_held = None, set(), 0
        self._log_fds.close_all()
        self._delta_fds.close_all()
        self._close_index()
        self._local_head_fd = self._lock_fd = None
        self._dirs.close_all()
        for d in (self._sys, self._root):
            if d is not None:
                d.close()
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
        # (Uncontended, the first try wins: a timed acquire costs more, and so does reading the clock.)
        deadline = None
        if not self._mutex.acquire(False):
            deadline = time.monotonic() + max(self.busy_timeout, 0.0)
            if not self._mutex.acquire(timeout=max(self.busy_timeout, 0.0)):
                raise StoreBusyError(self.location, self.busy_timeout)
        try:
            fd = self._lock_fd
            if fd is None:
                assert self._sys is not None
                fd = self._lock_fd = self._sys.open(LOCK, os.O_RDWR, create=True)
            assert fd is not None
            delay = 0.0002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if deadline is None:
                        deadline = time.monotonic() + max(self.busy_timeout, 0.0)
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(self.location, self.busy_timeout) from None
                    time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                    delay = min(delay * 2, 0.01)
        except BaseException:
            self._mutex.release()
            raise

    def _unlock(self) -> None:
        try:
            self._release_readers()  # (a commit that failed before releasing it)
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    # ------------------------------------------------------------ opening

    def _open_for_write(self) -> None:
        """Create the store's bones, or finish what a killed writer left; take the lock only if needed.

        Opening a sound store takes no lock, so it succeeds while another
        process holds a long write transaction. Schemas are the shared
        layer's business (``Store._open_schemas``), through transactions.
        """
        if (
            self._read_manifest() is not None
            and self._journal(self._read_head()) is None
            and self._sys is not None
            and not self._sys.exists(JOURNAL)  # a power loss can keep the file, not the head's word
            and self._head_fd() is not None
        ):
            return
        self._lock()
        try:
            assert self._sys is not None
            self._sys.sweep()
            self._recover(probe=True)
            if self._read_manifest() is None:
                others = [n for n in self._root.names() if not n.startswith(".")]
                if others:
                    raise CorruptStoreError(
                        str(self.path), f"directory is not empty and has no {MANIFEST}: not a statestore store"
                    )
                manifest = {"format": FORMAT, "store_id": uuid.uuid4().hex, "schemas": {}}
                self._root.write(MANIFEST, self._manifest_text(manifest).encode("utf-8"), sync=self._sync)
                if self._sync:
                    self._root.sync()
            if self._head_fd() is None:
                self._write_head(Head(), sync=self._sync)
            for coll in self.collections:
                d = self._dir(coll.name)
                if d is not None:
                    d.sweep()  # temporary files of a writer killed before its commit
            for log in self.logs:
                self._repair_tail(log.name)
        finally:
            self._unlock()

    @staticmethod
    def _manifest_text(manifest: Mapping[str, Any]) -> str:
        return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def _read_manifest(self) -> dict[str, Any] | None:
        txn = self._txn()
        staged = txn.files.get(MANIFEST) if txn is not None else None
        if staged is None:
            # A migration committed but not yet applied (or cut short by a crash): its manifest counts.
            journal = self._journal(self._read_head()) if self._head_fd() is not None else None
            found, text = journal.root_file(MANIFEST) if journal is not None else (False, None)
            staged = text if found else None
        path = self.path / MANIFEST
        raw = staged.encode("utf-8") if staged is not None else self._root.read(MANIFEST)
        if raw is None:
            return None
        try:
            doc = rawjson.load(raw)
        except rawjson.StoredJSONError as exc:
            raise CorruptStoreError(str(path), str(exc), exc.lineno) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("schemas"), dict):
            fmt = doc.get("format") if isinstance(doc, dict) else None
            raise CorruptStoreError(str(path), f"unknown store format {fmt!r}")
        return doc

    # ------------------------------------------------------------ schemas and structure

    def _read_schemas(self) -> StoredSchemas:
        manifest = self._read_manifest()
        if manifest is None:
            raise StoreNotFoundError(self.location)
        out: StoredSchemas = {}
        for name, entry in manifest["schemas"].items():
            version = entry.get("version") if isinstance(entry, dict) else None
            description = entry.get("description") if isinstance(entry, dict) else None
            if not is_int(version) or not isinstance(description, dict):
                raise CorruptStoreError(
                    str(self.path / MANIFEST), f"schema {name!r} has no valid version and description"
                )
            assert isinstance(version, int)
            try:
                # Names read from the store pass the checks declared names pass.
                Schema.described({**description, "name": name, "version": version})
            except SchemaError as exc:
                raise CorruptStoreError(str(self.path / MANIFEST), f"schema {name!r}: {exc}") from None
            out[str(name)] = (version, description)
        return out

    def _set_schema(self, name: str, version: int, description: dict[str, Any]) -> None:
        txn = self._txn()
        assert txn is not None, "schemas change inside a write transaction"
        assert txn.write
        manifest = self._read_manifest()
        assert manifest is not None
        manifest["schemas"][name] = {"version": version, "description": description}
        txn.files[MANIFEST] = self._manifest_text(manifest)

    def _sync_structure(self, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool) -> None:
        # Folders are made at once: an empty one is an empty collection, harmless if we roll back.
        made = False
        for coll in collections:
            txn = self._txn()
            if txn is not None:
                txn.rmdirs.discard(coll.name)
            d = self._dir(coll.name)
            if d is None:
                self._dir(coll.name, create=True)
                made = True
            elif full:
                d.sweep()  # temporary files of a writer killed before its commit (we hold the lock)
        if made and self._sync:
            self._root.sync()

    def _structure_ok(self) -> bool:
        return all(self._dir(c.name) is not None for c in self.collections)

    def _drop(self, decl: Collection[Any] | Log[Any]) -> None:
        txn = self._txn()
        assert txn is not None, "drops happen inside a write transaction"
        assert txn.write
        if isinstance(decl, Collection):
            for key in self._keys(decl):
                self._remove(decl, key)
            txn.rmdirs.add(decl.name)
        else:
            self._save_log_state(txn, decl.name)
            txn.lines.pop(decl.name, None)
            txn.rewritten[decl.name] = []
            txn.files[f"{decl.name}.jsonl"] = None

    def _replace_entries(self, log: Log[Any], entries: Sequence[RawEntry]) -> None:
        txn = self._txn()
        assert txn is not None, "logs are rewritten inside a write transaction"
        assert txn.write
        # ``entries`` is the whole log, this transaction's appends included: they become part of the
        # rewritten file, and later reads and appends in the transaction go through it.
        self._save_log_state(txn, log.name)
        txn.lines.pop(log.name, None)
        texts = [dumps(data) for _seq, _s, _v, _at, data in entries]
        txn.rewritten[log.name] = [(e[0], e[1], e[2], e[3], owned_json(e[4], t)) for e, t in zip(entries, texts)]
        txn.files[f"{log.name}.jsonl"] = "".join(
            entry_line(seq, stream, version, at, text) for (seq, stream, version, at, _d), text in zip(entries, texts)
        )

    def _migration_lock(self) -> contextlib.AbstractContextManager[None]:
        return migration_lock(self.path / INTERNAL / MIGRATE_LOCK, self.location, self.busy_timeout)

    def _backup(self, label: str) -> Path | None:
        """Copy the store to ``<store>.backup-<label>-<time>-<hex>``, complete or not at all (``place_backup``).

        Under the write lock: no transaction commits while we copy, and a
        committed journal was applied first. Locks, temporary files and a
        ``journal.json`` no head announces (never committed) are not copied.
        """
        dest = self.path.with_name(f"{self.path.name}.backup-{backup_label(label)}")
        skip = {LOCK, MIGRATE_LOCK, JOURNAL, READERS}
        internal = str(self.path / INTERNAL)

        def build(tmp: Path) -> None:
            os.mkdir(tmp, 0o700)  # private from the start: the copy may hold tokens
            shutil.copytree(
                self.path,
                tmp,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=lambda folder, names: [
                    n
                    for n in names
                    if n in skip or n.startswith(TMP_PREFIX) or (n == VERSIONS and os.fspath(folder) == internal)
                ],
            )

        with self.transaction():
            return place_backup(self.path, dest, build, self.location)

    def _after_migration(self) -> None:
        self._schema_gen = -1  # the next write checks the versions again (a downgrade stops writes)
        with self._cache_lock:
            self._log_fds.clear()  # each closes once no thread uses it
            self._log_paths.clear()
            self._colls, self._logs = {}, {}
            self._overlays, self._overlays_of, self._journal_memo = {}, None, None

    def _dir(self, name: str, *, create: bool = False) -> Dir | None:
        d = self._dirs.get(name)
        if d is None:
            d = self._root.subdir(name, create=create)
            if d is not None:
                self._dirs.put(name, d)
        return d

    # ------------------------------------------------------------ files

    def _parse(
        self, coll: Collection[Any], name: str, raw: bytes | str, path: Path | Lazy, expected: KeyValue | None = None
    ) -> Rec:
        """The cached form of record file ``name`` read from ``path``; CorruptStoreError names it on any defect.

        ``expected``: the key whose file name ``name`` is, when the caller knows it (a point read): a
        record holding that key needs no second encoding of its file name to be checked.
        """
        try:
            doc = _load_record(raw)
        except rawjson.StoredJSONError as exc:  # not JSON, NaN, nested too deeply: rawjson says which
            raise CorruptStoreError(str(path), f"collection {coll.name!r}, file {name}: {exc}", exc.lineno) from None
        meta = doc.pop(META, None) if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or not is_int(meta.get("revision")) or "key" not in meta:
            raise CorruptStoreError(str(path), f'not a statestore record (no valid "{META}" member)')
        if not 1 <= meta["revision"] <= LAST_REVISION:
            reason = f"collection {coll.name!r}, file {name}: revision {meta['revision']} is not from 1 to 2**63 - 1"
            raise CorruptStoreError(str(path), reason)
        stored = meta["key"]
        types = tuple(coll.field_types[f] for f in coll.key_fields)
        parts = stored if coll.composite and isinstance(stored, list) else [stored]
        if len(parts) != len(types) or not all(
            (is_int(p) if tp is int else isinstance(p, str)) for p, tp in zip(parts, types)
        ):
            raise CorruptStoreError(str(path), f"key {stored!r} does not fit the key of {coll.name!r}")
        key: KeyValue = tuple(parts) if coll.composite else stored
        if (expected is None or key != expected) and keynames.encode(key) != name:
            raise CorruptStoreError(str(path), f"file name does not match the key {key!r} inside")
        return key, int(meta["revision"]), doc

    def _read_rec(self, coll: Collection[Any], name: str, key: KeyValue | None = None) -> Rec | None:
        """Record file ``name`` as on disk, None if absent (``key``: the key it is the file of, if known)."""
        d = self._dir(coll.name)
        if d is None:
            self._missing_folder()
            return None
        raw = d.read(name)
        return None if raw is None else self._parse(coll, name, raw, Lazy(d.path, name), key)

    def _check_moved(self, head: Head) -> None:
        """Before a read answers from ``head``: SchemaTooNewError (or MigrationRequiredError) if another
        process migrated the store since this object last looked, as a write would raise.

        One int comparison while the head stays; once per new generation, a look at the names
        it changed; the manifest only when it is among them.
        """
        seen = self._read_gen
        if head.gen == seen or self._migrating:
            return
        changed = head.changed(ROOT, seen)
        if changed is None or MANIFEST in changed:
            self._missing_folder()
        self._read_gen = head.gen

    def _missing_folder(self) -> None:
        """A declared collection's folder is gone: SchemaTooNewError (or MigrationRequiredError) if another
        process migrated the store (renamed or dropped it), as a write would raise; else it reads as empty.
        Inside a read transaction, nothing: it answers as of its start (kept versions), checked when it began."""
        txn = self._local.txn
        if txn is not None and not txn.write:
            return
        moved = self._schemas_moved()
        if moved is not None:
            raise moved

    def _consistent(self, fn: Callable[[Head, Journal | None], _R], first: Head | None = None) -> _R:
        """Run ``fn`` until the change head is the same before and after it (a seqlock read).

        ``first``: the head as just read by the caller, taken as the first "before".
        """
        txn = self._local.txn
        if txn is not None and txn.write:
            head = self._read_head()
            return fn(head, self._journal(head))  # a writer holding the lock needs no second look
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        for attempt in range(1_000_000):
            head = first if first is not None and not attempt else self._read_head()
            result = fn(head, self._journal(head))
            # (A head torn by a crash has a generation of its own bytes: the same
            # torn head twice is a match, and nothing was applied in between.)
            if self._read_head().gen == head.gen:
                if txn is None:  # (a read transaction answers as of its start: checked when it began)
                    self._check_moved(head)
                return result
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
        with self._cache_lock:  # _point calls this without it; the memo is shared by threads
            memo = self._memo(journal)
            out: dict[str, Rec | None] | None = memo.get(memo_key)
            if out is None:
                path = self._journal_path
                out = {
                    n: None if t is None else self._parse(coll, n, t, path)
                    for c, n, t in journal.records
                    if c == coll.name
                }
                memo[memo_key] = out
        return out

    def _memo(self, journal: Journal) -> dict[str, Any]:
        if self._overlays_of != journal.txid:
            self._overlays, self._overlays_of = {}, journal.txid
        return self._overlays

    def _catch_up(self, coll: Collection[Any], head: Head, journal: Journal | None) -> Records:
        """Bring the cached records of ``coll`` up to ``head``, re-reading only changed files."""
        cache = self._colls.get(coll.name)
        jid = journal.txid if journal is not None else None
        if cache is not None and cache.shared and (cache.gen != head.gen or cache.journal != jid):
            cache = self._unshared(coll.name, cache)
        changed = None if cache is None else head.changed(coll.name, cache.gen)
        if cache is None or changed is None:
            fresh = Records()
            d = self._dir(coll.name)
            if d is None:
                self._missing_folder()
            loaded: list[tuple[str, Rec]] = []
            with paused_gc():
                for name in d.names() if d is not None else ():
                    if not name.startswith(".") and name.endswith(keynames.SUFFIX):
                        rec = self._read_rec(coll, name)
                        if rec is not None:
                            loaded.append((name, rec))
                fresh.build(loaded)
            cache = self._colls[coll.name] = fresh
        else:
            for name in changed:
                cache.put(name, self._read_rec(coll, name))
        if cache.journal != jid:
            for name in cache.suspects:
                cache.put(name, self._read_rec(coll, name))
            cache.suspects = journal.names(coll.name) if journal is not None else set()
            cache.journal = jid
        # (A head announcing a journal file that is gone: it was applied whole before its unlink.)
        cache.gen = head.gen
        return cache

    def _unshared(self, name: str, cache: Records) -> Records:
        """``cache``, copied first if a read transaction holds it as its snapshot (copy on write)."""
        if cache.shared:
            cache = self._colls[name] = cache.copy(indexes=True)
        return cache

    def _coll_view(self, coll: Collection[Any]) -> tuple[Records, Mapping[str, Rec | None]]:
        """The records of ``coll`` and the changes over them this thread sees (call under the cache lock)."""
        txn = self._txn()
        if txn is not None and txn.colls is not None:
            return txn.colls[coll.name], {}
        cache, overlay = self._consistent(lambda h, j: (self._catch_up(coll, h, j), self._overlay(coll, j)))
        if txn is not None and txn.write and coll.name in txn.records:
            return cache, {**overlay, **txn.records[coll.name]}
        return cache, overlay

    # Transactions: transactions.py; records and queries: records.py; commit and recovery:
    # commit.py; logs: log.py; index files: indexing.py; lazy read transactions: versions.py.


def _load_record(raw: bytes | str) -> Any:
    """``rawjson.load(raw)`` of a record file, through its scanner alone for what statestore writes.

    A file statestore wrote is UTF-8 text starting ``{`` followed by a
    non-NUL byte (so ``json.detect_encoding`` would say UTF-8) and ending in
    one newline: decoded as ``rawjson.load`` decodes it, scanned as one
    value, the rest only JSON whitespace. Anything else, and any error, goes
    to ``rawjson.load``, which gives the same value or explains what is wrong.
    """
    if type(raw) is bytes and raw[:1] == b"{" and len(raw) > 1 and raw[1]:
        try:
            text = raw.decode("utf-8", "surrogatepass")
            value, end = rawjson.SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if not text[end:].strip(" \t\n\r"):
                return value
    return rawjson.load(raw)
