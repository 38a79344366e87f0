"""SQLite structure: creating the file, tables, stored schemas, indexes and generated columns, migrations, backups."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from statestore.backends.fs import backup_label, make_private_dirs, migration_lock, place_backup
from statestore.backends.sqlite.connection import (
    _RESERVED,
    FORMAT,
    SQLiteConnection,
    _q,
    column_of,
    json_column_of,
    json_path,
)
from statestore.codec import dumps
from statestore.errors import (
    BackendError,
    CorruptStoreError,
    ReadOnlyError,
    SchemaError,
    SchemaMismatchError,
    StoreBusyError,
)
from statestore.schema import Collection, Log, Schema
from statestore.store import RawEntry, StoredSchemas

#: The row of ``_statestore_meta`` that counts changes to the stored schemas, and the triggers
#: that count them: every INSERT, UPDATE or DELETE of a row of ``_statestore_schemas`` adds one,
#: whichever statestore version made it (older ones count only in ``PRAGMA user_version``, which
#: ``_set_schema`` still moves for their sake). Single writes read it inside their statement.
MARK_KEY = "schema_mark"
MARK_SQL = f"SELECT value FROM _statestore_meta WHERE key = '{MARK_KEY}'"
_MARK_TRIGGERS = {
    f"_statestore_mark_{event.lower()}": (
        f"CREATE TRIGGER IF NOT EXISTS _statestore_mark_{event.lower()} AFTER {event} ON _statestore_schemas "
        "BEGIN UPDATE _statestore_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
        f"WHERE key = '{MARK_KEY}'; END"
    )
    for event in ("INSERT", "UPDATE", "DELETE")
}


class SQLiteStructure(SQLiteConnection):
    """Tables, schemas, indexes, migrations and backups (the layer under ``SQLiteStore``)."""

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
        """Give an empty database statestore's internal tables, and any store the schema mark (write mode)."""
        self._once(self._internal_tables, self._create_tables)
        # A store an older statestore made has no mark yet. Opening a current store needs no write
        # otherwise, so a busy or read-only one still opens: without the mark, single writes take
        # the transaction path (which meets what stopped this, if it lasts) until an open adds it.
        with contextlib.suppress(StoreBusyError, ReadOnlyError):
            self._once(self._has_mark, self._add_mark)

    def _once(self, done: Callable[[sqlite3.Connection], bool], make: Callable[[sqlite3.Connection], None]) -> None:
        """``make`` in a write transaction unless ``done``: asked first without the lock, then again under it."""
        con = self._con()
        with self._translate():
            if done(con):
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                if not done(con):
                    make(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _create_tables(self, con: sqlite3.Connection) -> None:
        con.execute("CREATE TABLE _statestore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute(
            "CREATE TABLE _statestore_schemas "
            "(name TEXT PRIMARY KEY, version INTEGER NOT NULL, description TEXT NOT NULL)"
        )
        con.executemany(
            "INSERT INTO _statestore_meta(key, value) VALUES (?, ?)",
            [("format", str(FORMAT)), ("store_id", uuid.uuid4().hex)],
        )

    def _has_mark(self, con: sqlite3.Connection) -> bool:
        triggers = {
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='_statestore_schemas'"
            )
        }
        return triggers >= _MARK_TRIGGERS.keys() and con.execute(MARK_SQL).fetchone() is not None

    def _add_mark(self, con: sqlite3.Connection) -> None:
        """The mark row (its count starts at 0; a damaged one goes on from there) and the triggers moving it."""
        for sql in _MARK_TRIGGERS.values():
            con.execute(sql)
        con.execute("INSERT OR IGNORE INTO _statestore_meta(key, value) VALUES (?, '0')", (MARK_KEY,))

    def _mark_row(self, cur: sqlite3.Cursor) -> str | None:
        """The schema mark row's value (None if missing: single writes then take the transaction path)."""
        with self._translate():
            row = cur.execute(MARK_SQL).fetchone()
        return None if row is None else str(row[0])

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
            # Single writes wait for the next check (first: a check another thread makes between
            # the two lines then leaves the -1 below, which the next write checks again).
            self._meta_mark = None
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
