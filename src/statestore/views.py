"""Typed access to a store: :class:`CollectionView` (``store[COLLECTION]``) and :class:`LogView` (``store[LOG]``).

The views are the shared layer's public face: they validate keys and
streams, convert records with the store's codec, enforce compare-and-swap,
unique fields and stream versions, and build ``update``, ``replace_all``,
``find`` on any field and ``follow`` from the backend primitives of
:class:`~statestore.store.Store`, once for every backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from statestore.errors import (
    LAST_REVISION,
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    RevisionLimitError,
    StreamConflictError,
    StreamVersionLimitError,
    UniqueViolationError,
    ValidationError,
)
from statestore.query import Condition, Order, Query, Term, field_kind, same_value
from statestore.schema import Collection, KeyValue, Log, check_key, check_text

if TYPE_CHECKING:
    from statestore.store import RawRecord, Store

__all__ = ["CollectionView", "Entry", "ImportRecord", "LogView", "Reject", "Versioned"]

T = TypeVar("T")

_SCALARS = (str, int, float, bool, type(None))
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@attrs.frozen
class Versioned(Generic[T]):
    """A record together with its revision (1 for a new key, +1 per write)."""

    record: T
    revision: int


@attrs.frozen
class Entry(Generic[T]):
    """One log entry.

    ``seq`` increases across the whole log, ``version`` is 1, 2, 3... within its
    stream, ``at`` is the UTC time of the append.
    """

    seq: int
    stream: str
    version: int
    at: datetime
    record: T


class CollectionView(Generic[T]):
    """Typed access to one collection of a store (``store[COLLECTION]``)."""

    #: The key's type when it is one field (the fast path of ``_key``); None: the general checks.
    _single: type | None = None
    _key_attr: str | None = None

    def __init__(self, store: Store, decl: Collection[T]) -> None:
        self.store = store
        self.decl = decl
        self._key_types = tuple(decl.field_types[f] for f in decl.key_fields)
        self._single: type | None = None if decl.composite else self._key_types[0]
        # The attribute holding the key (what decl.key_of reads) when it is one field of a class, not a dict.
        self._key_attr: str | None = (
            decl.key_fields[0]
            if self._single is not None and isinstance(decl.type, type) and not issubclass(decl.type, dict)
            else None
        )
        # Decoding builds every mutable part anew: a backend's cached JSON need not be copied first.
        self._fresh = store.codec.fresh(decl.type)
        self._kinds: dict[str, str] = {}

    # -------------------------------------------------------------- keys

    def _key(self, key: object) -> KeyValue:
        """Validate a key given by the caller; raise ValidationError if it cannot be one."""
        # The common case first, answered as the loop below would: a str key of ASCII text, an int of 64 bits.
        single = self._single
        if single is not None and type(key) is single:
            if single is str:
                if key.isascii():  # type: ignore[attr-defined]
                    return key  # type: ignore[return-value]
            elif _INT64_MIN <= key <= _INT64_MAX:  # type: ignore[operator]
                return key  # type: ignore[return-value]
        return check_key(self.decl, self._key_types, key)

    def _encode(self, record: T) -> tuple[KeyValue, dict[str, Any], str]:
        decl = self.decl
        if type(record) is not decl.type and not isinstance(record, decl.type):
            raise ValidationError(decl.name, None, "", f"expected a {decl.type.__name__}, got {type(record).__name__}")
        key = self._key(decl.key_of(record))
        store = self.store
        data, text = store.codec.encode(decl.name, decl.type, record, key, text=store._canonical_text)
        return key, data, text

    def _decode(self, key: KeyValue, data: dict[str, Any]) -> T:
        result: T = self.store.codec.decode(self.decl.name, self.decl.type, data, key)
        return result

    # -------------------------------------------------------------- writes

    def _store(self, key: KeyValue, data: dict[str, Any], text: str, current: int | None) -> int:
        """Write inside an open transaction after checking unique constraints."""
        for group in self.decl.unique:
            values = tuple(data.get(f) for f in group)
            if any(v is None for v in values):
                continue
            for other, _rev, _data in self._match(dict(zip(group, values)), copy=False):
                if other != key:
                    raise UniqueViolationError(
                        self.decl.name,
                        key,
                        0,
                        0,
                        fields=group,
                        value=values if len(values) > 1 else values[0],
                        existing_key=other,
                    )
        if current is not None and current >= LAST_REVISION:
            raise RevisionLimitError(self.decl.name, key, current)
        revision = (current or 0) + 1
        self.store._write(self.decl, key, revision, data, text)
        return revision

    def insert(self, record: T) -> int:
        """Add a new record and return its revision (1).

        Raises AlreadyExistsError if its key is stored, UniqueViolationError if
        it clashes on a unique field.
        """
        key, data, text = self._encode(record)
        if not self.decl.unique and self.store._write_alone(self.decl, key, data, text, replace=False):
            return 1  # one step, outside any transaction (a backend that can; see Store._write_alone)
        with self.store._writing("insert", single=True):
            if not self.decl.unique:
                current = self.store._add(self.decl, key, data, text)  # one step where the backend can
                if current is not None:
                    raise AlreadyExistsError(self.decl.name, key, 0, current)
                return 1
            current = self.store._revision(self.decl, key)
            if current is not None:
                raise AlreadyExistsError(self.decl.name, key, 0, current)
            return self._store(key, data, text, None)

    def put(self, record: T, *, expect_revision: int | None = None) -> int:
        """Insert or replace a record; return its new revision.

        With ``expect_revision=N`` the write happens only if the stored revision
        is N (``0`` means "only if absent"); otherwise ConflictError, and
        nothing is written. Revisions restart at 1 after a delete.
        """
        key, data, text = self._encode(record)
        if expect_revision is None and not self.decl.unique:
            revision = self.store._write_alone(self.decl, key, data, text, replace=True)
            if revision is not None:
                return revision
        with self.store._writing("put", single=True):
            current = self.store._revision(self.decl, key)
            if expect_revision is not None and (current or 0) != expect_revision:
                raise ConflictError(self.decl.name, key, expect_revision, current or 0)
            return self._store(key, data, text, current)

    def update(self, key: KeyValue, fn: Callable[[T], T | None]) -> T:
        """Atomically read, change and write one record; return the new record.

        ``fn`` gets the stored record and returns the new one (or returns None
        after changing it in place). It runs once, inside a write transaction,
        so no other process can write in between. NotFoundError if the key is
        absent; ValidationError if ``fn`` changes the key. An exception from
        ``fn`` propagates and nothing is written.
        """
        key = self._key(key)
        store, decl = self.store, self.decl
        depth = store._open_write("update")  # ``with store._writing("update"):``, without its object
        try:
            got = store._get_decoded(decl, key, copy=not self._fresh)
            if got is None:
                raise NotFoundError(decl.name, key)
            revision, record = got
            result = fn(record)
            new = record if result is None else result
            attr = self._key_attr
            if (
                attr is not None
                and type(new) is decl.type
                and type(new_key := getattr(new, attr)) is self._single
                and new_key == key
            ):
                # The key is the one checked above (same type, equal): _encode's own checks of it
                # would pass, so only the record is encoded.
                new_data, text = store.codec.encode(decl.name, decl.type, new, key, text=store._canonical_text)
            else:
                new_key, new_data, text = self._encode(new)
                if new_key != key:
                    raise ValidationError(decl.name, key, "", f"update cannot change the key (to {new_key!r})")
            if decl.unique:
                self._store(key, new_data, text, revision)
            elif revision >= LAST_REVISION:  # what _store checks, when there is no unique field to check first
                raise RevisionLimitError(decl.name, key, revision)
            else:
                store._write(decl, key, revision + 1, new_data, text)
        except BaseException:
            store._close_block(depth, True)  # (not single: a block was opened, _close_write's check not needed)
            raise
        store._close_block(depth, False)
        return new

    def delete(self, key: KeyValue) -> bool:
        """Delete a record; True if it existed, False if there was nothing to delete."""
        key = self._key(key)
        with self.store._writing("delete", single=True):
            return self.store._remove(self.decl, key)

    def replace_all(self, records: Iterable[T]) -> None:
        """Make the collection hold exactly ``records``, atomically.

        Records that are kept get their revision raised by one, new ones start
        at 1, the rest are deleted. Two records with the same key raise
        ValidationError and nothing changes.
        """
        encoded: dict[KeyValue, tuple[dict[str, Any], str]] = {}
        for record in records:
            key, data, text = self._encode(record)
            if key in encoded:
                raise ValidationError(self.decl.name, key, "", "replace_all got two records with this key")
            encoded[key] = (data, text)
        with self.store._writing("replace_all"):
            old = {key: rev for key, rev, _ in self.store._scan(self.decl, {}, copy=False)}
            # Remove everything first: records may swap unique values between them.
            for key in old:
                self.store._remove(self.decl, key)
            for key, (data, text) in encoded.items():
                self._store(key, data, text, old.get(key))

    # -------------------------------------------------------------- reads

    def get(self, key: KeyValue) -> T | None:
        """The record with this key, or None."""
        key = self._key(key)
        self.store._reading(self.decl.name)
        got = self.store._get_decoded(self.decl, key, copy=not self._fresh)  # no Versioned to build and drop
        return None if got is None else got[1]

    def __getitem__(self, key: KeyValue) -> T:
        """The record with this key; NotFoundError (a KeyError) if absent."""
        got = self.get_versioned(key)
        if got is None:
            raise NotFoundError(self.decl.name, key)
        return got.record

    def get_versioned(self, key: KeyValue) -> Versioned[T] | None:
        """The record and its revision, or None."""
        key = self._key(key)
        self.store._reading(self.decl.name)
        got = self.store._get_decoded(self.decl, key, copy=not self._fresh)
        if got is None:
            return None
        return Versioned(got[1], got[0])

    def _match(self, where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        """Raw records whose JSON fields equal ``where``, using indexes where declared."""
        lookup = self.decl.lookup_fields
        indexed = {f: v for f, v in where.items() if f in lookup and isinstance(v, _SCALARS)}
        # An index may hold true and 1 alike (SQLite's): a bool or a number it found is checked again.
        rest = {f: v for f, v in where.items() if f not in indexed or isinstance(v, (bool, int, float))}
        rows = self.store._scan(self.decl, indexed, copy=copy)
        if rest:
            # A field missing from a stored record compares as null, as the indexes do.
            rows = [r for r in rows if all(same_value(r[2].get(f), v) for f, v in rest.items())]
        return rows

    def _kind(self, name: str) -> str:
        kind = self._kinds.get(name)
        if kind is None:
            decl = self.decl
            described = getattr(decl, "_description", None)
            type_name = described.get("fields", {}).get(name) if isinstance(described, dict) else None
            strict = not getattr(self.store.codec, "_own_hooks", False)
            kind = self._kinds[name] = field_kind(
                decl.field_types[name], type_name if isinstance(type_name, str) else None, strict=strict
            )
        return kind

    def _field(self, name: str) -> Any:
        decl = self.decl
        if name not in decl.field_types:
            raise ValidationError(decl.name, None, f"$.{name}", f"{decl.type.__name__} has no field {name!r}")
        return decl.field_types[name]

    def _query(
        self, where: Mapping[str, Any], order_by: str | Sequence[str] | None, limit: object, offset: object
    ) -> Query:
        """Check the arguments of find/count/iter and build the backend's Query (ValidationError if wrong)."""
        decl, codec = self.decl, self.store.codec
        terms: list[Term] = []
        for name, value in where.items():
            tp = self._field(name)
            kind = self._kind(name)
            if not isinstance(value, Condition):
                terms.append(Term(name, "eq", codec.value(decl.name, name, tp, value), kind))
                continue
            op = value.op
            if op == "in":
                operand: Any = tuple(codec.value(decl.name, name, tp, v) for v in value.value)
            elif op == "prefix":
                if not isinstance(value.value, str):
                    raise ValidationError(
                        decl.name, None, f"$.{name}", f"prefix takes a str, not {type(value.value).__name__}"
                    )
                if kind not in ("str", "other"):
                    raise ValidationError(decl.name, None, f"$.{name}", "prefix() is for str fields")
                check_text(value.value, decl.name, None, f"$.{name}")
                operand = value.value
            else:
                if value.value is None and op != "ne":
                    raise ValidationError(decl.name, None, f"$.{name}", f"{op}(None) compares nothing")
                operand = codec.value(decl.name, name, tp, value.value)
            terms.append(Term(name, op, operand, kind))
        order: list[Order] = []
        fields = [order_by] if isinstance(order_by, str) else list(order_by or ())
        for item in fields:
            if not isinstance(item, str) or not item.lstrip("-"):
                raise ValidationError(decl.name, None, "order_by", f"order_by takes field names, not {item!r}")
            name = item[1:] if item.startswith("-") else item
            self._field(name)
            order.append(Order(name, item.startswith("-"), self._kind(name)))
        for what, number in (("limit", limit), ("offset", offset)):
            if number is None and what == "limit":
                continue
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValidationError(decl.name, None, what, f"{what} must be an int >= 0, not {number!r}")
        return Query(tuple(terms), tuple(order), limit, offset)  # type: ignore[arg-type]  # checked above

    def find(
        self,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        **where: Any,
    ) -> list[T]:
        """Records meeting every condition, in ``order_by`` order (key order by default).

        A keyword's value is a plain value (equality) or an operator:
        ``ss.gt``, ``ge``, ``lt``, ``le``, ``ne``, ``one_of``, ``prefix``
        (see :mod:`statestore.query` for the exact rules). Values compare in
        their stored JSON form (equality of datetimes: the same instant
        written the same way; ranges and order: chronologically, whatever
        the offset); a field missing from a stored record (one written
        before the field was added) compares as null, not as the field's
        default. ``order_by`` is a field name or a sequence of them,
        ``-name`` for descending; nulls come first ascending and last
        descending; ties are broken by key. ``offset`` records are skipped,
        then at most ``limit`` returned. An unknown field, an operand of the
        wrong type, or a negative ``limit``/``offset`` raises
        ValidationError. No conditions returns every record. (A field named
        ``order_by``, ``limit`` or ``offset`` cannot be given as a condition.)
        """
        query = self._query(where, order_by, limit, offset)
        self.store._reading(self.decl.name)
        if query.limit == 0:
            return []
        if (
            self.store._equality_through_scan
            and not query.order
            and query.limit is None
            and not query.offset
            and all(t.op == "eq" for t in query.terms)
        ):
            # Plain equality (find as it always was): the backend's lookup indexes answer it exactly.
            where = {t.field: t.value for t in query.terms}
            lookup = self.decl.lookup_fields
            if all(f in lookup and (type(v) is str or v is None) for f, v in where.items()):
                found = self.store._scan_decoded(self.decl, where)  # decoded and structured in one pass
                if found is not None:
                    return found
            rows = self._match(where, copy=not self._fresh)
        else:
            rows = self.store._query(self.decl, query, copy=not self._fresh)
        return self.store.codec.decode_rows(self.decl.name, self.decl.type, rows)

    def count(self, **where: Any) -> int:
        """How many records meet the conditions (as for :meth:`find`), without decoding them."""
        query = self._query(where, None, None, 0)
        self.store._reading(self.decl.name)
        return self.store._count_where(self.decl, query)

    def iter(self, *, order_by: str | Sequence[str] | None = None, batch_size: int = 500, **where: Any) -> Iterator[T]:
        """Yield the records :meth:`find` would return, reading ``batch_size`` at a time.

        Only one batch is held in memory. Each batch is its own read: a
        write between two batches can make a record appear twice or not at
        all (run the loop inside ``store.transaction()`` for one consistent
        snapshot). Bad arguments raise ValidationError at the call.
        """
        query = self._query(where, order_by, None, 0)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(
                self.decl.name, None, "batch_size", f"batch_size must be an int >= 1, not {batch_size!r}"
            )
        return self._iter(query, batch_size)

    def _iter(self, query: Query, batch_size: int) -> Iterator[T]:
        after = None
        while True:
            # Each batch starts after the last record of the one before (not at an
            # offset): reading batch n never reads the n-1 batches before it again.
            page = Query(query.terms, query.order, batch_size, 0, after)
            self.store._reading(self.decl.name)
            rows = self.store._query(self.decl, page, copy=not self._fresh)
            if rows:
                key, _rev, data = rows[-1]
                after = (tuple(data.get(o.field) for o in query.order), key)
            yield from self.store.codec.decode_rows(self.decl.name, self.decl.type, rows)
            if len(rows) < batch_size:
                return

    def all(self) -> list[T]:
        """Every record, in key order."""
        return self.find()

    def keys(self) -> list[KeyValue]:
        """Every key, in key order (tuples for composite keys)."""
        self.store._reading(self.decl.name)
        return self.store._keys(self.decl)

    def __len__(self) -> int:
        self.store._reading(self.decl.name)
        return self.store._count(self.decl)

    def __contains__(self, key: object) -> bool:
        try:
            checked = self._key(key)
        except ValidationError:
            return False
        self.store._reading(self.decl.name)
        return self.store._revision(self.decl, checked) is not None

    def __iter__(self) -> Iterator[KeyValue]:
        """Iterate over the keys (a snapshot, in key order), as ``in`` and ``len`` treat them."""
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"<CollectionView {self.decl.name} of {self.store.location}>"


class LogView(Generic[T]):
    """Typed access to one log of a store (``store[LOG]``)."""

    def __init__(self, store: Store, decl: Log[T]) -> None:
        self.store = store
        self.decl = decl

    def append(self, record: T, *, stream: str = "", expect_version: int | None = None) -> Entry[T]:
        """Append ``record`` to ``stream`` and return the new entry.

        With ``expect_version=N`` the append happens only if the stream's last
        version is N (``0`` for a new stream); otherwise StreamConflictError
        and nothing is written. Concurrent appends never share a version.
        """
        decl = self.decl
        self._check_stream(stream)
        data, text = self.store.codec.encode(decl.name, decl.type, record, stream)
        done = self.store._append_alone(decl, stream, data, text, expect_version=expect_version)
        if done is not None:  # one step, outside any transaction (a backend that can; see Store._append_alone)
            seq, version, stamp = done
            return Entry(seq, stream, version, stamp, record)
        store = self.store
        depth = store._open_write("append", single=True)  # ``with store._writing(...)``, without its object
        try:
            # Stamped under the write lock, so `at` never goes backwards as `seq` grows.
            stamp = datetime.now(timezone.utc)
            at = stamp.isoformat(timespec="microseconds")
            current = store._stream_version(decl, stream)
            if expect_version is not None and current != expect_version:
                raise StreamConflictError(decl.name, stream, expect_version, current)
            if current >= LAST_REVISION:
                raise StreamVersionLimitError(decl.name, stream, current)
            seq = store._add_entry(decl, stream, current + 1, at, data, text)
        except BaseException:
            store._close_write(depth, True)
            raise
        store._close_write(depth, False)
        return Entry(seq, stream, current + 1, stamp, record)

    def _check_stream(self, stream: object) -> None:
        if not isinstance(stream, str):
            raise ValidationError(self.decl.name, stream, "stream", "stream must be a str")
        check_text(stream, self.decl.name, stream, "stream")

    def read(
        self,
        *,
        stream: str | None = None,
        stream_prefix: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[Entry[T]]:
        """Entries in seq order: all of them, one ``stream`` or every stream under ``stream_prefix``.

        ``stream`` matches exactly (``fn-1`` never returns ``fn-10``);
        ``stream_prefix`` matches by prefix through the index. ``after`` skips
        entries with ``seq <= after``; ``limit`` caps the number returned.
        Giving both ``stream`` and ``stream_prefix`` raises ValidationError.
        """
        name = self.decl.name
        if stream is not None and stream_prefix is not None:
            raise ValidationError(name, stream, "", "give stream or stream_prefix, not both")
        for s in (stream, stream_prefix):
            if s is not None:
                self._check_stream(s)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValidationError(name, None, "after", f"after must be an int >= 0, not {after!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValidationError(name, None, "limit", f"limit must be an int >= 0, not {limit!r}")
        self.store._reading(self.decl.name)
        if limit == 0:
            return []
        rows = self.store._entries(self.decl, stream=stream, prefix=stream_prefix or None, after=after, limit=limit)
        codec, tp = self.store.codec, self.decl.type
        return [
            Entry(seq, s, v, datetime.fromisoformat(at), codec.decode(name, tp, data, s, seq))
            for seq, s, v, at, data in rows
        ]

    def __len__(self) -> int:
        """The number of entries (this transaction's appends included), counted without decoding them."""
        self.store._reading(self.decl.name)
        return self.store._entry_count(self.decl)

    def last_seq(self) -> int:
        """The seq of the newest entry; 0 for an empty log."""
        self.store._reading(self.decl.name)
        return self.store._last_seq(self.decl)

    def follow(
        self,
        after: int = 0,
        *,
        stream: str | None = None,
        stream_prefix: str | None = None,
        timeout: float | None = None,
        poll: float = 0.05,
    ) -> Generator[Entry[T], None, None]:
        """Yield entries with ``seq > after`` as any process appends them, in seq order.

        Entries already in the log come first, then new ones as they commit
        (never one of an uncommitted or rolled-back transaction). ``stream``
        and ``stream_prefix`` filter as in :meth:`read`. Every ``poll``
        seconds it asks only for the log's last seq, and reads entries only
        when that moved. ``timeout`` is how many seconds without a new entry
        end the iteration (None: follow forever); the time the caller spends
        on an entry does not count. Closing the store ends it with
        StoreClosedError. Bad arguments raise ValidationError at the call.
        """
        name = self.decl.name
        self.read(stream=stream, stream_prefix=stream_prefix, after=after, limit=0)  # checks the arguments
        for value, what in ((timeout, "timeout"), (poll, "poll")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValidationError(name, None, what, f"{what} must be a number of seconds >= 0, not {value!r}")
        return self._follow(after, stream, stream_prefix, timeout, max(float(poll), 0.001))

    def _follow(
        self, after: int, stream: str | None, prefix: str | None, timeout: float | None, poll: float
    ) -> Generator[Entry[T], None, None]:
        store, decl = self.store, self.decl
        codec, tp = store.codec, decl.type
        batch = 1000
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            store._reading(decl.name)
            last = store._last_seq(decl)
            if last > after:
                rows = store._entries(decl, stream=stream, prefix=prefix or None, after=after, limit=batch)
                # Filtered out entries up to ``last`` are done with; a full batch may have more after it.
                after = rows[-1][0] if len(rows) == batch else max(last, rows[-1][0] if rows else 0)
                for seq, s, v, at, data in rows:
                    yield Entry(seq, s, v, datetime.fromisoformat(at), codec.decode(decl.name, tp, data, s, seq))
                    if timeout is not None:
                        deadline = time.monotonic() + timeout
                if len(rows) == batch:
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return
            store._wait_for_entries(decl, poll, None if deadline is None else max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"<LogView {self.decl.name} of {self.store.location}>"


# ---------------------------------------------------------------- what a legacy import left


@attrs.frozen
class Reject:
    """A legacy record that could not be imported, and why.

    ``path`` is relative to the legacy root; ``line``/``column`` (1-based)
    locate it in the file when known; ``pointer`` is the JSON pointer of the
    record (or of the bad field) inside its document; ``raw`` is the
    record's text (the whole file when the file itself is unreadable;
    ``raw_base64`` instead when it is not UTF-8).
    """

    path: str
    line: int | None
    column: int | None
    pointer: str | None
    reason: str
    raw: str | None = None
    raw_base64: str | None = None
    into: str = ""

    def where(self) -> str:
        """``path:line:column`` or ``path#pointer``: what a person would open."""
        out = self.path
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        if self.pointer:
            out += f" at {self.pointer}"
        return out

    def __str__(self) -> str:
        return f"{self.where()}: {self.reason}"


@attrs.frozen
class ImportRecord:
    """A source file an import read, as recorded in the store (``store.imports()``)."""

    path: str
    into: str
    size: int
    mtime: float
    sha256: str
    imported: int
    rejected: int
    imported_at: datetime
    root: str
    version: int
