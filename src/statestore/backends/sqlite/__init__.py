"""SQLiteStore: the default backend, one SQLite database file.

Layout (DESIGN §6): one table per collection named after it with ``key``,
``revision`` and ``data`` (canonical JSON text) plus a virtual generated column
and an index for each declared index and unique constraint, so
``sqlite3 state.db "select key from tasks where status='todo'"`` works; one
table per log with ``UNIQUE(stream, version)``; internal tables prefixed
``_statestore_``: ``_statestore_schemas`` (each schema's version and
description) and ``_statestore_meta`` (the format, the store's id, and
``schema_mark``, a count of changes to ``_statestore_schemas`` kept by three
triggers named ``_statestore_mark_*``; ``PRAGMA user_version`` counts them
too, for older statestore). The physical tables follow the declared schema
on every write-mode open: new indexes and collections appear without a
migration.
"""

from statestore.backends.sqlite.connection import (
    FORMAT,
    _q,
    column_of,
    json_column_of,
    json_path,
    unreadable_reason,
)
from statestore.backends.sqlite.store import SQLiteStore

__all__ = [
    "FORMAT",
    "SQLiteStore",
    "_q",
    "column_of",
    "json_column_of",
    "json_path",
    "unreadable_reason",
]
