"""The file backend's shared pieces: record file text, transactions, and the in-memory
views of a store (a collection's records and a log's offset index).

Both belong to one :class:`~statestore.backends.files.store.FileStore`, are guarded by its
cache lock and are kept current by it (see ``_journal`` for the change head
that says which files to re-read).
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

from statestore.backends.files.fileio import FileHandle
from statestore.backends.files.journal import Head
from statestore.codec import pretty
from statestore.query import sort_key
from statestore.schema import KeyValue
from statestore.store import INTERNAL_LOGS

__all__ = [
    "EMBED_LIMIT",
    "INTERNAL",
    "INTERNAL_NAMES",
    "INTERNAL_PREFIX",
    "MANIFEST",
    "META",
    "MISSING",
    "PRIOR_MAX",
    "ROOT",
    "Lazy",
    "LogIndex",
    "Rec",
    "Records",
    "Txn",
    "TxnEntry",
    "copy_json",
    "is_int",
    "matches",
    "note_prior",
    "owned_json",
    "paused_gc",
    "record_text",
]

INTERNAL = ".statestore"
#: statestore's own logs (``_statestore_history``…) live in ``.statestore/`` without the prefix.
INTERNAL_PREFIX = "_statestore_"
INTERNAL_NAMES = frozenset(log.name for log in INTERNAL_LOGS)
#: The store's description file in its root.
MANIFEST = "statestore.json"
#: The journal's stand-in collection name for files in the store's root (manifest, whole log files).
ROOT = "."
META = "_statestore"
#: Journals up to this size are committed inside the change head rather than as a file.
EMBED_LIMIT = 16 << 10
#: A staged log entry: (seq, stream, version, at, record dict, its JSONL line).
#: (seq, stream, version, at, record or None, line): a staged append keeps only its line until read.
TxnEntry = tuple[int, str, int, str, dict[str, Any] | None, str]

#: A record as cached: (key, revision, JSON dict).
Rec = tuple[KeyValue, int, dict[str, Any]]
_SCALARS = (str, int, float, bool, type(None))


def matches(data: dict[str, Any], where: dict[str, Any]) -> bool:
    """True if ``data`` equals ``where`` on every field (a missing field is None), as the indexes compare."""
    for field, value in where.items():
        got = data.get(field)
        if not isinstance(got, _SCALARS) or got != value or (got is None) != (value is None):
            return False
    return True


class Records:
    """A collection's records by file name, in key order, with indexes built on first use.

    ``gen`` is the change-head generation the records are current for (-1:
    never loaded); ``journal`` the id of the journal seen when they were last
    checked, and ``suspects`` the files that journal touches, whose cached
    content may predate its apply and is re-read once the journal is gone.
    """

    def __init__(self) -> None:
        self.gen = -1
        self.journal: str | None = None
        self.suspects: set[str] = set()
        self.records: dict[str, Rec] = {}
        self.keys: list[Any] = []  # sorted keys; ``names`` is parallel to it
        self.names: list[str] = []
        self.indexes: dict[str, dict[Any, set[str]]] = {}
        # Per field, built on first use: (sort key, record key, name) in the query order of the field's kind.
        self.sorted: dict[str, tuple[str, list[tuple[Any, Any, str]]]] = {}
        # Read transactions holding it as their snapshot: while any do, whoever would change it copies it first.
        self.shared = 0

    def copy(self, *, indexes: bool = False) -> Records:
        """A private, unshared copy; its indexes are copied too, or rebuilt on demand."""
        out = Records()
        out.gen, out.journal, out.suspects = self.gen, self.journal, set(self.suspects)
        out.records, out.keys, out.names = dict(self.records), list(self.keys), list(self.names)
        if indexes:
            out.indexes = {f: {v: set(ns) for v, ns in index.items()} for f, index in self.indexes.items()}
        return out

    def build(self, recs: Iterable[tuple[str, Rec]]) -> None:
        """Fill an empty cache with ``(name, record)`` pairs in any order: one sort, O(N log N).

        (Putting them one by one inserts each into the sorted lists: O(N²) for
        a folder listed in directory order.)
        """
        assert not self.records, "build fills an empty cache"
        ordered = sorted(recs, key=lambda nr: nr[1][0])
        self.records = dict(ordered)
        if len(self.records) != len(ordered):  # a name twice: the last one counts, as with put
            ordered = sorted(self.records.items(), key=lambda nr: nr[1][0])
        self.keys = [rec[0] for _name, rec in ordered]
        self.names = list(map(itemgetter(0), ordered))
        self.indexes = {}

    def put(self, name: str, rec: Rec | None) -> None:
        """Store ``rec`` under file ``name``, or forget the file when ``rec`` is None."""
        old = self.records.pop(name, None)
        if old is not None:
            i = bisect.bisect_left(self.keys, old[0])
            del self.keys[i], self.names[i]
            for field, index in self.indexes.items():
                self._unindex(index, old[2].get(field), name)
            for field, (kind, entries) in self.sorted.items():
                entry = (sort_key(kind, old[2].get(field)), old[0], name)
                del entries[bisect.bisect_left(entries, entry)]
        if rec is not None:
            self.records[name] = rec
            i = bisect.bisect_left(self.keys, rec[0])
            self.keys.insert(i, rec[0])
            self.names.insert(i, name)
            for field, index in self.indexes.items():
                value = rec[2].get(field)
                if isinstance(value, _SCALARS):
                    index.setdefault(value, set()).add(name)
            for field, (kind, entries) in self.sorted.items():
                bisect.insort(entries, (sort_key(kind, rec[2].get(field)), rec[0], name))

    def ordered(self, field: str, kind: str) -> list[tuple[Any, Any, str]]:
        """(sort key, record key, name) of every record, ordered by ``field`` (as ``kind``) then key."""
        got = self.sorted.get(field)
        if got is None or got[0] != kind:
            entries = sorted((sort_key(kind, rec[2].get(field)), rec[0], name) for name, rec in self.records.items())
            got = self.sorted[field] = (kind, entries)
        return got[1]

    @staticmethod
    def _unindex(index: dict[Any, set[str]], value: Any, name: str) -> None:
        if isinstance(value, _SCALARS):
            names = index.get(value)
            if names is not None:
                names.discard(name)
                if not names:
                    del index[value]

    def lookup(self, field: str, value: Any) -> set[str]:
        """Names of the records whose ``field`` equals the scalar ``value``."""
        index = self.indexes.get(field)
        if index is None:
            index = self.indexes[field] = {}
            for name, rec in self.records.items():
                got = rec[2].get(field)
                if isinstance(got, _SCALARS):
                    index.setdefault(got, set()).add(name)
        # Dict lookup compares as SQLite does: 1 == 1.0 == true; None matches a missing field.
        return index.get(value, set())


class LogIndex:
    """Where each complete line of a JSONL log starts and ends, with its seq, stream and version.

    ``ino`` identifies the file indexed (None: no file yet); ``end`` is the
    byte offset after the last complete line indexed.
    """

    def __init__(self, ino: int | None) -> None:
        self.ino = ino
        self.end = 0
        self.lines = 0  # lines read, blank ones included: line numbers for errors
        # The seq of the entry before ``end`` when this indexes only a file's tail (a summary's).
        self.floor: int | None = None
        self.seqs: list[int] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.streams: list[str] = []
        self.versions: dict[str, int] = {}
        self.by_stream: dict[str, list[int]] = {}

    def add(self, seq: int, stream: str, version: int, start: int, end: int) -> None:
        """Record one line (positions are list indexes, in seq order)."""
        pos = len(self.seqs)
        self.seqs.append(seq)
        self.starts.append(start)
        self.ends.append(end)
        self.streams.append(stream)
        self.versions[stream] = max(version, self.versions.get(stream, 0))
        self.by_stream.setdefault(stream, []).append(pos)
        self.end = end

    def positions(self, *, stream: str | None, prefix: str | None, after: int, count: int) -> list[int]:
        """Positions (< ``count``) of lines with seq > ``after`` in ``stream`` or under ``prefix``."""
        seqs = self.seqs
        if stream is not None:
            candidates = self.by_stream.get(stream, [])
            start = bisect.bisect_right(candidates, after, key=lambda p: seqs[p])
            return [p for p in candidates[start:] if p < count]
        start = bisect.bisect_right(seqs, after, 0, count)
        if prefix is None:
            return list(range(start, count))
        streams = self.streams
        return [p for p in range(start, count) if streams[p].startswith(prefix)]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector from running while a cache is built.

    A cache build allocates a few containers per record and frees almost
    nothing: each generation-0 collection would scan the growing cache again
    (about 0.7 s of a 100k-record load). Parsed JSON holds no cycles, so
    nothing is left for the collector to find. The collector's state is put
    back as it was (a caller that disabled it keeps it disabled).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def copy_json(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a cached record's JSON data, to hand to the caller.

    The cache's dicts are parsed JSON (exact dict, list and scalar types), so
    this copies the containers and shares the immutable scalars: ~2.5 times
    as fast as parsing the record's text again, once per record a find returns.
    """
    return {k: v if type(v) in _IMMUTABLE else _copy_value(v) for k, v in data.items()}


def _copy_value(o: Any) -> Any:
    if type(o) is dict:
        return {k: v if type(v) in _IMMUTABLE else _copy_value(v) for k, v in o.items()}
    if type(o) is list:
        return [v if type(v) in _IMMUTABLE else _copy_value(v) for v in o]
    raise TypeError(f"{type(o).__name__} is not parsed JSON")


def owned_json(data: dict[str, Any], text: str) -> dict[str, Any]:
    """A private copy of ``data``, equal to ``json.loads(text)`` (``text`` being its canonical JSON).

    Copies the containers when ``data`` holds only what JSON parsing gives
    (dicts with ``str`` keys, lists, exact scalar types), ~2.5 times faster
    than parsing; anything else (tuples, ``int`` keys, subclasses) is parsed
    from ``text``, so the result is always what reading the file gives.
    ``text == ""`` (no canonical JSON is ever empty) is the codec saying
    ``data`` is such plain JSON and private already (``Codec.encode(text=False)``,
    ``Store._canonical_text``): it is returned as it is.
    """
    if not text:
        return data
    try:
        return _strict(data)  # type: ignore[no-any-return]
    except TypeError:
        return json.loads(text)  # type: ignore[no-any-return]


def _strict(o: Any) -> Any:
    if type(o) is dict:
        out = {}
        for k, v in o.items():
            if type(k) is not str:
                raise TypeError("a key that JSON turns into text")
            out[k] = v if type(v) in _IMMUTABLE else _strict(v)
        return out
    if type(o) is list:
        return [v if type(v) in _IMMUTABLE else _strict(v) for v in o]
    raise TypeError(f"{type(o).__name__} is not parsed JSON")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Lazy:
    """``folder / name``, joined only when an error message needs it."""

    __slots__ = ("folder", "name")

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name

    def __str__(self) -> str:
        return str(self.folder / self.name)


class Txn:
    """One thread's transaction: staged writes (write mode) or a snapshot (read mode)."""

    __slots__ = (
        "caught_up",
        "colls",
        "files",
        "head",
        "head_size",
        "lines",
        "log_handles",
        "log_sizes",
        "logs",
        "prior",
        "records",
        "rewritten",
        "rmdirs",
        "savepoints",
        "shared",
        "undo",
        "write",
    )

    def __init__(self, write: bool) -> None:
        self.write = write
        self.records: dict[str, dict[str, Rec | None]] = {}
        self.lines: dict[str, list[TxnEntry]] = {}
        self.undo: list[tuple[str, str, str, Any]] = []
        self.savepoints: dict[str, int] = {}
        self.colls: dict[str, Records] | None = None
        self.shared: list[Records] = []  # caches a read transaction's snapshot shares with the store
        self.logs: dict[str, tuple[LogIndex, int, list[TxnEntry]]] = {}
        # A write transaction holds the write lock: the head and the logs it has
        # caught up with cannot change under it, so they are read once.
        self.head: Head | None = None
        self.caught_up: dict[str, tuple[LogIndex, int, list[TxnEntry]]] = {}
        # The size of the change head file as last read or written under the lock (None: unknown).
        self.head_size: int | None = None
        # Logs whose kept descriptor is known to be the file's (checked once under the lock), and
        # (inode, size) of each log file when this transaction caught up with it: no writer can
        # append meanwhile, so committing needs no second fstat.
        self.log_handles: dict[str, FileHandle] = {}
        self.log_sizes: dict[str, tuple[int, int]] = {}
        # Whole files of the root replaced (text) or deleted (None): the manifest, rewritten logs.
        self.files: dict[str, str | None] = {}
        self.rmdirs: set[str] = set()  # collection folders to remove once the transaction commits
        # Logs whose file this transaction rewrites (migrations): their entries, as the new file holds them.
        self.rewritten: dict[str, list[tuple[int, str, int, str, dict[str, Any]]]] = {}
        # Per collection, per file name: the record as committed when this write transaction read it
        # (under the lock: still the committed one at its commit), for the first PRIOR_MAX read per
        # collection (note_prior). The index upkeep compares its indexed values with the staged record's
        # (indexing.py); a record not here is simply written to the index again.
        self.prior: dict[str, dict[str, Rec]] = {}


#: Records a write transaction remembers as read, per collection (Txn.prior): a transaction reading a
#: whole collection record by record keeps only these alive for the index's sake.
PRIOR_MAX = 256


def note_prior(txn: Txn, coll_name: str, name: str, rec: Rec) -> None:
    """Remember ``rec``, just read as committed in write transaction ``txn``, in ``txn.prior`` (up to PRIOR_MAX)."""
    prior = txn.prior.get(coll_name)
    if prior is None:
        txn.prior[coll_name] = {name: rec}
    elif len(prior) < PRIOR_MAX:
        prior[name] = rec


MISSING = object()
