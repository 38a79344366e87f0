"""``statestore check``: is a store sound? Read-only, on any backend, without the application's code.

Problems are what make the store wrong (a page SQLite reports damaged, a
record that does not decode or is filed under another key, a log whose seqs
or stream versions are out of order). Each record, entry and log line a
reader would fail on is one problem of its own: when a collection or log
cannot be read whole, it is read again one record (SQLite row, record file,
log line) at a time. Warnings are leftovers that are
harmless and that the next write-mode open cleans up (a killed writer's
temporary files, a journal still being applied) or that statestore did not
write (an unexpected file in a store folder).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import attrs

from statestore.backends.sqlite import SQLiteStore, _q
from statestore.codec import Codec
from statestore.errors import StateStoreError
from statestore.schema import Collection, Log
from statestore.store import INTERNAL_LOGS, RawRecord, Store
from statestore.strict import Mismatch, check_json

if TYPE_CHECKING:
    from statestore.backends.files import FileStore
    from statestore.backends.postgres import PostgresStore

__all__ = ["CheckReport", "check_store"]


def _is_files(store: Store) -> TypeGuard[FileStore]:
    """A file-backend store (told by its location: the backend is imported only where it runs, POSIX)."""
    return store.location.startswith("files:")


def _is_postgres(store: Store) -> TypeGuard[PostgresStore]:
    """A PostgreSQL store (told by its location: psycopg is imported only for those)."""
    return store.location.startswith(("postgresql:", "postgres:"))


#: The data of an entry whose seq, stream and version were read but whose record was not (already a problem).
_UNREAD: Any = {}


@attrs.frozen
class CheckReport:
    """What :func:`check_store` found, and how much it read."""

    location: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    records: int
    entries: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(store: Store) -> CheckReport:
    """Check every record and entry of ``store`` (open it in read mode) and its physical layout."""
    problems: list[str] = []
    warnings: list[str] = []
    if isinstance(store, SQLiteStore):
        problems += _sqlite_integrity(store)
    elif _is_files(store):
        warnings += _files_layout(store)
    records = entries = 0
    with contextlib.ExitStack() as stack:
        # The file backend reads every collection when a read transaction begins: one damaged
        # record fails that, and each collection is then read (and reported) on its own.
        with contextlib.suppress(StateStoreError):
            stack.enter_context(store.transaction())
        for coll in store.collections:
            try:
                rows = store._scan(coll, {})
            except (StateStoreError, ValueError) as exc:
                count, rows, bad = _records_one_by_one(store, coll)
                problems += bad or [f"collection {coll.name}: {exc}"]
                records += count - len(rows)  # the readable ones are counted below
            records += len(rows)
            problems += _check_keys(coll, rows)
            problems += _check_unique(coll, rows)
            if _is_postgres(store):
                problems += _postgres_lookups(store, coll)
        for log in (*store.logs, *INTERNAL_LOGS):
            try:
                got = store._entries(log, stream=None, prefix=None, after=0, limit=None)
            except (StateStoreError, ValueError) as exc:
                count, got, bad = _entries_one_by_one(store, log)
                problems += bad or [f"log {log.name}: {exc}"]
                entries += count - len(got)
            entries += len(got)
            problems += _check_entries(log, got)
    return CheckReport(store.location, tuple(problems), tuple(warnings), records, entries)


def _records_one_by_one(store: Store, coll: Collection[Any]) -> tuple[int, list[RawRecord], list[str]]:
    """``(records seen, those that decode, one problem per record that does not)``, in key order.

    Nothing is read this way for a backend other than SQLite and files (no
    problems: the caller reports the collection's error).
    """
    rows: list[RawRecord] = []
    bad: list[str] = []
    count = 0
    if isinstance(store, SQLiteStore):
        try:
            raw = store._all(f"SELECT key, revision, CAST(data AS BLOB) FROM {_q(coll.name)} ORDER BY key")
        except StateStoreError:
            return 0, [], []
        for key, revision, data in raw:
            count += 1
            try:
                value = store._key_value(coll, key)
                rows.append((value, store._revision_of(coll, value, revision), store._record(coll, value, data)))
            except StateStoreError as exc:
                bad.append(f"collection {coll.name}: {exc}")
    elif _is_files(store):
        folder = store._dir(coll.name)
        for name in sorted(folder.names()) if folder is not None else ():
            if name.startswith(".") or not name.endswith(".json"):
                continue
            count += 1
            try:
                rec = store._read_rec(coll, name)
            except StateStoreError as exc:
                bad.append(f"collection {coll.name}: {exc}")
                continue
            if rec is not None:
                rows.append(rec)
        rows.sort(key=lambda r: r[0])
    return count, rows, bad


def _entries_one_by_one(store: Store, log: Log[Any]) -> tuple[int, list[Any], list[str]]:
    """``(entries seen, their rows, one problem per entry or log line that does not decode)``, by position.

    A row whose record did not decode keeps its seq, stream and version; a
    file-backend line that did not parse is a row of Nones.
    """
    got: list[Any] = []
    bad: list[str] = []
    count = 0
    if isinstance(store, SQLiteStore):
        try:
            raw = store._all(f"SELECT seq, stream, version, at, CAST(data AS BLOB) FROM {_q(log.name)} ORDER BY seq")
        except StateStoreError:
            return 0, [], []
        for seq, stream, version, at, data in raw:
            count += 1
            try:
                got.append(store._entry_row(log, seq, stream, version, at, data))
            except StateStoreError as exc:
                bad.append(f"log {log.name}: {exc}")
                if isinstance(stream, str) and type(version) is int:
                    got.append((seq, stream, version, at, _UNREAD))  # its seq and version are still checked
                else:
                    got.append((None, None, None, None, _UNREAD))
    elif _is_files(store):
        path: Path = store._log_path(log.name)
        try:
            lines = path.read_bytes().splitlines(keepends=True)
        except OSError:
            return 0, [], []
        for lineno, line in enumerate(lines, 1):
            if not line.endswith(b"\n"):
                break  # a torn last line: a killed writer's, repaired by the next write
            count += 1
            try:
                got.append(store._parse_line(line, path, lineno))
            except StateStoreError as exc:
                bad.append(f"log {log.name}: {exc}")
                got.append((None, None, None, None, _UNREAD))  # see _check_entries
    return count, got, bad


def _check_keys(coll: Collection[Any], rows: list[Any]) -> list[str]:
    out = []
    for key, revision, data in rows:
        if not isinstance(data, dict):
            out.append(f"collection {coll.name}: {key!r} is not a JSON object")
            continue
        try:
            inner = coll.key_of(data)
        except KeyError as exc:
            out.append(f"collection {coll.name}: {key!r} has no key field {exc}")
            continue
        if inner != key:
            out.append(f"collection {coll.name}: record filed under {key!r} holds key {inner!r}")
        if not isinstance(revision, int) or revision < 1:
            out.append(f"collection {coll.name}: {key!r} has revision {revision!r}")
        out += [f"collection {coll.name}: {key!r} {problem}" for problem in _fields_problems(coll, data)]
    return out


def _check_unique(coll: Collection[Any], rows: list[Any]) -> list[str]:
    """Records that share the values of a unique field (or group): a store made by hand, or by a bug."""
    from statestore.codec import dumps
    from statestore.query import value_key

    out = []
    for group in coll.unique:
        seen: dict[tuple[Any, ...], Any] = {}
        for key, _revision, data in rows:
            if not isinstance(data, dict):
                continue
            values = tuple(data.get(f) for f in group)
            if any(v is None for v in values):
                continue  # a missing value is never a clash, as for writes
            try:
                marker = tuple(value_key(v) for v in values)
            except (TypeError, ValueError, RecursionError):
                continue  # not JSON: reported on its own
            if marker in seen:
                try:
                    shown = ", ".join(f"{f}={dumps(v)}" for f, v in zip(group, values))
                except (TypeError, ValueError, RecursionError):
                    shown = ", ".join(group)
                out.append(f"collection {coll.name}: {seen[marker]!r} and {key!r} share unique {shown}")
            else:
                seen[marker] = key
    return out


def _fields_problems(decl: Collection[Any] | Log[Any], data: dict[str, Any]) -> list[str]:
    """What a reader with the declared classes would refuse in ``data``, as far as the stored description tells.

    Fields the description does not declare (a reader refuses the record, and
    an update never drops them in silence), values the stored field types do
    not accept (``str``, ``int``, ``float``, ``bool``; others are described as
    any JSON), and values that are not JSON statestore stores (NaN, integers
    past 64 bits).
    """
    if not decl.field_types:  # statestore's own logs: any object
        return []
    out = []
    undeclared = sorted(set(data) - set(decl.field_types))
    if undeclared:
        out.append(f"has field(s) its declaration does not have: {', '.join(undeclared)}")
    converter = Codec().converter
    for field, tp in decl.field_types.items():
        if tp is Any or field not in data:
            continue
        try:
            converter.get_structure_hook(tp)(data[field], tp)
        except Mismatch as exc:
            out.append(f"at $.{field}{exc.path}: {exc.message}")
    for field, value in data.items():
        if decl.field_types.get(field, Any) is Any:
            try:
                check_json(value)
            except Mismatch as exc:
                out.append(f"at $.{field}{exc.path}: {exc.message}")
    return out


def _check_entries(log: Log[Any], rows: list[Any]) -> list[str]:
    """Seqs that do not increase, stream versions that repeat or skip, data that is not an object.

    A row of Nones stands for a log line that could not be read at all
    (already a problem): the next entry of each stream may then skip a
    version (the unreadable line may have held it), but never repeat one.
    """
    out = []
    last = 0
    versions: dict[str, int] = {}
    strict: set[str] | None = None  # after an unreadable line: the streams seen since
    for seq, stream, version, _at, data in rows:
        if seq is None:
            strict = set()
            continue
        if seq <= last:
            out.append(f"log {log.name}: seq {seq} follows seq {last}")
        last = max(last, seq)
        expected = versions.get(stream, 0) + 1
        if strict is not None and stream not in strict:
            strict.add(stream)
            if version < expected:
                out.append(f"log {log.name}: seq {seq} is version {version} of stream {stream!r}, after {expected - 1}")
        elif version != expected:
            out.append(f"log {log.name}: seq {seq} is version {version} of stream {stream!r}, expected {expected}")
        versions[stream] = version
        if data is not _UNREAD and not isinstance(data, dict):
            out.append(f"log {log.name}: seq {seq} is not a JSON object")
        elif data is not _UNREAD:
            out += [f"log {log.name}: seq {seq} {problem}" for problem in _fields_problems(log, data)]
    return out


def _postgres_lookups(store: PostgresStore, coll: Collection[Any]) -> list[str]:
    return [
        f"collection {coll.name}, key {key!r}: the lookup column of {field!r} holds {got!r} where the record "
        f"holds {want!r} (edited by hand? queries on {field!r} read the column); writing the record again rebuilds it"
        for key, field, got, want in store.lookup_mismatches(coll)
    ]


def _sqlite_integrity(store: SQLiteStore) -> list[str]:
    try:
        con = sqlite3.connect(store.path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # its report can quote damaged, non-UTF-8 names
        return [f"integrity_check failed: {exc}"]
    return [] if rows == ["ok"] else [f"integrity_check: {r}" for r in rows]


def _files_layout(store: FileStore) -> list[str]:
    from statestore.backends.files.cache import INTERNAL, MANIFEST
    from statestore.backends.files.fileio import TMP_PREFIX
    from statestore.backends.files.journal import JOURNAL

    out = []
    if store._journal(store._read_head()) is not None or (store.path / INTERNAL / JOURNAL).exists():
        out.append("a committed transaction is still being applied (a writer was killed?); the next write finishes it")
    known = {MANIFEST, INTERNAL, *(c.name for c in store.collections), *(f"{lg.name}.jsonl" for lg in store.logs)}
    for entry in sorted(store.path.iterdir()):
        if entry.name.startswith(TMP_PREFIX):
            out.append(f"{entry}: temporary file of a killed writer")
        elif entry.name not in known:
            out.append(f"{entry}: not part of the store")
    for coll in store.collections:
        folder = store.path / coll.name
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(TMP_PREFIX):
                out.append(f"{entry}: temporary file of a killed writer")
            elif not entry.name.endswith(".json") or not entry.is_file():
                out.append(f"{entry}: not a record file")
    return out
