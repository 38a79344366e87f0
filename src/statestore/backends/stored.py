"""What a store says about itself, read without the application's code.

Every store keeps each schema's name, version and JSON description (SQLite:
table ``_statestore_schemas``; files: ``statestore.json``). Reading them
before a store object exists is what lets ``open_store(location)`` and the
``statestore`` command open any store as described schemas (records are
plain dicts). Nothing here creates or changes a file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from statestore.backends import rawjson
from statestore.backends.sqlite import unreadable_reason
from statestore.errors import BackendError, CorruptStoreError, SchemaError, StoreNotFoundError
from statestore.schema import Schema
from statestore.store import StoredSchemas

__all__ = ["described_schemas", "stored_schemas"]

_MANIFEST = "statestore.json"


def stored_schemas(backend: str, path: Path | None, location: str, *, url: str | None = None) -> StoredSchemas:
    """``{name: (version, description)}`` as the store at ``path`` (PostgreSQL: ``url``) holds them.

    A missing store (or ``memory:``, which never exists beforehand) raises
    StoreNotFoundError; a file or folder that is not a statestore store
    raises CorruptStoreError.
    """
    if backend == "postgres" and url is not None:
        from statestore.backends.locations import require_psycopg

        require_psycopg(location)
        from statestore.backends.postgres import stored_schemas as postgres_schemas

        return postgres_schemas(url)
    if backend == "memory" or path is None:
        raise StoreNotFoundError(location)
    if backend == "sqlite":
        return _sqlite_schemas(path, location)
    return _files_schemas(path, location)


def _sqlite_schemas(path: Path, location: str) -> StoredSchemas:
    if not path.exists():
        raise StoreNotFoundError(location)
    if not path.is_file():
        raise CorruptStoreError(location, "not a file, so not an SQLite store")
    try:
        # mode=ro: a read must never create the file or turn it into a database.
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise CorruptStoreError(location, f"cannot open as SQLite: {exc}") from None
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "_statestore_schemas" not in tables:
            raise CorruptStoreError(location, "not a statestore database (no _statestore_schemas table)")
        rows = con.execute("SELECT name, version, description FROM _statestore_schemas").fetchall()
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            reason = unreadable_reason(path)
            if reason is not None:
                raise BackendError(location, reason) from None
        raise CorruptStoreError(location, str(exc)) from None
    except UnicodeDecodeError as exc:  # a name or description whose bytes are not UTF-8: a damaged page
        raise CorruptStoreError(location, f"stored text is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    finally:
        con.close()
    return rawjson.stored_schemas_of(rows, location)


def _files_schemas(path: Path, location: str) -> StoredSchemas:
    if not path.exists():
        raise StoreNotFoundError(location)
    if not path.is_dir():
        raise CorruptStoreError(location, "not a directory, so not a file-backend store")
    from statestore.backends.files.journal import committed_root_file  # files only: it needs fcntl (POSIX)

    manifest = path / _MANIFEST
    found, text = committed_root_file(path / ".statestore", _MANIFEST)  # a migration not yet applied
    try:
        raw = text.encode("utf-8") if found and text is not None else manifest.read_bytes()
    except FileNotFoundError:
        if any(not p.name.startswith(".") for p in path.iterdir()):
            raise CorruptStoreError(location, f"directory has no {_MANIFEST}: not a statestore store") from None
        raise StoreNotFoundError(location) from None
    except IsADirectoryError:
        raise CorruptStoreError(str(manifest), "is a directory") from None
    try:
        doc: Any = rawjson.load(raw)
    except ValueError as exc:
        raise CorruptStoreError(str(manifest), str(exc)) from None
    schemas = doc.get("schemas") if isinstance(doc, dict) else None
    if not isinstance(schemas, dict):
        raise CorruptStoreError(str(manifest), "not a statestore manifest (no schemas)")
    out: StoredSchemas = {}
    for name, entry in schemas.items():
        version = entry.get("version") if isinstance(entry, dict) else None
        desc = entry.get("description") if isinstance(entry, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(desc, dict):
            raise CorruptStoreError(str(manifest), f"schema {name!r} has no valid version and description")
        out[str(name)] = (version, desc)
    return out


def described_schemas(stored: StoredSchemas, location: str) -> tuple[Schema, ...]:
    """The schemas a store holds, rebuilt from their descriptions (records are plain dicts).

    Each is given the version the store records, which after a downgrade may
    be older than the one its description was written by. A store holding no
    schema, a description that is not one, or two schemas describing the
    same collection or log, raises CorruptStoreError.
    """
    if not stored:
        raise CorruptStoreError(location, "the store holds no schema")
    out = []
    owners: dict[str, str] = {}
    for name in sorted(stored):
        version, desc = stored[name]
        try:
            schema = Schema.described({**desc, "name": name, "version": version})
        except SchemaError as exc:
            raise CorruptStoreError(location, f"schema {name!r}: {exc}") from None
        for part in [c.name for c in schema.collections] + [lg.name for lg in schema.logs]:
            other = owners.setdefault(part, name)
            if other != name:  # one table or folder cannot be two schemas' (stored descriptions are untrusted)
                raise CorruptStoreError(location, f"schemas {other!r} and {name!r} both describe {part!r}")
        out.append(schema)
    return tuple(out)
