"""SQLite connections: opening them (pragmas, one per thread, after fork), statements, decoding stored values.

The first layer of :class:`~statestore.backends.sqlite.store.SQLiteStore`: module-level helpers for
identifiers and generated columns, and :class:`SQLiteConnection`, whose methods run statements and
turn what SQLite returns (or raises) into records, entries and statestore errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from statestore.backends import rawjson
from statestore.errors import (
    LAST_REVISION,
    BackendError,
    CorruptStoreError,
    ReadOnlyError,
    StoreBusyError,
)
from statestore.schema import Collection, KeyValue, Log, check_field_name
from statestore.store import Durability, RawEntry, RawRecord, Store

FORMAT = 1

# Applied to every connection (diskcache's settings idiom). synchronous is
# per durability; never OFF: a killed process must not lose committed writes.
_PRAGMAS: dict[str, str] = {
    "foreign_keys": "ON",
    "temp_store": "MEMORY",
}
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
_RESERVED = {"key", "revision", "data"}
# A composite key's column: its parts as a compact JSON array (json.dumps with options builds an encoder per call).
_KEY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _by_key(row: RawRecord) -> Any:
    return row[0]


def _q(name: str) -> str:
    """Quote an identifier (names are validated at declaration time, and when read from a store)."""
    return '"' + name.replace('"', '""') + '"'


def json_path(field: str) -> str:
    """The SQL string literal of the JSON path to top-level ``field``: ``'$."field"'``.

    SQLite's JSON path has no escape inside a quoted label, so a name that is
    not an identifier (one read from a crafted store, say) cannot be written
    safely: SchemaError, never SQL built from it. The literal's quotes are
    doubled all the same.
    """
    check_field_name(field, "field")
    return "'" + f'$."{field}"'.replace("'", "''") + "'"


def json_column_of(field: str) -> str:
    """The generated column holding ``field``'s JSON text, for unique constraints (see ``_sync_indexes``)."""
    return f"json:{field}"


def column_of(field: str) -> str:
    """The generated column for ``field``: its own name unless the layout uses it.

    ``field:key`` (for a field called ``key``) cannot clash with another
    field's name: a colon is never part of a Python identifier.
    """
    return f"field:{field}" if field in _RESERVED else field


def unreadable_reason(path: Path) -> str | None:
    """Why a read-only open of the WAL database ``path`` fails for this user, and what to do; None if not that.

    SQLite reads a WAL database through its WAL index, the ``-shm`` file
    beside it. Since SQLite 3.22 a reader without write access manages when
    the ``-wal`` and ``-shm`` files exist (a writer has the store open), but
    when they do not, the reader must create them, which needs write access
    to the folder. Reading the database file alone (``immutable=1``) is no
    way out: it can return torn data while a writer is active.
    """
    folder = path.parent
    shm = path.with_name(path.name + "-shm")
    if path.exists() and not os.access(path, os.R_OK):
        return f"cannot read: this user cannot read {path}"
    if not shm.exists() and not os.access(folder, os.W_OK):
        return (
            f"cannot read: SQLite must create {shm} (the index of its write-ahead log) to read the store, "
            f"and this user cannot write to {folder}; give this user write access to that folder, "
            "or read a copy made by a user who can (statestore copy)"
        )
    if shm.exists() and not os.access(shm, os.R_OK):
        return (
            f"cannot read: this user cannot read {shm} (the index of SQLite's write-ahead log, made by "
            "a process running as another user); read as that user, or give this user read access to it"
        )
    return None


#: SQLite's primary result codes for a busy or locked database and a read-only one, and the start of
#: their messages (what Python 3.10, which has no ``sqlite_errorcode``, tells them by).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
_READONLY_MESSAGE = "attempt to write a readonly database"


def _primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of ``exc`` (Python 3.11+), or None where Python does not give it."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the store is busy or locked: by its result code, else by the start of SQLite's
    own message (a message may name a table or column, and a log called busy_events is not a busy store)."""
    primary = _primary_code(exc)
    if primary is None:
        return str(exc).startswith(_BUSY_MESSAGES)
    return primary in (_SQLITE_BUSY, _SQLITE_LOCKED)


#: The SQL function through which a single put's upsert tells what it raised a stored revision to
#: (RETURNING would say it too, at about 40,000 more instructions a statement: see docs/sqlite-speed.md).
_RAISED = "statestore_raised"


class _Raised:
    """The revision the last single put raised a stored record to (0: it raised none).

    Registered on a connection as the SQL function ``statestore_raised(x)``,
    which returns ``x`` and keeps it here. It refers to nothing else: the
    connection holds it, and a reference back to the thread's holder would
    keep the holder (whose end closes the connection) alive for ever.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, revision: int) -> int:
        self.value = revision
        return revision


#: The SQL functions through which a single append takes its version and time under the write lock.
_NEXT, _AT = "statestore_next", "statestore_at"


class _Stamp:
    """The version and time the last single append gave its entry (``text`` None: none yet).

    Registered on a connection as two SQL functions, which the append's
    statement calls while it holds the write lock (so ``at`` never goes
    backwards as ``seq`` grows), in whichever order SQLite evaluates them:

    * ``statestore_next(last, expected)``: the stream's next version, or NULL
      (which the version column refuses, so nothing is written) when ``last``
      is not an integer from 0 to 2**63 - 2 (NULL: a new stream, 0) or is not
      ``expected`` (NULL: anything).
    * ``statestore_at()``: the entry's time as ``at`` stores it (ISO 8601, UTC,
      microseconds), taken at the first call of either and kept in ``at``.

    ``reset`` before each statement. Like :class:`_Raised`, it refers to nothing else.
    """

    __slots__ = ("at", "text", "version")

    def __init__(self) -> None:
        self.version = 0
        self.at = datetime.min
        self.text: str | None = None

    def reset(self) -> None:
        self.version = 0
        self.text = None

    def next(self, last: Any, expected: Any) -> int | None:
        if last is None:
            last = 0
        if type(last) is not int or not 0 <= last < LAST_REVISION or (expected is not None and last != expected):
            return None
        self.version = last + 1
        self.stamp()
        return self.version

    def stamp(self) -> str:
        if self.text is None:
            self.at = datetime.now(timezone.utc)
            self.text = self.at.isoformat(timespec="microseconds")
        return self.text


class _ThreadConnection:
    """One thread's connection, held in its thread-local storage, and what its single puts raised.

    ``cur`` runs the statements that frame a transaction (``BEGIN``, the
    schema mark, ``COMMIT``): none leaves rows behind, so one cursor serves
    them all, and ``con.execute`` would make a cursor for each.
    """

    __slots__ = ("__weakref__", "con", "cur", "raised", "stamp")

    def __init__(self, con: sqlite3.Connection, raised: _Raised, stamp: _Stamp) -> None:
        self.con = con
        self.cur = con.cursor()
        self.raised = raised
        self.stamp = stamp


def _forget(connections: list[sqlite3.Connection], lock: threading.Lock, con: sqlite3.Connection) -> None:
    """Close the connection of a thread that ended (unless close() already did)."""
    with lock:
        if con not in connections:
            return
        connections.remove(con)
    with contextlib.suppress(sqlite3.Error):
        con.close()


class SQLiteConnection(Store):
    """Connections, statements and decoding (the layer under ``SQLiteStructure``)."""

    # Set by SQLiteStore.__init__ (the store module), read by the layers below it.
    path: Path
    durability: Durability
    busy_timeout: float
    _local: threading.local
    _connections: list[sqlite3.Connection]
    _lock: threading.Lock
    _columns: dict[str, set[str]]
    _sql: dict[tuple[str, str], str]
    _schema_mark: int
    _meta_mark: str | None
    _point_sqls: dict[str, tuple[str, str, str, str, str]]
    _counteds: dict[Any, Any]
    _log_sqls: dict[str, tuple[str, str]]
    _alone_sqls: dict[str, tuple[str, str]]
    _append_sqls: dict[str, str]

    # ------------------------------------------------------------ connections

    def _connect(self, raised: _Raised, stamp: _Stamp) -> sqlite3.Connection:
        """A new connection with the PRAGMAs applied (and, to write, the functions of the single writes)."""
        try:
            if self.mode == "read":
                con = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                con = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
                )
            try:
                with self._translate():
                    for name, value in {**_PRAGMAS, "synchronous": _SYNCHRONOUS[self.durability]}.items():
                        con.execute(f"PRAGMA {name}={value}")
                    if self.mode == "write":
                        con.create_function(_RAISED, 1, raised)
                        con.create_function(_NEXT, 2, stamp.next)
                        con.create_function(_AT, 0, stamp.stamp)
            except BaseException:
                con.close()  # not a database, or damaged: the connection is no one's to close later
                raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        with self._lock:
            self._connections.append(con)
        return con

    def _con(self) -> sqlite3.Connection:
        try:
            return self._local.holder.con  # type: ignore[no-any-return]
        except AttributeError:
            self._state()  # resets per-thread state after fork()
            raised, stamp = _Raised(), _Stamp()
            con = self._connect(raised, stamp)
            holder = self._local.holder = _ThreadConnection(con, raised, stamp)
            # When the thread ends its thread-local holder goes, and so does its
            # connection: a pool of short-lived threads must not pile them up.
            weakref.finalize(holder, _forget, self._connections, self._lock, con)
            return con

    def _after_fork(self) -> None:
        # The parent's connections must not be used here. They are closed at
        # once rather than left to the garbage collector: one inherited inside a
        # write transaction keeps SQLite's per-process record of the WAL write
        # lock, which would make every write in the child time out. Closing it
        # in the child rolls back nothing on disk (WAL frames are only undone in
        # memory) and the fcntl unlocks release no lock of the parent's: POSIX
        # record locks are not inherited through fork().
        for con in self._connections:
            with contextlib.suppress(sqlite3.Error):
                con.close()
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()

    def _close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            for con in connections:
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            connections.clear()
        self._local = threading.local()

    def _error(self, exc: sqlite3.Error | UnicodeDecodeError) -> Exception:
        if isinstance(exc, UnicodeDecodeError):
            # Python decodes TEXT values as UTF-8: a damaged page can hold any bytes.
            return CorruptStoreError(self.location, f"stored text is not UTF-8 ({exc.reason} at byte {exc.start})")
        text = str(exc)
        if self.mode == "read" and ("readonly" in text or "unable to open" in text):
            reason = unreadable_reason(self.path)
            if reason is not None:
                return BackendError(self.location, reason)
        if _is_busy(exc):
            return StoreBusyError(self.location, self.busy_timeout)
        primary = _primary_code(exc)
        if primary == _SQLITE_READONLY or (primary is None and text.startswith(_READONLY_MESSAGE)):
            return ReadOnlyError(self.location, f"write ({text})")
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "no such table" in text or "decode to UTF-8" in text
        ):
            # A table gone because another process migrated the store (renamed or dropped it) is not damage.
            moved = self._schemas_moved() if "no such table" in text else None
            return moved if moved is not None else CorruptStoreError(self.location, text)
        return BackendError(self.location, text)

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def _execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self._con().execute(sql, params)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    # _one and _all are on every read's path: a plain try costs nothing, a contextmanager a microsecond.
    def _one(self, sql: str, params: Any = ()) -> Any:
        """The first row of ``sql`` (None if none); errors while fetching are translated too."""
        try:
            return self._con().execute(sql, params).fetchone()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def _all(self, sql: str, params: Any = ()) -> list[Any]:
        """Every row of ``sql``; errors while fetching (text that is not UTF-8) are translated too."""
        try:
            return self._con().execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def _load(self, text: Any, where: str) -> Any:
        """Stored JSON text decoded strictly (``rawjson.load``); CorruptStoreError naming ``where`` otherwise."""
        try:
            return rawjson.load(text)
        except rawjson.StoredJSONError as exc:
            raise CorruptStoreError(self.location, f"{where}: {exc}") from None
        except TypeError:  # an INTEGER, REAL or NULL where JSON text belongs
            raise CorruptStoreError(self.location, f"{where}: holds {type(text).__name__}, not JSON text") from None

    def _record(self, coll: Collection[Any], key: Any, text: Any) -> dict[str, Any]:
        """A record's stored data, decoded; CorruptStoreError naming the table and key if it is not an object."""
        data = _scanned_object(text)
        return data if data is not None else self._json_object(text, f"table {coll.name!r}, key {key!r}")

    def _json_object(self, text: Any, where: str) -> dict[str, Any]:
        """``text`` decoded strictly; CorruptStoreError naming ``where`` if it is not a JSON object."""
        try:
            data = rawjson.load(text)
        except (rawjson.StoredJSONError, TypeError):
            data = self._load(text, where)  # raises, saying what and where
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"{where}: data is not a JSON object")
        return data

    def _revision_of(self, coll: Collection[Any], key: Any, revision: Any) -> int:
        """A stored revision; CorruptStoreError unless it is an integer of at least 1."""
        if type(revision) is not int or revision < 1:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: revision {revision!r}")
        return revision

    def _entry_row(self, log: Log[Any], seq: Any, stream: Any, version: Any, at: Any, text: Any) -> RawEntry:
        """A stored log row, checked (an int version, a str stream and ISO timestamp) and decoded.

        A column that SQLite's loose typing let a hand edit fill with another
        type is a CorruptStoreError naming the log and seq, as a reader
        (which parses ``at``) would otherwise fail with a bare ValueError.
        """
        where = f"log table {log.name!r}, seq {seq!r}"
        if type(stream) is not str:
            raise CorruptStoreError(self.location, f"{where}: stream {stream!r} is not text")
        if type(version) is not int or version < 1:
            raise CorruptStoreError(self.location, f"{where}: version {version!r} is not a positive integer")
        try:
            datetime.fromisoformat(at)
        except (TypeError, ValueError):
            raise CorruptStoreError(self.location, f"{where}: time {at!r} is not an ISO timestamp") from None
        return seq, stream, version, at, self._entry(log, seq, text)

    def _entry(self, log: Log[Any], seq: Any, text: Any) -> dict[str, Any]:
        """A log entry's stored data, decoded; CorruptStoreError naming the table and seq otherwise."""
        data = _scanned_object(text)
        return data if data is not None else self._json_object(text, f"log table {log.name!r}, seq {seq!r}")

    def _holder(self) -> _ThreadConnection:
        """This thread's connection and what goes with it (connecting first if it has none)."""
        try:
            return self._local.holder  # type: ignore[no-any-return]
        except AttributeError:
            self._con()
            return self._local.holder  # type: ignore[no-any-return]

    # ------------------------------------------------------------ keys and columns in statements

    def _has(self, name: str) -> bool:
        # A read-mode open of a store made before this collection was declared.
        return name in self._columns

    @staticmethod
    def _key_param(coll: Collection[Any], key: KeyValue) -> Any:
        return _KEY_JSON.encode(list(key)) if isinstance(key, tuple) else key

    def _key_value(self, coll: Collection[Any], stored: Any) -> KeyValue:
        if not coll.composite:
            return stored  # type: ignore[no-any-return]
        parts = self._load(stored, f"table {coll.name!r}, key {stored!r}")
        if not isinstance(parts, list):
            raise CorruptStoreError(self.location, f"table {coll.name!r}: key {stored!r} is not a JSON array")
        return tuple(parts)

    def _column(self, coll: Collection[Any], field: str) -> str:
        """SQL for a field's value: its generated column if the table has it, else json_extract.

        The column is qualified with its table: should another build of the
        application drop it, SQLite reports "no such column" instead of
        silently reading the double-quoted name as a string literal.
        """
        col = column_of(field)
        if col in self._columns[coll.name]:
            return f"{_q(coll.name)}.{_q(col)}"
        return f"json_extract({_q(coll.name)}.data, {json_path(field)})"


def _scanned_object(text: Any, scan: Callable[[str, int], tuple[Any, int]] | None = None) -> dict[str, Any] | None:
    """``rawjson.load``'s fast path for stored data: the object ``text`` is whole, if ``scan`` reads it so
    (the strict ``rawjson.SCAN`` unless given).

    None for anything else (not a str, not one object from end to end, an
    error): the caller then decodes it with ``rawjson.load``, which explains.
    """
    if type(text) is str:
        try:
            data, end = (rawjson.SCAN if scan is None else scan)(text, 0)
        except (StopIteration, ValueError, RecursionError):
            return None
        if end == len(text) and type(data) is dict:
            return data
    return None
