"""The file backend's commit and recovery, through the change head and journals (a FileStore mixin).

See :mod:`statestore.backends.files.journal` for the protocol: small transactions commit by
one in-place write of the change head carrying their journal, large ones by
the write of the head announcing ``journal.json`` (renamed into place just
before), a lone record write by its own rename and a
lone log line by its own append; a crash is rolled forward (or discarded, if
never committed) by the next writer.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from statestore.backends.files.cache import EMBED_LIMIT, INTERNAL, MANIFEST, ROOT, Records, Txn, owned_json, record_text
from statestore.backends.files.fileio import Dir, Kept, fail, translate, unique_hex
from statestore.backends.files.journal import CHANGES, JOURNAL, Head, Journal
from statestore.errors import BackendError, CorruptStoreError, NotDurableError, SchemaError, StateStoreError
from statestore.schema import check_name
from statestore.store import Mode

__all__ = ["Commits"]

#: Reads of a torn change head, one right after the other, before it counts as torn by a crash.
_HEAD_READS = 3
#: Bytes of the change head read at first (a head with no journal in it is ~2-4 KB).
_HEAD_READ = 1 << 13


#: Collection names a journal named that passed ``check_name`` (checked once per process).
_VALID_COLLECTIONS: set[str] = set()


def _valid_log(name: str) -> bool:
    try:
        check_name(name, "log")
    except SchemaError:
        return False
    return True


class Commits:
    """Change head, journals, commit and recovery for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    path: Path
    mode: Mode
    _root: Dir
    _sys: Dir | None
    _sync: bool
    _head_path: Path
    _journal_path: Path
    _local_head_fd: int | None
    _journal_memo: tuple[tuple[int, int, int], Journal | None] | None
    _head_memo: tuple[bytes, Head] | None
    _read_gen: int  # the change head's generation reads last checked for a migration (FileStore)
    _cache_lock: threading.RLock
    _colls: dict[str, Records]
    _dirs: Kept[Dir]

    if TYPE_CHECKING:

        def _unshared(self, name: str, cache: Records) -> Records: ...

        def _txn(self) -> Txn | None: ...

        def _dir(self, name: str, *, create: bool = False) -> Dir | None: ...

        def _repair_tail(self, log_name: str) -> int: ...

        def _guard_readers(self, gen: int, files: list[tuple[str, str]]) -> None: ...

        def _release_readers(self) -> None: ...

        def _append(
            self, log_name: str, offset: int, data: bytes, *, size: int | None = None, sync: bool = True
        ) -> int: ...

        def _commit_line(self, txn: Txn, head: Head, gen: int, log_name: str, offset: int, line: str) -> None: ...

        def _advance_log(
            self, txn: Txn, log_name: str, offset: int, ino: int, sizes: list[int] | None = None
        ) -> None: ...

    def _head_fd(self, *, create: bool = False) -> int | None:
        """The change head's descriptor, kept open: the head is rewritten in place, never replaced."""
        fd: int | None = self._local_head_fd
        if fd is None and self._sys is not None:
            flags = os.O_RDWR if self.mode == "write" else os.O_RDONLY
            fd = self._local_head_fd = self._sys.open(CHANGES, flags, create=create)
        return fd

    def _read_head(self) -> Head:
        """The change head (read once per write transaction).

        A head caught mid-rewrite is read again at once, a bounded number of
        times, never after a sleep. One still torn (a crash or a full disk in
        the middle of rewriting it) is :meth:`Head.torn`: a generation of its
        own that no writer ever uses, the same for as long as the same torn
        bytes stay, so readers' caches and seqlock checks work as usual and
        reads keep their normal speed until the next writer repairs it. That
        is safe: every apply follows a head write, so files cannot change while
        the same torn bytes are there, and a torn head never hides a committed
        journal (the head write that commits is the one that was torn).
        """
        txn = self._txn()
        if txn is not None and txn.head is not None:
            return txn.head
        fd = self._head_fd()
        if fd is None:
            return Head()
        for _attempt in range(_HEAD_READS):
            try:
                # A head with no journal in it is ~2 KB: read 8 KB, and more only if its first line says so.
                raw = os.pread(fd, _HEAD_READ, 0)
                # A short read is the whole file: its size, which the next head write needs (no fstat).
                size = len(raw) if len(raw) < _HEAD_READ else None
                memo = self._head_memo
                head: Head | None
                if memo is not None and memo[0] == raw:
                    head = memo[1]  # the bytes last read or written here: no need to check and parse them again
                else:
                    head = Head.decode(raw)
                    need = Head.length(raw) if head is None else None
                    if need is not None and need > len(raw):
                        while len(raw) < need:
                            more = os.pread(fd, need - len(raw), len(raw))
                            if not more:
                                break
                            raw += more
                        head = Head.decode(raw)
                    if head is not None:
                        self._head_memo = (raw, head)
            except OSError as exc:
                fail(exc, self._head_path)  # (as ``with translate(...)``, without its three calls)
            if head is not None:
                if txn is not None and txn.write:
                    txn.head, txn.head_size = head, size
                return head
        return Head.torn(raw)

    def _write_head(self, head: Head, *, sync: bool) -> None:
        fd = self._head_fd(create=True)
        assert fd is not None
        txn = self._txn()
        if txn is not None and not txn.write:
            txn = None
        try:
            # No truncation (a metadata write per commit): the first line gives
            # the exact lengths the crc covers, so a longer tail is ignored. But
            # the tail is zeroed in the same write: an earlier head's embedded
            # journal must not keep the text of records since deleted or
            # overwritten (nor carry it into backups). Under the lock the size
            # read or written last in this transaction is still the file's.
            size = txn.head_size if txn is not None and txn.head_size is not None else os.fstat(fd).st_size
            data = head.encode(size)
            offset = os.pwrite(fd, data, 0)
            if offset < len(data):
                view = memoryview(data)
                while offset < len(data):
                    offset += os.pwrite(fd, view[offset:], offset)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            fail(exc, self._head_path)  # (as ``with translate(...)``, without its three calls)
        self._head_memo = (data, head) if len(data) < _HEAD_READ else None
        if txn is not None:
            txn.head, txn.head_size = head, len(data)

    def _made_durable(self, where: Path, sync: Callable[[], object]) -> None:
        """Run ``sync``, a flush after the commit point; NotDurableError naming ``where`` if it fails.

        The write is committed and visible by then: the error says so, so the
        caller does not write it again.
        """
        try:
            sync()
        except (OSError, StateStoreError) as exc:
            if isinstance(exc, BackendError):
                reason = exc.reason
            else:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise NotDurableError(str(where), reason) from exc

    def _settle(self, committed: Head, *, sync: bool) -> bool:
        """After the commit point: write the head without the journal it carries; False if that failed.

        The transaction is committed either way. A head still carrying or
        announcing it (or torn by a failed write) is what a writer killed at
        this point leaves, and the next writer settles it; so the failure (a
        full disk) is not reported: reporting it would invite the caller to
        write again, an append twice. The caller then stops advancing this
        process's caches and log indexes, which catch up from the disk.
        """
        try:
            self._write_head(committed.settled(), sync=sync)
        except (OSError, StateStoreError):
            return False
        return True

    def _sync_head(self) -> None:
        """Flush the change head to disk."""
        fd = self._head_fd()
        assert fd is not None
        with translate(self._head_path):
            os.fsync(fd)

    def _sync_internal(self) -> None:
        """With durability="full", make renames and unlinks in ``.statestore/`` durable."""
        if self._sync and self._sys is not None:
            self._sys.sync()

    def _journal(self, head: Head) -> Journal | None:
        """The committed journal being applied: inside the head, or in its own file if large."""
        if head.journal is not None:
            return head.journal
        if not head.journal_file:
            return None
        journal = self._read_journal()
        # The announced journal carries the head's generation. Any other file
        # is not it: an older one is one a power cut brought back after it was
        # applied and unlinked; a newer one is the next writer's, not committed
        # until a head announces it. If the announced one is gone, it was
        # applied whole before it was unlinked: the files hold it.
        return journal if journal is not None and journal.gen == head.gen else None

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

    def _publish(self, txn: Txn) -> None:
        """Commit the staged transaction through the journal (we hold the write lock).

        A journal of up to ``EMBED_LIMIT`` bytes travels inside the change head,
        whose in-place rewrite is the commit point. A larger one is first
        renamed into place as ``journal.json``, and then the head that
        announces it (and moves the generation) is the commit point: a reader
        that sees the announcement finds the journal, and a reader that read
        the head before it sees the generation move when it checks again. (The
        other order left a gap in which a reader was told of a journal it could
        not find and read files being applied without noticing.)
        """
        assert self._sys is not None
        # The head this transaction read under the lock (no writer can have
        # moved it since): reading it again would cost a pread and a parse.
        head = txn.head if txn.head is not None else self._read_head()
        records = []
        for coll_name, staged in txn.records.items():
            for name, rec in staged.items():
                records.append((coll_name, name, None if rec is None else record_text(rec[0], rec[1], rec[2])))
        logs = []
        for file, text in txn.files.items():
            records.append((ROOT, file, text))
        for log_name, entries in txn.lines.items():
            if entries:
                logs.append((log_name, self._repair_tail(log_name), "".join(e[5] for e in entries)))
        gen = max(head.gen, head.base) + 1
        if not records and len(logs) == 1 and len(txn.lines[logs[0][0]]) == 1:
            self._commit_line(txn, head, gen, *logs[0])
            return
        if len(records) == 1 and not logs:
            coll_name, name, text = records[0]
            if coll_name != ROOT and text is not None:
                # One record file written (an update, a put in a transaction of its own): the same steps, fewer layers.
                d = self._journal_dir(coll_name, name)  # (the names are checked as for any journal)
                self._publish_record(txn, head, coll_name, name, text, None, d)
                return
        if len(records) == 1 and not logs:
            # One file replaced or deleted is atomic by itself: announce it, no texts.
            journal = Journal(unique_hex(), gen, ((records[0][0], records[0][1], None),), (), direct=True)
        else:
            journal = Journal(unique_hex(), gen, tuple(records), tuple(logs))
        encoded = journal.encode()
        # Before the commit point: lazy readers get the versions this commit replaces (versions.py).
        self._guard_readers(gen, [(c, n) for c, n, _t in records])
        prepared = self._prepare(records)
        try:
            if len(encoded) <= EMBED_LIMIT:
                committed = head.bump(gen, journal.changes(), journal)
                self._write_head(committed, sync=False)
            else:
                # The journal first, whole (readers and recovery ignore it until
                # a head announces it), then the announcing head: the commit.
                # It also moves the generation before anything is applied, so a
                # reader whose read overlaps the apply sees the head move.
                self._sys.write(JOURNAL, encoded, sync=self._sync)
                if self._sync:
                    self._sys.sync()
                committed = head.bump(gen, journal.changes(), None, journal_file=True)
                self._write_head(committed, sync=False)
        except BaseException:
            self._unprepare(prepared)
            if len(encoded) > EMBED_LIMIT:
                with contextlib.suppress(OSError, StateStoreError):
                    self._sys.remove(JOURNAL)  # never announced: not committed
            raise
        # The head's write was the commit point: it is flushed after it. (A direct
        # journal only announces a file whose own rename is the commit: after a
        # power cut no process has a cache to warn.)
        if self._sync and not journal.direct:
            try:
                self._made_durable(self._head_path, self._sync_head)
            except NotDurableError:
                self._unprepare(prepared)  # the journal holds every text: the next writer applies it
                raise
        try:
            inodes = self._apply(tuple(records), tuple(logs), prepared)
        except (OSError, StateStoreError):
            # A direct journal's own rename or unlink is the commit: a failure before it
            # means it did not happen, a failure to flush after it is a NotDurableError.
            if journal.direct:
                raise
            # Committed already: readers see it through the journal, and the
            # next writer finishes applying it (and flushes it). Reporting a
            # failure here would invite the caller to do it twice.
            return
        if committed.journal_file:
            try:
                self._sys.remove(JOURNAL)
                self._sync_internal()  # the unlink is durable before the head stops announcing it
            except (OSError, StateStoreError):
                return  # committed, still announced: the next writer finishes it (as just above)
        # Durable when the head drops a journal it carried or announced: a power
        # cut must not bring it back to be applied over later transactions.
        if not self._settle(committed, sync=self._sync and not journal.direct):
            return  # committed: the caches catch up from the head on disk
        self._release_readers()
        if self._read_gen == head.gen and not any(c == ROOT for c, _n, _t in records):
            self._read_gen = gen  # our own commit moved no schema: reads need not look (_check_moved)
        for (log_name, offset, _text), ino in zip(journal.logs, inodes):
            self._advance_log(txn, log_name, offset, ino)
        with self._cache_lock:
            # Our own writes need not be read back: advance the caches that were current.
            for name, cache in list(self._colls.items()):
                if cache.gen == head.gen and cache.journal is None:
                    changes = txn.records.get(name)
                    if changes:
                        cache = self._unshared(name, cache)
                        for file, rec in changes.items():
                            cache.put(file, rec)
                    cache.gen = gen

    def _publish_record(
        self, txn: Txn, head: Head, coll_name: str, name: str, text: str, canonical: str | None, d: Dir | None = None
    ) -> None:
        """``_publish`` of a transaction that writes one record file and nothing else (we hold the write lock).

        The same steps and files in the same order: the new file written
        aside (``text``), the head announcing it (a direct journal), the
        rename (the commit), the head settled, the caches that were current
        advanced. ``name`` is the file name of a key of the declared
        collection ``coll_name`` (no journal's name to check); ``txn.records``
        holds it, with the caller's data (``canonical``: its canonical JSON),
        which a cache gets a private copy of (None: the staged data is
        private already, as ``_write`` stages it). ``d``: the collection's folder, if the caller has it.
        """
        gen = max(head.gen, head.base) + 1
        journal = Journal(unique_hex(), gen, ((coll_name, name, None),), (), direct=True)
        if d is None:
            d = self._dir(coll_name, create=True)
            assert d is not None
        self._guard_readers(gen, [(coll_name, name)])  # lazy readers get the version replaced (versions.py)
        tmp = d.write_temp(name, text.encode("utf-8"), sync=self._sync)
        try:
            committed = head.bump(gen, {coll_name: [name]}, journal)
            # A direct journal only announces a file whose own rename is the commit.
            self._write_head(committed, sync=False)
        except BaseException:
            with contextlib.suppress(OSError, StateStoreError):
                d.remove(tmp)
            raise
        d.rename(tmp, name)  # the commit (a failure: it did not happen; the next writer settles the head)
        if self._sync:
            self._made_durable(d.path, d.sync)
        if not self._settle(committed, sync=False):
            return  # committed: the caches catch up from the head on disk
        self._release_readers()
        if self._read_gen == head.gen:
            self._read_gen = gen  # our own commit moved no schema: reads need not look (_check_moved)
        with self._cache_lock:
            # Our own write need not be read back: advance the caches that were current.
            for cname, cache in list(self._colls.items()):
                if cache.gen == head.gen and cache.journal is None:
                    changes = txn.records.get(cname)
                    if changes:
                        cache = self._unshared(cname, cache)
                        for file, rec in changes.items():
                            if rec is not None and canonical is not None:
                                rec = (rec[0], rec[1], owned_json(rec[2], canonical))
                            cache.put(file, rec)
                    cache.gen = gen

    def _prepare(self, records: list[tuple[str, str, str | None]]) -> dict[tuple[str, str], str]:
        """Write each new record file to a temporary file beside it, before the commit point.

        So a full disk fails the transaction cleanly; applying is then only
        renames, deletions and log appends. Returns the temporary file names
        (not the folders: a transaction over more collections than the
        descriptors kept open reopens each folder when it applies).
        """
        prepared: dict[tuple[str, str], str] = {}
        try:
            for coll_name, name, text in records:
                if text is not None:
                    d = self._journal_dir(coll_name, name)
                    prepared[coll_name, name] = d.write_temp(name, text.encode("utf-8"), sync=self._sync)
        except BaseException:
            self._unprepare(prepared)
            raise
        return prepared

    def _unprepare(self, prepared: Mapping[tuple[str, str], str]) -> None:
        """Delete the temporary files of a transaction that did not commit."""
        for (coll_name, name), tmp in prepared.items():
            with contextlib.suppress(OSError, StateStoreError):
                self._journal_dir(coll_name, name).remove(tmp)

    def _apply(
        self,
        records: tuple[tuple[str, str, str | None], ...],
        logs: tuple[tuple[str, int, str], ...],
        prepared: Mapping[tuple[str, str], str] | None = None,
    ) -> list[int]:
        """Write a journal's files (``prepared`` ones by rename); return the inode of each log written.

        Idempotent: a killed apply is simply run again from the journal.
        """
        for coll_name, name, text in records:
            d = self._journal_dir(coll_name, name)
            if text is None:
                d.remove(name)
            elif prepared is not None and (coll_name, name) in prepared:
                d.rename(prepared[coll_name, name], name)
            else:
                d.write(name, text.encode("utf-8"), sync=self._sync)
        inodes = [self._append(log_name, offset, text.encode("utf-8")) for log_name, offset, text in logs]
        if self._sync:  # (everything is in place: a failure to flush it is a NotDurableError)
            self._made_durable(self._root.path, lambda: self._sync_applied(records, logs))
        return inodes

    def _sync_applied(
        self, records: tuple[tuple[str, str, str | None], ...], logs: tuple[tuple[str, int, str], ...]
    ) -> None:
        """With durability="full": sync the folders whose entries ``_apply`` changed."""
        for coll_name in dict.fromkeys(c for c, _n, _t in records):
            folder = self._root if coll_name == ROOT else self._dir(coll_name)
            if folder is not None:
                folder.sync()
        if any(offset == 0 for _, offset, _ in logs):
            self._root.sync()  # a log file may have just been created in it
            if self._sys is not None:
                self._sys.sync()

    def _journal_dir(self, coll_name: str, name: str) -> Dir:
        path = self._journal_path
        if coll_name == ROOT:
            # Whole files of the root: the manifest, or a log a migration rewrote.
            stem = name.removesuffix(".jsonl")
            if name != MANIFEST and (stem == name or not _valid_log(stem)):
                raise CorruptStoreError(str(path), f"bad root file name {name!r}")
            return self._root
        if coll_name not in _VALID_COLLECTIONS:
            try:
                check_name(coll_name, "collection")
            except SchemaError:
                raise CorruptStoreError(str(path), f"bad collection name {coll_name!r}") from None
            _VALID_COLLECTIONS.add(coll_name)
        if "/" in name or "\\" in name or "\0" in name or name.startswith(".") or not name.endswith(".json"):
            raise CorruptStoreError(str(path), f"bad record file name {name!r}")
        d = self._dir(coll_name, create=True)
        assert d is not None
        return d

    def _recover(self, *, probe: bool = False) -> None:
        """Finish a transaction a killed writer committed, or drop one it never committed.

        ``journal.json`` counts only when the head announces it with the
        journal's generation; with ``probe`` (a write-mode open, or a head torn
        by a crash) a file no head announces is deleted: it was never committed.
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
                found = Journal.decode(raw)
                if found is not None and head.journal_file and found.gen == head.gen:
                    journal = found  # committed: the head announces it
                else:
                    # Torn, or never announced (a writer killed between the
                    # rename and the head write: never committed), or applied
                    # long ago and brought back by a power cut (applying it
                    # again would undo later transactions).
                    self._sys.remove(JOURNAL)
                    self._sync_internal()
        if journal is not None:
            if not journal.direct:
                try:
                    self._apply(journal.records, journal.logs)
                except NotDurableError as exc:
                    # (Another writer's transaction, still announced: it stays to be applied again.)
                    raise BackendError(exc.location, exc.reason) from exc.__cause__
            for coll_name in {c for c, _, _ in journal.records}:
                d = self._root if coll_name == ROOT else self._dir(coll_name)
                if d is not None:
                    d.sweep()
        if journal is not None or head.journal_file:
            self._sys.remove(JOURNAL)
            self._sync_internal()
            self._write_head(head.settled(), sync=self._sync)
