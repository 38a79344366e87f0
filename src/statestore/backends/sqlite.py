"""SQLiteStore: the default backend, one SQLite database file.

Layout (DESIGN §6): one table per collection named after it with ``key``,
``revision`` and ``data`` (canonical JSON text) plus a virtual generated column
and an index for each declared index and unique constraint, so
``sqlite3 state.db "select key from tasks where status='todo'"`` works; one
table per log with ``UNIQUE(stream, version)``; internal tables prefixed
``_statestore_``. The physical tables follow the declared schema on every
write-mode open: new indexes and collections appear without a migration.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from statestore.backends import rawjson
from statestore.backends.fs import backup_label, make_private_dirs, migration_lock, place_backup
from statestore.codec import Codec, dumps
from statestore.errors import (
    BackendError,
    CorruptStoreError,
    ReadOnlyError,
    SchemaError,
    SchemaMismatchError,
    StoreBusyError,
    StoreNotFoundError,
)
from statestore.query import Query, Term, prefix_end
from statestore.schema import Collection, KeyValue, Log, Schema, check_field_name
from statestore.store import Durability, Mode, RawEntry, RawRecord, Store, StoredSchemas

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


_NUL = "\\u0000"  # how canonical JSON writes U+0000 inside a string


_SQL_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _cut(value: Any) -> Any:
    """A value as SQLite's json_extract gives it back: text cut at its first NUL."""
    return value.split("\x00", 1)[0] if isinstance(value, str) else value


def _sql_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return 1
    return 2 if isinstance(value, str) else 3


def _sql_compare(a: Sequence[Any], b: Sequence[Any], descending: Sequence[bool]) -> int:
    """-1, 0 or 1 as SQLite orders two rows' ORDER BY values (NULL < numbers < text < blobs)."""
    for x, y, desc in zip(a, b, descending):
        rx, ry = _sql_rank(x), _sql_rank(y)
        c = (rx > ry) - (rx < ry)
        if c == 0 and rx:
            c = (x > y) - (x < y)
        if c:
            return -c if desc else c
    return 0


def _lossless(query: Query, row: tuple[Any, ...]) -> bool:
    """True when no row SQL puts after ``row`` with the same order values can come before it exactly.

    So when each value stands for itself (no NUL, not a datetime), and a
    descending text field's row was sorted among those holding no NUL.
    """
    data, sql_values = row[2], row[3]
    spot = 0
    for o in query.order:
        if o.kind == "str" and o.descending:
            if spot + 1 >= len(sql_values) or sql_values[spot + 1]:
                return False
            spot += 1
        spot += 1
        v = data.get(o.field)
        if v is None or type(v) in (int, float, bool):
            continue
        if o.kind == "datetime" or not isinstance(v, str) or "\x00" in v:
            return False
    return True


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


class _ThreadConnection:
    """One thread's connection, held in its thread-local storage, and what its single puts raised.

    ``cur`` runs the statements that frame a transaction (``BEGIN``, the
    schema mark, ``COMMIT``): none leaves rows behind, so one cursor serves
    them all, and ``con.execute`` would make a cursor for each.
    """

    __slots__ = ("__weakref__", "con", "cur", "raised")

    def __init__(self, con: sqlite3.Connection, raised: _Raised) -> None:
        self.con = con
        self.cur = con.cursor()
        self.raised = raised


def _forget(connections: list[sqlite3.Connection], lock: threading.Lock, con: sqlite3.Connection) -> None:
    """Close the connection of a thread that ended (unless close() already did)."""
    with lock:
        if con not in connections:
            return
        connections.remove(con)
    with contextlib.suppress(sqlite3.Error):
        con.close()


class SQLiteStore(Store):
    """A store in one SQLite database (WAL, ``BEGIN IMMEDIATE`` for writes).

    ``busy_timeout`` is how long a writer waits for another process's write
    transaction before raising StoreBusyError. Each thread gets its own
    connection; a forked child opens new ones. A new database file and its
    directory are created readable by the owner only (0600/0700); SQLite gives
    its ``-wal`` and ``-shm`` files the database file's permissions.
    """

    # One SQL statement is all-or-nothing, so single writes need no savepoint.
    _atomic_writes = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema | Sequence[Schema],
        *,
        mode: Mode = "write",
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
        check_history: bool = True,
        backup: bool = True,
    ) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"sqlite:{self.path}", schema, mode=mode, codec=codec or Codec())
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.durability: Durability = durability
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._columns: dict[str, set[str]] = {}
        self._sql: dict[tuple[str, str], str] = {}
        self._schema_mark = -1  # PRAGMA user_version when the schemas were last checked
        self._point_sqls: dict[str, tuple[str, str, str, str, str]] = {}
        self._log_sqls: dict[str, tuple[str, str]] = {}
        self._alone_sqls: dict[str, tuple[str, str]] = {}  # collection -> _write_alone's (insert, put)
        if mode != "write" and not self.path.is_file():
            raise StoreNotFoundError(self.location)
        try:
            if mode == "write":
                self._create()
                self._initialize()
            with self._translate():
                self._load_columns(self._con())  # the history is read while opening
                # Taken before the schemas are checked: a migration after it is seen by the first write.
                self._schema_mark = self._con().execute("PRAGMA user_version").fetchone()[0]
            self._open_schemas(check_history=check_history, backup=backup)
            with self._translate():
                self._load_columns(self._con())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ connections

    def _connect(self, raised: _Raised) -> sqlite3.Connection:
        """A new connection with the PRAGMAs applied (and, to write, the ``statestore_raised`` function)."""
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
            raised = _Raised()
            con = self._connect(raised)
            holder = self._local.holder = _ThreadConnection(con, raised)
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
        if "locked" in text or "busy" in text:
            return StoreBusyError(self.location, self.busy_timeout)
        if "readonly" in text or "read-only" in text:
            return ReadOnlyError(self.location, f"write ({text})")
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "no such table" in text or "decode to UTF-8" in text
        ):
            return CorruptStoreError(self.location, text)
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
        if type(text) is str:  # rawjson.load's fast path, inline: a record is a few µs in all
            try:
                data, end = rawjson.SCAN(text, 0)
            except (StopIteration, ValueError, RecursionError):
                pass
            else:
                if end == len(text) and type(data) is dict:
                    return data
        try:
            data = rawjson.load(text)
        except (rawjson.StoredJSONError, TypeError):
            data = self._load(text, f"table {coll.name!r}, key {key!r}")  # raises, saying what and where
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: data is not a JSON object")
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
        try:
            data = rawjson.load(text)
        except (rawjson.StoredJSONError, TypeError):
            data = self._load(text, f"log table {log.name!r}, seq {seq!r}")  # raises, saying what and where
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"log table {log.name!r}, seq {seq!r}: data is not a JSON object")
        return data

    # ------------------------------------------------------------ creation

    def _create(self) -> None:
        if not self.path.exists():
            try:
                make_private_dirs(self.path.parent)
                # Create the file ourselves so it is 0600 from its first byte
                # (state can hold tokens); an empty file is an empty database.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise BackendError(self.location, f"cannot create the store: {exc.strerror or exc}") from None
        con = self._con()
        with self._translate():
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")

    def _initialize(self) -> None:
        """Give an empty database statestore's internal tables (write mode; checks before locking)."""
        con = self._con()
        with self._translate():
            if self._internal_tables(con):
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                if not self._internal_tables(con):
                    con.execute("CREATE TABLE _statestore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    con.execute(
                        "CREATE TABLE _statestore_schemas "
                        "(name TEXT PRIMARY KEY, version INTEGER NOT NULL, description TEXT NOT NULL)"
                    )
                    con.executemany(
                        "INSERT INTO _statestore_meta(key, value) VALUES (?, ?)",
                        [("format", str(FORMAT)), ("store_id", uuid.uuid4().hex)],
                    )
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _internal_tables(self, con: sqlite3.Connection) -> bool:
        """True if the database has statestore's tables; CorruptStoreError if it is another database."""
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "_statestore_schemas" in tables:
            return True
        if tables or self.mode == "read":
            raise CorruptStoreError(self.location, "not a statestore database (no _statestore_schemas table)")
        return False

    def _read_schemas(self) -> StoredSchemas:
        con = self._con()
        with self._translate():
            self._internal_tables(con)
            fmt = con.execute("SELECT value FROM _statestore_meta WHERE key='format'").fetchone()
            if fmt is None or fmt[0] != str(FORMAT):
                raise CorruptStoreError(self.location, f"unknown store format {fmt and fmt[0]!r}")
            rows = con.execute("SELECT name, version, description FROM _statestore_schemas").fetchall()
        out: StoredSchemas = {}
        for name, version, description in rows:
            desc = self._load(description, f"schema {name!r}: description")
            if not isinstance(desc, dict) or not isinstance(version, int) or not isinstance(name, str):
                raise CorruptStoreError(self.location, f"schema {name!r} has no valid version and description")
            try:
                # Names read from the store pass the checks declared names pass before any reaches SQL.
                Schema.described({**desc, "name": name, "version": version})
            except SchemaError as exc:
                raise CorruptStoreError(self.location, f"schema {name!r}: {exc}") from None
            out[name] = (version, desc)
        return out

    def _set_schema(self, name: str, version: int, description: dict[str, Any]) -> None:
        mark = self._execute("PRAGMA user_version").fetchone()[0]
        self._execute(f"PRAGMA user_version = {int(mark) + 1}")  # rolled back with the transaction
        self._execute(
            "INSERT INTO _statestore_schemas(name, version, description) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET version=excluded.version, description=excluded.description",
            (name, version, dumps(description)),
        )

    def _structure_ok(self) -> bool:
        """False when the store was made before unique constraints held on JSON text (it takes the write path)."""
        names = {r[0] for r in self._all("SELECT name FROM sqlite_master WHERE type='index'")}
        return all(
            f"_statestore_uj__{coll.name}__{'__'.join(group)}" in names
            for coll in self.collections
            for group in coll.unique
        )

    def _sync_structure(self, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool) -> None:
        con = self._con()
        with self._translate():
            self._sync_tables(con, collections, logs, full=full)
            self._load_columns(con)

    def _drop(self, decl: Collection[Any] | Log[Any]) -> None:
        self._execute(f"DROP TABLE IF EXISTS {_q(decl.name)}")
        self._columns.pop(decl.name, None)

    def _replace_entries(self, log: Log[Any], entries: Sequence[RawEntry]) -> None:
        con = self._con()
        with self._translate():
            con.executemany(
                f"UPDATE {_q(log.name)} SET data=? WHERE seq=?",
                [(dumps(data), seq) for seq, _s, _v, _at, data in entries],
            )

    def _migration_lock(self) -> contextlib.AbstractContextManager[None]:
        return migration_lock(self.path.with_name(self.path.name + ".lock"), self.location, self.busy_timeout)

    def _backup(self, label: str) -> Path | None:
        """Copy the database to ``<stem>.backup-<label>-<time>-<hex><suffix>``, complete or not at all.

        Built aside under a hidden name with SQLite's backup API, turned into
        one self-contained file (rollback-journal mode, no ``-wal``), closed,
        flushed, then renamed into place (``place_backup``): a kill at any
        moment leaves no backup, or a whole one with no hot journal beside it.
        """
        dest = self.path.with_name(f"{self.path.stem}.backup-{backup_label(label)}{self.path.suffix or '.db'}")

        def build(tmp: Path) -> None:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            target = sqlite3.connect(tmp)
            try:
                with self._translate():
                    self._con().backup(target)
                    # One self-contained file, whatever opens it later.
                    target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()

        return place_backup(self.path, dest, build, self.location)

    def _after_migration(self) -> None:
        with self._translate():
            self._columns.clear()
            self._load_columns(self._con())
            self._schema_mark = -1  # the next write checks the versions again (a downgrade stops writes)

    def _sync_tables(
        self, con: sqlite3.Connection, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool
    ) -> None:
        """Create tables and (with ``full``) generated columns and indexes so they match the declarations."""
        for coll in collections:
            key_type = "INTEGER" if not coll.composite and coll.field_types[coll.key_fields[0]] is int else "TEXT"
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {_q(coll.name)} "
                f"(key {key_type} PRIMARY KEY NOT NULL, revision INTEGER NOT NULL, data TEXT NOT NULL)"
            )
            if full:
                self._sync_indexes(con, coll)
            else:
                # Mid-migration: records may pass through states the declared
                # unique fields forbid (two swap values; the next version drops
                # the constraint). The last step checks them on every backend
                # alike and then recreates these indexes.
                for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=? AND name LIKE ? ESCAPE '\\'",
                    (coll.name, "\\_statestore\\_u_\\_\\_%"),  # uj (constraints), ux, and older uq
                ).fetchall():
                    con.execute(f"DROP INDEX {_q(name)}")
        for log in logs:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {_q(log.name)} (seq INTEGER PRIMARY KEY, "
                "stream TEXT NOT NULL, version INTEGER NOT NULL, at TEXT NOT NULL, data TEXT NOT NULL, "
                "UNIQUE(stream, version))"
            )

    def _sync_indexes(self, con: sqlite3.Connection, coll: Collection[Any]) -> None:
        table = coll.name
        wanted: dict[str, tuple[bool, tuple[str, ...]]] = {}
        for field in coll.indexes:
            wanted[f"_statestore_ix__{table}__{field}"] = (False, (field,))
        unique_json: dict[str, tuple[str, ...]] = {}
        for group in coll.unique:
            # Lookups go through the plain columns; the constraint holds on each value's JSON text,
            # since SQLite's JSON functions return text cut at a NUL ("x\0a" and "x\0b" would clash).
            wanted[f"_statestore_ux__{table}__{'__'.join(group)}"] = (False, group)
            unique_json[f"_statestore_uj__{table}__{'__'.join(group)}"] = group
        if coll.composite:
            wanted[f"_statestore_key__{table}"] = (False, coll.key_fields)
        needed = {f for _, fields in wanted.values() for f in fields}
        needed_json = {f for fields in unique_json.values() for f in fields}
        columns = {r[1] for r in con.execute(f"PRAGMA table_xinfo({_q(table)})")}
        existing = {
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=? "
                "AND name LIKE '\\_statestore\\_%' ESCAPE '\\'",
                (table,),
            )
        }
        for name in existing - wanted.keys():
            con.execute(f"DROP INDEX {_q(name)}")
        for field in needed:
            if column_of(field) not in columns:
                con.execute(
                    f"ALTER TABLE {_q(table)} ADD COLUMN {_q(column_of(field))} "
                    f"GENERATED ALWAYS AS (json_extract(data, {json_path(field)})) VIRTUAL"
                )
        for field in needed_json:
            if json_column_of(field) not in columns:
                # json_extract with two paths returns a JSON array holding each value's text as
                # stored (escapes kept); a missing field or a null is SQL NULL, which never clashes.
                path = json_path(field)
                con.execute(
                    f"ALTER TABLE {_q(table)} ADD COLUMN {_q(json_column_of(field))} "
                    f"GENERATED ALWAYS AS (NULLIF(json_extract(data, {path}, {path}), '[null,null]')) VIRTUAL"
                )
        generated = {
            r[1] for r in con.execute(f"PRAGMA table_xinfo({_q(table)})") if r[1] not in _RESERVED and r[6] == 2
        }
        for column in generated - {column_of(f) for f in needed} - {json_column_of(f) for f in needed_json}:
            con.execute(f"ALTER TABLE {_q(table)} DROP COLUMN {_q(column)}")
        for name, fields in unique_json.items():
            wanted[name] = (True, fields)
        for name, (unique, fields) in wanted.items():
            if name in existing:
                continue
            cols = ", ".join(_q(json_column_of(f) if unique else column_of(f)) for f in fields)
            try:
                con.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX {_q(name)} ON {_q(table)} ({cols})")
            except sqlite3.IntegrityError:
                raise SchemaMismatchError(
                    self.location,
                    f"collection {table!r}: stored records already share values of unique {', '.join(fields)}",
                ) from None

    def _load_columns(self, con: sqlite3.Connection) -> None:
        """Learn the columns of every table (collections the code no longer declares too: migrations read them)."""
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        self._columns = {name: {r[1] for r in con.execute(f"PRAGMA table_xinfo({_q(name)})")} for name in tables}

    # ------------------------------------------------------------ transactions

    def _holder(self) -> _ThreadConnection:
        """This thread's connection and what goes with it (connecting first if it has none)."""
        try:
            return self._local.holder  # type: ignore[no-any-return]
        except AttributeError:
            self._con()
            return self._local.holder  # type: ignore[no-any-return]

    def _begin(self, *, write: bool) -> None:
        if not write:
            self._execute("BEGIN")
            return
        try:
            cur = self._local.holder.cur
        except AttributeError:
            cur = self._holder().cur
        try:
            cur.execute("BEGIN IMMEDIATE")
            if self._thread.migrating:  # this thread is migrating (the transaction called _state() first)
                return
            # user_version counts schema changes (_set_schema): one moved by another process's
            # migration means this code's records no longer fit; check before any write.
            mark = cur.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if mark != self._schema_mark:
            try:
                self._check_schemas_current()
            except BaseException:
                self._execute("ROLLBACK")
                raise
            self._schema_mark = mark

    def _commit(self) -> None:
        try:
            cur = self._local.holder.cur
        except AttributeError:  # closed by another thread meanwhile: COMMIT on a new connection fails, and says so
            cur = self._holder().cur
        try:
            cur.execute("COMMIT")
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def _rollback(self) -> None:
        con = self._con()
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")

    def _savepoint(self, name: str) -> None:
        self._execute(f"SAVEPOINT {_q(name)}")

    def _release(self, name: str) -> None:
        self._execute(f"RELEASE {_q(name)}")

    def _rollback_to(self, name: str) -> None:
        self._execute(f"ROLLBACK TO {_q(name)}")
        self._execute(f"RELEASE {_q(name)}")

    # ------------------------------------------------------------ records

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

    def _order(self, coll: Collection[Any]) -> str:
        if coll.composite:
            return ", ".join(self._column(coll, f) for f in coll.key_fields)
        return "key"

    def _select(self, coll: Collection[Any], build: Callable[[], tuple[str, list[Any]]]) -> list[Any]:
        """Run the query ``build`` makes; if a generated column vanished, re-read the table's columns once."""
        for attempt in (0, 1):
            sql, params = build()
            try:
                return self._con().execute(sql, params).fetchall()
            except UnicodeDecodeError as exc:
                raise self._error(exc) from None
            except sqlite3.Error as exc:
                if attempt or not isinstance(exc, sqlite3.OperationalError) or "no such column" not in str(exc):
                    raise self._error(exc) from None
                # Another process opened the store with a schema that dropped it.
                self._columns[coll.name] = {r[1] for r in self._all(f"PRAGMA table_xinfo({_q(coll.name)})")}
        raise AssertionError("unreachable")

    def _point_sql(self, coll: Collection[Any]) -> tuple[str, str, str, str, str]:
        """The get, revision, upsert, update and add statements of ``coll``, built once (a few µs a call otherwise)."""
        sql = self._point_sqls.get(coll.name)
        if sql is None:
            t = _q(coll.name)
            sql = self._point_sqls[coll.name] = (
                f"SELECT revision, data FROM {t} WHERE key=?",
                f"SELECT revision FROM {t} WHERE key=?",
                f"INSERT INTO {t}(key, revision, data) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET revision=excluded.revision, data=excluded.data",
                f"UPDATE {t} SET revision=?, data=? WHERE key=?",
                f"INSERT INTO {t}(key, revision, data) VALUES (?, 1, ?) ON CONFLICT(key) DO NOTHING",
            )
        return sql

    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        name = coll.name
        if name not in self._columns:  # a read-mode open of a store made before it was declared
            return None
        sql = self._point_sqls.get(name) or self._point_sql(coll)
        param = _KEY_JSON.encode(list(key)) if isinstance(key, tuple) else key
        try:
            con: sqlite3.Connection = self._local.holder.con
        except AttributeError:
            con = self._con()
        try:
            row = con.execute(sql[0], (param,)).fetchone()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None
        if row is None:
            return None
        revision, text = row
        if type(revision) is not int or revision < 1:
            self._revision_of(coll, key, revision)  # raises, saying what and where
        return revision, self._record(coll, key, text)

    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        if coll.name not in self._columns:
            return None
        row = self._one(self._point_sql(coll)[1], (self._key_param(coll, key),))
        return None if row is None else self._revision_of(coll, key, row[0])

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        sql = self._point_sqls.get(coll.name) or self._point_sql(coll)
        param = _KEY_JSON.encode(list(key)) if isinstance(key, tuple) else key
        try:
            con: sqlite3.Connection = self._local.holder.con
        except AttributeError:
            con = self._con()
        try:
            # A later revision almost always replaces a stored record (update, put): a plain
            # UPDATE costs less than an upsert. None matched (a copy keeping revisions): upsert.
            if revision > 1 and con.execute(sql[3], (revision, text, param)).rowcount > 0:
                return
            con.execute(sql[2], (param, revision, text))
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None

    def _add(self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str) -> int | None:
        # One statement where a SELECT and an upsert were two; the key's conflict leaves the row alone.
        sql = self._point_sqls.get(coll.name) or self._point_sql(coll)
        if self._execute(sql[4], (self._key_param(coll, key), text)).rowcount > 0:
            return None
        current = self._revision(coll, key)
        if current is None:  # the insert did nothing, yet no row holds the key: impossible in a write transaction
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: insert ignored, no row found")
        return current

    def _alone_sql(self, coll: Collection[Any]) -> tuple[str, str]:
        """The insert and the put of ``_write_alone`` into ``coll``, built once.

        Each is one statement that writes only while ``PRAGMA user_version``
        (read inside the statement, so under the write lock it takes) is the
        mark given as its third parameter. It is read through the function
        form ``pragma_user_version()``: a table of that name (a collection may
        be called so) would answer the plain name instead, and refuses the call. The put raises a stored revision
        by one, through ``statestore_raised`` (see ``_Raised``), only if it is
        an integer from 1 to 2**63 - 2: any other is left to the transaction
        path to report (a damaged revision) or refuse (no 64-bit successor).
        """
        sql = self._alone_sqls.get(coll.name)
        if sql is None:
            head = (
                f"INSERT INTO {_q(coll.name)} AS r(key, revision, data) SELECT ?, 1, ? "
                "WHERE (SELECT user_version FROM pragma_user_version()) = ? ON CONFLICT(key) DO "
            )
            sql = self._alone_sqls[coll.name] = (
                head + "NOTHING",
                head + f"UPDATE SET revision = {_RAISED}(r.revision + 1), data = excluded.data "
                "WHERE typeof(r.revision) = 'integer' AND r.revision BETWEEN 1 AND 9223372036854775806",
            )
        return sql

    def _write_alone(
        self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str, *, replace: bool
    ) -> int | None:
        """Insert (or, with ``replace``, put) in one statement of its own; None to take the transaction path.

        The statement runs in autocommit: SQLite takes the write lock for it,
        waiting up to ``busy_timeout`` (from no transaction, a changed snapshot
        is waited for too, as ``BEGIN IMMEDIATE`` does), and commits it at the
        store's durability before ``execute`` returns. It writes nothing, and
        the transaction path then runs and says why, when: the schemas may have
        moved (``user_version`` is not this object's mark, as ``_begin``
        checks), the key is stored (insert), or its revision is damaged or at
        the last 64-bit value (put). Declined outright: a closed or read-only
        store, a write inside a transaction or a migration, a table not
        known. A busy store raises StoreBusyError at once (it waited already);
        any other error writes nothing and the transaction path runs again.
        """
        if self._closed or self.mode != "write" or self._schema_mark < 0 or coll.name not in self._columns:
            return None
        state = self._state()
        if state.depth or state.migrating:
            return None
        try:
            holder = self._local.holder
        except AttributeError:
            holder = self._holder()
        sql = self._alone_sqls.get(coll.name) or self._alone_sql(coll)
        param = _KEY_JSON.encode(list(key)) if isinstance(key, tuple) else key
        raised = holder.raised
        raised.value = 0
        try:
            changed = holder.con.execute(sql[1 if replace else 0], (param, text, self._schema_mark)).rowcount
        except sqlite3.Error as exc:
            error = self._error(exc)
            if isinstance(error, StoreBusyError):
                raise error from None
            return None
        if changed != 1:
            return None
        return raised.value or 1

    def _write_many(self, coll: Collection[Any], rows: Iterable[tuple[KeyValue, int, dict[str, Any], str]]) -> None:
        with self._translate():
            self._con().executemany(
                f"INSERT INTO {_q(coll.name)}(key, revision, data) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET revision=excluded.revision, data=excluded.data",
                ((self._key_param(coll, key), revision, text) for key, revision, _data, text in rows),
            )

    def _add_entries(self, log: Log[Any], rows: Iterable[tuple[str, int, str, dict[str, Any], str]]) -> None:
        with self._translate():
            self._con().executemany(
                f"INSERT INTO {_q(log.name)}(stream, version, at, data) VALUES (?, ?, ?, ?)",
                ((stream, version, at, text) for stream, version, at, _data, text in rows),
            )

    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        cur = self._execute(f"DELETE FROM {_q(coll.name)} WHERE key=?", (self._key_param(coll, key),))
        return cur.rowcount > 0

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        if not self._has(coll.name):
            return []

        # SQLite's JSON functions return text cut at its first NUL, so the columns hold "a" for
        # "a\0z": the query asks for that cut text, and the rows are then compared exactly.
        params = [_cut(v) for v in where.values()]

        def build() -> tuple[str, list[Any]]:
            clauses = [f"{self._column(coll, field)} IS ?" for field in where]
            sql = f"SELECT key, revision, data FROM {_q(coll.name)}"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            return sql + f" ORDER BY {self._order(coll)}", params

        # SQL sees text only up to a NUL ("x\0y" IS "x"): such rows are checked here.
        texts = [(f, v) for f, v in where.items() if isinstance(v, str)]
        nul_query = any("\0" in v for _f, v in texts)  # asked for its cut text: every row is checked
        out: list[RawRecord] = []
        composite, record = coll.composite, self._record
        for k, rev, text in self._select(coll, build):
            key = self._key_value(coll, k) if composite else k
            data = record(coll, key, text)
            if (
                texts
                and (nul_query or not isinstance(text, str) or _NUL in text)
                and not all(data.get(f) == v for f, v in texts)
            ):
                continue
            if type(rev) is not int or rev < 1:
                self._revision_of(coll, key, rev)  # raises, saying what and where
            out.append((key, rev, data))
        if coll.composite:
            out.sort(key=_by_key)  # the key columns are cut at a NUL too: Python orders the tuples exactly
        return out

    # ------------------------------------------------------------ queries
    #
    # Conditions and order become SQL over the generated columns (json_extract
    # for fields without one), but SQL sees a string only up to its first NUL
    # (json_extract stops there) and a datetime only to the millisecond
    # (julianday). So SQL is asked for a superset, in an order that never
    # puts a row before one that truly precedes it, and Python has the final
    # word: every row is checked against the exact model (Query.matches), the
    # rows read are sorted exactly, and reading stops as soon as no unread
    # row can come before the last one kept.

    def _value_sql(self, coll: Collection[Any], field: str, kind: str) -> str:
        col = self._column(coll, field)
        return f"julianday({col})" if kind == "datetime" else col

    def _term_sql(self, coll: Collection[Any], term: Term) -> tuple[str | None, list[Any], str | None]:
        """SQL for ``term``: a test every row meeting it passes (None: no test), its parameters, and
        the exact test (same parameters) for rows holding no NUL in any string (None: there is none)."""
        col = self._column(coll, term.field)
        op, value, kind = term.op, term.value, term.kind
        if op == "eq" and value is None:
            return f"{col} IS NULL", [], f"{col} IS NULL"
        if op == "ne" and value is None:
            return f"{col} IS NOT NULL", [], f"{col} IS NOT NULL"
        if op in ("eq", "in"):
            values = [value] if op == "eq" else list(value)
            texts = [_cut(v) for v in values if v is not None]
            sql = f"{col} IN ({', '.join('?' * len(texts))})" if texts else "0"
            if None in values:
                sql = f"({sql} OR {col} IS NULL)"
            # Datetime equality is of the stored text, which SQL compares exactly.
            return sql, texts, None if any(_has_nul(v) for v in values) else sql
        if op == "ne":
            if kind in ("number", "bool"):
                return f"{col} IS NOT ?", [value], f"{col} IS NOT ?"
            return None, [], None  # a text cut at a NUL may look equal to the operand
        if op == "prefix":
            if _has_nul(value):
                return f"{col} = ?", [_cut(value)], None
            end = prefix_end(value)
            if end is None:
                return f"{col} >= ?", [value], f"{col} >= ?"
            sql = f"({col} >= ? AND {col} < ?)"
            return sql, [value, end], sql
        if kind == "datetime":
            # Widened to whole milliseconds; a text SQLite cannot read (an ISO form it does not know) is left to Python.
            cmp = ">=" if op in ("gt", "ge") else "<="
            return (
                f"(julianday({col}) {cmp} julianday(?) OR (julianday({col}) IS NULL AND {col} IS NOT NULL))",
                [value],
                None,
            )
        exact = f"{col} {_SQL_OPS[op]} ?"
        if kind in ("number", "bool"):
            return exact, [value], exact
        if _has_nul(value):
            # Compared as SQL sees it (cut at the NUL): widened, then Python decides.
            return f"{col} {'>=' if op in ('gt', 'ge') else '<='} ?", [_cut(value)], None
        # "x\0y" > "x", but SQL sees "x": gt is widened to ge for rows that may hold a NUL.
        return (f"{col} >= ?" if op == "gt" else exact), [value], exact

    def _pushable(self, query: Query) -> bool:
        return all(t.kind != "other" for t in query.terms) and all(o.kind != "other" for o in query.order)

    def _query_sql(self, coll: Collection[Any], query: Query) -> tuple[str, list[Any], int]:
        """The SELECT for ``query``: key, revision, data, then the values SQL orders by; and how many of those."""
        clauses, params = [], []
        for term in query.terms:
            sql, args, _exact = self._term_sql(coll, term)
            if sql is not None:
                clauses.append(sql)
                params.extend(args)
        if query.after is not None:
            clause, args = self._after_sql(coll, query)
            if clause:
                clauses.append(clause)
                params.extend(args)
        # Order by the fields up to and including the first whose SQL value may
        # tie where Python's does not (text, datetimes): a later field would
        # otherwise reorder rows that the earlier field truly orders already.
        # Descending text also sorts rows that may hold a NUL first: "x\0" sorts
        # before "x" descending, and SQL sees both as "x".
        used, exprs, order = 0, [], []
        for o in query.order:
            used += 1
            expr = self._value_sql(coll, o.field, o.kind)
            exprs.append(expr)
            order.append(f"{expr} {'DESC' if o.descending else 'ASC'}")
            if o.kind == "str" and o.descending:
                flag = f"instr({_q(coll.name)}.data, '{_NUL}') > 0"
                exprs.append(flag)
                order.append(f"{flag} DESC")
            if o.kind in ("str", "datetime"):
                break
        if used == len(query.order) and (order or query.need is not None):
            # Without order or limit every matching row is read and sorted by key
            # in Python: ORDER BY key would steer the planner off the fields' indexes.
            order.append(self._order(coll))
        select = ", ".join(["key", "revision", "data", *exprs])
        sql = f"SELECT {select} FROM {_q(coll.name)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order:
            sql += " ORDER BY " + ", ".join(order)
        return sql, params, used

    def _after_sql(self, coll: Collection[Any], query: Query) -> tuple[str, list[Any]]:
        """SQL every row after ``query.after`` meets (widened as the order values are; Python decides)."""
        assert query.after is not None
        values, last = query.after
        if not query.order:
            if coll.composite:
                cols = ", ".join(self._column(coll, f) for f in coll.key_fields)
                return f"({cols}) > ({', '.join('?' * len(last))})", list(last)
            return "key > ?", [last]
        o, value = query.order[0], values[0]
        col = self._column(coll, o.field)
        if value is None:
            # Nulls come first ascending (every row may follow), last descending (only nulls may).
            return ("", []) if not o.descending else (f"{col} IS NULL", [])
        expr = self._value_sql(coll, o.field, o.kind)
        operand = "julianday(?)" if o.kind == "datetime" else "?"
        if len(query.order) == 1 and o.kind != "datetime" and not _has_nul(value):
            # Ties go on by key, so a batch does not re-read the ties before it. A row
            # that may hold a NUL can tie in SQL without tying exactly: Python decides.
            if coll.composite:
                cols = ", ".join(self._column(coll, f) for f in coll.key_fields)
                after_key, key_args = f"({cols}) > ({', '.join('?' * len(last))})", list(last)
            else:
                after_key, key_args = "key > ?", [last]
            if o.kind == "str":
                after_key = f"({after_key} OR instr({_q(coll.name)}.data, '{_NUL}') > 0)"
            beyond = f"({col} < ? OR {col} IS NULL)" if o.descending else f"{col} > ?"
            return f"({beyond} OR ({col} = ? AND {after_key}))", [value, value, *key_args]
        if o.descending:
            return f"({expr} <= {operand} OR {col} IS NULL)", [_cut(value)]
        return f"{expr} >= {operand}", [_cut(value)]

    def _cursor(self, coll: Collection[Any], query: Query) -> tuple[sqlite3.Cursor, int]:
        """A cursor over ``query``'s SELECT; if a generated column vanished, re-read the table's columns once."""
        for attempt in (0, 1):
            sql, params, used = self._query_sql(coll, query)
            try:
                return self._con().execute(sql, params), used
            except sqlite3.Error as exc:
                if attempt or not isinstance(exc, sqlite3.OperationalError) or "no such column" not in str(exc):
                    raise self._error(exc) from None
                self._columns[coll.name] = {r[1] for r in self._all(f"PRAGMA table_xinfo({_q(coll.name)})")}
        raise AssertionError("unreachable")

    def _query(self, coll: Collection[Any], query: Query, *, copy: bool = True) -> list[RawRecord]:
        if not self._has(coll.name):
            return []
        if not self._pushable(query):
            return super()._query(coll, query, copy=copy)
        need = query.need
        cur, used = self._cursor(coll, query)
        complete = used == len(query.order)
        # Where each used order field's SQL value sits among the selected ones (after a flag, if any).
        at, spot = [], 3
        for o in query.order[:used]:
            at.append(spot)
            spot += 2 if o.kind == "str" and o.descending else 1
        descending = [o.descending for o in query.order[:used]]
        # Python checks a term SQL answered exactly only in rows that may hold a NUL
        # (numbers and booleans never need it); the others always.
        always, if_nul = [], []
        for term in query.terms:
            wide, _args, exact = self._term_sql(coll, term)
            if exact is None or wide != exact:
                always.append(term)
            elif term.kind not in ("number", "bool"):
                if_nul.append(term)
        # SQL's order is exact for rows without a NUL when it covers every order field and no datetime.
        sql_exact = complete and all(o.kind != "datetime" for o in query.order)
        dirty = False  # a kept row may hold a NUL
        kept: list[tuple[Any, ...]] = []
        boundary: tuple[Any, ...] | None = None  # the need-th row in exact order, once known
        with self._translate():
            for row in cur:
                if need is not None and len(kept) >= need:
                    if sql_exact and not dirty:
                        break
                    if boundary is None:
                        boundary = query.sort(kept)[need - 1]
                    c = _sql_compare([row[i] for i in at], [boundary[3][i - 3] for i in at], descending)
                    if c > 0 or (c == 0 and complete and _lossless(query, boundary)):
                        break  # no unread row can come before the ones kept
                key = self._key_value(coll, row[0])
                text = row[2]
                data = self._record(coll, key, text)
                nul = not isinstance(text, str) or _NUL in text
                if always and not all(t.matches(data) for t in always):
                    continue
                if query.after is not None and not query.follows(key, data):
                    continue
                if nul and if_nul and not all(t.matches(data) for t in if_nul):
                    continue
                dirty = dirty or nul
                kept.append((key, self._revision_of(coll, key, row[1]), data, row[3:]))
                boundary = None
        if query.order and (dirty or not sql_exact):
            kept = query.sort(kept)
        elif not query.order and need is None:
            kept.sort(key=_first)
        return [(k, r, d) for k, r, d, _ in query.window(kept)]

    def _count_where(self, coll: Collection[Any], query: Query) -> int:
        if not self._has(coll.name):
            return 0
        if not query.terms:
            return self._count(coll)
        if not self._pushable(query):
            return super()._count_where(coll, query)
        parts = [self._term_sql(coll, t) for t in query.terms]
        params = [p for _, args, _ in parts for p in args]
        wide = " AND ".join(sql for sql, _, _ in parts if sql is not None) or "1"
        table = _q(coll.name)

        def python(sql: str, args: list[Any]) -> int:
            rows = self._all(f"SELECT key, data FROM {table} WHERE {sql}", args)
            return sum(1 for k, text in rows if query.matches(self._record(coll, self._key_value(coll, k), text)))

        if any(exact is None for _, _, exact in parts):
            return python(wide, params)
        exact = " AND ".join(e for _, _, e in parts if e is not None)
        if all(t.kind in ("number", "bool") for t in query.terms):
            return int(self._one(f"SELECT count(*) FROM {table} WHERE {exact}", params)[0])
        # SQL is exact for rows holding no NUL in any string; Python checks the others.
        clean = self._one(f"SELECT count(*) FROM {table} WHERE {exact} AND instr(data, ?) = 0", [*params, _NUL])[0]
        return int(clean) + python(f"{wide} AND instr(data, ?) > 0", [*params, _NUL])

    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        if not self._has(coll.name):
            return []
        rows = self._select(coll, lambda: (f"SELECT key FROM {_q(coll.name)} ORDER BY {self._order(coll)}", []))
        keys = [self._key_value(coll, k) for (k,) in rows]
        if coll.composite:
            keys.sort()  # as in _scan: exact order whatever NULs the key parts hold
        return keys

    def _count(self, coll: Collection[Any]) -> int:
        if not self._has(coll.name):
            return 0
        return int(self._one(f"SELECT count(*) FROM {_q(coll.name)}")[0])

    # ------------------------------------------------------------ logs

    def _log_sql(self, log: Log[Any]) -> tuple[str, str]:
        """The stream-version and append statements of ``log``, built once."""
        sql = self._log_sqls.get(log.name)
        if sql is None:
            t = _q(log.name)
            sql = self._log_sqls[log.name] = (
                f"SELECT max(version) FROM {t} WHERE stream=?",
                f"INSERT INTO {t}(stream, version, at, data) VALUES (?, ?, ?, ?)",
            )
        return sql

    def _stream_version(self, log: Log[Any], stream: str) -> int:
        sql = (self._log_sqls.get(log.name) or self._log_sql(log))[0]
        try:
            con: sqlite3.Connection = self._local.holder.con
        except AttributeError:
            con = self._con()
        try:
            version = con.execute(sql, (stream,)).fetchone()[0] or 0
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None
        if type(version) is not int:  # SQLite orders text after every number: max() finds it
            raise CorruptStoreError(self.location, f"log table {log.name!r}, stream {stream!r}: version {version!r}")
        return version

    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        sql = (self._log_sqls.get(log.name) or self._log_sql(log))[1]
        try:
            con: sqlite3.Connection = self._local.holder.con
        except AttributeError:
            con = self._con()
        try:
            seq = con.execute(sql, (stream, version, at, text)).lastrowid
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._error(exc) from None
        assert seq is not None
        return seq

    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        if not self._has(log.name):
            return []
        # No "seq > 0" when reading from the start: it would tempt the planner
        # into a rowid scan instead of the (stream, version) index.
        sql = f"SELECT seq, stream, version, at, data FROM {_q(log.name)} WHERE seq > ?"
        params: list[Any] = [after]
        if after == 0:
            sql, params = sql.replace("seq > ?", "1"), []
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        elif prefix is not None:
            # A range on the (stream, version) index; LIKE would scan and treat % and _ as wildcards.
            sql += " AND stream >= ?"
            params.append(prefix)
            end = prefix_end(prefix)
            if end is not None:
                sql += " AND stream < ?"
                params.append(end)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._entry_row(log, *row) for row in self._all(sql, params)]

    def _entry_count(self, log: Log[Any]) -> int:
        if not self._has(log.name):
            return 0
        return int(self._one(f"SELECT count(*) FROM {_q(log.name)}")[0])

    def _last_seq(self, log: Log[Any]) -> int:
        if not self._has(log.name):
            return 0
        row = self._one(f"SELECT max(seq) FROM {_q(log.name)}")
        return int(row[0] or 0)
