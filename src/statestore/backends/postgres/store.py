"""PostgresStore: a store in one schema of a PostgreSQL database, for state shared by many machines.

Layout (DESIGN §6, as on SQLite): one table per collection named after it
with ``key``, ``revision`` and ``data`` (the canonical JSON text, kept as text
so it reads back byte for byte) plus a lookup column and an index
for each declared index and unique field (the field's canonical JSON text,
written with the record); one table per log with ``seq``,
``stream``, ``version``, ``at``, ``data`` and ``UNIQUE(stream, version)``;
internal tables prefixed ``_statestore_``. A ``str`` key is stored as its
UTF-8 bytes (``bytea``: PostgreSQL text cannot hold NUL, and bytes sort by
code point), an ``int`` key as ``bigint``, a composite key as its JSON array.

Concurrency: every write transaction first takes a transaction-level
advisory lock derived from the schema's name, so writers to one store
serialize across every client on every machine, exactly as SQLite's
``BEGIN IMMEDIATE`` serializes them on one machine; reads never wait. Waits
are bounded by ``lock_timeout`` (the busy timeout), then StoreBusyError.
Migrations serialize on a second, session-level advisory lock.

Single writes need no transaction: ``insert`` and ``put`` (without
``expect_revision``) outside a transaction, into a collection without unique
fields, are one autocommit statement each (see ``_write_alone``). It takes
the same advisory lock *shared*, only if it is free at once
(``pg_try_advisory_xact_lock_shared``), so such writes run side by side (two
on one key queue on its row) while every write transaction still excludes
them; and it checks the schema mark on the mark's row locked ``FOR SHARE``,
which makes PostgreSQL read the row's newest committed version rather than
the one the statement's snapshot (taken before the lock) saw, so such a
write never lands in a store another client migrated meanwhile. Whenever it
cannot go ahead (the lock is held, the mark moved, an insert's key is
stored) it writes nothing and the operation takes the transaction path,
which waits or says why.

psycopg (3) is an optional dependency: this module is imported only when a
``postgresql://`` location is opened, and says which extra to install when
it is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import select
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from statestore.backends import rawjson
from statestore.backends.postgres.queries import (
    Clause,
    OrderPlan,
    after_clause,
    beyond,
    equal_clause,
    number_odd,
    number_value,
    order_plan,
    term_clause,
)
from statestore.backends.postgres.server import MAX_IDENTIFIER as _MAX_IDENTIFIER
from statestore.backends.postgres.server import connect_timeout as _connect_timeout
from statestore.backends.postgres.server import lock_key as _lock_key
from statestore.backends.postgres.server import lock_timeout as _lock_timeout
from statestore.backends.postgres.server import password_of as _password
from statestore.backends.postgres.server import q as _q
from statestore.backends.postgres.server import quick_connect as _quick_connect
from statestore.backends.postgres.server import split_url
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
from statestore.query import Query, field_kind, same_value
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Durability, Mode, RawEntry, RawRecord, Store, StoredSchemas

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import pq
    from psycopg.adapt import PyFormat, Transformer
except ImportError:  # pragma: no cover - the locations module checks first and names the extra
    psycopg = None  # type: ignore[assignment]

FORMAT = 1
_RESERVED = {"key", "revision", "data"}
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_MAX_PENDING = 1000  # deferred statements sent together at most
_NOTIFY_WAIT = 5.0  # longest wait for a notification before follow looks anyway
_NOT_COMMITTED = "the open transaction was not committed"  # how a lost connection's error ends
_EXTRA = "PostgreSQL locations need psycopg: pip install 'statestore[postgres]'"


def _literal(text: str) -> str:
    """An SQL string literal (for names validated as identifiers; never for data)."""
    return "'" + text.replace("'", "''") + "'"


def column_of(field: str) -> str:
    """The lookup column for ``field``: its own name unless the layout uses it (then ``field:NAME``)."""
    return f"field:{field}" if field in _RESERVED else field


def field_of(column: str) -> str:
    """The field a lookup column holds (the inverse of :func:`column_of`)."""
    return column[len("field:") :] if column.startswith("field:") else column


def field_text(data: Mapping[str, Any], field: str) -> str | None:
    """A top-level field's value as its canonical JSON text; None when missing or null.

    This is what a lookup column holds. The backend writes it with the
    record, from the same canonical encoder as ``data``: a generated column
    would have to parse ``data`` on the server, and PostgreSQL's JSON parser
    refuses a ``\\u0000`` anywhere in the document, which statestore stores.
    """
    value = data.get(field)
    return None if value is None else dumps(value)


class _ThreadConnection:
    """One thread's connection, held in its thread-local storage, with its prepared statements."""

    __slots__ = ("__weakref__", "con", "generation", "loader", "pg", "prepared")

    def __init__(self, con: Any) -> None:
        self.con = con
        self.pg = con.pgconn
        self.generation = -1  # the store's table generation its prepared statements were made for
        # (SQL, parameter types) -> the name of the statement prepared on this connection.
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self.loader = Transformer.from_context(con)


class _Rows:
    """What one statement returned: its rows (as tuples) and how many rows it touched."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


# A statement ready to send: its SQL (``%s`` placeholders), its encoded parameters (None: it has
# none), their type OIDs and formats, and whether to run it as a statement prepared on the
# connection (the frequent point lookups and writes: planned once) or unnamed (planned for
# its parameters each time: ranges, where a generic plan could pick the wrong index).
_Statement = tuple[str, "list[bytes | None] | None", tuple[int, ...], "list[int] | None", bool]

_TEXT, _BYTEA, _INT8, _UNKNOWN = 25, 17, 20, 0
_NUL_MESSAGE = "PostgreSQL text fields cannot contain NUL (0x00) bytes"


def _encode(params: Sequence[Any]) -> tuple[list[bytes | None], tuple[int, ...], list[int]]:
    """Parameters as libpq takes them: str as UTF-8 text, int as int8 text, bytes as binary bytea, None as NULL.

    A str holding NUL raises psycopg.DataError (libpq would cut it there);
    a lone surrogate, psycopg.DataError too: neither reaches the server.
    Any other type (a float, a bool, a list) has all the parameters adapted
    by psycopg instead.
    """
    values: list[bytes | None] = []
    types: list[int] = []
    formats: list[int] = []
    for value in params:
        kind = type(value)
        if kind is str:
            if "\0" in value:
                raise psycopg.DataError(_NUL_MESSAGE)
            try:
                values.append(value.encode())
            except UnicodeEncodeError as exc:
                raise psycopg.DataError(str(exc)) from None
            types.append(_TEXT)
            formats.append(0)
        elif kind is int:
            values.append(b"%d" % value)
            types.append(_INT8)
            formats.append(0)
        elif kind is bytes:
            values.append(value)
            types.append(_BYTEA)
            formats.append(1)
        elif value is None:
            values.append(None)
            types.append(_UNKNOWN)
            formats.append(0)
        else:  # a float, a bool, a list for ANY(...): psycopg's own adaptation, for them all
            return _adapted(params)
    return values, tuple(types), formats


def _adapted(params: Sequence[Any]) -> tuple[list[bytes | None], tuple[int, ...], list[int]]:
    """Parameters adapted as psycopg adapts them (its default types and formats)."""
    adapter = Transformer()
    dumped = adapter.dump_sequence(params, [PyFormat.AUTO] * len(params))
    values = [None if v is None else bytes(v) for v in dumped]
    return values, tuple(adapter.types or ()), [int(f) for f in adapter.formats or ()]


def _refuse(_name: str) -> NoReturn:
    raise ValueError("not JSON")


# The C scanner of a strict decoder: the fast way to read the canonical JSON this backend
# writes. Whatever it does not accept whole goes the careful way (rawjson.load), which
# accepts exactly the same texts and says what is wrong with the others.
_scan_json: Any = json.JSONDecoder(parse_constant=_refuse).scan_once  # type: ignore[attr-defined]


def _fast_record(text: Any) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it needs the careful look (damage, or not an object)."""
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError, RecursionError, TypeError):
        return None
    if end != len(text) or type(value) is not dict:
        return None
    return value


def _numbered(sql: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``, … (the statements here hold no other ``%``)."""
    count = 0

    def number(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub("%s", number, sql)


def _forget(connections: list[Any], lock: threading.Lock, con: Any) -> None:
    """Close the connection of a thread that ended (unless close() already did)."""
    with lock:
        if con not in connections:
            return
        connections.remove(con)
    with contextlib.suppress(Exception):
        con.close()


def _receive(pg: Any, syncs: int) -> list[Any]:
    """Every result of a pipeline up to its ``syncs``-th sync, waiting for the socket (interruptibly) in between."""
    fd = pg.socket
    while pg.flush():  # 1: more to send (a big record); read meanwhile so the server never blocks
        readable, _w, _x = select.select([fd], [fd], [])
        if readable:
            pg.consume_input()
    results: list[Any] = []
    sync = pq.ExecStatus.PIPELINE_SYNC
    while True:
        while pg.is_busy():
            select.select([fd], [], [])
            pg.consume_input()
        res = pg.get_result()
        if res is None:
            if pg.status != pq.ConnStatus.OK:  # lost: no sync is coming
                for got in results:
                    if got.status == pq.ExecStatus.FATAL_ERROR:
                        raise pg_errors.error_from_result(got, encoding="utf-8")
                raise psycopg.OperationalError("the connection to the server was lost")
            continue  # the end of one statement's results
        if res.status == sync:
            syncs -= 1
            if not syncs:
                return results
            continue
        results.append(res)


class PostgresStore(Store):
    """A store in one PostgreSQL schema (writers serialize on an advisory lock).

    ``busy_timeout`` bounds every wait for a lock (the store's write lock,
    the migration lock) and the connection attempt; then StoreBusyError.
    Each thread gets its own connection; a forked child opens new ones and
    leaves the parent's alone. Read mode connects with
    ``default_transaction_read_only`` so the server itself refuses writes. A
    lost connection is a BackendError saying so; the server rolls the open
    transaction back, so no write is half applied.
    """

    # One SQL statement is all-or-nothing, so single writes need no savepoint.
    _atomic_writes = True
    # _query filters every field on the server (JSON functions where there is no lookup column).
    _equality_through_scan = False
    #: Rows a limited query reads in its first batch beyond those it needs (the batches then grow fourfold).
    _query_slack = 16

    def __init__(
        self,
        url: str,
        schema: Schema | Sequence[Schema],
        *,
        mode: Mode = "write",
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
        check_history: bool = True,
        backup: bool = True,
    ) -> None:
        if psycopg is None:  # pragma: no cover - locations.connect checks before importing
            raise BackendError(url.split("?", 1)[0].rsplit("@", 1)[-1], _EXTRA)
        self._url, self.pg_schema, shown = split_url(url)
        self._secret = _password(url)
        super().__init__(shown, schema, mode=mode, codec=codec or Codec())
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.durability: Durability = durability
        self.busy_timeout = float(busy_timeout)
        for coll in (c for sch in self.schemas for c in sch.collections):
            for field in coll.lookup_fields:
                # PostgreSQL would cut a longer column name, and two such names could become one.
                if len(column_of(field).encode()) > _MAX_IDENTIFIER:
                    raise SchemaError(
                        f"collection {coll.name!r}: index or unique field {field!r} is longer than the "
                        f"{_MAX_IDENTIFIER} bytes PostgreSQL allows a column name: index a field with a shorter name"
                    )
        self._s = _q(self.pg_schema)
        self._write_lock = _lock_key("write", self.pg_schema)
        self._migrate_lock = _lock_key("migrate", self.pg_schema)
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._columns: dict[str, set[str]] = {}
        self._lookup: dict[str, tuple[str, ...]] = {}  # table -> fields with a lookup column
        self._upserts: dict[str, str] = {}
        self._alone: dict[tuple[str, bool], str] = {}  # (collection, replace) -> _write_alone's statement
        self._generation = 0
        # False once the server lost a statement prepared on a connection (a pooler that hands
        # each transaction another server connection): from then on every statement is unnamed.
        self._prepare = True
        self._schema_mark = -1
        try:
            if mode == "write":
                self._initialize()
            elif not self._internal_tables():
                raise StoreNotFoundError(self.location)
            self._load_columns()
            self._schema_mark = self._mark()
            self._open_schemas(check_history=check_history, backup=backup)
            self._load_columns()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ connections

    def _connect(self) -> Any:
        settings = {
            "lock_timeout": _lock_timeout(self.busy_timeout),
            "synchronous_commit": "on",
            "default_transaction_read_only": "on" if self.mode == "read" else "off",
            "client_encoding": "UTF8",
        }
        try:
            con = psycopg.connect(
                self._url, autocommit=True, connect_timeout=_connect_timeout(self.busy_timeout), prepare_threshold=None
            )
            # One round trip for them all.
            con.execute(
                "SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(settings)),
                [part for item in settings.items() for part in item],
            )
        except psycopg.Error as exc:
            raise self._error(exc, connecting=True) from None
        with self._lock:
            self._connections.append(con)
        return con

    def _con(self) -> Any:
        return self._holder().con

    def _holder(self) -> _ThreadConnection:
        """This thread's connection (a new one the first time, or after the last was lost)."""
        try:
            holder: _ThreadConnection = self._local.holder
        except AttributeError:
            pass
        else:
            if not holder.con.closed:
                return holder
        self._state()  # resets per-thread state after fork()
        local = self._local
        in_transaction = getattr(local, "tx_open", False)
        if in_transaction and getattr(local, "tx_con", None) is not None:
            # The transaction's connection is gone, and its writes with it: what follows must not
            # go to a new connection as if they had been made (until the transaction ends).
            raise BackendError(self.location, f"lost the connection to the server; {_NOT_COMMITTED}")
        con = self._connect()
        if in_transaction:
            local.tx_con = con
        holder = local.holder = _ThreadConnection(con)
        # When the thread ends its holder goes, and so does its connection.
        weakref.finalize(holder, _forget, self._connections, self._lock, con)
        return holder

    def _after_fork(self) -> None:
        # The parent's connections share their sockets with the parent: closing
        # one here would send the server a goodbye that ends the parent's session.
        # Point each inherited descriptor at /dev/null first, so closing it (now
        # or when collected) touches only this process.
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for con in self._connections:
                with contextlib.suppress(Exception):
                    os.dup2(devnull, con.pgconn.socket)
                with contextlib.suppress(Exception):
                    con.close()
        finally:
            os.close(devnull)
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()

    def _close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            for con in connections:
                with contextlib.suppress(Exception):
                    con.close()
        self._local = threading.local()

    def same_store(self, url: str) -> bool:
        """True if ``url`` names this store (same schema on the same server and database)."""
        connect, schema, _shown = split_url(url)
        if schema != self.pg_schema:
            return False
        try:
            with _quick_connect(connect) as other:
                theirs = other.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
                db = other.execute("SELECT current_database()").fetchone()
            ours = self._one("SELECT system_identifier FROM pg_control_system()")
            our_db = self._one("SELECT current_database()")
        except (psycopg.Error, BackendError):
            return False
        return bool(theirs == ours and db == our_db)

    def size_bytes(self) -> int:
        """Bytes the store's tables take on the server (with their indexes)."""
        row = self._one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (self.pg_schema,),
        )
        return int(row[0])

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "****")
        return text

    def _error(self, exc: BaseException, *, connecting: bool = False) -> Exception:
        """The statestore error for a psycopg one (the password never appears in it)."""
        text = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if isinstance(exc, pg_errors.LockNotAvailable):
            return StoreBusyError(self.location, self.busy_timeout)
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return ReadOnlyError(self.location, f"write ({text})")
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return BackendError(self.location, f"permission denied: {text}")
        if connecting:
            return BackendError(self.location, f"cannot connect to the server: {text}")
        state = getattr(exc, "sqlstate", None) or ""
        # Class 08 and the server shutting down (57P0x) lose the connection; other operational
        # errors (statement timeout, disk full, a program limit) are the server's answer on a live one.
        if state.startswith(("08", "57P0")) or (isinstance(exc, psycopg.Error) and self._broken()):
            return BackendError(
                self.location,
                f"lost the connection to the server ({text}); {_NOT_COMMITTED}",
            )
        if isinstance(exc, pg_errors.InvalidSqlStatementName):
            return BackendError(
                self.location,
                f"{text}: a connection pooler that does not keep prepared statements? "
                "This store prepares none from now on; run the transaction again",
            )
        if isinstance(exc, psycopg.DataError) and "NUL" in text:
            return BackendError(self.location, f"PostgreSQL text cannot hold NUL characters ({text})")
        return BackendError(self.location, text)

    def _broken(self) -> bool:
        try:
            con = self._local.holder.con
        except AttributeError:
            return False
        return bool(con.closed or con.broken)

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(exc) from None

    # The statements of a transaction travel in pipelines, as prepared statements: its BEGIN
    # (with the write lock and the schema mark) is sent together with its first statement, and
    # writes (whose results no one reads) with the statement after them or with COMMIT: one
    # round trip instead of three for a single put. They wait in ``pending``, encoded.

    @staticmethod
    def _statement(sql: str, params: Any, prepare: bool = False) -> _Statement:
        """``sql`` ready to send, with its parameters encoded (``params=None``: it has none)."""
        if params is None:
            return sql, None, (), None, prepare
        values, types, formats = _encode(params)
        return sql, values, types, formats, prepare

    def _run(self, sql: str | None, params: Any = None, prepare: bool = False) -> Any:
        """Execute ``sql`` after whatever the transaction has pending, in one round trip; its rows.

        ``sql=None`` only sends what is pending. psycopg errors propagate (the
        callers translate them).
        """
        local = self._local
        failed = getattr(local, "tx_failed", None)
        if failed is not None:
            # A statement of this transaction failed on the server: the transaction is over there
            # (aborted, or rolled back), so nothing more may run in it as if it were alive.
            raise BackendError(self.location, f"{failed}; the transaction was rolled back: end its block")
        pending: list[_Statement] | None = getattr(local, "pending", None)
        # Encoded before anything is taken from pending: a value that cannot be sent (a NUL in
        # text) fails here, with the transaction's earlier writes still waiting to be sent.
        statement = None if sql is None else self._statement(sql, params, prepare)
        if not pending:
            if statement is None:
                return None
            pending = [statement]
            mark_at: int | None = None
        else:
            mark_at = local.mark_at
            local.pending, local.mark_at = None, None
            if statement is not None:
                pending.append(statement)
        holder = self._holder()
        try:
            results = self._send(holder, pending)
        except psycopg.Error as exc:
            con = holder.con
            in_transaction = getattr(local, "tx_open", False)
            if mark_at is not None and not self._migrating and not con.closed and not con.broken:
                # The statement may have failed because another client changed the store's
                # schemas (a table went): say that, as the mark would have, rather than the symptom.
                with contextlib.suppress(psycopg.Error):
                    self._send(holder, [("ROLLBACK", None, (), None, False)])
                try:
                    self._check_schemas_current()
                finally:
                    if in_transaction:  # rolled back: nothing revives it
                        local.tx_failed, local.tx_failed_depth = self._failure(exc), 0
            elif in_transaction and not con.closed:
                local.tx_failed = self._failure(exc)
                local.tx_failed_depth = self._state().depth
            raise
        if mark_at is not None:
            self._check_mark(results[mark_at].fetchone())
        return results[-1] if sql is not None else None

    def _failure(self, exc: BaseException) -> str:
        """What failed, for the refusals of the statements after it in the same transaction."""
        return f"an earlier statement of this transaction failed ({self._error(exc)})"

    def _send(self, holder: _ThreadConnection, statements: list[_Statement]) -> list[_Rows]:
        """Send ``statements`` in one pipeline and wait for all their results (one round trip).

        Statements with parameters are prepared on the connection the first
        time (in the same pipeline), and prepared again once the store's
        tables changed (a migration here, or another client's that the schema
        mark revealed). The first error the server reports is raised once
        every result is in (the server skips the statements after it); a
        prepared statement that another client's change to a table made
        stale outside a transaction is prepared again and run once more. A
        connection that fails or is interrupted half way is closed: the
        server rolls its open transaction back, and the next operation
        connects again.
        """
        try:
            return self._pipeline(holder, statements)
        except (pg_errors.FeatureNotSupported, pg_errors.InvalidSqlStatementName) as exc:
            # "cached plan must not change result type": a table changed under a prepared
            # statement; "prepared statement ... does not exist": a pooler between here and the
            # server does not keep them, so stop preparing. Outside a transaction nothing was
            # done: run it again (prepared afresh, or unnamed).
            holder.generation = -1
            if isinstance(exc, pg_errors.InvalidSqlStatementName):
                self._prepare = False
            if holder.con.closed or holder.pg.transaction_status != pq.TransactionStatus.IDLE:
                raise
            if any(sql.startswith("BEGIN") for sql, *_rest in statements):
                raise
            return self._pipeline(holder, statements)

    def _pipeline(self, holder: _ThreadConnection, statements: list[_Statement]) -> list[_Rows]:
        pg = holder.pg
        prepared = holder.prepared
        fresh: list[tuple[tuple[str, tuple[int, ...]], bytes] | None] = []  # per result: a prepare, or None
        syncs = 1
        try:
            pg.enter_pipeline_mode()
            # In a transaction the server refused a statement of, nothing runs but ROLLBACK (TO
            # SAVEPOINT): leave the prepared statements for later, and send these unnamed.
            in_error = pg.transaction_status == pq.TransactionStatus.INERROR
            if holder.generation != self._generation and not in_error:
                prepared.clear()
                holder.generation = self._generation
                # In a sync of its own: a BEGIN must start the transaction the statements after run in.
                pg.send_query_params(b"DEALLOCATE ALL", None)
                pg.pipeline_sync()
                syncs = 2
                fresh.append((("", ()), b""))
            named = self._prepare and holder.generation == self._generation
            for sql, values, types, formats, prepare in statements:
                if not (prepare and named):
                    if values is None:
                        pg.send_query_params(sql.encode(), None)
                    else:
                        pg.send_query_params(_numbered(sql).encode(), values, types, formats)
                    fresh.append(None)
                    continue
                key = (sql, types)
                name = prepared.get(key)
                if name is None:
                    name = b"statestore_%d" % len(prepared)
                    pg.send_prepare(name, _numbered(sql).encode(), types)
                    prepared[key] = name  # taken back below unless the server prepared it
                    fresh.append((key, name))
                pg.send_query_prepared(name, values or None, formats)
                fresh.append(None)
            pg.pipeline_sync()
            results = _receive(pg, syncs)
            pg.exit_pipeline_mode()
        except BaseException:
            # Failed or interrupted half way (the connection is lost, Ctrl-C): what the server
            # has is unknown, so drop the connection; the server rolls its transaction back.
            holder.con.close()
            raise
        out: list[_Rows] = []
        error: Any = None
        loader = holder.loader
        for res, made in zip(results, fresh):
            status = res.status
            if made is not None:
                if status != pq.ExecStatus.COMMAND_OK:
                    prepared.pop(made[0], None)  # not prepared: prepare it again next time
                    holder.generation = -1  # and start afresh (a DEALLOCATE that failed)
                    if status == pq.ExecStatus.FATAL_ERROR and error is None:
                        error = pg_errors.error_from_result(res, encoding="utf-8")
                continue
            if status == pq.ExecStatus.TUPLES_OK:
                loader.set_pgresult(res)
                out.append(_Rows(loader.load_rows(0, res.ntuples, tuple), res.ntuples))
            elif status == pq.ExecStatus.COMMAND_OK:
                out.append(_Rows([], res.command_tuples or 0))
            else:
                if status == pq.ExecStatus.FATAL_ERROR and error is None:
                    error = pg_errors.error_from_result(res, encoding="utf-8")
                out.append(_Rows([], 0))
        if error is not None:
            raise error
        return out

    def _flush(self) -> None:
        """Send what the transaction has pending (before statements run some other way)."""
        try:
            self._run(None)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _execute(self, sql: str, params: Any = None, prepare: bool = False) -> Any:
        try:
            return self._run(sql, params, prepare)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _one(self, sql: str, params: Any = None, prepare: bool = False) -> Any:
        try:
            return self._run(sql, params, prepare).fetchone()
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _all(self, sql: str, params: Any = None, prepare: bool = False) -> list[Any]:
        try:
            return list(self._run(sql, params, prepare).fetchall())
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _defer(self, sql: str, params: Any, prepare: bool = True) -> None:
        """Send a write with the transaction's next statement (or its COMMIT)."""
        local = self._local
        if getattr(local, "mark_at", None) is not None:
            # The begin has not been sent: send it (and check the schema mark) before any write,
            # so a COMMIT can never carry writes past a mark that says the schemas moved.
            self._flush()
        try:
            statement = self._statement(sql, params, prepare)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        pending = getattr(local, "pending", None)
        if pending is None:
            pending = local.pending = []
            local.mark_at = None
        pending.append(statement)
        if len(pending) >= _MAX_PENDING:
            self._flush()  # a bulk load: send it in pipelines of bounded size

    def _t(self, name: str) -> str:
        """A table of this store, schema-qualified and quoted."""
        return f"{self._s}.{_q(name)}"

    # ------------------------------------------------------------ decoding stored values

    def _load(self, text: Any, where: str) -> Any:
        try:
            return rawjson.load(text)
        except rawjson.StoredJSONError as exc:
            raise CorruptStoreError(self.location, f"{where}: {exc}") from None
        except TypeError:
            raise CorruptStoreError(self.location, f"{where}: holds {type(text).__name__}, not JSON text") from None

    def _record(self, coll: Collection[Any], key: Any, text: Any) -> dict[str, Any]:
        data = self._load(text, f"table {coll.name!r}, key {key!r}")
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: data is not a JSON object")
        return data

    def _revision_of(self, coll: Collection[Any], key: Any, revision: Any) -> int:
        if type(revision) is not int or revision < 1:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: revision {revision!r}")
        return revision

    def _entry_row(self, log: Log[Any], seq: Any, stream: Any, version: Any, at: Any, text: Any) -> RawEntry:
        if type(version) is int and version > 0 and type(at) is str:
            data = _fast_record(text)
            if data is not None:
                try:
                    datetime.fromisoformat(at)
                except ValueError:
                    pass
                else:
                    return int(seq), stream, version, at, data
        return self._checked_entry_row(log, seq, stream, version, at, text)  # says what is wrong

    def _checked_entry_row(self, log: Log[Any], seq: Any, stream: Any, version: Any, at: Any, text: Any) -> RawEntry:
        where = f"log table {log.name!r}, seq {seq!r}"
        if type(version) is not int or version < 1:
            raise CorruptStoreError(self.location, f"{where}: version {version!r} is not a positive integer")
        try:
            datetime.fromisoformat(at)
        except (TypeError, ValueError):
            raise CorruptStoreError(self.location, f"{where}: time {at!r} is not an ISO timestamp") from None
        data = self._load(text, where)
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"{where}: data is not a JSON object")
        return int(seq), stream, version, at, data

    # ------------------------------------------------------------ creation

    def _internal_tables(self) -> bool:
        """True if the schema holds statestore's tables; CorruptStoreError if it holds something else."""
        rows = self._all(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            (self.pg_schema,),
        )
        tables = {r[0] for r in rows}
        if "_statestore_schemas" in tables:
            return True
        if tables:
            raise CorruptStoreError(
                self.location, f"schema {self.pg_schema!r} is not a statestore store (no _statestore_schemas table)"
            )
        return False

    def _initialize(self) -> None:
        """Create the schema and statestore's internal tables, once, even with many clients racing."""
        if self._internal_tables():
            return
        con = self._con()
        with self._translate():
            con.execute(f"BEGIN; SELECT pg_advisory_xact_lock({self._write_lock})")
            try:
                if not self._internal_tables():
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
                    con.execute(
                        f"CREATE TABLE {self._t('_statestore_meta')} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                    )
                    con.execute(
                        f"CREATE TABLE {self._t('_statestore_schemas')} "
                        "(name TEXT PRIMARY KEY, version BIGINT NOT NULL, description TEXT NOT NULL)"
                    )
                    with con.cursor() as cur:
                        cur.executemany(
                            f"INSERT INTO {self._t('_statestore_meta')}(key, value) VALUES (%s, %s)",
                            [("format", str(FORMAT)), ("store_id", uuid.uuid4().hex), ("schema_mark", "0")],
                        )
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _mark(self) -> int:
        row = self._one(f"SELECT value FROM {self._t('_statestore_meta')} WHERE key = 'schema_mark'")
        try:
            return int(row[0]) if row is not None else 0
        except ValueError:
            raise CorruptStoreError(self.location, f"schema mark {row[0]!r} is not a number") from None

    def _load_columns(self) -> None:
        rows = self._all(
            # pg_catalog, not information_schema.columns (whose view takes milliseconds to plan and run).
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind IN ('r', 'p', 'v', 'f') AND a.attnum > 0 AND NOT a.attisdropped",
            (self.pg_schema,),
        )
        columns: dict[str, set[str]] = {}
        for table, column in rows:
            columns.setdefault(table, set()).add(column)
        self._columns = columns
        self._lookup = {
            table: tuple(sorted(field_of(c) for c in cols if c not in _RESERVED)) for table, cols in columns.items()
        }
        self._upserts.clear()
        self._alone.clear()
        # The tables may have changed: statements prepared for the old ones go (see _send).
        self._generation += 1

    def _read_schemas(self) -> StoredSchemas:
        self._internal_tables()
        fmt = self._one(f"SELECT value FROM {self._t('_statestore_meta')} WHERE key = 'format'")
        if fmt is None or fmt[0] != str(FORMAT):
            raise CorruptStoreError(self.location, f"unknown store format {fmt and fmt[0]!r}")
        rows = self._all(f"SELECT name, version, description FROM {self._t('_statestore_schemas')}")
        out: StoredSchemas = {}
        for name, version, description in rows:
            desc = self._load(description, f"schema {name!r}: description")
            if not isinstance(desc, dict) or not isinstance(version, int):
                raise CorruptStoreError(self.location, f"schema {name!r} has no valid version and description")
            try:
                Schema.described({**desc, "name": name, "version": version})
            except SchemaError as exc:
                raise CorruptStoreError(self.location, f"schema {name!r}: {exc}") from None
            out[name] = (version, desc)
        return out

    def _set_schema(self, name: str, version: int, description: dict[str, Any]) -> None:
        self._execute(
            f"UPDATE {self._t('_statestore_meta')} SET value = (value::bigint + 1)::text WHERE key = 'schema_mark'"
        )
        self._execute(
            f"INSERT INTO {self._t('_statestore_schemas')}(name, version, description) VALUES (%s, %s, %s) "
            "ON CONFLICT(name) DO UPDATE SET version = excluded.version, description = excluded.description",
            (name, version, dumps(description)),
        )

    def _sync_structure(self, collections: Sequence[Collection[Any]], logs: Sequence[Log[Any]], *, full: bool) -> None:
        for name in [c.name for c in collections] + [lg.name for lg in logs]:
            if len(name.encode()) > _MAX_IDENTIFIER:
                raise SchemaError(f"{name!r}: PostgreSQL table names are at most {_MAX_IDENTIFIER} bytes")
        for coll in collections:
            if coll.composite:
                key_type = "TEXT"
            elif coll.field_types[coll.key_fields[0]] is int:
                key_type = "BIGINT"
            else:
                key_type = "BYTEA"
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {self._t(coll.name)} "
                f"(key {key_type} PRIMARY KEY NOT NULL, revision BIGINT NOT NULL, data TEXT NOT NULL)"
            )
            if full:
                self._sync_indexes(coll)
            else:
                # Mid-migration: records may pass through states the declared unique fields
                # forbid; the last step checks them on every backend alike and recreates these.
                for name in self._indexes(coll.name):
                    if name.startswith("_statestore_uq_"):
                        self._execute(f"DROP INDEX {self._t(name)}")
        for log in logs:
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {self._t(log.name)} (seq BIGINT PRIMARY KEY, "
                'stream TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, at TEXT NOT NULL, data TEXT NOT NULL, '
                "UNIQUE(stream, version))"
            )
        self._load_columns()

    def _table_columns(self, table: str) -> set[str]:
        rows = self._all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.pg_schema, table),
        )
        return {r[0] for r in rows}

    def _indexes(self, table: str) -> set[str]:
        rows = self._all(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s AND indexname LIKE %s",
            (self.pg_schema, table, "\\_statestore\\_%"),
        )
        return {r[0] for r in rows}

    def _sync_indexes(self, coll: Collection[Any]) -> None:
        table = coll.name
        wanted: dict[str, tuple[bool, tuple[str, ...]]] = {}
        for field in coll.indexes:
            wanted[_index_name("ix", table, (field,))] = (False, (field,))
        for group in coll.unique:
            wanted[_index_name("uq", table, group)] = (True, group)
        needed = {f for _, fields in wanted.values() for f in fields}
        # A number field's lookup text read as numeric, and its odd rows: ranges and order_by use them.
        numeric: dict[str, str] = {}
        for field in sorted(needed):
            if field_kind(coll.field_types[field], strict=False) == "number":
                col = _q(column_of(field))
                numeric[_index_name("nx", table, (field,))] = f"({number_value(col)} NULLS FIRST)"
                numeric[_index_name("no", table, (field,))] = f"(key) WHERE {number_odd(col)}"
        existing = self._indexes(table)
        for name in existing - wanted.keys() - numeric.keys():
            self._execute(f"DROP INDEX {self._t(name)}")
        present = {c for c in self._table_columns(table) if c not in _RESERVED}
        added = [f for f in sorted(needed) if column_of(f) not in present]
        for field in added:
            self._execute(f'ALTER TABLE {self._t(table)} ADD COLUMN {_q(column_of(field))} TEXT COLLATE "C"')
        for column in present - {column_of(f) for f in needed}:
            self._execute(f"ALTER TABLE {self._t(table)} DROP COLUMN {_q(column)}")
        if added:
            # Fill the new columns from the records already stored.
            rows = self._all(f"SELECT key, data FROM {self._t(table)}")
            sets = ", ".join(f"{_q(column_of(f))} = %s" for f in added)
            self._flush()
            with self._translate(), self._con().cursor() as cur:
                cur.executemany(
                    f"UPDATE {self._t(table)} SET {sets} WHERE key = %s",
                    [(*(field_text(self._record(coll, k, data), f) for f in added), k) for k, data in rows],
                )
        for name, (unique, fields) in wanted.items():
            if name in existing:
                continue
            cols = ", ".join(_q(column_of(f)) for f in fields)
            self._flush()
            try:
                self._con().execute("SAVEPOINT statestore_index")
                self._con().execute(
                    f"CREATE {'UNIQUE ' if unique else ''}INDEX {_q(name)} ON {self._t(table)} ({cols})"
                )
                self._con().execute("RELEASE statestore_index")
            except pg_errors.UniqueViolation:
                self._execute("ROLLBACK TO statestore_index")
                raise SchemaMismatchError(
                    self.location,
                    f"collection {table!r}: stored records already share values of unique {', '.join(fields)}",
                ) from None
            except psycopg.Error as exc:
                raise self._error(exc) from None
        for name, shape in numeric.items():
            if name not in existing:
                self._execute(f"CREATE INDEX {_q(name)} ON {self._t(table)} {shape}")

    def _drop(self, decl: Collection[Any] | Log[Any]) -> None:
        self._execute(f"DROP TABLE IF EXISTS {self._t(decl.name)}")
        self._columns.pop(decl.name, None)
        self._local.seqs = None

    def _replace_entries(self, log: Log[Any], entries: Sequence[RawEntry]) -> None:
        self._flush()
        with self._translate(), self._con().cursor() as cur:
            cur.executemany(
                f"UPDATE {self._t(log.name)} SET data = %s WHERE seq = %s",
                [(dumps(data), seq) for seq, _s, _v, _at, data in entries],
            )

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """A session-level advisory lock on this thread's connection, held across the migration."""
        self._flush()
        con = self._con()
        self._execute(f"SELECT pg_advisory_lock({self._migrate_lock})")
        try:
            yield
        finally:
            if not con.closed:
                try:
                    if con.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                        con.execute("ROLLBACK")
                    con.execute(f"SELECT pg_advisory_unlock({self._migrate_lock})")
                except psycopg.Error:
                    # The lock lives as long as the session: ending it is the sure way to let it go.
                    with contextlib.suppress(Exception):
                        con.close()

    def _backup(self, label: str) -> Path | None:
        """Copy every table of the store into a new schema ``<schema>_backup_<label>_<time>_<hex>``.

        The name is cut to PostgreSQL's 63 characters (the label first, then
        the store's name); the schema's comment says whose backup it is, the
        label verbatim and the time (what ``find_backups`` reads).

        Built in one transaction holding the store's write lock, so the copy
        is consistent and appears whole or not at all; a busy lock is
        StoreBusyError, with nothing left behind. Tables keep their columns,
        keys, constraints and index names. The returned path is the backup
        schema's name (restore it by renaming schemas: docs/postgres.md).
        """
        now = time.gmtime()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", now).lower()
        tag = re.sub(r"[^a-z0-9_]+", "_", label.lower())
        suffix = f"_{stamp}_{secrets.token_hex(2)}"
        room = _MAX_IDENTIFIER - len(self.pg_schema) - len("_backup_") - len(suffix)
        name = f"{self.pg_schema}_backup_{tag[: max(0, room)]}{suffix}"
        if len(name) > _MAX_IDENTIFIER:  # a long schema name: keep its start, the time and the random part
            name = f"{self.pg_schema[: _MAX_IDENTIFIER - len('_backup') - len(suffix)]}_backup{suffix}"
        note = dumps({"backup_of": self.pg_schema, "before": label, "taken": time.strftime("%Y-%m-%dT%H:%M:%SZ", now)})
        dst = _q(name)
        self._flush()
        con = self._con()
        with self._translate():
            depth = self._state().depth
            try:
                if depth == 0:
                    con.execute(f"BEGIN; SELECT pg_advisory_xact_lock({self._write_lock})")
                else:
                    con.execute("SAVEPOINT statestore_backup")
                con.execute(f"CREATE SCHEMA {dst}")
                con.execute(
                    psycopg.sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                        psycopg.sql.Identifier(name), psycopg.sql.Literal(note)
                    )
                )
                tables = [
                    r[0]
                    for r in con.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (self.pg_schema,)
                    ).fetchall()
                ]
                for table in tables:
                    con.execute(f"CREATE TABLE {dst}.{_q(table)} (LIKE {self._t(table)} INCLUDING ALL)")
                    plain = [
                        _q(r[0])
                        for r in con.execute(
                            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                            "AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position",
                            (self.pg_schema, table),
                        ).fetchall()
                    ]
                    cols = ", ".join(plain)
                    con.execute(f"INSERT INTO {dst}.{_q(table)} ({cols}) SELECT {cols} FROM {self._t(table)}")
                    self._rename_copied_indexes(con, table, name)
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    con.execute("ROLLBACK" if depth == 0 else "ROLLBACK TO statestore_backup")
                raise
            con.execute("COMMIT" if depth == 0 else "RELEASE statestore_backup")
        return Path(name)

    def _rename_copied_indexes(self, con: Any, table: str, backup: str) -> None:
        """Give the backup's indexes the original names (LIKE … INCLUDING ALL invents new ones)."""

        def shapes(schema: str) -> dict[str, str]:
            rows = con.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid, 0, false), x.indisunique "
                "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND t.relname = %s",
                (schema, table),
            ).fetchall()
            out = {}
            for index, definition, unique in rows:
                shape = definition[definition.index(" USING ") :] + str(unique)
                out[shape] = index
            return out

        original = shapes(self.pg_schema)
        for shape, index in shapes(backup).items():
            want = original.get(shape)
            if want is not None and want != index:
                con.execute(f"ALTER INDEX {_q(backup)}.{_q(index)} RENAME TO {_q(want)}")

    def _after_migration(self) -> None:
        self._load_columns()
        self._schema_mark = -1

    # ------------------------------------------------------------ transactions

    def _begin(self, *, write: bool) -> None:
        # Sent with the transaction's first statement (see _run).
        local = self._local
        local.seqs = local.tx_failed = None
        # The connection the transaction runs on: if it is lost, so is the transaction (see _holder).
        holder = getattr(local, "holder", None)
        local.tx_con = holder.con if holder is not None and not holder.con.closed else None
        local.tx_open = True
        if not write:
            local.pending, local.mark_at = [(_BEGIN_READ, None, (), None, False)], None
            return
        # The mark is a statement of its own, after the lock: it sees everything committed before
        # the lock was ours.
        local.pending = [
            ("BEGIN", None, (), None, False),
            (f"SELECT pg_advisory_xact_lock({self._write_lock})", None, (), None, True),
            (f"SELECT value FROM {self._t('_statestore_meta')} WHERE key = 'schema_mark'", None, (), None, True),
        ]
        local.mark_at = 2

    def _check_mark(self, row: Any) -> None:
        """Refuse to go on when another client changed the store's schemas since this object looked."""
        if self._migrating:
            return
        try:
            mark = int(row[0]) if row is not None else 0
        except ValueError:
            mark = -2
        if mark != self._schema_mark:
            try:
                self._check_schemas_current()
                self._load_columns()  # another client may have added or dropped lookup columns
            except BaseException:
                self._rollback()
                raise
            self._schema_mark = mark

    def _commit(self) -> None:
        local = self._local
        local.seqs = None
        pending = getattr(local, "pending", None)
        if pending is not None and local.mark_at is not None and len(pending) == 3:
            local.pending = local.mark_at = None  # nothing ran: there is nothing to commit
        elif pending is not None and len(pending) == 1 and pending[0][0] == _BEGIN_READ:
            local.pending = None  # a read transaction that read nothing
        else:
            try:
                self._execute("COMMIT")  # on failure the caller rolls back
            except BackendError as exc:
                if "lost the connection" not in exc.reason:
                    raise
                # The COMMIT may have reached the server before the connection went: say so.
                reason = exc.reason.replace(
                    _NOT_COMMITTED,
                    "the connection went during COMMIT: whether the transaction was committed is unknown",
                )
                raise BackendError(self.location, reason) from None
        local.tx_open, local.tx_con = False, None

    def _rollback(self) -> None:
        local = self._local
        pending = getattr(local, "pending", None)
        local.pending = local.mark_at = local.seqs = local.tx_con = local.tx_failed = None
        local.tx_open = False
        if pending and pending[0][0].startswith("BEGIN"):
            return  # the transaction never reached the server
        try:
            con = local.holder.con
        except AttributeError:
            return
        if not con.closed and not con.broken:
            with contextlib.suppress(psycopg.Error):
                self._send(local.holder, [("ROLLBACK", None, (), None, False)])

    def _savepoint(self, name: str) -> None:
        self._defer(f"SAVEPOINT {_q(name)}", None, prepare=False)  # sent with the next statement

    def _release(self, name: str) -> None:
        self._defer(f"RELEASE SAVEPOINT {_q(name)}", None, prepare=False)

    def _rollback_to(self, name: str) -> None:
        local = self._local
        if getattr(local, "tx_failed", None) is not None and local.tx_failed_depth > self._state().depth:
            # It failed inside this savepoint's block: rolling back to the savepoint revives the transaction.
            local.tx_failed = None
        local.seqs = None  # entries appended since the savepoint are gone: count seqs again
        self._defer(f"ROLLBACK TO SAVEPOINT {_q(name)}", None, prepare=False)
        self._execute(f"RELEASE SAVEPOINT {_q(name)}")

    # ------------------------------------------------------------ records

    def _has(self, name: str) -> bool:
        return name in self._columns

    @staticmethod
    def _key_param(coll: Collection[Any], key: KeyValue) -> Any:
        if isinstance(key, tuple):
            return json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))
        if isinstance(key, str):
            return key.encode("utf-8", "surrogatepass")
        return key

    def _key_value(self, coll: Collection[Any], stored: Any) -> KeyValue:
        if coll.composite:
            parts = self._load(stored, f"table {coll.name!r}, key {stored!r}")
            if not isinstance(parts, list):
                raise CorruptStoreError(self.location, f"table {coll.name!r}: key {stored!r} is not a JSON array")
            return tuple(parts)
        if isinstance(stored, (bytes, memoryview)):
            try:
                return bytes(stored).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise CorruptStoreError(
                    self.location, f"table {coll.name!r}: key {bytes(stored)!r} is not UTF-8"
                ) from None
        return stored  # type: ignore[no-any-return]

    def _column(self, coll: Collection[Any], field: str) -> str | None:
        """The lookup column holding ``field``, or None when the table has none."""
        col = column_of(field)
        return _q(col) if col in self._columns.get(coll.name, ()) else None

    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        if not self._has(coll.name):
            return None
        row = self._one(
            f"SELECT revision, data FROM {self._t(coll.name)} WHERE key = %s", (self._key_param(coll, key),), True
        )
        if row is None:
            return None
        revision, text = row
        record = _fast_record(text)
        if record is None:
            record = self._record(coll, key, text)  # says what is wrong
        return (revision if type(revision) is int and revision > 0 else self._revision_of(coll, key, revision)), record

    def _revision(self, coll: Collection[Any], key: KeyValue) -> int | None:
        if not self._has(coll.name):
            return None
        row = self._one(
            f"SELECT revision FROM {self._t(coll.name)} WHERE key = %s", (self._key_param(coll, key),), True
        )
        return None if row is None else self._revision_of(coll, key, row[0])

    def _upsert(self, coll: Collection[Any]) -> str:
        sql = self._upserts.get(coll.name)
        if sql is None:
            cols = ["key", "revision", "data", *(_q(column_of(f)) for f in self._lookup.get(coll.name, ()))]
            sql = self._upserts[coll.name] = (
                f"INSERT INTO {self._t(coll.name)}({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                f"ON CONFLICT(key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols[1:])}"
            )
        return sql

    def _row(
        self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str
    ) -> tuple[Any, ...]:
        fields = self._lookup.get(coll.name, ())
        return (self._key_param(coll, key), revision, text, *(field_text(data, f) for f in fields))

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        self._defer(self._upsert(coll), self._row(coll, key, revision, data, text))

    def _write_alone(
        self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str, *, replace: bool
    ) -> int | None:
        # One autocommit statement, no transaction: see "Single writes need no transaction" above.
        if self._closed or self.mode != "write" or self._schema_mark < 0 or coll.name not in self._columns:
            return None
        state = self._state()
        if state.depth or state.migrating or getattr(self._local, "pending", None):
            return None
        sql = self._alone.get((coll.name, replace))
        if sql is None:
            cols = ["key", "revision", "data", *(_q(column_of(f)) for f in self._lookup.get(coll.name, ()))]
            # A stored revision that is not a positive number is left to the transaction path to report.
            clash = (
                f"DO UPDATE SET revision = r.revision + 1, {', '.join(f'{c} = excluded.{c}' for c in cols[2:])} "
                "WHERE r.revision > 0"
                if replace
                else "DO NOTHING"
            )
            sql = self._alone[coll.name, replace] = (
                f"INSERT INTO {self._t(coll.name)} AS r({', '.join(cols)}) SELECT {', '.join(['%s'] * len(cols))} "
                f"FROM {self._t('_statestore_meta')} m WHERE m.key = 'schema_mark' "
                f"AND pg_try_advisory_xact_lock_shared({self._write_lock}) AND m.value = %s "
                f"FOR SHARE OF m SKIP LOCKED ON CONFLICT(key) {clash} RETURNING r.revision"
            )
        try:
            row = self._run(sql, (*self._row(coll, key, 1, data, text), str(self._schema_mark)), True).fetchone()
        except psycopg.Error as exc:
            error = self._error(exc)
            if isinstance(error, StoreBusyError):
                raise error from None  # waited the busy timeout already (for the table, held by a migration)
            if isinstance(error, BackendError) and error.reason.endswith(_NOT_COMMITTED):
                reason = error.reason[: -len(_NOT_COMMITTED)] + "whether the record was written is unknown"
                raise BackendError(self.location, reason) from None
            return None  # the transaction path runs it again, and reports what it finds
        return None if row is None else int(row[0])

    def _write_many(self, coll: Collection[Any], rows: Iterable[tuple[KeyValue, int, dict[str, Any], str]]) -> None:
        self._flush()
        with self._translate(), self._con().cursor() as cur:
            cur.executemany(
                self._upsert(coll), [self._row(coll, key, revision, data, text) for key, revision, data, text in rows]
            )

    def _remove(self, coll: Collection[Any], key: KeyValue) -> bool:
        cur = self._execute(f"DELETE FROM {self._t(coll.name)} WHERE key = %s", (self._key_param(coll, key),), True)
        return bool(cur.rowcount > 0)

    def _sorted(self, coll: Collection[Any], rows: list[Any]) -> list[Any]:
        """Rows keyed by their first column, in key order (composite keys sort as tuples, in Python)."""
        if not coll.composite:
            return rows
        return sorted(rows, key=lambda r: r[0])

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        if not self._has(coll.name):
            return []
        clauses = []
        params: list[Any] = []
        rest: dict[str, Any] = {}
        for field, value in where.items():
            column = self._column(coll, field)
            clause = None if column is None else equal_clause(column, value)
            if clause is None:  # no lookup column (a read-mode open of an older store): compare in Python
                rest[field] = value
            else:
                clauses.append(clause.sql)
                params.extend(clause.params)
        sql = f"SELECT key, revision, data FROM {self._t(coll.name)}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if not coll.composite:
            sql += " ORDER BY key"
        rows = self._all(sql, params, True)  # equality on a lookup column: one plan fits all
        out: list[RawRecord] = []
        if not rest and not coll.composite:
            # The common case, quickly: a row that is not plainly right is looked at carefully below.
            append = out.append
            for k, rev, data in rows:
                record = _fast_record(data)
                if record is None or type(rev) is not int or rev < 1:
                    break
                if type(k) is bytes:
                    try:
                        k = k.decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        break
                append((k, rev, record))
            else:
                return out
            out.clear()
        key_value, record_of, revision_of = self._key_value, self._record, self._revision_of
        for k, rev, data in rows:
            key = key_value(coll, k)
            record = record_of(coll, key, data)
            if rest and not all(same_value(record.get(f), v) for f, v in rest.items()):
                continue
            out.append((key, revision_of(coll, key, rev), record))
        return self._sorted(coll, out)

    def _clauses(self, coll: Collection[Any], query: Query) -> tuple[list[Clause | None], str, list[Any]]:
        """Each term's clause (None: Python's), and the WHERE text and parameters of those there are."""
        clauses = [term_clause(self._column(coll, t.field), t) for t in query.terms]
        sent = [c for c in clauses if c is not None]
        where = " WHERE " + " AND ".join(c.sql for c in sent) if sent else ""
        return clauses, where, [p for c in sent for p in c.params]

    def _query(self, coll: Collection[Any], query: Query, *, copy: bool = True) -> list[RawRecord]:
        """The server filters on lookup columns (backends/postgres/queries.py); Python checks, orders and cuts.

        Every row the server returns is checked against every condition
        again, so the answer is :meth:`Query.apply`'s. Without ``order_by``,
        a ``limit`` reads rows in key order in growing batches until it has
        enough, rather than every admitted row.
        """
        if not self._has(coll.name):
            return []
        if (
            not query.order
            and query.limit is None
            and not query.offset
            and query.after is None
            and all(t.op == "eq" and self._column(coll, t.field) is not None for t in query.terms)
            and len({t.field for t in query.terms}) == len(query.terms)
        ):
            # Plain equality on lookup columns: _scan's prepared statement and fast decoding.
            return self._scan(coll, {t.field: t.value for t in query.terms}, copy=copy)
        _clauses, where, params = self._clauses(coll, query)
        table = self._t(coll.name)
        need = query.need
        if query.order and need is not None:
            first = query.order[0]
            plan = order_plan(self._column(coll, first.field), first.kind)
            if plan is not None:
                return self._ordered(coll, query, need, plan, where, params)
        if query.order or coll.composite or need is None:
            after = ""
            if query.after is not None and not query.order and not coll.composite:
                after = (" AND " if where else " WHERE ") + "key > %s"
                params = [*params, self._key_param(coll, query.after[1])]
            order = "" if coll.composite else " ORDER BY key"
            rows = self._all(f"SELECT key, revision, data FROM {table}{where}{after}{order}", params)
            out = []
            for k, rev, text in rows:
                key = self._key_value(coll, k)
                out.append((key, self._revision_of(coll, key, rev), self._record(coll, key, text)))
            return query.apply(self._sorted(coll, out))
        kept: list[RawRecord] = []
        last = None if query.after is None else query.after[1]
        batch = min(max(1, need + self._query_slack), 2**62)
        while len(kept) < need:
            bound = "" if last is None else (" AND " if where else " WHERE ") + "key > %s"
            args = params if last is None else [*params, self._key_param(coll, last)]
            rows = self._all(f"SELECT key, revision, data FROM {table}{where}{bound} ORDER BY key LIMIT {batch}", args)
            for k, rev, text in rows:
                key = last = self._key_value(coll, k)
                data = self._record(coll, key, text)
                if query.admits(key, data):
                    kept.append((key, self._revision_of(coll, key, rev), data))
                    if len(kept) >= need:
                        break
            if len(rows) < batch:
                break
            batch = min(batch * 4, 65_536)
        return query.window(kept)

    def _ordered(
        self, coll: Collection[Any], query: Query, need: int, plan: OrderPlan, where: str, params: list[Any]
    ) -> list[RawRecord]:
        """``order_by`` + ``limit``: the server orders by the first field; rows are read until no other can come first.

        The rows are read in the server's order, in growing batches, checked
        and ordered exactly here; reading stops once the last row read is
        beyond the row that must be the last one returned (backends/postgres/queries.py).
        """
        first = query.order[0]
        direction = "DESC NULLS LAST" if first.descending else "ASC NULLS FIRST"
        skip = None
        if query.after is not None:
            # iter's next batch: the server skips the rows before the last one read.
            skip = after_clause(plan, first.kind, first.descending, query.after[0][0])
            if skip is not None:
                where = f"{where} AND {skip.sql}" if where else f" WHERE {skip.sql}"
                params = [*params, *skip.params]
        table = self._t(coll.name)
        odd: list[Any] = []
        if plan.split:
            # Odd rows on their own (a partial index finds them; there are none in an undamaged store),
            # the rest in the order of the field's number index, which serves it: a range on that
            # field is given without its odd rows, so the index scan starts where the range does.
            also = " AND " if where else " WHERE "
            odd = self._all(f"SELECT key, revision, data, NULL FROM {table}{where}{also}{plan.odd}", params, True)
            parts: list[str] = [f"NOT {plan.odd}"]
            args: list[Any] = []
            for term in query.terms:
                clause = term_clause(self._column(coll, term.field), term)
                if clause is not None:
                    core = clause.core if term.field == first.field else None
                    parts.append(core or clause.sql)
                    args.extend(clause.params)
            if skip is not None:
                parts.append(skip.sql)
                args.extend(skip.params)
            sql = (
                f"SELECT key, revision, data, {plan.value} FROM {table} WHERE {' AND '.join(parts)} "
                f"ORDER BY {plan.value} {direction} LIMIT %s"
            )
            params = args
        else:
            sql = (
                f"SELECT key, revision, data, {plan.value} FROM {table}{where} "
                f"ORDER BY {plan.odd} DESC, {plan.value} {direction}, key LIMIT %s"
            )
        batch = min(max(1, need + self._query_slack), 2**62)
        while True:
            rows = self._all(sql, [*params, batch], plan.split)
            kept = []
            for k, rev, text, _value in odd:
                key = self._key_value(coll, k)
                data = self._record(coll, key, text)
                if query.admits(key, data):
                    kept.append((key, self._revision_of(coll, key, rev), data, None))
            for k, rev, text, value in rows:
                key = self._key_value(coll, k)
                data = self._record(coll, key, text)
                if query.admits(key, data):
                    kept.append((key, self._revision_of(coll, key, rev), data, value))
            if len(rows) < batch:
                break
            if len(kept) >= need:
                edge = query.sort(kept)[need - 1]
                if beyond(plan, first.descending, rows[-1][3], edge[3], edge[2].get(first.field) is None):
                    break
            batch = min(batch * 4, 2**62)
        return [(k, r, d) for k, r, d, _v in query.window(query.sort(kept))]

    def _count_where(self, coll: Collection[Any], query: Query) -> int:
        """Counted on the server when every condition's clause is exact; otherwise its rows are checked."""
        if not self._has(coll.name):
            return 0
        if not query.terms:
            return self._count(coll)
        clauses, where, params = self._clauses(coll, query)
        table = self._t(coll.name)
        if all(c is not None and c.exact for c in clauses):
            return int(self._one(f"SELECT count(*) FROM {table}{where}", params)[0])
        rows = self._all(f"SELECT key, data FROM {table}{where}", params)
        return sum(1 for k, text in rows if query.matches(self._record(coll, self._key_value(coll, k), text)))

    def _keys(self, coll: Collection[Any]) -> list[KeyValue]:
        if not self._has(coll.name):
            return []
        order = "" if coll.composite else " ORDER BY key"
        keys = [self._key_value(coll, k) for (k,) in self._all(f"SELECT key FROM {self._t(coll.name)}{order}")]
        return sorted(keys) if coll.composite else keys

    def _count(self, coll: Collection[Any]) -> int:
        if not self._has(coll.name):
            return 0
        return int(self._one(f"SELECT count(*) FROM {self._t(coll.name)}")[0])

    # ------------------------------------------------------------ logs

    def _stream_version(self, log: Log[Any], stream: str) -> int:
        table = self._t(log.name)
        seqs = self._seqs()
        if seqs is None or log.name in seqs:
            row = self._one(f"SELECT max(version) FROM {table} WHERE stream = %s", (stream,), True)
            return int(row[0] or 0)
        # In a write transaction an append follows: learn the log's last seq in the same statement.
        row = self._one(
            f"SELECT (SELECT max(version) FROM {table} WHERE stream = %s), (SELECT max(seq) FROM {table})",
            (stream,),
            True,
        )
        seqs[log.name] = [int(row[1] or 0), False]
        return int(row[0] or 0)

    def _seqs(self) -> dict[str, list[Any]] | None:
        """In a write transaction (which holds the write lock): log name -> [last seq, notified yet]."""
        if self.mode != "write" or not self._state().depth:
            return None
        local = self._local
        seqs: dict[str, list[Any]] | None = getattr(local, "seqs", None)
        if seqs is None:
            seqs = local.seqs = {}
        return seqs

    def _add_entry(self, log: Log[Any], stream: str, version: int, at: str, data: dict[str, Any], text: str) -> int:
        # seq is max + 1 under the store's write lock: consecutive, as on SQLite (a sequence
        # would leave gaps after a rollback, and copies would not reproduce the same seqs).
        # The notification wakes followers (LISTEN) when, and only if, the transaction commits.
        table = self._t(log.name)
        seqs = self._seqs()
        if seqs is None:  # not in a transaction (no caller does this): one statement does it all
            row = self._one(
                f"WITH added AS (INSERT INTO {table}(seq, stream, version, at, data) "
                f"SELECT coalesce(max(seq), 0) + 1, %s, %s, %s, %s FROM {table} RETURNING seq) "
                "SELECT seq, pg_notify(%s, '') FROM added",
                (stream, version, at, text, self._channel(log)),
            )
            return int(row[0])
        # The write lock is held until the transaction ends, so the last seq, once known, stays
        # this transaction's to count on (forgotten at its end and at a rollback to a savepoint):
        # the insert is sent with the next statement or the COMMIT.
        known = seqs.get(log.name)
        if known is None:
            row = self._one(f"SELECT max(seq) FROM {table}", None, True)
            known = seqs[log.name] = [int(row[0] or 0), False]
        seq = known[0] + 1
        self._defer(
            f"INSERT INTO {table}(seq, stream, version, at, data) VALUES (%s, %s, %s, %s, %s)",
            (seq, stream, version, at, text),
        )
        known[0] = seq
        if not known[1]:
            self._defer("SELECT pg_notify(%s, '')", (self._channel(log),))
            known[1] = True  # one notification per log and transaction is all a follower needs
        return int(seq)

    def _channel(self, log: Log[Any]) -> str:
        """The notification channel of a log (a hash: channel names are at most 63 bytes)."""
        return "statestore_" + hashlib.sha256(f"{self.pg_schema}\0{log.name}".encode()).hexdigest()[:32]

    def _wait_for_entries(self, log: Log[Any], poll: float, limit: float | None) -> None:
        """Wait for a notification that an append to ``log`` committed (LISTEN), at most ``limit``.

        The wait is cut at a few seconds all the same (a notification lost with
        a dropped connection costs at most that), and the first call for a log
        only starts listening and returns, so ``follow`` looks once more: an
        append that committed before the LISTEN is never waited for. Where
        LISTEN is not available (a pooler in transaction mode, a lost
        connection) ``follow`` polls every ``poll`` seconds instead.
        """
        wait = _NOTIFY_WAIT if limit is None else min(limit, _NOTIFY_WAIT)
        try:
            con, started = self._listener(log)
            if started:
                return
            for _note in con.notifies(timeout=wait, stop_after=1):
                pass
        except (psycopg.Error, BackendError):
            self._drop_listener()
            super()._wait_for_entries(log, poll, limit)

    def _listener(self, log: Log[Any]) -> tuple[Any, bool]:
        """This thread's listening connection, and True if it only now started listening to ``log``."""
        listening: set[str] | None = getattr(self._local, "listening", None)
        con = getattr(self._local, "listener", None)
        if con is None or con.closed or listening is None:
            try:
                con = psycopg.connect(self._url, autocommit=True, connect_timeout=_connect_timeout(self.busy_timeout))
            except psycopg.Error as exc:
                raise self._error(exc, connecting=True) from None
            with self._lock:
                self._connections.append(con)
            self._local.listener, self._local.listening = con, set()
            listening = self._local.listening
        assert listening is not None
        channel = self._channel(log)
        if channel in listening:
            return con, False
        con.execute(f"LISTEN {_q(channel)}")
        listening.add(channel)
        return con, True

    def _drop_listener(self) -> None:
        con = getattr(self._local, "listener", None)
        self._local.listener = self._local.listening = None
        if con is not None:
            with self._lock:
                if con in self._connections:
                    self._connections.remove(con)
            with contextlib.suppress(Exception):
                con.close()

    def _add_entries(self, log: Log[Any], rows: Iterable[tuple[str, int, str, dict[str, Any], str]]) -> None:
        for stream, version, at, data, text in rows:
            self._add_entry(log, stream, version, at, data, text)

    def _entries(
        self, log: Log[Any], *, stream: str | None, prefix: str | None, after: int, limit: int | None
    ) -> list[RawEntry]:
        if not self._has(log.name):
            return []
        sql = f"SELECT seq, stream, version, at, data FROM {self._t(log.name)} WHERE seq > %s"
        params: list[Any] = [after]
        if stream is not None:
            sql += " AND stream = %s"
            params.append(stream)
        elif prefix is not None:
            sql += " AND starts_with(stream, %s)"
            params.append(prefix)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        return [self._entry_row(log, *row) for row in self._all(sql, params)]

    def _entry_count(self, log: Log[Any]) -> int:
        if not self._has(log.name):
            return 0
        return int(self._one(f"SELECT count(*) FROM {self._t(log.name)}")[0])

    def _last_seq(self, log: Log[Any]) -> int:
        if not self._has(log.name):
            return 0
        row = self._one(f"SELECT max(seq) FROM {self._t(log.name)}")
        return int(row[0] or 0)


def _index_name(kind: str, table: str, fields: tuple[str, ...]) -> str:
    """``_statestore_<kind>_<table>_<fields>`` cut to fit 63 bytes, with a hash that keeps it unique."""
    digest = hashlib.sha256(f"{table}\0{kind}\0{chr(0).join(fields)}".encode()).hexdigest()[:10]
    readable = f"_statestore_{kind}_{table}__{'__'.join(fields)}"
    return f"{readable[: _MAX_IDENTIFIER - 11]}_{digest}"
