"""statestore: typed local state for command-line tools, agents and developer tools.

One storage protocol (attrs records, cattrs conversion) over interchangeable
backends: SQLite and plain JSON/JSONL files.
"""

from importlib.metadata import PackageNotFoundError, version

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
    MigrationError,
    MigrationHistoryError,
    MigrationRequiredError,
    NotFoundError,
    ReadOnlyError,
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
from statestore.schema import Collection, Log, Migration, Schema
from statestore.store import Store
from statestore.views import CollectionView, Entry, LogView, Versioned

try:
    __version__ = version("statestore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "Codec",
    "Collection",
    "CollectionDiff",
    "CollectionView",
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
    "NotFoundError",
    "ReadOnlyError",
    "RecordChange",
    "Reject",
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
    "UniqueViolationError",
    "UnknownNameError",
    "ValidationError",
    "Versioned",
    "copy_store",
    "diff_stores",
    "dump_store",
    "import_legacy",
    "open_store",
    "parse_location",
    "state_path",
]
