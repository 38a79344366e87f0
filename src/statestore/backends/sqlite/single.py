"""SQLite's single writes: an insert, a put or an append in one autocommit statement of its own.

``Store`` asks a backend for these (``_write_alone``, ``_append_alone``)
before it opens a transaction for one write outside any transaction. Here
each is one statement that SQLite runs in autocommit: it takes the write
lock (waiting up to ``busy_timeout``), writes, and commits at the store's
durability before ``execute`` returns, where the transaction path runs
``BEGIN IMMEDIATE``, ``PRAGMA user_version``, a read, the write and
``COMMIT``. Whenever a statement cannot be sure it writes what the
transaction path would, it writes nothing and the caller takes that path,
which finds out why and says so.

Each statement checks the schema mark row (``structure.MARK_KEY``) inside
it, under the write lock: it writes only while the row holds the value this
object last checked the schemas at. See ``docs/sqlite-speed.md``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from statestore.backends.sqlite.connection import _AT, _KEY_JSON, _NEXT, _RAISED, _is_busy, _q, _ThreadConnection
from statestore.backends.sqlite.reading import SQLiteReading
from statestore.backends.sqlite.structure import MARK_SQL
from statestore.errors import LAST_REVISION, BackendError, StoreBusyError
from statestore.schema import Collection, KeyValue, Log


class SQLiteSingle(SQLiteReading):
    """One insert, put or append in one statement (see the module docstring)."""

    def _alone_sql(self, coll: Collection[Any]) -> tuple[str, str]:
        """The insert and the put of ``_write_alone`` into ``coll``, built once.

        Each is one statement that writes only while the schema mark row
        (``structure.MARK_KEY``, read inside the statement, so under the write
        lock it takes) holds the value given as its third parameter. The put
        raises a stored revision by one, through ``statestore_raised`` (see
        ``_Raised``), only if it is an integer from 1 to 2**63 - 2: any other
        is left to the transaction path to report (a damaged revision) or
        refuse (no 64-bit successor).
        """
        sql = self._alone_sqls.get(coll.name)
        if sql is None:
            head = (
                f"INSERT INTO {_q(coll.name)} AS r(key, revision, data) SELECT ?, 1, ? "
                f"WHERE ({MARK_SQL}) = ? ON CONFLICT(key) DO "
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
        moved (the mark row is not the one this object last checked, as
        ``_begin`` checks ``user_version``), the key is stored (insert), or its
        revision is damaged or at the last 64-bit value (put). Declined
        outright: a closed or read-only store, a write inside a transaction or
        a migration, a table not known, a store without the mark row. A busy
        store raises StoreBusyError at once (it waited already); any other
        error writes nothing and the transaction path runs again.
        """
        holder = self._alone_holder(coll.name)
        if holder is None:
            return None
        sql = self._alone_sqls.get(coll.name) or self._alone_sql(coll)
        param = _KEY_JSON.encode(list(key)) if isinstance(key, tuple) else key
        raised = holder.raised
        raised.value = 0
        try:
            changed = holder.con.execute(sql[1 if replace else 0], (param, text, self._meta_mark)).rowcount
        except sqlite3.Error as exc:
            self._raise_if_busy(exc)
            return None
        if changed != 1:
            return None
        return raised.value or 1

    def _raise_if_busy(self, exc: sqlite3.Error) -> None:
        """A single statement's error: StoreBusyError if the store was busy (the wait is over), else None.

        Anything else (a declined append's NULL version, a table another
        process renamed) is the transaction path's to find out and report.
        """
        if _is_busy(exc):
            raise StoreBusyError(self.location, self.busy_timeout) from None

    def _alone_holder(self, table: str) -> _ThreadConnection | None:
        """This thread's connection for a single write to ``table``, or None when one must not be tried."""
        if self._closed or self.mode != "write" or self._schema_mark < 0 or self._meta_mark is None:
            return None
        if table not in self._columns:
            return None
        state = self._state()
        if state.depth or state.migrating:
            return None
        try:
            holder: _ThreadConnection = self._local.holder
        except AttributeError:
            holder = self._holder()
        return holder

    def _append_sql(self, log: Log[Any]) -> str:
        """``_append_alone``'s statement for ``log``: (stream, data, schema mark, expected version or None).

        One ``INSERT … VALUES`` whose version is ``statestore_next`` of the
        stream's last (see ``_Stamp``), and NULL, which the version column
        refuses, unless the mark row holds the third parameter. Not ``INSERT
        … SELECT``: a SELECT that reads the table it inserts into is run into
        a temporary table first (~50,000 instructions).
        """
        sql = self._append_sqls.get(log.name)
        if sql is None:
            t = _q(log.name)
            sql = self._append_sqls[log.name] = (
                f"INSERT INTO {t}(stream, version, at, data) VALUES (?1, CASE WHEN ({MARK_SQL}) = ?3 "
                f"THEN {_NEXT}((SELECT max(version) FROM {t} WHERE stream = ?1), ?4) END, {_AT}(), ?2)"
            )
        return sql

    def _append_alone(
        self, log: Log[Any], stream: str, data: dict[str, Any], text: str, *, expect_version: int | None
    ) -> tuple[int, int, datetime] | None:
        """One entry in one autocommit statement (``_append_sql``); None to take the transaction path.

        As ``_write_alone``: the write lock is waited for up to
        ``busy_timeout`` (StoreBusyError at once after that), the commit is the
        store's durability, and nothing is written when the statement declines
        (the schemas may have moved, ``expect_version`` is not the stream's
        version, a damaged or last version: the version column refuses NULL),
        fails otherwise, or is not tried (closed, read-only, inside a
        transaction or a migration, an unknown table, no mark row): the
        transaction path then runs and says why. The entry's time is taken
        under the write lock, as the transaction path takes it.
        """
        if expect_version is not None and (type(expect_version) is not int or not 0 <= expect_version <= LAST_REVISION):
            return None  # not a version a stream can have (or not one SQLite can bind): the transaction path compares
        holder = self._alone_holder(log.name)
        if holder is None:
            return None
        sql = self._append_sqls.get(log.name) or self._append_sql(log)
        stamp = holder.stamp
        stamp.reset()
        try:
            seq = holder.con.execute(sql, (stream, text, self._meta_mark, expect_version)).lastrowid
        except sqlite3.Error as exc:
            self._raise_if_busy(exc)
            return None
        if not stamp.version or seq is None:  # the entry was written: it must not be written again
            raise BackendError(
                self.location, f"log {log.name!r}, stream {stream!r}: appended, but its seq or version is unknown"
            )
        return seq, stamp.version, stamp.at
