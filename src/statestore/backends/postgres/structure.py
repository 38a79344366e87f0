"""PostgresStructure: the tables of a PostgreSQL store, its schemas, indexes, migrations and backups.

The middle layer of :class:`~statestore.backends.postgres.store.PostgresStore`:
creating the store's internal tables once (even with many clients racing),
reading and recording schema versions (each change moves the schema mark
other clients watch), making tables, lookup columns and indexes match the
declarations, the migration lock, and backups as schemas of their own.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from statestore.backends.postgres.columns import RESERVED, column_of, field_text, index_name
from statestore.backends.postgres.connection import PostgresConnection
from statestore.backends.postgres.queries import number_odd, number_value
from statestore.backends.postgres.server import MAX_IDENTIFIER as _MAX_IDENTIFIER
from statestore.backends.postgres.server import q as _q
from statestore.backends.postgres.wire import pg_errors, psycopg
from statestore.codec import dumps
from statestore.errors import CorruptStoreError, SchemaError, SchemaMismatchError
from statestore.query import field_kind
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import RawEntry, StoredSchemas

FORMAT = 1


class PostgresStructure(PostgresConnection):
    """Tables, schemas, indexes, migrations and backups (see PostgresStore)."""

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

    def _mark(self) -> str:
        row = self._one(self._mark_sql())
        mark = row[0] if row is not None else None
        if not isinstance(mark, str) or not mark.rpartition(":")[2].isdigit():
            raise CorruptStoreError(self.location, f"schema mark {mark!r} is not a store id and a number")
        return mark

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
            wanted[index_name("ix", table, (field,))] = (False, (field,))
        for group in coll.unique:
            wanted[index_name("uq", table, group)] = (True, group)
        needed = {f for _, fields in wanted.values() for f in fields}
        # A number field's lookup text read as numeric, and its odd rows: ranges and order_by use them.
        numeric: dict[str, str] = {}
        for field in sorted(needed):
            if field_kind(coll.field_types[field], strict=False) == "number":
                col = _q(column_of(field))
                numeric[index_name("nx", table, (field,))] = f"({number_value(col)} NULLS FIRST)"
                numeric[index_name("no", table, (field,))] = f"(key) WHERE {number_odd(col)}"
        existing = self._indexes(table)
        for name in existing - wanted.keys() - numeric.keys():
            self._execute(f"DROP INDEX {self._t(name)}")
        present = {c for c in self._table_columns(table) if c not in RESERVED}
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

    def lookup_mismatches(self, coll: Collection[Any]) -> list[tuple[KeyValue, str, str | None, str | None]]:
        """(key, field, column text, record's text) for each lookup column that does not hold what its record says.

        Statestore writes a record's lookup columns with it; a column edited
        by hand (or by another program) no longer agrees, and a query on that
        field, which reads the column, would miss the record or find it
        wrongly: ``statestore check`` reports it. Writing the record again
        rebuilds its columns. Rows whose key or record cannot be read are
        left to the checks that report those.
        """
        fields = self._lookup.get(coll.name, ())
        if not fields or coll.name not in self._columns:
            return []
        cols = ", ".join(_q(column_of(f)) for f in fields)
        out: list[tuple[KeyValue, str, str | None, str | None]] = []
        for k, text, *stored in self._all(f"SELECT key, data, {cols} FROM {self._t(coll.name)} ORDER BY key"):
            try:
                key = self._key_value(coll, k)
                data = self._record(coll, key, text)
            except CorruptStoreError:
                continue
            for field, got in zip(fields, stored):
                want = field_text(data, field)
                if got != want:
                    out.append((key, field, got, want))
        return out

    # ------------------------------------------------------------ migrations and backups

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
        self._schema_mark = ""
