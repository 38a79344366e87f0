"""Appending to the file backend's logs (a FileStore mixin).

A lone append outside any transaction (``_append_alone``) writes its line
with one ``write`` at the end of the file, which is its commit; the change
head then records the new end. Lines a transaction appends are committed
through its journal (:mod:`statestore.backends.files.commit`). A last line
cut off by a killed writer is cut away by the next writer (``_repair_tail``)
before it appends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statestore.backends.files.cache import INTERNAL_NAMES, LogIndex, Txn
from statestore.backends.files.fileio import Dir, FileHandle, Kept, translate
from statestore.backends.files.journal import Head, Journal
from statestore.backends.files.log import entry_line
from statestore.errors import LAST_REVISION, CorruptStoreError, SchemaError, StateStoreError
from statestore.schema import Log, check_name

__all__ = ["LogAppends"]

#: Log names already checked by ``_append`` (names read from a journal are checked before use).
_VALID_LOGS: set[str] = set()


class LogAppends:
    """Log appends for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    _sync: bool
    _journal_path: Path
    _cache_lock: threading.RLock
    _logs: dict[str, LogIndex]
    _log_fds: Kept[FileHandle]
    _schema_gen: int  # the change head's generation when the schemas were last checked
    _read_gen: int  # the same, for reads

    if TYPE_CHECKING:

        def _txn(self) -> Txn | None: ...

        def _alone(self) -> Txn | None: ...

        def _end_alone(self) -> None: ...

        def _commit_staged(self, txn: Txn) -> None: ...

        def _index_after(self, txn: Txn, before: Head) -> None: ...

        def _write_head(self, head: Head, *, sync: bool) -> None: ...

        def _catch_up_log(self, log: Log[Any], journal: Journal | None) -> LogIndex: ...

        def _summarize(self, log_name: str, idx: LogIndex) -> None: ...

        def _log_place(self, log_name: str) -> tuple[Dir | None, str]: ...

        def _log_fd(self, log_name: str, *, create: bool = False) -> FileHandle | None: ...

        def _log_path(self, name: str) -> Path: ...

        def _made_durable(self, where: Path, sync: Callable[[], object]) -> None: ...

    def _append_alone(
        self, log: Log[Any], stream: str, data: dict[str, Any], text: str, *, expect_version: int | None
    ) -> tuple[int, int, datetime] | None:
        """One entry appended as a transaction of its own would append it, without the transaction's layers.

        The same steps, files and order as ``append`` in a transaction of its
        own (the lock, recovery and schema check of ``_begin``, the log caught
        up under the lock, the commit of ``_commit``); the stamp is taken
        under the lock. None (nothing written) when ``expect_version`` is not
        the stream's version, the log is being rewritten or is damaged, or
        whenever ``_alone`` declines: the transaction path then says why.
        """
        txn = self._alone()
        if txn is None:
            return None
        try:
            name = log.name
            with self._cache_lock:
                idx = self._logs.get(name)
                kept = self._log_fds.get(name)
                folder, file = self._log_place(name)
                st = None
                if idx is not None and kept is not None and idx.ino == kept.ino and folder is not None:
                    # The usual case: the kept descriptor's file is still the log, and ends where our
                    # index does (what _catch_up_log would find, minus its layers).
                    with translate(self._log_path(name)):
                        try:
                            st = os.stat(file, dir_fd=folder.fd, follow_symlinks=False)
                        except FileNotFoundError:
                            st = None
                if st is not None and idx is not None and st.st_ino == idx.ino and st.st_size == idx.end:
                    assert kept is not None
                    txn.log_handles[name] = kept
                    txn.log_sizes[name] = (st.st_ino, st.st_size)
                else:
                    try:
                        # Under the lock, after the recovery: no journal is being applied, no writer appends.
                        idx = self._catch_up_log(log, None)
                    except StateStoreError:
                        return None
                version = idx.versions.get(stream, 0)
                if (expect_version is not None and version != expect_version) or version >= LAST_REVISION:
                    return None  # (at the last 64-bit version: the transaction path refuses it)
                seq = (idx.seqs[-1] if idx.seqs else 0) + 1
                offset = idx.end
            version += 1
            stamp = datetime.now(timezone.utc)
            at = stamp.isoformat(timespec="microseconds")
            line = entry_line(seq, stream, version, at, text)
            handle = txn.log_handles.get(name)
            head = txn.head
            if handle is None or head is None or txn.log_sizes.get(name) != (idx.ino, offset):
                # A new file, or a torn last line to cut off first: the general path.
                txn.caught_up[name] = (idx, len(idx.seqs), [])
                txn.lines[name] = [(seq, stream, version, at, None, line)]
                self._commit_staged(txn)
            else:
                self._commit_entry(txn, head, name, handle, offset, line.encode("utf-8"), (seq, stream, version))
            return seq, version, stamp
        finally:
            self._end_alone()

    def _commit_entry(
        self,
        txn: Txn,
        head: Head,
        log_name: str,
        handle: FileHandle,
        offset: int,
        data: bytes,
        entry: tuple[int, str, int],
    ) -> None:
        """Commit one line ``data`` (the entry (seq, stream, version)) as ``_commit_staged`` would (``_commit_line``).

        For the usual case only: the file is open (``handle``, checked under
        the lock) and ends at ``offset``, the end of its last complete line,
        as this transaction saw it under the lock. The line is the commit (see
        ``_commit_line``); the head is bumped after it.
        """
        checked = self._schema_gen == head.gen
        fd = handle.fd
        path = self._log_path(log_name)
        with translate(path):
            written = os.pwrite(fd, data, offset)
            if written < len(data):
                view, at = memoryview(data)[written:], offset + written
                while view:
                    written = os.pwrite(fd, view, at)
                    view, at = view[written:], at + written
        if self._sync:  # (the whole line is written: committed)
            self._made_durable(path, lambda: self._sync_line(log_name, fd, offset))
        if not self._bump_after_line(head.bump(max(head.gen, head.base) + 1, {}, None)):
            return
        with self._cache_lock:
            # Our own line need not be read back (as _advance_log: if no reader of this process indexed it first).
            idx = self._logs.get(log_name)
            if idx is not None and idx.end == offset and idx.ino == handle.ino:
                idx.add(entry[0], entry[1], entry[2], offset, offset + len(data))
                idx.lines += 1
                self._summarize(log_name, idx)
        self._index_after(txn, head)
        if checked and txn.head is not None:
            self._schema_gen = txn.head.gen  # our own commit moved no schema

    def _commit_line(self, txn: Txn, head: Head, gen: int, log_name: str, offset: int, line: str) -> None:
        """Commit a transaction that is one log line and nothing else, without a journal.

        A single write of one complete line is all-or-nothing to every reader
        (they ignore a last line without its newline, and the next writer cuts
        it off), so the line itself is the commit; the head is bumped after it
        for followers and caches.
        """
        data = line.encode("utf-8")
        # Under the lock, the file ends at ``offset`` (``_repair_tail`` just said so): no fstat.
        ino = self._append(log_name, offset, data, size=offset, sync=False)
        if self._sync:  # (the whole line is written: committed)
            handle = self._log_fd(log_name)
            assert handle is not None
            self._made_durable(self._log_path(log_name), lambda: self._sync_line(log_name, handle.fd, offset))
        if not self._bump_after_line(head.bump(gen, {}, None)):
            return
        if self._read_gen == head.gen:
            self._read_gen = gen  # an append moves no schema: reads need not look (_check_moved)
        self._advance_log(txn, log_name, offset, ino, [len(data)])

    def _sync_line(self, log_name: str, fd: int, offset: int) -> None:
        """With durability="full": make a line just appended at ``offset`` durable (and the file, if it is new)."""
        with translate(self._log_path(log_name)):
            os.fsync(fd)
        if offset == 0:
            folder = self._log_place(log_name)[0]
            if folder is not None:
                folder.sync()  # the log file may have just been created

    def _bump_after_line(self, bumped: Head) -> bool:
        """After a line's write committed it: move the head's generation; False if that failed.

        Readers find new lines by the log file's size, not the head, so a
        head left behind (or torn) by a full disk loses nothing, as when a
        writer is killed at this point; the append is committed, so the
        failure is not reported (a caller told it failed would append twice).
        The caller then leaves this process's log index to catch up from the file.
        """
        try:
            self._write_head(bumped, sync=False)
        except (OSError, StateStoreError):
            return False
        return True

    def _advance_log(self, txn: Txn, log_name: str, offset: int, ino: int, sizes: list[int] | None = None) -> None:
        """Add our own committed lines to the log index if it was current: no need to read them back.

        ``sizes``: each line's length in bytes, if the caller has them.
        """
        with self._cache_lock:
            idx = self._logs.get(log_name)
            if idx is not None and idx.end == offset and idx.ino in (ino, None):
                if idx.ino is None:
                    idx = self._logs[log_name] = LogIndex(ino)
                lines = txn.lines[log_name]
                if sizes is None:
                    sizes = [len(line.encode("utf-8")) for *_entry, line in lines]
                for (seq, stream, version, _at, _data, _line), size in zip(lines, sizes):
                    idx.add(seq, stream, version, offset, offset + size)
                    idx.lines += 1
                    offset += size
                self._summarize(log_name, idx)

    def _append(self, log_name: str, offset: int, data: bytes, *, size: int | None = None, sync: bool = True) -> int:
        """Write ``data`` at ``offset`` of the log; return the file's inode.

        Re-applying a journal is idempotent and never destructive: if ``data``
        is already there whole, nothing is written and lines after it (later
        transactions) are kept; otherwise whatever follows ``offset`` (a
        half-written retry, a torn line) is cut off first. ``size``: the
        file's size, when the caller (holding the write lock) knows it.
        With durability="full" the file is synced, unless ``sync`` is false
        (the caller syncs it, when the write is its commit).
        """
        sync = sync and self._sync
        if log_name not in INTERNAL_NAMES and log_name not in _VALID_LOGS:
            try:
                check_name(log_name, "log")
            except SchemaError:
                raise CorruptStoreError(str(self._journal_path), f"bad log name {log_name!r}") from None
            _VALID_LOGS.add(log_name)
        handle = self._log_fd(log_name, create=True)
        assert handle is not None
        fd = handle.fd
        with translate(self._log_path(log_name)):
            if size is None:
                st = os.fstat(fd)
                size, ino = st.st_size, st.st_ino
            else:
                ino = handle.ino
            if size < offset:
                raise CorruptStoreError(str(self._log_path(log_name)), f"shorter than the {offset} bytes committed")
            if size > offset:
                if size >= offset + len(data) and os.pread(fd, len(data), offset) == data:
                    # Applied before (a head that lost its settle, or a writer
                    # killed before its fsync): make it durable, keep what follows.
                    if sync:
                        os.fsync(fd)
                    return ino
                os.ftruncate(fd, offset)  # a half-applied retry, or a torn line: cut it off
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            if sync:
                os.fsync(fd)
        return ino

    def _repair_tail(self, log_name: str) -> int:
        """The end of the last complete line of the log, cutting off a torn last line a crash left."""
        idx = self._logs.get(log_name)
        txn = self._txn()
        known = txn.log_sizes.get(log_name) if txn is not None and txn.write else None
        if known is not None and idx is not None and (idx.ino, idx.end) == known:
            # This transaction caught up with the whole file under the lock: it ends with a newline.
            return known[1]
        handle = self._log_fd(log_name)
        if handle is None:
            return 0
        fd = handle.fd
        with translate(self._log_path(log_name)):
            st = os.fstat(fd)
            size = end = st.st_size
            # Bytes before the end of an indexed line are never rewritten (only
            # what follows the last complete line is ever cut), so a file that
            # ends where our index ends ends with a newline: no need to look.
            indexed = idx is not None and idx.ino == st.st_ino and idx.end == size
            if not size or indexed or os.pread(fd, 1, size - 1) == b"\n":
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
