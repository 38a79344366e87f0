"""MemoryStore: a store that lives in the process and vanishes with it (``memory:``).

Useful for tests and dry runs. It keeps canonical JSON text, as the other
backends do, so a record read back is never the object that was written.
One re-entrant lock serialises every operation; a transaction holds it until
it ends, so other threads never see half of one.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from statestore.codec import Codec
from statestore.errors import StoreNotFoundError
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Mode, RawEntry, RawRecord, Store, StoredSchemas

_Undo = tuple[str, Any, Any]


class MemoryStore(Store):
    """A store held in memory; nothing is written to disk.

    Opening ``memory:`` in read mode raises StoreNotFoundError: there is never
    an existing in-memory store to read.
    """

    def __init__(self, schema: Schema | Sequence[Schema], *, mode: Mode = "write", codec: Codec | None = None) -> None:
        super().__init__("memory:", schema, mode=mode, codec=codec or Codec())
        if mode != "write":
            raise StoreNotFoundError(self.location)
        self._lock = threading.RLock()
        self._records: dict[str, dict[KeyValue, tuple[int, str]]] = {}
        self._order: dict[str, list[KeyValue]] = {}
        self._logs: dict[str, list[tuple[int, str, int, str, str]]] = {}
        self._seq: dict[str, int] = {}
        self._schemas: StoredSchemas = {}
        self._undo: list[_Undo] = []
        self._savepoints: dict[str, int] = {}
        self._in_txn = False
        self._open_schemas()

    # The lock is held from _begin to _commit/_rollback, and around each read.

    def _begin(self, *, write: bool) -> None:
        self._lock.acquire()
        self._in_txn = True
        self._undo = []
        self._savepoints = {}

    def _end(self) -> None:
        self._in_txn = False
        self._undo = []
        self._lock.release()

    def _commit(self) -> None:
        self._end()

    def _rollback(self) -> None:
        if self._in_txn:
            self._undo_to(0)
            self._end()

    def _savepoint(self, name: str) -> None:
        self._savepoints[name] = len(self._undo)

    def _release(self, name: str) -> None:
        self._savepoints.pop(name)

    def _rollback_to(self, name: str) -> None:
        self._undo_to(self._savepoints.pop(name))

    def _undo_to(self, mark: int) -> None:
        while len(self._undo) > mark:
            kind, name, item = self._undo.pop()
            if kind == "log":
                self._logs[name].pop()
                self._seq[name] = item
            elif kind == "entries":
                self._logs[name] = item
            elif kind == "schema":
                if item is None:
                    self._schemas.pop(name, None)
                else:
                    self._schemas[name] = item
            else:
                key, old = item
                self._set(name, key, old)

    def _close(self) -> None:
        self._records.clear()
        self._logs.clear()

    # ------------------------------------------------------------ schemas and structure

    def _read_schemas(self) -> StoredSchemas:
        with self._lock:
            return {name: (version, json.loads(json.dumps(desc))) for name, (version, desc) in self._schemas.items()}

    def _set_schema(self, name: str, version: int, description: dict[str, Any]) -> None:
        self._undo.append(("schema", name, self._schemas.get(name)))
        self._schemas[name] = (version, json.loads(json.dumps(description)))

    def _sync_structure(self, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool) -> None:
        # An empty collection or log is harmless to keep should the transaction roll back.
        for coll in collections:
            self._records.setdefault(coll.name, {})
            self._order.setdefault(coll.name, [])
        for log in logs:
            self._logs.setdefault(log.name, [])
            self._seq.setdefault(log.name, 0)

    def _drop(self, decl: Collection[Any] | Log[Any]) -> None:
        if isinstance(decl, Collection):
            for key in list(self._order.get(decl.name, ())):
                self._remove(decl, key)
        elif decl.name in self._logs:
            self._undo.append(("entries", decl.name, self._logs[decl.name]))
            self._logs[decl.name] = []

    def _replace_entries(self, log: Log[Any], entries: Sequence[RawEntry]) -> None:
        self._undo.append(("entries", log.name, self._logs[log.name]))
        self._logs[log.name] = [(seq, s, v, at, json.dumps(data)) for seq, s, v, at, data in entries]

    # ------------------------------------------------------------ records

    def _set(self, name: str, key: KeyValue, value: tuple[int, str] | None) -> None:
        records, order = self._records[name], self._order[name]
        if value is None:
            if records.pop(key, None) is not None:
                del order[bisect.bisect_left(order, key)]
        else:
            if key not in records:
                bisect.insort(order, key)
            records[key] = value

    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            got = self._records[coll.name].get(key)
        return None if got is None else (got[0], json.loads(got[1]))

    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        with self._lock:
            got = self._records[coll.name].get(key)
        return None if got is None else got[0]

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        self._undo.append(("rec", coll.name, (key, self._records[coll.name].get(key))))
        self._set(coll.name, key, (revision, text))

    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        old = self._records[coll.name].get(key)
        if old is None:
            return False
        self._undo.append(("rec", coll.name, (key, old)))
        self._set(coll.name, key, None)
        return True

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        out: list[RawRecord] = []
        with self._lock:
            records = self._records[coll.name]
            for key in self._order[coll.name]:
                rev, text = records[key]
                data = json.loads(text)
                if all(data.get(f) == v and (v is None) == (data.get(f) is None) for f, v in where.items()):
                    out.append((key, rev, data))
        return out

    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        with self._lock:
            return list(self._order[coll.name])

    def _count(self, coll: Collection[Any]) -> int:
        with self._lock:
            return len(self._records[coll.name])

    # ------------------------------------------------------------ logs

    def _stream_version(self, log: Log[Any], stream: str) -> int:
        with self._lock:
            return max((v for _, s, v, _, _ in self._logs[log.name] if s == stream), default=0)

    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        self._undo.append(("log", log.name, self._seq[log.name]))
        seq = self._seq[log.name] = self._seq[log.name] + 1
        self._logs[log.name].append((seq, stream, version, at, text))
        return seq

    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        out: list[RawEntry] = []
        with self._lock:
            for seq, s, v, at, text in self._logs[log.name]:
                if seq <= after or (stream is not None and s != stream):
                    continue
                if prefix is not None and not s.startswith(prefix):
                    continue
                out.append((seq, s, v, at, json.loads(text)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _entry_count(self, log: Log[Any]) -> int:
        with self._lock:
            return len(self._logs[log.name])

    def _last_seq(self, log: Log[Any]) -> int:
        with self._lock:
            return self._seq[log.name]
