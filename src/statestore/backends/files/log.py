"""The file backend's logs: one JSONL file per log, with a byte-offset index (a FileStore mixin).

Each process keeps, per log, the offset of every complete line with its seq,
stream and version, extended from where it last ended; reading a stream
``after=`` a seq reads only the lines it returns. Lines may be of any size. A
last line without its newline (a killed writer) is ignored by readers and cut
off by the next writer; a blank line is skipped; a complete line that is not an
entry is damage (:func:`damaged`): reads and appends of that log fail, naming
the file and line, until someone repairs it. Descriptors of log files are kept open and re-checked by inode.
Appending is :mod:`statestore.backends.files.appending`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from statestore.backends import rawjson
from statestore.backends.files.cache import INTERNAL_PREFIX, LogIndex, Txn, TxnEntry, copy_json, is_int
from statestore.backends.files.fileio import Dir, FileHandle, Kept, translate
from statestore.backends.files.journal import Head, Journal
from statestore.backends.files.versions import LazyLogs
from statestore.errors import CorruptStoreError, StateStoreError
from statestore.schema import Log
from statestore.store import Mode, RawEntry, StoredSchemas

__all__ = ["LogFiles"]

_R = TypeVar("_R")


# The C escapers json.dumps() uses for a str (ensure_ascii on, off), without its per-call set-up.
_ascii_string = json.encoder.encode_basestring_ascii
_string = json.encoder.encode_basestring


def entry_line(seq: int, stream: str, version: int, at: str, text: str) -> str:
    # Keys in sorted order, compact; ``text`` is the codec's canonical record JSON.
    return f'{{"at":{_ascii_string(at)},"record":{text},"seq":{seq},"stream":{_string(stream)},"version":{version}}}\n'


#: A log's summary in the index folder (``.statestore/index/<log>.count``): one JSON line
#: ``{"crc", "end", "entries", "format", "ino", "last_seq", "last_start", "lines"}`` padded with
#: spaces to 256 bytes, saying that the first ``end`` bytes of the log file with inode ``ino`` hold
#: ``lines`` lines and ``entries`` entries, the last one (seq ``last_seq``) starting at byte
#: ``last_start``; ``crc`` is the crc32 of the same object without it (keys sorted, ``json.dumps``
#: defaults). Writers rewrite it in place after a commit once the log has grown ``_SUMMARY_EVERY``
#: bytes past it; a fresh process counts entries from it and the lines after it, not from every line.
SUMMARY_SUFFIX = ".count"
SUMMARY_FORMAT = 1
_SUMMARY_KEYS = ("ino", "end", "entries", "lines", "last_seq", "last_start")
_SUMMARY_EVERY = 16 << 10
_SUMMARY_SIZE = 256


#: What JSON allows around a value: a line of only these holds nothing.
_BLANK = b" \t\r\n"
#: Log bytes read at once; a longer line is read on until its newline.
_CHUNK = 8 << 20


def damaged(path: Path, line: int | None, what: str) -> CorruptStoreError:
    """The error for a damaged log line: it names the file and line and says how to repair it.

    statestore never rewrites a damaged log on its own (that would drop what
    the line held in silence): reads and appends of that log fail until the
    line is fixed or deleted; the rest of the store keeps working.
    """
    at = f"line {line}" if line is not None else "a line"
    return CorruptStoreError(
        str(path),
        f"{at} is damaged: {what}; this log can be neither read nor appended to until it is repaired: "
        f"fix or delete that line with a text editor (blank lines are ignored), or restore the file from a backup",
        line,
    )


def _read_lines(fd: int, offset: int, limit: int) -> tuple[bytes, int]:
    """Bytes from ``offset`` holding at least one complete line if there is one before ``limit``,
    and the length of the complete lines in them (0: only a torn last line)."""
    chunks = [os.pread(fd, min(limit - offset, _CHUNK), offset)]
    size = len(chunks[0])
    cut = chunks[0].rfind(b"\n") + 1
    while not cut and chunks[-1] and offset + size < limit:
        # A line longer than everything read so far: read on, in growing chunks.
        more = os.pread(fd, min(limit - offset - size, max(size, _CHUNK)), offset + size)
        nl = more.rfind(b"\n")
        if nl >= 0:
            cut = size + nl + 1
        chunks.append(more)
        size += len(more)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), cut


def _line_at(fd: int, offset: int) -> int:
    """The number of the line starting at byte ``offset`` of the file (for error messages)."""
    count, pos = 1, 0
    while pos < offset:
        chunk = os.pread(fd, min(offset - pos, _CHUNK), pos)
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count


class LogFiles:
    """Log reading and appending for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    path: Path
    mode: Mode
    _root: Dir
    _sys: Dir | None
    _journal_path: Path
    _cache_lock: threading.RLock
    _logs: dict[str, LogIndex]
    _log_fds: Kept[FileHandle]
    _log_paths: dict[str, Path]
    _summaries: dict[str, tuple[int, int]]  # per log: (inode, end) of the summary last read or written
    _delta_fds: Kept[FileHandle]  # (IndexFiles') kept index files: summaries too, as "log:<name>"

    if TYPE_CHECKING:

        def _idx_dir(self, *, create: bool = False) -> Dir | None: ...

        def _close_index(self) -> None: ...

        def _txn(self) -> Txn | None: ...

        def _consistent(self, fn: Callable[[Head, Journal | None], _R]) -> _R: ...

        def _memo(self, journal: Journal) -> dict[str, Any]: ...

        def _lazy_log_count(self, log: Log[Any]) -> tuple[int, int] | None: ...

        def _schemas_moved(self, stored: StoredSchemas | None = None) -> StateStoreError | None: ...

    def _log_overlay(self, log: Log[Any], journal: Journal | None) -> list[TxnEntry]:
        if journal is None:
            return []
        memo_key = "log:" + log.name
        with self._cache_lock:
            memo = self._memo(journal)
            out: list[TxnEntry] | None = memo.get(memo_key)
            if out is None:
                out = []
                found, rewritten = journal.root_file(f"{log.name}.jsonl")
                if found:
                    for i, line in enumerate((rewritten or "").split("\n")[:-1]):
                        out.append((*self._parse_line(line, self._journal_path, i + 1, log_file=False), line + "\n"))
                for name, _off, text in journal.logs:
                    if name == log.name:
                        # Split on "\n" only: str.splitlines also splits on U+2028,
                        # U+0085... which JSON leaves unescaped inside strings.
                        for i, line in enumerate(text.split("\n")[:-1]):
                            entry = self._parse_line(line, self._journal_path, i + 1, log_file=False)
                            out.append((*entry, line + "\n"))
                memo[memo_key] = out
        return out

    def _parse_line(self, line: str | bytes, path: Path, lineno: int | None, *, log_file: bool = True) -> RawEntry:
        """The entry on one line; CorruptStoreError (with how to repair, for a log file) if it is not one."""
        try:
            doc = rawjson.load(line)  # NaN and deep nesting are damage too (a ValueError)
            seq, stream, version, at, record = (doc[k] for k in ("seq", "stream", "version", "at", "record"))
            if not (is_int(seq) and isinstance(stream, str) and is_int(version) and isinstance(at, str)):
                raise TypeError("seq, stream, version or at has the wrong type")
            datetime.fromisoformat(at)  # a reader parses it: a bad one is damage (ValueError), named here
            if not isinstance(record, dict):
                raise TypeError("record is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            if not log_file:
                raise CorruptStoreError(str(path), f"bad log entry: {exc}", lineno) from None
            raise damaged(path, lineno, f"not a log entry ({exc})") from None
        return seq, stream, version, at, record

    def _catch_up_log(self, log: Log[Any], journal: Journal | None) -> LogIndex:
        """Extend the offset index of ``log`` with the complete lines appended since.

        A line longer than the read chunk is read on to its newline: entries
        have no size limit. Only bytes after the last newline are a torn line.
        Blank lines hold nothing and are skipped; any other line that is not an
        entry raises CorruptStoreError naming the file and line (see
        :func:`damaged`).
        """
        path = self._log_path(log.name)
        idx = self._logs.get(log.name)
        handle, st = self._log_handle(log.name)
        if handle is None:
            idx = self._logs[log.name] = LogIndex(None)
            return idx
        fd = handle.fd
        with translate(path):
            txn = self._txn()
            write = txn is not None and txn.write
            if st is None or not write:
                st = os.fstat(fd)  # (under the write lock, the status of the lookup by name is as good)
            limit = st.st_size
            if txn is not None and write:
                txn.log_sizes[log.name] = (st.st_ino, st.st_size)
            for name, offset, _text in journal.logs if journal is not None else ():
                if name == log.name:
                    limit = offset  # past it the journal is being applied: read the journal instead
            if idx is None or idx.ino != st.st_ino or limit < idx.end:
                idx = LogIndex(st.st_ino)
            self._extend_index(idx, fd, limit, path)
        self._logs[log.name] = idx
        return idx

    def _extend_index(self, idx: LogIndex, fd: int, limit: int, path: Path) -> None:
        """Index the complete lines of the file from ``idx.end`` up to byte ``limit``."""
        while idx.end < limit:
            data, cut = _read_lines(fd, idx.end, limit)
            if not cut:
                break  # a torn last line (a killed writer): ignored until repaired
            start = 0
            while start < cut:
                nl = data.index(b"\n", start) + 1
                raw = data[start:nl]
                begin, end = idx.end, idx.end + nl - start
                idx.lines += 1
                if raw.strip(_BLANK):
                    seq, stream, version, _at, _rec = self._parse_line(raw, path, idx.lines)
                    prev = idx.seqs[-1] if idx.seqs else idx.floor
                    if prev is not None and seq <= prev:
                        raise damaged(path, idx.lines, f"seq {seq} does not increase")
                    idx.add(seq, stream, version, begin, end)
                else:
                    idx.end = end  # a blank line: nothing in it to index
                start = nl

    # ------------------------------------------------------------ summaries

    def _read_summary(self, log_name: str) -> tuple[int, int, int, int, int, int] | None:
        """The log's summary file as (inode, end, entries, lines, last seq, last start); None if absent or bad."""
        d = self._idx_dir()
        raw = d.read(f"{log_name}{SUMMARY_SUFFIX}") if d is not None else None
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            crc = doc.pop("crc")
            got = tuple(doc[k] for k in _SUMMARY_KEYS)
            # Rewritten in place: the crc tells a whole summary from one caught mid-rewrite.
            if crc != zlib.crc32(json.dumps(doc, sort_keys=True).encode("ascii")):
                return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if doc.get("format") != SUMMARY_FORMAT or not all(is_int(v) and v >= 0 for v in got):
            return None
        return got

    def _summary_tail(
        self, fd: int, path: Path, summary: tuple[int, int, int, int, int, int], limit: int
    ) -> LogIndex | None:
        """The entries after a log's summary, up to byte ``limit``, read from ``fd`` (the summary's file);
        None if the summary does not describe what the file holds (then the whole log is read instead).

        The line the summary names as its last must still be there, whole, with the same seq.
        """
        ino, end, _entries, lines, last_seq, last_start = summary
        if not last_start < end <= limit or not lines:
            return None
        line = os.pread(fd, end - last_start, last_start)
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            return None
        try:
            if self._parse_line(line, path, lines)[0] != last_seq:
                return None
        except CorruptStoreError:
            return None
        tail = LogIndex(ino)
        tail.end, tail.lines, tail.floor = end, lines, last_seq
        self._extend_index(tail, fd, limit, path)
        return tail

    def _summary_count(self, log: Log[Any]) -> tuple[int, int] | None:
        """(entries, last seq) from the log's summary and the lines after it; None if it cannot answer.

        Only outside transactions, in a process that has not indexed the log
        (one that has, answers from its index). The summary counts only if the
        file is the one it describes (same inode, at least as long) and the
        line it names as the last one before its end is still there, with the
        same seq; the lines after that end are read and checked as usual.
        """
        if self._txn() is not None or log.name in self._logs:
            return None
        path = self._log_path(log.name)

        def count(head: Head, journal: Journal | None) -> tuple[int, int] | None:
            if journal is not None and journal.root_file(f"{log.name}.jsonl")[0]:
                return None  # a rewrite of the whole file is being applied
            summary = self._read_summary(log.name)
            handle = self._log_fd(log.name) if summary is not None else None
            if summary is None or handle is None:
                return None
            ino, _end, entries, _lines, last_seq, _last_start = summary
            fd = handle.fd
            with translate(path):
                st = os.fstat(fd)
                limit = st.st_size
                for name, offset, _text in journal.logs if journal is not None else ():
                    if name == log.name:
                        limit = offset
                if st.st_ino != ino:
                    return None
                tail = self._summary_tail(fd, path, summary, limit)
                if tail is None:
                    return None
            overlay = self._log_overlay(log, journal)
            last = overlay[-1][0] if overlay else tail.seqs[-1] if tail.seqs else last_seq
            return entries + len(tail.seqs) + len(overlay), last

        with self._cache_lock:
            result: tuple[int, int] | None = self._consistent(count)
        return result

    def _summarize(self, log_name: str, idx: LogIndex) -> None:
        """After a commit (under the write lock): rewrite the log's summary if its index went far past it.

        Never fails the committed transaction: a summary that cannot be
        written is left behind, and readers read more lines.
        """
        if self.mode != "write" or idx.ino is None or not idx.seqs or idx.end != idx.ends[-1]:
            return
        memo = self._summaries.get(log_name)
        if memo is None or memo[0] != idx.ino:
            got = self._read_summary(log_name)
            memo = (got[0], got[1]) if got is not None and got[0] == idx.ino else (idx.ino, 0)
            self._summaries[log_name] = memo
        if idx.end - memo[1] < _SUMMARY_EVERY:
            return
        doc: dict[str, int] = {
            "format": SUMMARY_FORMAT,
            "ino": idx.ino,
            "end": idx.end,
            "entries": len(idx.seqs),
            "lines": idx.lines,
            "last_seq": idx.seqs[-1],
            "last_start": idx.starts[-1],
        }
        doc["crc"] = zlib.crc32(json.dumps(doc, sort_keys=True).encode("ascii"))
        # Always the same size, rewritten in place: no file to create and rename per rewrite.
        data = json.dumps(doc, sort_keys=True).ljust(_SUMMARY_SIZE - 1).encode("ascii") + b"\n"
        with contextlib.suppress(OSError, StateStoreError):
            fd = self._summary_fd(log_name)
            if fd is not None and os.pwrite(fd, data, 0) == len(data):
                self._summaries[log_name] = (idx.ino, idx.end)

    def _summary_fd(self, log_name: str) -> int | None:
        """The log's summary file, kept open for rewriting (made, folder too, if absent or deleted)."""
        key, file = "log:" + log_name, log_name + SUMMARY_SUFFIX
        got = self._delta_fds.get(key)
        if got is not None:
            if os.fstat(got.fd).st_nlink:
                return got.fd
            self._delta_fds.pop(key)  # deleted (with its folder?): open it anew
            self._close_index()
        d = self._idx_dir(create=True)
        fd = None if d is None else d.open(file, os.O_RDWR, create=True)
        if fd is None:  # the folder we kept open was deleted: make a new one
            self._close_index()
            d = self._idx_dir(create=True)
            fd = None if d is None else d.open(file, os.O_RDWR, create=True)
        if fd is None:
            return None
        handle = FileHandle(fd)
        self._delta_fds.put(key, handle)
        return handle.fd

    def _log_view(self, log: Log[Any]) -> tuple[LogIndex, int, list[TxnEntry]]:
        txn = self._txn()
        if txn is not None and txn.colls is not None:
            return txn.logs[log.name]
        if txn is not None and txn.write:
            view = txn.caught_up.get(log.name)
            if view is None:
                # Under the lock, after _begin's recovery: no journal is being applied, no writer appends.
                idx = self._catch_up_log(log, None)
                view = txn.caught_up[log.name] = (idx, len(idx.seqs), [])
            return view

        def fresh(head: Head, journal: Journal | None) -> tuple[LogIndex, int, list[TxnEntry]]:
            if journal is not None and journal.root_file(f"{log.name}.jsonl")[0]:
                # A migration rewrote the whole file and is being applied: the journal holds it all.
                return LogIndex(None), 0, self._log_overlay(log, journal)
            idx = self._catch_up_log(log, journal)
            return idx, len(idx.seqs), self._log_overlay(log, journal)

        return self._consistent(fresh)

    def _log_place(self, log_name: str) -> tuple[Dir | None, str]:
        """The folder and file name of a log: ``<root>/<log>.jsonl``, internal logs in ``.statestore/``."""
        if log_name.startswith(INTERNAL_PREFIX):
            return self._sys, log_name[len(INTERNAL_PREFIX) :] + ".jsonl"
        return self._root, f"{log_name}.jsonl"

    def _log_fd(self, log_name: str, *, create: bool = False) -> FileHandle | None:
        """A kept descriptor of the log's file (reopened if the file was replaced); None if absent.

        Only a few are kept (see ``Kept``): hold on to the handle while using
        its descriptor, and it stays open even if it is dropped meanwhile.
        """
        return self._log_handle(log_name, create=create)[0]

    def _log_handle(self, log_name: str, *, create: bool = False) -> tuple[FileHandle | None, os.stat_result | None]:
        """``_log_fd``, and the file's status when this call looked the kept one up by name (None otherwise).

        That status is the handle's file's (the same inode), taken just now:
        under the write lock, its size is the file's until we write.
        """
        txn = self._txn()
        if txn is not None and txn.write:
            checked = txn.log_handles.get(log_name)
            if checked is not None:
                # Checked once under the write lock: no writer can replace the file meanwhile.
                return checked, None
        folder, file = self._log_place(log_name)
        if folder is None:
            return None, None
        st: os.stat_result | None = None
        with self._cache_lock:
            got = self._log_fds.get(log_name)
            new: FileHandle | None = None
            if got is not None:
                with translate(self._log_path(log_name)):
                    try:
                        st = os.stat(file, dir_fd=folder.fd, follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                if st is not None and st.st_ino == got.ino:
                    new = got
                else:
                    st = None
                    self._log_fds.pop(log_name)  # closed once no thread uses it
            if new is None:
                fd = folder.open(file, os.O_RDWR if self.mode == "write" else os.O_RDONLY, create=create)
                if fd is not None:
                    with translate(self._log_path(log_name)):
                        new = FileHandle(fd)
                    self._log_fds.put(log_name, new)
        if new is not None and txn is not None and txn.write:
            txn.log_handles[log_name] = new
        return new, st

    def _log_path(self, name: str) -> Path:
        path = self._log_paths.get(name)
        if path is None:
            folder, file = self._log_place(name)
            path = self._log_paths[name] = (folder.path if folder is not None else self.path) / file
        return path

    def _all_lines(self, log: Log[Any]) -> tuple[LogIndex, int, list[TxnEntry]]:
        """The log's file index (and how much of it counts) plus journal and staged entries after it."""
        with self._cache_lock:
            idx, count, extra = self._log_view(log)
        txn = self._txn()
        if txn is not None and txn.write and txn.lines.get(log.name):
            extra = [*extra, *txn.lines[log.name]]
        return idx, count, extra

    def _rewritten(self, log: Log[Any]) -> list[RawEntry] | None:
        """The log's entries as this write transaction rewrote them (a migration), or None."""
        txn = self._txn()
        if txn is None or not txn.write:
            return None
        return txn.rewritten.get(log.name)

    def _stream_version(self, log: Log[Any], stream: str) -> int:
        txn = self._txn()
        if txn is not None and txn.write:
            rewritten = txn.rewritten.get(log.name)
            if rewritten is not None:
                return max((v for _seq, s, v, _at, _d in rewritten if s == stream), default=0)
            for entry in reversed(txn.lines.get(log.name) or ()):  # this transaction's own appends first
                if entry[1] == stream:
                    return entry[2]
        with self._cache_lock:
            idx, _count, extra = self._log_view(log)
        for entry in reversed(extra):
            if entry[1] == stream:
                return entry[2]
        return idx.versions.get(stream, 0)

    def _entry_count(self, log: Log[Any]) -> int:
        rewritten = self._rewritten(log)
        if rewritten is not None:
            return len(rewritten)
        summed = self._summary_count(log)
        if summed is None:
            summed = self._lazy_log_count(log)  # (a lazy read transaction that has not read this log)
        if summed is not None:
            return summed[0]
        _idx, count, extra = self._all_lines(log)
        return count + len(extra)

    def _last_seq(self, log: Log[Any]) -> int:
        txn = self._txn()
        if txn is not None and txn.write:
            rewritten = txn.rewritten.get(log.name)
            if rewritten is not None:
                return rewritten[-1][0] if rewritten else 0
            staged = txn.lines.get(log.name)
            if staged:
                return staged[-1][0]
        else:
            summed = self._summary_count(log) if txn is None else self._lazy_log_count(log)
            if summed is not None:
                return summed[1]
        with self._cache_lock:
            idx, count, extra = self._log_view(log)
        if extra:
            return extra[-1][0]
        return idx.seqs[count - 1] if count else 0

    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        txn = self._txn()
        assert txn is not None, "appends happen inside a transaction"
        assert txn.write, "appends happen inside a write transaction"
        rewritten = txn.rewritten.get(log.name)
        if rewritten is not None:
            # The whole file is being rewritten in this transaction: the entry joins its new text.
            seq = (rewritten[-1][0] if rewritten else 0) + 1
            txn.undo.append(("logtrim", log.name, "", (len(rewritten), len(txn.files.get(f"{log.name}.jsonl") or ""))))
            rewritten.append((seq, stream, version, at, json.loads(text)))
            txn.files[f"{log.name}.jsonl"] = (txn.files.get(f"{log.name}.jsonl") or "") + entry_line(
                seq, stream, version, at, text
            )
            return seq
        lines = txn.lines.get(log.name)
        if lines is None:
            lines = txn.lines[log.name] = []
        # After our own first append, the next seq is ours to count (no copy of the staged lines).
        seq = lines[-1][0] + 1 if lines else self._last_seq(log) + 1
        txn.undo.append(("log", log.name, "", len(lines)))
        # The record is parsed again only if this transaction reads its own append.
        lines.append((seq, stream, version, at, None, entry_line(seq, stream, version, at, text)))
        return seq

    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        rewritten = self._rewritten(log)
        if rewritten is not None:
            picked = [
                (seq, s, v, at, copy_json(d))
                for seq, s, v, at, d in rewritten
                if seq > after and (stream is None or s == stream) and (prefix is None or s.startswith(prefix))
            ]
            return picked[:limit] if limit is not None else picked
        idx, count, extra = self._all_lines(log)
        out: list[RawEntry] = []
        positions = idx.positions(stream=stream, prefix=prefix, after=after, count=count)
        if limit is not None:
            positions = positions[:limit]
        txn = self._txn()
        own = txn.logs.descriptor(log.name) if txn is not None and isinstance(txn.logs, LazyLogs) else None
        if positions:
            path = self._log_path(log.name)
            if own is not None:
                handle = None
                fd = own  # a lazy read transaction's own descriptor of the file it saw (even if since replaced)
            else:
                handle = self._log_fd(log.name)
                if handle is None:
                    raise CorruptStoreError(str(path), "log file vanished while reading")
                fd = handle.fd
            with translate(path):
                if os.fstat(fd).st_ino != idx.ino:
                    moved = self._schemas_moved() if txn is not None and not txn.write else None
                    if moved is not None:
                        # A read transaction's snapshot of a log a migration rewrote since it
                        # began (it kept no descriptor of the old file): say so, not "corrupt".
                        raise moved
                    raise CorruptStoreError(str(path), "log file replaced while reading")
                for p in positions:
                    raw = os.pread(fd, idx.ends[p] - idx.starts[p], idx.starts[p])
                    try:
                        out.append(self._parse_line(raw, path, None))
                    except CorruptStoreError:
                        # Indexed whole, changed since (by hand): name its line.
                        lineno = _line_at(fd, idx.starts[p])
                        raise damaged(path, lineno, "not a log entry (changed while open)") from None
        for seq, s, version, at, data, line in extra:
            if limit is not None and len(out) >= limit:
                break
            if seq <= after or (stream is not None and s != stream):
                continue
            if prefix is not None and not s.startswith(prefix):
                continue
            out.append((seq, s, version, at, json.loads(line)["record"] if data is None else copy_json(data)))
        return out
