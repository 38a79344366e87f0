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

The class is built in layers, one module each: :mod:`.connection`
(connections, how statements travel, decoding), :mod:`.structure` (tables,
schemas, indexes, migrations, backups) and this one (transactions, records,
queries, logs); :mod:`.wire` and :mod:`.columns` hold what they share.

psycopg (3) is an optional dependency: this package is imported only when a
``postgresql://`` location is opened, and says which extra to install when
it is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from statestore.backends.postgres.columns import column_of, field_text
from statestore.backends.postgres.connection import NOT_COMMITTED
from statestore.backends.postgres.queries import (
    Clause,
    OrderPlan,
    after_clause,
    beyond,
    equal_clause,
    instant,
    json_order_plan,
    order_plan,
    term_clause,
)
from statestore.backends.postgres.server import connect_timeout as _connect_timeout
from statestore.backends.postgres.server import q as _q
from statestore.backends.postgres.structure import PostgresStructure
from statestore.backends.postgres.wire import fast_record, psycopg
from statestore.codec import Codec
from statestore.errors import BackendError, StoreBusyError, StoreNotFoundError
from statestore.query import Query, same_value
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Durability, Mode, RawEntry, RawRecord


def _decimal(text: str | None) -> Decimal | None:
    """A number's lookup text (a plain JSON number: not an odd row) as the value its number index orders by."""
    return None if text is None else Decimal(text)


_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_NOTIFY_WAIT = 5.0  # longest wait for a notification before follow looks anyway


class PostgresStore(PostgresStructure):
    """A store in one PostgreSQL schema (writers serialize on an advisory lock).

    ``busy_timeout`` bounds every wait for a lock (the store's write lock,
    the migration lock) and the connection attempt; then StoreBusyError.
    Each thread gets its own connection; a forked child opens new ones and
    leaves the parent's alone. Read mode connects with ``default_transaction_read_only``
    so the server itself refuses writes. A lost connection is a BackendError
    saying so; the server rolls the open transaction back: no write is half applied.
    """

    # One SQL statement is all-or-nothing, so single writes need no savepoint.
    _atomic_writes = True
    # _query filters every field on the server (JSON functions where there is no lookup column).
    _equality_through_scan = False
    #: Rows a limited query reads in its first batch beyond those it needs (the batches then grow fourfold).
    _query_slack = 4

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
        super().__init__(url, schema, mode=mode, durability=durability, busy_timeout=busy_timeout, codec=codec)
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
            (self._mark_sql(), None, (), None, True),
        ]
        local.mark_at = 2

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
                    NOT_COMMITTED,
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
        record = fast_record(text)
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

    def _upsert(self, coll: Collection[Any]) -> tuple[str, tuple[str, ...]]:
        """The upsert of a row of ``coll`` and the fields of its lookup columns (rows are built with these).

        The generation is read first: a reload (another thread's) sets the columns, then moves it,
        so a statement cached under an older generation is made again for the columns now loaded.
        """
        generation = self._generation
        made = self._upserts.get(coll.name)
        if made is None or made[2] != generation:
            fields = self._lookup.get(coll.name, ())
            cols = ["key", "revision", "data", *(_q(column_of(f)) for f in fields)]
            sql = (
                f"INSERT INTO {self._t(coll.name)}({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                f"ON CONFLICT(key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols[1:])}"
            )
            made = self._upserts[coll.name] = (sql, fields, generation)
        return made[0], made[1]

    def _row(self, coll: Collection[Any], fields: Sequence[str], key: KeyValue, rev: int, data: Any, text: str) -> Any:
        """The parameters of ``_upsert``'s statement made with ``fields``."""
        return (self._key_param(coll, key), rev, text, *(field_text(data, f) for f in fields))

    def _write(self, coll: Collection[Any], key: KeyValue, revision: int, data: dict[str, Any], text: str) -> None:
        sql, fields = self._upsert(coll)
        self._defer(sql, self._row(coll, fields, key, revision, data, text))

    def _write_alone(
        self, coll: Collection[Any], key: KeyValue, data: dict[str, Any], text: str, *, replace: bool
    ) -> int | None:
        # One autocommit statement, no transaction: see "Single writes need no transaction" above.
        if self._closed or self.mode != "write" or coll.name not in self._columns:
            return None
        state = self._state()
        if state.depth or state.migrating or getattr(self._local, "pending", None):
            return None
        # The mark first, then the columns: another thread that finds the store's columns changed
        # loads them before it takes the new mark, so a statement made for this mark has its columns.
        mark = self._schema_mark
        if not mark:
            return None
        made = self._alone.get((coll.name, replace))
        if made is None or made[2] != mark:
            fields = self._lookup.get(coll.name, ())
            cols = ["key", "revision", "data", *(_q(column_of(f)) for f in fields)]
            # A stored revision that is not from 1 to 2**63 - 2 is left to the transaction path to report or refuse.
            clash = (
                f"DO UPDATE SET revision = r.revision + 1, {', '.join(f'{c} = excluded.{c}' for c in cols[2:])} "
                "WHERE r.revision BETWEEN 1 AND 9223372036854775806"
                if replace
                else "DO NOTHING"
            )
            sql = (
                f"INSERT INTO {self._t(coll.name)} AS r({', '.join(cols)}) SELECT {', '.join(['%s'] * len(cols))} "
                f"FROM {self._t('_statestore_meta')} m WHERE m.key = 'schema_mark' "
                f"AND pg_try_advisory_xact_lock_shared({self._write_lock}) "
                f"AND coalesce((SELECT value FROM {self._t('_statestore_meta')} WHERE key = 'store_id'), '') "
                "|| ':' || m.value = %s "
                f"FOR SHARE OF m SKIP LOCKED ON CONFLICT(key) {clash} RETURNING r.revision"
            )
            made = self._alone[coll.name, replace] = (sql, fields, mark)
        sql, fields, _made_for = made
        params = (self._key_param(coll, key), 1, text, *(field_text(data, f) for f in fields), mark)
        try:
            row = self._run(sql, params, True).fetchone()
        except psycopg.Error as exc:
            error = self._error(exc)
            if isinstance(error, StoreBusyError):
                raise error from None  # waited the busy timeout already (for the table, held by a migration)
            if isinstance(error, BackendError) and error.reason.endswith(NOT_COMMITTED):
                reason = error.reason[: -len(NOT_COMMITTED)] + "whether the record was written is unknown"
                raise BackendError(self.location, reason) from None
            return None  # the transaction path runs it again, and reports what it finds
        return None if row is None else int(row[0])

    def _write_many(self, coll: Collection[Any], rows: Iterable[tuple[KeyValue, int, dict[str, Any], str]]) -> None:
        self._flush()
        with self._translate(), self._con().cursor() as cur:
            sql, fields = self._upsert(coll)
            cur.executemany(
                sql, [self._row(coll, fields, key, revision, data, text) for key, revision, data, text in rows]
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
                record = fast_record(data)
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
            column = self._column(coll, first.field)
            plan = order_plan(column, first.kind) if column is not None else json_order_plan(first.field, first.kind)
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
        odd_query: tuple[str, Any, bool] | None = None
        odd: list[Any] = []
        if plan.split:
            # Odd rows on their own (a partial index finds them; there are none in an undamaged store),
            # sent with the first batch, the rest in the order of the field's number index, which
            # serves it: a range on that field is given without its odd rows, so the index scan
            # starts where the range does.
            also = " AND " if where else " WHERE "
            odd_query = (f"SELECT key, revision, data, NULL FROM {table}{where}{also}{plan.odd}", params, True)
            parts: list[str] = []
            args: list[Any] = []
            ranged = False  # a range on the first field leaves out its odd rows (their value is NULL)
            for term in query.terms:
                clause = term_clause(self._column(coll, term.field), term)
                if clause is not None:
                    core = clause.core if term.field == first.field else None
                    ranged = ranged or core is not None
                    parts.append(core or clause.sql)
                    args.extend(clause.params)
            if not ranged:
                parts.insert(0, f"NOT {plan.odd}")
            if skip is not None:
                parts.append(skip.sql)
                args.extend(skip.params)
            # The rows' lookup text, not plan.value: these rows are not odd, so their text is a
            # plain JSON number, read as a Decimal here (below) only where it is compared.
            sql = (
                f"SELECT key, revision, data, {self._column(coll, first.field)} FROM {table} "
                f"WHERE {' AND '.join(parts)} ORDER BY {plan.value} {direction} LIMIT %s"
            )
            params = args
        else:
            sql = (
                f"SELECT key, revision, data, {plan.shown or plan.value} FROM {table}{where} "
                f"ORDER BY {plan.odd} DESC, {plan.value} {direction}, key LIMIT %s"
            )
        batch = min(max(1, need + self._query_slack), 2**62)
        while True:
            if odd_query is not None:
                odd, rows = self._all_of((odd_query, (sql, [*params, batch], True)))
                odd_query = None
            else:
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
                last, bound = rows[-1][3], edge[3]
                if plan.split:
                    last, bound = _decimal(last), _decimal(bound)
                elif first.kind == "datetime":
                    last, bound = instant(last), instant(bound)
                if beyond(plan, first.descending, last, bound, edge[2].get(first.field) is None):
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
