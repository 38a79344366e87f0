"""SQLite's equality scan: rows decoded into dicts (``_scan``), or straight into records (``_scan_decoded``).

``_scan_decoded`` serves a plain-equality ``find``: it reads each stored text
with Python's plain JSON scanner and structures the dict with the codec's
counting structurer (``statestore.strict.counted``) in one pass, where
``_scan`` followed by ``codec.decode_rows`` decodes each text strictly
(``rawjson``: a Python hook per object, to find a duplicate member, and per
float, to find ``1e400``) and then structures it. It gives the same records
and the same errors; a record it cannot prove strict goes the strict way.

Why the plain scanner's dict is proven strict when ``2 * strings ==
text.count('"')`` (``strings``: the member names and string values the
decoded dict holds, at every depth, as the counting structurer counts them):

* In JSON text a ``"`` character outside a string is a string's opening or
  closing quote, and inside a string it is an escaped quote (``\\"``). So
  ``q = text.count('"') = 2 * T + E``, with ``T`` the string tokens (member
  names and string values) and ``E >= 0`` the escaped quotes: ``q >= 2 * T``.
* Decoding keeps one string for each string token, except where an object
  names a member twice: the dict keeps one name and the last value, so the
  earlier name (and every string of the earlier value) is gone. So the
  dict's ``strings <= T``, and ``strings < T`` if any member was named twice.
* If ``2 * strings == q``, then ``T <= q / 2 = strings <= T``: ``strings ==
  T``, and no object named a member twice. (Text with an escaped quote, or
  a duplicate, fails the test and goes the strict way, which decides.)

The other strict rules hold without a test: ``NaN``/``Infinity`` raise in
the plain scanner too (``parse_constant``); a number past a float becomes
infinity there, and the counting structurer accepts no non-finite float
anywhere (each field's test refuses it, and no member goes unchecked); an
integer past Python's digit limit and deep nesting raise in the scanner,
and so go the strict way, which reports them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from statestore.backends.rawjson import PLAIN_SCAN
from statestore.backends.sqlite.connection import _KEY_JSON, _by_key, _q, _scanned_object
from statestore.backends.sqlite.queries import _NUL, _cut
from statestore.backends.sqlite.structure import SQLiteStructure
from statestore.errors import ValidationError
from statestore.schema import Collection, KeyValue
from statestore.store import RawRecord


class SQLiteReading(SQLiteStructure):
    """The equality scans of SQLiteStore (see the module docstring)."""

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

    def _row(self, coll: Collection[Any], key: KeyValue) -> tuple[int, Any] | None:
        """The stored (revision, text) of ``key``, its revision checked; None if absent."""
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
        return revision, text

    def _get(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, dict[str, Any]] | None:
        row = self._row(coll, key)
        return None if row is None else (row[0], self._record(coll, key, row[1]))

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

    def _scan_sql(self, coll: Collection[Any], where: Mapping[str, Any]) -> Callable[[], tuple[str, list[Any]]]:
        """What builds the SELECT of ``_scan`` (rebuilt by ``_select`` if a generated column vanished)."""
        # SQLite's JSON functions return text cut at its first NUL, so the columns hold "a" for
        # "a\0z": the query asks for that cut text, and the rows are then compared exactly.
        params = [_cut(v) for v in where.values()]

        def build() -> tuple[str, list[Any]]:
            clauses = [f"{self._column(coll, field)} IS ?" for field in where]
            sql = f"SELECT key, revision, data FROM {_q(coll.name)}"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            return sql + f" ORDER BY {self._order(coll)}", params

        return build

    def _order(self, coll: Collection[Any]) -> str:
        if coll.composite:
            return ", ".join(self._column(coll, f) for f in coll.key_fields)
        return "key"

    def _scan(self, coll: Collection[Any], where: Mapping[str, Any], *, copy: bool = True) -> list[RawRecord]:
        if not self._has(coll.name):
            return []
        # SQL sees text only up to a NUL ("x\0y" IS "x"): such rows are checked here.
        texts = [(f, v) for f, v in where.items() if isinstance(v, str)]
        nul_query = any("\0" in v for _f, v in texts)  # asked for its cut text: every row is checked
        out: list[RawRecord] = []
        composite, record = coll.composite, self._record
        for k, rev, text in self._select(coll, self._scan_sql(coll, where)):
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

    def _scan_decoded(self, coll: Collection[Any], where: Mapping[str, Any]) -> list[Any] | None:
        """``_scan`` then ``codec.decode_rows``, in one pass (see the module docstring); None if not offered.

        Not offered for a composite key (``_scan`` sorts those in Python) or
        a class the codec has no counting structurer for. Stored damage in
        any row (CorruptStoreError) is raised before a record that does not
        fit its class (ValidationError, the first such in key order), as the
        two steps would.
        """
        counted = self.codec.counted(coll.type)
        if counted is None or coll.composite or not self._has(coll.name):
            return None
        texts = [(f, v) for f, v in where.items() if isinstance(v, str)]
        nul_query = any("\0" in v for _f, v in texts)
        codec, name, tp = self.codec, coll.name, coll.type
        out: list[Any] = []
        unfit: tuple[Any, Any] | None = None  # the first row that does not fit tp: (key, data)
        for key, rev, text in self._select(coll, self._scan_sql(coll, where)):
            data, obj = _one_pass(counted, text)
            if obj is None:
                data = self._record(coll, key, text)  # strictly, raising CorruptStoreError for damage
            if (
                texts
                and (nul_query or type(text) is not str or _NUL in text)
                and not all(data.get(f) == v for f, v in texts)
            ):
                continue
            if type(rev) is not int or rev < 1:
                self._revision_of(coll, key, rev)  # raises, saying what and where
            if obj is None and unfit is None:
                try:
                    obj = codec.decode(name, tp, data, key)
                except ValidationError:
                    unfit = (key, data)
            out.append(obj)
        if unfit is not None:
            codec.decode(name, tp, unfit[1], unfit[0])  # raises it again, now that no row is damaged
        return out

    def _get_decoded(self, coll: Collection[Any], key: KeyValue, *, copy: bool = True) -> tuple[int, Any] | None:
        """``_get`` then ``codec.decode``, in one pass where the codec has a counting structurer (as ``_scan_decoded``).

        The same answer and errors as the two steps: a damaged revision or
        text is CorruptStoreError, a record that does not fit its class
        ValidationError. ``copy`` changes nothing: every record is decoded anew.
        """
        # _row and _one_pass written out: on every get's and update's path, where each call costs.
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
        counted = self._counteds.get(coll.type, False)
        if counted is False:
            counted = self._counteds[coll.type] = self.codec.counted(coll.type)
        if counted is not None and type(text) is str:
            try:
                data, end = PLAIN_SCAN(text, 0)
            except (StopIteration, ValueError, RecursionError):
                data = None  # the strict way explains
            if data is not None and end == len(text) and type(data) is dict:
                obj = counted(data, text.count('"'))
                if obj is not None:
                    return revision, obj
        return revision, self.codec.decode(name, coll.type, self._record(coll, key, text), key)


def _one_pass(counted: Callable[[Any, int], Any], text: Any) -> tuple[Any, Any]:
    """(the dict, the record) when the plain scanner reads ``text`` whole and ``counted`` proves it strict.

    (None, None) otherwise: text the plain scanner refuses (the strict way
    explains it) or a record the counting structurer cannot prove.
    """
    data = _scanned_object(text, PLAIN_SCAN)
    return (None, None) if data is None else (data, counted(data, text.count('"')))
