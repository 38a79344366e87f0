"""How the file backend keeps and uses its index files (formats in :mod:`statestore.backends.files.index`).

Writers append the collection's changes to ``<c>.delta`` after a commit
(under the write lock; a writer committing alone holds them back and writes
one line per run of its commits, readers meanwhile re-reading the files the
change head names), and rebuild ``<c>.idx`` from the
records when there is none, when it cannot be chained on, or when the delta
has grown to half of it (so a write costs O(log N) amortised). Readers
without a loaded cache answer indexed ``find``s and ``len`` from the index,
reading only the candidate record files; a process that reads many records
this way loads the cache instead (the index saves work only while queries
are few).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from statestore.backends.files.cache import INTERNAL, Rec, Records, Txn, matches, paused_gc
from statestore.backends.files.fileio import Dir, FileHandle, Kept, descriptor_budget, translate
from statestore.backends.files.index import (
    INDEX,
    Base,
    Chain,
    StaleIndex,
    build_base,
    candidates,
    delta_line,
    field_values,
    lookup_terms,
    merge,
    read_chain,
    same_values,
)
from statestore.backends.files.journal import Head, Journal
from statestore.backends.files.names import SUFFIX
from statestore.errors import StateStoreError
from statestore.schema import Collection
from statestore.store import Mode

__all__ = ["IndexFiles"]

_R = TypeVar("_R")
#: The delta is folded into a new base once it is this large and half the base.
_DELTA_MIN = 16 << 10
#: An idle collection's chain is carried forward (an empty delta line) once its tip is this many
#: generations old: well inside the 64 the change head remembers.
_IDLE_EVERY = 40
#: Record files a process reads through the index (candidates, and files changed since the index's
#: tip) before it loads the collection's cache instead.
_READ_BUDGET = 1024
#: Bytes of a base file read first: its header line (a count needs no more).
_HEADER_READ = 4096
#: A writer committing alone appends one delta line per this many of its commits.
_FLUSH_EVERY = 24


class IndexFiles:
    """Mixin of FileStore: index files for collections (see the module docstring)."""

    _root: Dir
    _sys: Dir | None
    _sync: bool
    _cache_lock: threading.RLock
    _colls: dict[str, Records]
    mode: Mode

    if TYPE_CHECKING:

        def _txn(self) -> Txn | None: ...

        def _read_head(self) -> Head: ...

        def _read_rec(self, coll: Collection[Any], name: str) -> Rec | None: ...

        def _dir(self, name: str, *, create: bool = False) -> Dir | None: ...

        def _overlay(self, coll: Collection[Any], journal: Journal | None) -> dict[str, Rec | None]: ...

        def _catch_up(self, coll: Collection[Any], head: Head, journal: Journal | None) -> Records: ...

        def _consistent(self, fn: Any) -> Any: ...

    def _reset_index_state(self) -> None:
        self._index_dir: Dir | None = None
        self._index_bases: dict[str, tuple[tuple[int, int, int], Base | None]] = {}
        # Per collection: the delta's identity when we last wrote it, its chain's tip and the base's size.
        self._index_tips: dict[str, tuple[tuple[int, int, int], int, int]] = {}
        self._delta_fds: Kept[FileHandle] = Kept(min(8, descriptor_budget()))
        self._index_reads: dict[str, int] = {}  # record files this process read through the index
        # Per collection: our last commit's generation and the changes of our commits held back since the tip.
        self._index_pending: dict[str, tuple[int, dict[str, list[str | None] | None]]] = {}
        self._lookup: dict[str, tuple[str, ...]] = {}  # per collection: its lookup fields

    def _close_index(self) -> None:
        """Close the index folder (kept deltas stay open: they are checked by their link count)."""
        if self._index_dir is not None:
            self._index_dir.close()
        self._index_dir = None

    def _idx_dir(self, *, create: bool = False) -> Dir | None:
        if self._index_dir is None and self._sys is not None:
            self._index_dir = self._sys.subdir(INDEX, create=create)
        return self._index_dir

    # ------------------------------------------------------------ reading

    def _base(self, coll: Collection[Any], d: Dir) -> tuple[Base | None, int, int]:
        """The collection's base (memoised by its file's identity; None if absent or damaged), size and inode."""
        fd = d.open(f"{coll.name}.idx", os.O_RDONLY)
        if fd is None:
            return None, 0, -1
        try:
            with translate(d.path, f"{coll.name}.idx"):
                st = os.fstat(fd)
                ident = (st.st_ino, st.st_size, st.st_mtime_ns)
                memo = self._index_bases.get(coll.name)
                if memo is not None and memo[0] == ident:
                    return memo[1], st.st_size, st.st_ino
                if st.st_size > _HEADER_READ:
                    # The header alone (a count needs nothing more); the rest when a lookup needs it.
                    start = os.pread(fd, _HEADER_READ, 0)
                    if b"\n" in start:
                        base = Base.parse(start, st.st_size, lambda: self._base_body(d, coll.name, ident))
                        self._index_bases[coll.name] = (ident, base)
                        return base, st.st_size, st.st_ino
                raw = self._read_whole(fd, st.st_size)
        finally:
            os.close(fd)
        base = Base.parse(raw)
        self._index_bases[coll.name] = (ident, base)
        return base, st.st_size, st.st_ino

    @staticmethod
    def _read_whole(fd: int, size: int) -> bytes:
        # One read of the size fstat gave (and one more to see the end): no chunks to join.
        chunks = [os.read(fd, size + 1)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
        return chunks[0] if len(chunks) == 2 else b"".join(chunks)

    def _base_body(self, d: Dir, name: str, ident: tuple[int, int, int]) -> bytes | None:
        """The whole base file of collection ``name`` if it is still the file ``ident`` names, else None."""
        fd = d.open(f"{name}.idx", os.O_RDONLY)
        if fd is None:
            return None
        try:
            with translate(d.path, f"{name}.idx"):
                st = os.fstat(fd)
                if (st.st_ino, st.st_size, st.st_mtime_ns) != ident:
                    return None
                return self._read_whole(fd, st.st_size)
        finally:
            os.close(fd)

    def _chain(self, coll: Collection[Any]) -> Chain | None:
        d = self._idx_dir()
        if d is None:
            return None
        base, _size, _ino = self._base(coll, d)
        if base is None:
            self._close_index()  # look again next time: the folder may have been deleted and made anew
            return None
        return read_chain(base, d.read(f"{coll.name}.delta"), coll.lookup_fields)

    def _index_usable(self, coll: Collection[Any]) -> bool:
        """Whether to answer from the index: no transaction, no loaded cache, few records read so far."""
        if self._txn() is not None or coll.name in self._colls or not coll.lookup_fields:
            return False
        return self._index_reads.get(coll.name, 0) < _READ_BUDGET

    def _indexed_rows(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Rec] | None:
        """The records matching ``where`` through the index, in key order; None if it cannot answer."""
        if not self._index_usable(coll):
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
            names |= dirty
            names |= overlay.keys()
            self._index_reads[coll.name] = self._index_reads.get(coll.name, 0) + len(names)
            rows = []
            for name in names:
                rec = overlay[name] if name in overlay else self._read_rec(coll, name)
                if rec is not None and matches(rec[2], wanted):
                    rows.append(rec)
            return rows

        with self._cache_lock:
            try:
                rows: list[Rec] | None = self._consistent(read)
            except StaleIndex:
                rows = None  # rebuilt by a writer since its header was read: do without it this time
        if rows is not None:
            rows.sort(key=itemgetter(0))
        return rows

    def _indexed_count(self, coll: Collection[Any]) -> int | None:
        """The number of records through the index; None if it cannot answer."""
        if not self._index_usable(coll):
            return None

        def count(head: Head, journal: Journal | None) -> int | None:
            chain = self._chain(coll)
            dirty = None if chain is None else head.changed(coll.name, chain.tip)
            if chain is None or dirty is None:
                return None
            overlay = self._overlay(coll, journal)
            d = self._dir(coll.name)
            n = chain.count()
            for name in dirty | overlay.keys():
                now = overlay[name] is not None if name in overlay else d is not None and d.exists(name)
                n += now - chain.existed(name)
            return n

        with self._cache_lock:
            try:
                result: int | None = self._consistent(count)
            except StaleIndex:
                result = None  # rebuilt by a writer since its header was read: do without it this time
        return result

    # ------------------------------------------------------------ writing

    def _index_commit(self, txn: Txn, before: Head, collections: Sequence[Collection[Any]]) -> None:
        """After a commit (still under the write lock): add its record changes to each collection's index.

        ``collections``: those with lookup fields (declared indexes or unique fields).

        Never fails the transaction, which is committed already: an index
        that cannot be written is left behind, and readers do without it.

        A run of this writer's commits held back for one delta line leaves out
        a record rewritten with the indexed values it had (an update of other
        fields): the index holds exactly what it held. Why that is sound: the
        line being built is the index as of the chain's tip plus the changes
        held back (``pending``), and every commit since the tip is this
        writer's own (``ours``) and in ``pending`` or left out this way, so by
        induction the index it describes is the indexed values of the records
        as committed at ``before``. ``txn.prior`` holds the record as
        committed at ``before`` (read under the write lock, which this
        transaction held throughout): if it existed with the same encoded
        values, the index already says so for that file. Readers meanwhile
        re-read every file the change head names since the tip, whatever
        changed in it; the index only ever narrows their search.
        """
        if self.mode != "write" or self._sys is None:
            return
        head = txn.head  # (this thread's transaction: the head its commit wrote, as _read_head gives it)
        gen = head.gen if head is not None else self._read_head().gen
        for coll in collections:
            name = coll.name
            staged = txn.records.get(name) or {}
            if name in txn.rmdirs:  # (every one given has lookup fields: see FileStore._commit)
                continue
            memo = self._index_tips.get(name)
            # The chain must not fall out of the window of generations the head remembers, or
            # readers could no longer use it.
            pending = self._index_pending.get(name)
            # An idle collection's line is carried forward well before the head forgets its tip; held-back
            # changes are written every _FLUSH_EVERY generations (readers re-read those files meanwhile).
            limit = _FLUSH_EVERY if pending is not None or staged else _IDLE_EVERY
            fresh = memo is not None and memo[1] >= before.base and gen - memo[1] < limit
            # No other writer committed since our last commit (held back, or written as the tip):
            last = pending[0] if pending is not None else memo[1] if memo is not None else None
            ours = last == before.gen
            if fresh and (ours or (pending is None and not staged)):
                if staged:
                    fields = self._lookup.get(name)
                    if fields is None:
                        fields = self._lookup[name] = coll.lookup_fields  # (a property that builds a tuple)
                    # Held back: readers re-read what the head says changed since the chain's tip,
                    # so appending one line for a run of our commits loses nothing.
                    changes = pending[1] if pending is not None else {}
                    prior = txn.prior.get(name)
                    for file, rec in staged.items():
                        if rec is None:
                            changes[file] = None
                            continue
                        if prior is not None and file not in changes:
                            old = prior.get(file)
                            if old is not None and same_values(old[2], rec[2], fields):
                                continue  # rewritten with the values the index holds: nothing to add
                        changes[file] = field_values(rec[2], fields)
                    self._index_pending[name] = (gen, changes)
                elif pending is not None:
                    self._index_pending[name] = (gen, pending[1])
                continue
            self._index_pending.pop(name, None)
            known = pending[1] if pending is not None and ours else {}
            # Every commit since the chain's tip was ours (held back in ``known``, or none): no other name changed.
            alone_since = memo[1] if ours and memo is not None else None
            with contextlib.suppress(OSError, StateStoreError, StaleIndex):
                self._index_one(coll, staged, before, gen, known, alone_since, prior_of=txn.prior)
        for name in txn.rmdirs:
            d = self._idx_dir()
            if d is not None:
                with contextlib.suppress(OSError, StateStoreError):
                    d.remove(f"{name}.idx")
                    d.remove(f"{name}.delta")

    def _delta(self, coll: Collection[Any]) -> tuple[Dir, FileHandle, os.stat_result] | None:
        """The collection's delta, kept open for appending, with its stat; made (folder too) if absent."""
        delta = f"{coll.name}.delta"
        got = self._delta_fds.get(coll.name)
        d = self._idx_dir(create=True)
        if got is not None and d is not None:
            with translate(d.path, delta):
                st = os.fstat(got.fd)
            if st.st_nlink:
                return d, got, st
            self._delta_fds.pop(coll.name)  # deleted (with its folder?): open it anew
            self._close_index()
            d = self._idx_dir(create=True)
        fd = None if d is None else d.open(delta, os.O_RDWR | os.O_APPEND, create=True)
        if fd is None:  # the folder we kept open was deleted: make a new one
            self._close_index()
            d = self._idx_dir(create=True)
            fd = None if d is None else d.open(delta, os.O_RDWR | os.O_APPEND, create=True)
        if d is None or fd is None:
            return None
        handle = FileHandle(fd)
        self._delta_fds.put(coll.name, handle)
        with translate(d.path, delta):
            return d, handle, os.fstat(fd)

    def _index_one(
        self,
        coll: Collection[Any],
        staged: Mapping[str, Rec | None],
        before: Head,
        gen: int,
        known: Mapping[str, list[str | None] | None],
        alone_since: int | None = None,
        *,
        prior_of: Mapping[str, Mapping[str, Rec]] | None = None,
    ) -> None:
        """Append the line from the chain's tip to ``gen``; ``known``: values of files as of ``before``.

        ``alone_since``: the tip this process wrote last, when every commit since
        it is this process's own, its changes all in ``known`` and ``staged``.
        If the chain's tip is still that one (and the head still remembers it),
        the files changed since are those, and the head's history is not read.

        ``prior_of``: per collection, records as committed at ``before`` (``Txn.prior``).
        A staged record that no commit since the tip changed (not among the files
        changed since it) and that keeps the indexed values it had at ``before``
        keeps the ones the chain holds for it: the line leaves it out.
        """
        fields = coll.lookup_fields
        opened = self._delta(coll)
        if opened is None:
            return
        d, handle, st = opened
        fd = handle.fd
        with translate(d.path, f"{coll.name}.delta"):
            # Only writers holding the lock change the delta; a rebuild by another process
            # truncates and appends to it, which moves its size or time.
            ident = (st.st_ino, st.st_size, st.st_mtime_ns)
            memo = self._index_tips.get(coll.name)
            tip: int | None
            if memo is not None and memo[0] == ident:
                tip, base_size = memo[1], memo[2]
            else:
                base, base_size, _ino = self._base(coll, d)
                raw = os.pread(fd, st.st_size, 0) if st.st_size else b""
                if raw and not raw.endswith(b"\n"):
                    os.ftruncate(fd, raw.rfind(b"\n") + 1)  # a torn line a killed writer left
                chain = read_chain(base, raw, fields)
                tip = None if chain is None else chain.tip
            # The files whose indexed values may have changed after the tip up to ``before``.
            extra: set[str] | None
            if tip is not None and tip == alone_since and before.base <= tip <= before.gen:
                extra = set(known)
            else:
                extra = None if tip is None else before.changed(coll.name, tip)
            if tip is None or extra is None:
                self._rebuild(coll, d, fd)
                return
            changes: dict[str, list[str | None] | None] = {}
            for name in extra - staged.keys():
                if name in known:
                    changes[name] = known[name]
                else:
                    rec = self._read_rec(coll, name)
                    changes[name] = None if rec is None else field_values(rec[2], fields)
            prior = prior_of.get(coll.name) if prior_of is not None else None
            for name, rec in staged.items():
                if rec is not None and prior is not None and name not in extra:
                    # Unchanged since the tip up to ``before``, where it was ``prior[name]`` (if there).
                    old = prior.get(name)
                    if old is not None and same_values(old[2], rec[2], fields):
                        continue
                changes[name] = None if rec is None else field_values(rec[2], fields)
            line = delta_line(tip, gen, fields, changes)
            if os.write(fd, line) != len(line):
                raise OSError("short write to the index delta")
            size = st.st_size + len(line)
            if size > _DELTA_MIN and size * 2 > base_size:
                self._compact(coll, d, fd, gen)
                return
            st = os.fstat(fd)
            self._index_tips[coll.name] = ((st.st_ino, st.st_size, st.st_mtime_ns), gen, base_size)

    def _compact(self, coll: Collection[Any], d: Dir, delta_fd: int, gen: int) -> None:
        """Fold the delta into a new base (from the index's own lines), then empty the delta."""
        base, _size, _ino = self._base(coll, d)
        chain = read_chain(base, os.pread(delta_fd, os.fstat(delta_fd).st_size, 0), coll.lookup_fields)
        if chain is None or chain.tip != gen:
            self._rebuild(coll, d, delta_fd)  # not what we just wrote: start again from the records
            return
        d.write(f"{coll.name}.idx", merge(chain, gen), sync=False)
        os.ftruncate(delta_fd, 0)
        self._index_tips.pop(coll.name, None)

    def _rebuild(self, coll: Collection[Any], d: Dir, delta_fd: int) -> None:
        """Write a new base from the records as committed, then empty the delta.

        From the cache if this process has it loaded; otherwise from the record
        files, without loading the cache (a loaded cache makes every later
        point read and write of this process go through it).
        """
        with self._cache_lock:
            head = self._read_head()
            if coll.name in self._colls:
                cache = self._catch_up(coll, head, None)
                recs = [(n, r[2]) for n, r in cache.records.items()]
            else:
                recs = []
                folder = self._dir(coll.name)
                with paused_gc():
                    for name in folder.names() if folder is not None else ():
                        if not name.startswith(".") and name.endswith(SUFFIX):
                            rec = self._read_rec(coll, name)
                            if rec is not None:
                                recs.append((name, rec[2]))
            data = build_base(head.gen, coll.lookup_fields, recs)
        d.write(f"{coll.name}.idx", data, sync=False)
        # Lines up to the new base's generation are skipped by readers: emptying is tidiness, not safety.
        os.ftruncate(delta_fd, 0)
        self._index_tips.pop(coll.name, None)


def index_dir_name() -> str:
    """Where the index files are, relative to the store's root."""
    return f"{INTERNAL}/{INDEX}"
