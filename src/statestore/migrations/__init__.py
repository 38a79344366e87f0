"""Schema migrations: record-level steps that run the same on every backend.

A :class:`~statestore.schema.Migration` changes stored JSON through a
:class:`MigrationContext` (``map_records``, ``rename_collection``,
``drop_collection``, ``map_entries``, raw reads and writes), which is built
from the backend's record primitives, so the same migration gives the same
store on SQLite and on files. Physical structure (tables, generated columns,
indexes, folders) is not a migration: it follows the declarations on open.

Each step runs in one write transaction together with its history row (an
entry of the internal ``_statestore_history`` log, one stream per schema) and
the new version. Openers that race each other serialize on the store's
migration lock, so each step runs once; a backup is taken before the first.

The modules: ``running`` (opening a store's schemas, running steps up or
down), ``context`` (what a step gets), ``checks`` (refusals on open and the
checks after the last step, drift of declarations) and ``history`` (the
history rows).
"""

from statestore.migrations.checks import drift, records_checked_by_caller
from statestore.migrations.context import MigrationContext
from statestore.migrations.history import HistoryRow, read_history
from statestore.migrations.running import migrate, open_schemas

__all__ = [
    "HistoryRow",
    "MigrationContext",
    "drift",
    "migrate",
    "open_schemas",
    "read_history",
    "records_checked_by_caller",
]
