"""The file backend's record reads, staged writes and queries (a FileStore mixin).

A record is read, in order of preference, from this thread's staged
transaction, its read transaction's view, the collection's cache, or its
own file. ``_query`` answers declared index and unique fields through the
cache's indexes (:class:`~statestore.backends.files.cache.Records`); a
fresh process answers indexed lookups from the index files instead
(:mod:`statestore.backends.files.indexing`).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterator, Mapping
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statestore.backends.files import names as keynames
from statestore.backends.files.cache import META, Rec, Records, Txn, copy_json, matches, note_prior, owned_json
from statestore.backends.files.cache import Lazy as LazyPath
from statestore.backends.files.decoding import one_pass
from statestore.backends.files.fileio import Dir
from statestore.backends.files.journal import Head, Journal
from statestore.backends.files.versions import Lazy, LazyColls
from statestore.codec import Codec
from statestore.errors import CorruptStoreError, ValidationError
from statestore.query import Query, Term, prefix_end, sort_key
from statestore.schema import Collection, KeyValue
from statestore.store import RawRecord
from statestore.strict.counted import Counted

__all__ = ["RecordAccess"]


class RecordAccess:
    """Record reads, staged writes and queries for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    path: Path
    codec: Codec
    _cache_lock: threading.RLock
    _colls: dict[str, Records]

    if TYPE_CHECKING:

        def _txn(self) -> Txn | None: ...

        def _stage(self, coll: Collection[Any], name: str, rec: Rec | None) -> None: ...

        def _read_head(self) -> Head: ...

        def _journal(self, head: Head) -> Journal | None: ...

        def _check_moved(self, head: Head) -> None: ...

        def _read_rec(self, coll: Collection[Any], name: str, key: KeyValue | None = None) -> Rec | None: ...

        def _dir(self, name: str, *, create: bool = False) -> Dir | None: ...

        def _missing_folder(self) -> None: ...

        def _parse(
            self,
            coll: Collection[Any],
            name: str,
            raw: bytes | str,
            path: Path | LazyPath,
            expected: KeyValue | None = None,
        ) -> Rec: ...

        def _overlay(self, coll: Collection[Any], journal: Journal | None) -> dict[str, Rec | None]: ...

        def _coll_view(self, coll: Collection[Any]) -> tuple[Records, Mapping[str, Rec | None]]: ...

        def _lazy_point(self, coll: Collection[Any], name: str, lazy: Lazy) -> Rec | None: ...

        def _lazy_rows(self, coll: Collection[Any], where: Mapping[str, Any], lazy: Lazy) -> list[Rec] | None: ...

        def _lazy_count(self, coll: Collection[Any], lazy: Lazy) -> int | None: ...

        def _indexed_rows(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Rec] | None: ...

        def _indexed_count(self, coll: Collection[Any]) -> int | None: ...

    def _point(self, coll: Collection[Any], key: KeyValue, name: str | None = None) -> Rec | None:
        """The record of ``key`` as this thread sees it (``name``: its file name, if known); None if absent."""
        return self._locate(coll, key, name, None)[0]

    def _locate(
        self, coll: Collection[Any], key: KeyValue, name: str | None, counted: Counted | None
    ) -> tuple[Rec | None, Any]:
        """``_point``, and the record structured when read from its file with ``counted`` given (else None).

        ``counted``: the codec's counting structurer of ``coll.type``; a record
        read from its own file goes through :func:`~statestore.backends.files.decoding.one_pass`
        (the same answer and errors as ``_read_rec`` then ``codec.decode``).
        """
        if name is None:
            name = keynames.encode(key)
        obj = None
        txn = self._txn()
        if txn is not None and txn.write and name in txn.records.get(coll.name, {}):
            rec = txn.records[coll.name][name]
        elif txn is not None and txn.colls is not None:
            colls = txn.colls
            if isinstance(colls, LazyColls) and coll.name not in colls:
                rec = self._lazy_point(coll, name, colls.lazy)  # one file, not the whole collection
            else:
                rec = colls[coll.name].records.get(name)
        elif coll.name in self._colls:
            with self._cache_lock:
                cache, changes = self._coll_view(coll)
                if name in changes:
                    rec = changes[name]
                else:
                    rec = cache.records.get(name)
                    if rec is not None and txn is not None and txn.write:
                        note_prior(txn, coll.name, name, rec)
        else:
            # A lone record needs no seqlock: each file (and the journal) is replaced atomically.
            head = self._read_head()
            self._check_moved(head)
            if head.journal is None and not head.journal_file:
                # (no journal: nothing to overlay)
                if counted is None:
                    rec = self._read_rec(coll, name, key)
                else:
                    rec, obj = self._read_decoded(coll, name, key, counted)
            else:
                overlay = self._overlay(coll, self._journal(head))
                rec = overlay[name] if name in overlay else self._read_rec(coll, name, key)
            if rec is not None and txn is not None and txn.write:
                note_prior(txn, coll.name, name, rec)
        if rec is not None and rec[0] != key:
            raise CorruptStoreError(str(self.path / coll.name / name), f"holds key {rec[0]!r}, not {key!r}")
        return rec, obj

    def _read_decoded(
        self, coll: Collection[Any], name: str, key: KeyValue, counted: Counted
    ) -> tuple[Rec | None, Any]:
        """``_read_rec`` of the file of ``key``, and the record structured in the same pass where it can be.

        (record, structured record or None): None when :func:`one_pass` cannot
        prove the strict answer; the record then comes from ``_read_rec``'s
        own parse of the same bytes (which raises what it finds).
        """
        d = self._dir(coll.name)
        if d is None:
            self._missing_folder()
            return None, None
        raw = d.read(name)
        if raw is None:
            return None, None
        got = one_pass(coll, name, raw, key, counted)
        if got is not None:
            return got
        return self._parse(coll, name, raw, LazyPath(d.path, name), key), None

    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        rec = self._point(coll, key)
        if rec is None:
            return None
        return rec[1], _copy_json(rec[2]) if copy else rec[2]

    def _get_decoded(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, Any] | None:
        """``_get`` then ``codec.decode``; a record read from its own file in one pass (``_read_decoded``).

        The same answer and errors as the two steps: damage is a
        CorruptStoreError naming the file, a record that does not fit its class
        a ValidationError. ``copy`` is as for ``_get`` where the record comes from
        elsewhere (a transaction, a cache): a record decoded in one pass is new.
        """
        codec = self.codec
        rec, obj = self._locate(coll, key, None, codec.counted(coll.type))
        if rec is None:
            return None
        if obj is None:
            obj = codec.decode(coll.name, coll.type, _copy_json(rec[2]) if copy else rec[2], key)
        return rec[1], obj

    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        rec = self._point(coll, key)
        return None if rec is None else rec[1]

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        if META in data:
            raise ValidationError(coll.name, key, f"$.{META}", "this field name is reserved by the file backend")
        self._stage(coll, keynames.encode(key), (key, revision, owned_json(data, text)))

    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        if self._point(coll, key) is None:
            return False
        self._stage(coll, keynames.encode(key), None)
        return True

    def _rows(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Rec]:
        txn = self._txn()
        if where and txn is not None and isinstance(txn.colls, LazyColls) and coll.name not in txn.colls:
            lazily = self._lazy_rows(coll, where, txn.colls.lazy)  # the candidates only, as of the start
            if lazily is not None:
                return lazily
        if where and coll.name not in self._colls:
            indexed = self._indexed_rows(coll, where)  # a fresh process: read only the candidates
            if indexed is not None:
                return indexed
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
            rows.sort(key=itemgetter(0))
        return rows

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        if not copy:
            return list(self._rows(coll, where))
        return [(key, rev, _copy_json(data)) for key, rev, data in self._rows(coll, where)]

    def _query(self, coll: Collection[Any], query: Query, *, copy: bool = True) -> list[RawRecord]:
        """Declared index and unique fields answer through the cache's indexes; other fields scan.

        Equality and one_of use the value index, ranges and prefix the
        ordered index (bisected); an order by an indexed field with a limit
        walks that index and stops once the rest cannot come earlier. Every
        candidate is then checked and ordered exactly (Query.apply).
        """
        lookup = coll.lookup_fields
        need = query.need
        with self._cache_lock:
            cache, changes = self._coll_view(coll)
            first = query.order[0] if query.order else None
            if not changes and first is not None and first.field in lookup and need is not None:
                # Walk the ordered index of the first order field (within any range on it)
                # and stop once every later record comes after the ones kept.
                entries = cache.ordered(first.field, first.kind)
                lo, hi = 0, len(entries)
                for term in query.terms:
                    if term.field == first.field and term.op in _RANGES:
                        t_lo, t_hi = _bounds(entries, term)
                        lo, hi = max(lo, t_lo), min(hi, t_hi)
                resume = None  # where iter's next batch starts inside its first group of ties
                if query.after is not None:
                    sk = sort_key(first.kind, query.after[0][0])
                    if first.descending:
                        hi = min(hi, bisect.bisect_right(entries, sk, key=itemgetter(0)))
                    else:
                        lo = max(lo, bisect.bisect_left(entries, sk, key=itemgetter(0)))
                    if len(query.order) == 1:  # ties go on by key: skip the ones returned
                        resume = bisect.bisect_right(entries, (sk, query.after[1]), key=_value_and_key)
                        if not first.descending:
                            lo, resume = max(lo, resume), None
                        elif not (lo < hi and entries[hi - 1][0] == sk):
                            resume = None  # no ties of the last value left: nothing to skip
                kept: list[Rec] = []
                bound: Any = None
                for i in _walk(entries, lo, hi, first.descending, resume):
                    sk, _key, name = entries[i]
                    if len(kept) >= need and sk != bound:
                        break
                    rec = cache.records[name]
                    if query.admits(rec[0], rec[2]):
                        kept.append(rec)
                        if len(kept) == need:
                            bound = sk
                rows = query.window(query.sort(kept))
            else:
                names: set[str] | None = None
                for term in query.terms:
                    if term.field in lookup:
                        found = _index_names(cache, term)
                        if found is not None:
                            names = found if names is None else names & found
                pool: Any = cache.names if names is None else names
                if names is None and not query.order and query.after is not None:
                    pool = cache.names[bisect.bisect_right(cache.keys, query.after[1]) :]  # iter's next batch
                rows = [cache.records[n] for n in pool if n not in changes]
                rows.extend(r for r in changes.values() if r is not None)
                if names is not None or changes:
                    rows.sort(key=itemgetter(0))
                rows = query.apply(rows)
        if not copy:
            return list(rows)
        return [(key, rev, _copy_json(data)) for key, rev, data in rows]

    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        return [r[0] for r in self._rows(coll, {})]

    def _count(self, coll: Collection[Any]) -> int:
        txn = self._txn()
        if txn is not None and isinstance(txn.colls, LazyColls) and coll.name not in txn.colls:
            counted = self._lazy_count(coll, txn.colls.lazy)
            if counted is not None:
                return counted
        if coll.name not in self._colls:
            counted = self._indexed_count(coll)
            if counted is not None:
                return counted
        with self._cache_lock:
            cache, changes = self._coll_view(coll)
            if not changes:
                return len(cache.records)
        return len(self._rows(coll, {}))


def _index_names(cache: Records, term: Term) -> set[str] | None:
    """Names of the records that may meet ``term``, from the cache's indexes (None: no index helps)."""
    op, value = term.op, term.value
    if op in ("eq", "in"):
        values = [value] if op == "eq" else list(value)
        if not all(v is None or type(v) in (str, int, float, bool) for v in values):
            return None
        out: set[str] = set()
        for v in values:
            out |= cache.lookup(term.field, v)
        return out
    if op not in _RANGES:
        return None
    entries = cache.ordered(term.field, term.kind)
    lo, hi = _bounds(entries, term)
    return {name for _sk, _key, name in entries[lo:hi]}


_RANGES = ("gt", "ge", "lt", "le", "prefix")


def _value_and_key(entry: tuple[Any, Any, str]) -> tuple[Any, Any]:
    return entry[0], entry[1]


def _walk(entries: list[tuple[Any, Any, str]], lo: int, hi: int, descending: bool, resume: int | None) -> Iterator[int]:
    """Positions of ``entries[lo:hi]`` in query order: by value (descending if asked), ties by key ascending.

    ``resume`` skips the start of the first group of ties walked (descending: the top one).
    """
    if not descending:
        yield from range(lo, hi)
        return
    end = hi
    while end > lo:
        start = max(lo, bisect.bisect_left(entries, entries[end - 1][0], lo, end, key=itemgetter(0)))
        yield from range(max(start, resume) if resume is not None else start, end)
        resume = None
        end = start


def _bounds(entries: list[tuple[Any, Any, str]], term: Term) -> tuple[int, int]:
    """The slice of an ordered index (see ``Records.ordered``) holding every record that may meet a range term."""
    op, value = term.op, term.value
    first = itemgetter(0)
    rank = 4 if op == "prefix" else sort_key(term.kind, value)[0]
    lo, hi = bisect.bisect_left(entries, (rank,), key=first), bisect.bisect_left(entries, (rank + 1,), key=first)
    if op == "prefix":
        lo = bisect.bisect_left(entries, (4, value), key=first)
        end = prefix_end(value)
        if end is not None:
            hi = bisect.bisect_left(entries, (4, end), key=first)
        return lo, hi
    sk = sort_key(term.kind, value)
    if op == "gt":
        lo = bisect.bisect_right(entries, sk, key=first)
    elif op == "ge":
        lo = bisect.bisect_left(entries, sk, key=first)
    elif op == "lt":
        hi = bisect.bisect_left(entries, sk, key=first)
    else:
        hi = bisect.bisect_right(entries, sk, key=first)
    return lo, hi


def _copy_json(data: dict[str, Any]) -> dict[str, Any]:
    """``copy_json``, also for data nested deeper than its two Python frames per level allow.

    Whatever the JSON decoder read (up to ~1,000 levels: deeper is a
    CorruptStoreError when read) copies through the C encoder and decoder,
    which need one level of the recursion limit per level of nesting.
    """
    try:
        return copy_json(data)
    except RecursionError:
        copied: dict[str, Any] = json.loads(json.dumps(data, ensure_ascii=False))
        return copied
