"""statestore: typed local state for command-line tools, agents and developer tools.

One storage protocol (attrs records, cattrs conversion) over interchangeable
backends: SQLite, plain JSON/JSONL files, and memory.

Importing the package is cheap: each public name is imported from its module
on first use (``ss.open_store``, ``ss.SQLiteStore``...), so a command that
only prints its help, or an app that only declares its schema, does not pay
for the backends, the legacy importer or cattrs. ``import statestore`` also
works where ``fcntl`` does not exist (Windows): only the files backend needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

if TYPE_CHECKING:
    from statestore.backends.files import FileStore
    from statestore.backends.memory import MemoryStore
    from statestore.backends.sqlite import SQLiteStore
    from statestore.codec import Codec
    from statestore.convert import (
        CollectionDiff,
        LogDiff,
        RecordChange,
        SchemaDiff,
        StoreDiff,
        copy_store,
        diff_stores,
        dump_store,
    )
    from statestore.errors import (
        AlreadyExistsError,
        BackendError,
        ConflictError,
        CopyError,
        CorruptStoreError,
        LegacyImportError,
        LegacyNotFoundError,
        MigrationError,
        MigrationHistoryError,
        MigrationRequiredError,
        NotDurableError,
        NotFoundError,
        ReadOnlyError,
        RevisionLimitError,
        SchemaDriftError,
        SchemaError,
        SchemaMismatchError,
        SchemaTooNewError,
        StateStoreError,
        StoreBusyError,
        StoreClosedError,
        StoreExistsError,
        StoreNotFoundError,
        StreamConflictError,
        StreamVersionLimitError,
        UniqueViolationError,
        UnknownNameError,
        ValidationError,
    )
    from statestore.legacy import (
        Function,
        ImportRecord,
        ImportReport,
        JsonFile,
        JsonFiles,
        JsonLines,
        Legacy,
        LegacyEntry,
        LegacyLayout,
        Reject,
        SourceReport,
        import_legacy,
    )
    from statestore.migrations import HistoryRow, MigrationContext
    from statestore.open import Location, open_store, parse_location, state_path
    from statestore.query import Condition, ge, gt, le, lt, ne, one_of, prefix
    from statestore.schema import Collection, Log, Migration, Schema
    from statestore.store import Store
    from statestore.views import CollectionView, Entry, LogView, Versioned

# Public name -> the module that defines it, imported on first use.
_WHERE = {
    "AlreadyExistsError": "statestore.errors",
    "BackendError": "statestore.errors",
    "Codec": "statestore.codec",
    "Collection": "statestore.schema",
    "CollectionDiff": "statestore.convert",
    "CollectionView": "statestore.views",
    "Condition": "statestore.query",
    "ConflictError": "statestore.errors",
    "CopyError": "statestore.errors",
    "CorruptStoreError": "statestore.errors",
    "Entry": "statestore.views",
    "FileStore": "statestore.backends.files",
    "Function": "statestore.legacy",
    "HistoryRow": "statestore.migrations",
    "ImportRecord": "statestore.legacy",
    "ImportReport": "statestore.legacy",
    "JsonFile": "statestore.legacy",
    "JsonFiles": "statestore.legacy",
    "JsonLines": "statestore.legacy",
    "Legacy": "statestore.legacy",
    "LegacyEntry": "statestore.legacy",
    "LegacyImportError": "statestore.errors",
    "LegacyNotFoundError": "statestore.errors",
    "LegacyLayout": "statestore.legacy",
    "Location": "statestore.open",
    "Log": "statestore.schema",
    "LogDiff": "statestore.convert",
    "LogView": "statestore.views",
    "MemoryStore": "statestore.backends.memory",
    "Migration": "statestore.schema",
    "MigrationContext": "statestore.migrations",
    "MigrationError": "statestore.errors",
    "MigrationHistoryError": "statestore.errors",
    "MigrationRequiredError": "statestore.errors",
    "NotDurableError": "statestore.errors",
    "NotFoundError": "statestore.errors",
    "ReadOnlyError": "statestore.errors",
    "RevisionLimitError": "statestore.errors",
    "RecordChange": "statestore.convert",
    "Reject": "statestore.legacy",
    "SQLiteStore": "statestore.backends.sqlite",
    "Schema": "statestore.schema",
    "SchemaDiff": "statestore.convert",
    "SchemaDriftError": "statestore.errors",
    "SchemaError": "statestore.errors",
    "SchemaMismatchError": "statestore.errors",
    "SchemaTooNewError": "statestore.errors",
    "SourceReport": "statestore.legacy",
    "StateStoreError": "statestore.errors",
    "Store": "statestore.store",
    "StoreBusyError": "statestore.errors",
    "StoreClosedError": "statestore.errors",
    "StoreDiff": "statestore.convert",
    "StoreExistsError": "statestore.errors",
    "StoreNotFoundError": "statestore.errors",
    "StreamConflictError": "statestore.errors",
    "StreamVersionLimitError": "statestore.errors",
    "UniqueViolationError": "statestore.errors",
    "UnknownNameError": "statestore.errors",
    "ValidationError": "statestore.errors",
    "Versioned": "statestore.views",
    "copy_store": "statestore.convert",
    "diff_stores": "statestore.convert",
    "dump_store": "statestore.convert",
    "ge": "statestore.query",
    "gt": "statestore.query",
    "import_legacy": "statestore.legacy",
    "le": "statestore.query",
    "lt": "statestore.query",
    "ne": "statestore.query",
    "one_of": "statestore.query",
    "open_store": "statestore.open",
    "parse_location": "statestore.open",
    "prefix": "statestore.query",
    "state_path": "statestore.open",
}

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "Codec",
    "Collection",
    "CollectionDiff",
    "CollectionView",
    "Condition",
    "ConflictError",
    "CopyError",
    "CorruptStoreError",
    "Entry",
    "FileStore",
    "Function",
    "HistoryRow",
    "ImportRecord",
    "ImportReport",
    "JsonFile",
    "JsonFiles",
    "JsonLines",
    "Legacy",
    "LegacyEntry",
    "LegacyImportError",
    "LegacyLayout",
    "LegacyNotFoundError",
    "Location",
    "Log",
    "LogDiff",
    "LogView",
    "MemoryStore",
    "Migration",
    "MigrationContext",
    "MigrationError",
    "MigrationHistoryError",
    "MigrationRequiredError",
    "NotDurableError",
    "NotFoundError",
    "ReadOnlyError",
    "RecordChange",
    "Reject",
    "RevisionLimitError",
    "SQLiteStore",
    "Schema",
    "SchemaDiff",
    "SchemaDriftError",
    "SchemaError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "SourceReport",
    "StateStoreError",
    "Store",
    "StoreBusyError",
    "StoreClosedError",
    "StoreDiff",
    "StoreExistsError",
    "StoreNotFoundError",
    "StreamConflictError",
    "StreamVersionLimitError",
    "UniqueViolationError",
    "UnknownNameError",
    "ValidationError",
    "Versioned",
    "copy_store",
    "diff_stores",
    "dump_store",
    "ge",
    "gt",
    "import_legacy",
    "le",
    "lt",
    "ne",
    "one_of",
    "open_store",
    "parse_location",
    "prefix",
    "state_path",
]


# Submodules reachable as attributes (``ss.legacy.store_exists``), as they were when imported eagerly.
_SUBMODULES = frozenset(
    {
        "backends",
        "cli",
        "codec",
        "convert",
        "errors",
        "examples",
        "legacy",
        "migrations",
        "open",
        "query",
        "schema",
        "store",
        "testing",
        "views",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name here."""
    module = _WHERE.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f"statestore.{name}")
        raise AttributeError(f"module 'statestore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
