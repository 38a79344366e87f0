"""statestore: typed local state for command-line tools, agents and developer tools.

One storage protocol (attrs records, cattrs conversion) over interchangeable
backends: SQLite and plain JSON/JSONL files.
"""

from importlib.metadata import PackageNotFoundError, version

from statestore._open import Location, open_store, parse_location, state_path
from statestore.codec import Codec
from statestore.errors import (
    AlreadyExistsError,
    BackendError,
    ConflictError,
    CorruptStoreError,
    LegacyImportError,
    MigrationError,
    MigrationHistoryError,
    MigrationRequiredError,
    NotFoundError,
    ReadOnlyError,
    SchemaError,
    SchemaMismatchError,
    SchemaTooNewError,
    StateStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreNotFoundError,
    StreamConflictError,
    UniqueViolationError,
    UnknownNameError,
    ValidationError,
)
from statestore.files import FileStore
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
from statestore.memory import MemoryStore
from statestore.migrations import HistoryRow, MigrationContext
from statestore.schema import Collection, Log, Migration, Schema
from statestore.sqlite import SQLiteStore
from statestore.store import CollectionView, Entry, LogView, Store, Versioned

try:
    __version__ = version("statestore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "Codec",
    "Collection",
    "CollectionView",
    "ConflictError",
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
    "Location",
    "Log",
    "LogView",
    "MemoryStore",
    "Migration",
    "MigrationContext",
    "MigrationError",
    "MigrationHistoryError",
    "MigrationRequiredError",
    "NotFoundError",
    "ReadOnlyError",
    "Reject",
    "SQLiteStore",
    "Schema",
    "SchemaError",
    "SchemaMismatchError",
    "SchemaTooNewError",
    "SourceReport",
    "StateStoreError",
    "Store",
    "StoreBusyError",
    "StoreClosedError",
    "StoreNotFoundError",
    "StreamConflictError",
    "UniqueViolationError",
    "UnknownNameError",
    "ValidationError",
    "Versioned",
    "import_legacy",
    "open_store",
    "parse_location",
    "state_path",
]
