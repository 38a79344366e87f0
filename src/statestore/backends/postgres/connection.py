"""PostgresConnection: the per-thread connections of a PostgreSQL store and how its statements run.

The lowest layer of :class:`~statestore.backends.postgres.store.PostgresStore`
(then :mod:`.structure`, then the store itself): one connection per thread
(new ones after ``fork()``), errors translated without the password, the
pending statements of a transaction sent with the next one in a pipeline,
prepared statements made again when the tables change, stored values
decoded, and the schema mark checked when a write transaction begins.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from statestore.backends import rawjson
from statestore.backends.postgres.columns import RESERVED, column_of, field_of
from statestore.backends.postgres.server import MAX_IDENTIFIER as _MAX_IDENTIFIER
from statestore.backends.postgres.server import connect_timeout as _connect_timeout
from statestore.backends.postgres.server import lock_key as _lock_key
from statestore.backends.postgres.server import lock_timeout as _lock_timeout
from statestore.backends.postgres.server import password_of as _password
from statestore.backends.postgres.server import q as _q
from statestore.backends.postgres.server import quick_connect as _quick_connect
from statestore.backends.postgres.server import split_url
from statestore.backends.postgres.wire import (
    Rows,
    Statement,
    ThreadConnection,
    encode_params,
    fast_record,
    forget_connection,
    numbered,
    pg_errors,
    pq,
    psycopg,
    receive,
)
from statestore.codec import Codec
from statestore.errors import (
    BackendError,
    CorruptStoreError,
    ReadOnlyError,
    SchemaError,
    StateStoreError,
    StoreBusyError,
)
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Durability, Mode, RawEntry, Store, StoredSchemas

#: How the error for a lost connection ends (the callers that know better replace it).
NOT_COMMITTED = "the open transaction was not committed"
#: Deferred statements sent together at most.
MAX_PENDING = 1000
_EXTRA = "PostgreSQL locations need psycopg: pip install 'statestore[postgres]'"


class PostgresConnection(Store):
    """Connections, statements and decoding for a store in one PostgreSQL schema (see PostgresStore)."""

    def __init__(
        self,
        url: str,
        schema: Schema | Sequence[Schema],
        *,
        mode: Mode = "write",
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
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
        # collection -> _upsert's statement, the fields of its lookup columns, the generation it was made in.
        self._upserts: dict[str, tuple[str, tuple[str, ...], int]] = {}
        # (collection, replace) -> _write_alone's statement, the fields of its lookup columns, the mark.
        self._alone: dict[tuple[str, bool], tuple[str, tuple[str, ...], str]] = {}
        self._generation = 0
        # False once the server lost a statement prepared on a connection (a pooler that hands
        # each transaction another server connection): from then on every statement is unnamed.
        self._prepare = True
        # What the store's schemas were when this object last looked: '<store_id>:<schema_mark>'
        # ('' before it looks). The store's id is in it, so a store put in place of another (a copy
        # with --overwrite, an import with replace) never passes for the one this object checked.
        self._schema_mark = ""

    # ------------------------------------------------------------ connections

    def _connect(self) -> Any:
        settings = {
            "lock_timeout": _lock_timeout(self.busy_timeout),
            "synchronous_commit": "on",
            "default_transaction_read_only": "on" if self.mode == "read" else "off",
            "client_encoding": "UTF8",
            # The SQL here writes backslashes in string literals as themselves (the default since 9.1).
            "standard_conforming_strings": "on",
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

    def _holder(self) -> ThreadConnection:
        """This thread's connection (a new one the first time, or after the last was lost)."""
        try:
            holder: ThreadConnection = self._local.holder
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
            raise BackendError(self.location, f"lost the connection to the server; {NOT_COMMITTED}")
        con = self._connect()
        if in_transaction:
            local.tx_con = con
        holder = local.holder = ThreadConnection(con)
        # When the thread ends its holder goes, and so does its connection.
        weakref.finalize(holder, forget_connection, self._connections, self._lock, con)
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
                f"lost the connection to the server ({text}); {NOT_COMMITTED}",
            )
        if isinstance(exc, pg_errors.InvalidSqlStatementName):
            return BackendError(
                self.location,
                f"{text}: a connection pooler that does not keep prepared statements? "
                "This store prepares none from now on; run the transaction again",
            )
        if isinstance(exc, pg_errors.UndefinedTable):
            # A table gone because another client migrated the store (renamed or dropped it) is not damage.
            # (Inside a transaction, which the error ended, the stored schemas are read on a connection aside.)
            in_transaction = getattr(self._local, "tx_open", False)
            moved: Exception | None = self._schemas_moved(self._schemas_aside() if in_transaction else None)
            if moved is not None:
                return moved
        if isinstance(exc, psycopg.DataError) and "NUL" in text:
            return BackendError(self.location, f"PostgreSQL text cannot hold NUL characters ({text})")
        return BackendError(self.location, text)

    def _schemas_aside(self) -> StoredSchemas | None:
        """The stored schemas, read on a short-lived connection of their own; None if that fails."""
        try:
            timeout = _connect_timeout(self.busy_timeout)
            sql = f"SELECT name, version, description FROM {self._t('_statestore_schemas')}"
            with psycopg.connect(self._url, autocommit=True, connect_timeout=timeout) as con:
                rows = con.execute(sql).fetchall()
            return rawjson.stored_schemas_of(rows, self.location)
        except (psycopg.Error, StateStoreError):
            return None

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

    # ------------------------------------------------------------ statements

    # The statements of a transaction travel in pipelines, as prepared statements: its BEGIN
    # (with the write lock and the schema mark) is sent together with its first statement, and
    # writes (whose results no one reads) with the statement after them or with COMMIT: one
    # round trip instead of three for a single put. They wait in ``pending``, encoded.

    @staticmethod
    def _statement(sql: str, params: Any, prepare: bool = False) -> Statement:
        """``sql`` ready to send, with its parameters encoded (``params=None``: it has none)."""
        if params is None:
            return sql, None, (), None, prepare
        values, types, formats = encode_params(params)
        return sql, values, types, formats, prepare

    def _run(self, sql: str | None, params: Any = None, prepare: bool = False) -> Any:
        """Execute ``sql`` after whatever the transaction has pending, in one round trip; its rows.

        ``sql=None`` only sends what is pending. psycopg errors propagate (the
        callers translate them).
        """
        if sql is None:
            self._run_group(())
            return None
        return self._run_group(((sql, params, prepare),))[0]

    def _run_group(self, group: Sequence[tuple[str, Any, bool]]) -> list[Rows]:
        """Execute each (sql, params, prepare) of ``group`` after what is pending, in one round trip; their rows.

        An empty group only sends what is pending. psycopg errors propagate.
        """
        local = self._local
        failed = getattr(local, "tx_failed", None)
        if failed is not None:
            # A statement of this transaction failed on the server: the transaction is over there
            # (aborted, or rolled back), so nothing more may run in it as if it were alive.
            raise BackendError(self.location, f"{failed}; the transaction was rolled back: end its block")
        pending: list[Statement] | None = getattr(local, "pending", None)
        # Encoded before anything is taken from pending: a value that cannot be sent (a NUL in
        # text) fails here, with the transaction's earlier writes still waiting to be sent.
        statements = [self._statement(sql, params, prepare) for sql, params, prepare in group]
        if not pending:
            if not statements:
                return []
            pending = statements
            mark_at: int | None = None
        else:
            mark_at = local.mark_at
            local.pending, local.mark_at = None, None
            pending.extend(statements)
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
        return results[len(results) - len(statements) :]

    def _failure(self, exc: BaseException) -> str:
        """What failed, for the refusals of the statements after it in the same transaction."""
        return f"an earlier statement of this transaction failed ({self._error(exc)})"

    def _send(self, holder: ThreadConnection, statements: list[Statement]) -> list[Rows]:
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

    def _pipeline(self, holder: ThreadConnection, statements: list[Statement]) -> list[Rows]:
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
                        pg.send_query_params(numbered(sql).encode(), values, types, formats)
                    fresh.append(None)
                    continue
                key = (sql, types)
                name = prepared.get(key)
                if name is None:
                    name = b"statestore_%d" % len(prepared)
                    pg.send_prepare(name, numbered(sql).encode(), types)
                    prepared[key] = name  # taken back below unless the server prepared it
                    fresh.append((key, name))
                pg.send_query_prepared(name, values or None, formats)
                fresh.append(None)
            pg.pipeline_sync()
            results = receive(pg, syncs)
            pg.exit_pipeline_mode()
        except BaseException:
            # Failed or interrupted half way (the connection is lost, Ctrl-C): what the server
            # has is unknown, so drop the connection; the server rolls its transaction back.
            holder.con.close()
            raise
        out: list[Rows] = []
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
                out.append(Rows(loader.load_rows(0, res.ntuples, tuple), res.ntuples))
            elif status == pq.ExecStatus.COMMAND_OK:
                out.append(Rows([], res.command_tuples or 0))
            else:
                if status == pq.ExecStatus.FATAL_ERROR and error is None:
                    error = pg_errors.error_from_result(res, encoding="utf-8")
                out.append(Rows([], 0))
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

    def _all_of(self, group: Sequence[tuple[str, Any, bool]]) -> list[list[Any]]:
        """The rows of each (sql, params, prepare) of ``group``, sent together: one round trip."""
        try:
            return [list(rows.fetchall()) for rows in self._run_group(group)]
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
        if len(pending) >= MAX_PENDING:
            self._flush()  # a bulk load: send it in pipelines of bounded size

    def _t(self, name: str) -> str:
        """A table of this store, schema-qualified and quoted."""
        return f"{self._s}.{_q(name)}"

    # ------------------------------------------------------------ decoding stored values

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

    def _load(self, text: Any, where: str) -> Any:
        try:
            return rawjson.load(text)
        except rawjson.StoredJSONError as exc:
            raise CorruptStoreError(self.location, f"{where}: {exc}") from None
        except TypeError:
            raise CorruptStoreError(self.location, f"{where}: holds {type(text).__name__}, not JSON text") from None

    def _record(self, coll: Collection[Any], key: Any, text: Any) -> dict[str, Any]:
        data = fast_record(text)
        if data is not None:
            return data
        data = self._load(text, f"table {coll.name!r}, key {key!r}")  # says what is wrong
        if type(data) is not dict:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: data is not a JSON object")
        return data

    def _revision_of(self, coll: Collection[Any], key: Any, revision: Any) -> int:
        if type(revision) is not int or revision < 1:
            raise CorruptStoreError(self.location, f"table {coll.name!r}, key {key!r}: revision {revision!r}")
        return revision

    def _entry_row(self, log: Log[Any], seq: Any, stream: Any, version: Any, at: Any, text: Any) -> RawEntry:
        if type(version) is int and version > 0 and type(at) is str:
            data = fast_record(text)
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

    # ------------------------------------------------------------ the tables, as other clients change them

    def _check_mark(self, row: Any) -> None:
        """Refuse to go on when another client changed the store's schemas since this object looked."""
        if self._migrating:
            return
        mark = row[0] if row is not None and isinstance(row[0], str) else ""
        if mark != self._schema_mark:
            try:
                self._check_schemas_current()
                self._load_columns()  # another client may have added or dropped lookup columns
            except BaseException:
                self._rollback()
                raise
            self._schema_mark = mark

    def _mark_sql(self) -> str:
        """The statement reading the store's mark ('<store_id>:<schema_mark>'; no row when the mark is missing)."""
        meta = self._t("_statestore_meta")
        store_id = f"coalesce((SELECT value FROM {meta} WHERE key = 'store_id'), '')"
        return f"SELECT {store_id} || ':' || value FROM {meta} WHERE key = 'schema_mark'"

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
            table: tuple(sorted(field_of(c) for c in cols if c not in RESERVED)) for table, cols in columns.items()
        }
        self._upserts.clear()
        self._alone.clear()
        # The tables may have changed: statements prepared for the old ones go (see _send).
        self._generation += 1
