"""SQLiteStore: transactions, records, queries and logs, over the layers below it.

The layers: connection (connections, statements, decoding) < structure
(tables, schemas, indexes, migrations, backups) < reading (point reads and
equality scans) < single (an insert, put or append in one statement) <
store. The tables' layout is in the package's docstring
(:mod:`statestore.backends.sqlite`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from statestore.backends.sqlite.connection import (
    _KEY_JSON,
    _SYNCHRONOUS,
    _q,
)
from statestore.backends.sqlite.queries import (
    _NUL,
    _SQL_OPS,
    _cut,
    _first,
    _has_nul,
    _lossless,
    _sql_compare,
)
from statestore.backends.sqlite.single import SQLiteSingle
from statestore.codec import Codec
from statestore.errors import (
    CorruptStoreError,
    StoreNotFoundError,
)
from statestore.query import Query, Term, prefix_end
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import Durability, Mode, RawEntry, RawRecord


class SQLiteStore(SQLiteSingle):
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
        self._meta_mark: str | None = None  # the mark row then (structure.MARK_KEY); None: no single writes
        self._point_sqls: dict[str, tuple[str, str, str, str, str]] = {}
        self._counteds: dict[Any, Any] = {}  # record class -> codec.counted(class), asked once
        self._log_sqls: dict[str, tuple[str, str]] = {}
        self._alone_sqls: dict[str, tuple[str, str]] = {}  # collection -> _write_alone's (insert, put)
        self._append_sqls: dict[str, str] = {}  # log -> _append_alone's statement
        if mode != "write" and not self.path.is_file():
            raise StoreNotFoundError(self.location)
        try:
            if mode == "write":
                self._create()
                self._initialize()
            with self._translate():
                self._load_columns(self._con())  # the history is read while opening
                # Taken before the schemas are checked: a migration after it is seen by the first write.
                # user_version first: a migration between the two reads leaves the row the newer,
                # which the schema check below covers; the first write transaction sees
                # user_version moved, checks again and renews both (see _begin).
                cur = self._con().cursor()
                self._schema_mark = cur.execute("PRAGMA user_version").fetchone()[0]
                if mode == "write":
                    self._meta_mark = self._mark_row(cur)
            self._open_schemas(check_history=check_history, backup=backup)
            with self._translate():
                self._load_columns(self._con())
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ transactions

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
                row = self._mark_row(cur)  # what single writes compare with, as of this check
            except BaseException:
                self._execute("ROLLBACK")
                raise
            self._schema_mark = mark
            self._meta_mark = row

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
