"""Every error statestore raises.

Each class derives from :class:`StateStoreError` and from the nearest builtin
(``NotFoundError`` is a ``KeyError``, ``StoreBusyError`` a ``TimeoutError``), so
callers can catch either. Errors carry the structured fields needed to act on
them (collection, key, path, expected and actual revision...), render one clear
line with ``str()``, and pickle, so they cross process pools intact.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define(auto_exc=True, slots=False, init=False)
class StateStoreError(Exception):
    """Root of every statestore error."""

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        """The one-line, human-readable description of the error."""
        return type(self).__name__


@attrs.define(auto_exc=True, slots=False)
class SchemaError(StateStoreError, ValueError):
    """A declaration (``Schema``, ``Collection``, ``Log``) is invalid.

    Raised at declaration time, never later as an SQL or path problem.
    """

    reason: str
    where: str = ""

    def message(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


@attrs.define(auto_exc=True, slots=False)
class SchemaDriftError(SchemaError):
    """The declarations changed incompatibly while the schema's version stayed the same.

    ``changes`` lists every incompatible change (a field removed, renamed or
    retyped, a new field without a default, a changed key). Reading or writing
    on would lose or misread stored data: raise the schema's version and add a
    ``Migration`` that turns the stored records into the new shape.
    """

    location: str = ""
    schema: str = ""
    version: int = 0
    changes: tuple[str, ...] = ()

    def message(self) -> str:
        return (
            f"{self.location}: schema {self.schema!r} changed at version {self.version} without a migration: "
            f"{'; '.join(self.changes)}. Raise the version to {self.version + 1} and add "
            f"ss.Migration({self.version + 1}, ...) that moves the stored records to the new shape"
        )


@attrs.define(auto_exc=True, slots=False)
class ValidationError(StateStoreError, ValueError):
    """A record, key or stream cannot be stored or read back as its declared type.

    ``what`` is the collection or log, ``key`` the record's key (or the stream),
    ``path`` the field path inside the record (``$.tags[2]``), ``reason`` why;
    ``seq`` the log entry's seq when a stored entry is what does not fit
    (None otherwise).
    """

    what: str
    key: Any
    path: str
    reason: str
    seq: int | None = None

    def message(self) -> str:
        if self.seq is not None:
            at = f" seq {self.seq}" + (f" (stream {self.key!r})" if self.key is not None else "")
        else:
            at = f" key {self.key!r}" if self.key is not None else ""
        field = f" at {self.path}" if self.path else ""
        return f"{self.what}{at}{field}: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class NotFoundError(StateStoreError, KeyError):
    """No record has this key (``collection[key]``, ``update``)."""

    collection: str
    key: Any

    def message(self) -> str:
        return f"{self.collection}: no record with key {self.key!r}"


@attrs.define(auto_exc=True, slots=False)
class ConflictError(StateStoreError, ValueError):
    """A compare-and-swap failed: the stored revision (or stream version) moved.

    ``expected`` is what the caller passed, ``actual`` what is stored (``0`` for
    a missing record or an empty stream).
    """

    collection: str
    key: Any
    expected: int
    actual: int

    def message(self) -> str:
        return f"{self.collection}: {self.key!r} is at revision {self.actual}, expected {self.expected}"


#: The last revision a record can have: revisions are 64-bit signed integers on every backend.
LAST_REVISION = 2**63 - 1


@attrs.define(auto_exc=True, slots=False)
class RevisionLimitError(StateStoreError, OverflowError):
    """A write would raise a record's revision past :data:`LAST_REVISION` (2**63 - 1).

    Nothing is written. ``revision`` is the stored one. Deleting the record
    (revisions start again at 1) is the way on.
    """

    collection: str
    key: Any
    revision: int

    def message(self) -> str:
        return f"{self.collection}: {self.key!r} is at revision {self.revision}, the last a 64-bit revision can be"


@attrs.define(auto_exc=True, slots=False)
class StreamVersionLimitError(RevisionLimitError):
    """An append would take a stream's version past :data:`LAST_REVISION`; nothing is written.

    ``collection`` is the log, ``key`` the stream, ``revision`` its last version.
    """

    def message(self) -> str:
        return f"{self.collection}: stream {self.key!r} is at version {self.revision}, the last a 64-bit version can be"


@attrs.define(auto_exc=True, slots=False)
class StreamConflictError(ConflictError):
    """``append(..., expect_version=N)`` found the stream at another version."""

    def message(self) -> str:
        return f"{self.collection}: stream {self.key!r} is at version {self.actual}, expected {self.expected}"


@attrs.define(auto_exc=True, slots=False)
class AlreadyExistsError(ConflictError):
    """``insert`` found a record with the same key already stored."""

    def message(self) -> str:
        return f"{self.collection}: a record with key {self.key!r} already exists"


@attrs.define(auto_exc=True, slots=False)
class UniqueViolationError(ConflictError):
    """A write would give two records the same value of a ``unique`` field (or fields).

    ``fields`` names the constraint, ``value`` the clashing value and
    ``existing_key`` the record that already holds it. ``expected`` and
    ``actual`` (revisions, which a unique clash does not involve) are 0.
    """

    fields: tuple[str, ...] = ()
    value: Any = None
    existing_key: Any = None

    def message(self) -> str:
        names = ", ".join(self.fields)
        return f"{self.collection}: {names}={self.value!r} of {self.key!r} is already used by {self.existing_key!r}"


@attrs.define(auto_exc=True, slots=False)
class ReadOnlyError(StateStoreError, PermissionError):
    """A write was attempted on a store opened with ``mode="read"``."""

    location: str
    operation: str = "write"

    def message(self) -> str:
        return f"{self.location}: opened read-only, cannot {self.operation}"


@attrs.define(auto_exc=True, slots=False)
class StoreBusyError(StateStoreError, TimeoutError):
    """Another process held the store's write lock longer than the busy timeout."""

    location: str
    timeout: float

    def message(self) -> str:
        return f"{self.location}: store is busy (locked by another writer for {self.timeout}s)"


@attrs.define(auto_exc=True, slots=False)
class StoreNotFoundError(StateStoreError, FileNotFoundError):
    """``mode="read"`` found no store; ``legacy`` names legacy state found instead."""

    location: str
    legacy: str | None = None

    def message(self) -> str:
        text = f"{self.location}: no store here"
        if self.legacy:
            text += (
                f" (legacy state found at {self.legacy}; open it in write mode "
                "or run `statestore import-legacy` to import it)"
            )
        return text


@attrs.define(auto_exc=True, slots=False)
class StoreExistsError(StateStoreError, FileExistsError):
    """``copy_store`` found its destination taken and was not told to overwrite it (or may not)."""

    location: str
    reason: str = "already exists (copy_store(..., overwrite=True), or statestore copy --overwrite, replaces a store)"

    def message(self) -> str:
        return f"{self.location}: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class CopyError(StateStoreError, RuntimeError):
    """``copy_store`` could not reproduce the source exactly; no destination was created."""

    location: str
    reason: str

    def message(self) -> str:
        return f"{self.location}: cannot copy: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class CorruptStoreError(StateStoreError, ValueError):
    """The store's files are not what statestore wrote (bad header, unreadable data)."""

    location: str
    reason: str
    line: int | None = None

    def message(self) -> str:
        at = f":{self.line}" if self.line is not None else ""
        return f"{self.location}{at}: corrupt store: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class SchemaMismatchError(StateStoreError, ValueError):
    """The store was made for another schema (a different name) or another app."""

    location: str
    reason: str

    def message(self) -> str:
        return f"{self.location}: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class SchemaTooNewError(StateStoreError, RuntimeError):
    """The store's schema version is newer than the code's; nothing was touched."""

    location: str
    schema: str
    stored: int
    code: int

    def message(self) -> str:
        return (
            f"{self.location}: schema {self.schema!r} is at version {self.stored}, "
            f"newer than this code's version {self.code}; upgrade the application"
        )


@attrs.define(auto_exc=True, slots=False)
class MigrationRequiredError(StateStoreError, RuntimeError):
    """The store's schema version is older than the code's and no migration leads there.

    Read mode never migrates. In write mode the store is left untouched
    rather than stamped with the newer version, which would skip the
    migrations for good.
    """

    location: str
    schema: str
    stored: int
    code: int

    def message(self) -> str:
        return (
            f"{self.location}: schema {self.schema!r} is at version {self.stored}, "
            f"this code needs {self.code}; it needs migrating first (opened read-only, or no migration leads there)"
        )


@attrs.define(auto_exc=True, slots=False)
class UnknownNameError(StateStoreError, KeyError):
    """A collection or log that the store's schema does not declare."""

    name: str
    schema: str

    def message(self) -> str:
        return f"{self.name!r} is not declared in schema {self.schema!r}"


@attrs.define(auto_exc=True, slots=False)
class StoreClosedError(StateStoreError, ValueError):
    """An operation on a store after ``close()``."""

    location: str

    def message(self) -> str:
        return f"{self.location}: store is closed"


@attrs.define(auto_exc=True, slots=False)
class BackendError(StateStoreError, OSError):
    """The storage itself failed (disk full, I/O error); the cause is chained."""

    location: str
    reason: str

    def message(self) -> str:
        return f"{self.location}: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class NotDurableError(BackendError):
    """A write that committed (every reader sees it) but that the storage did not confirm durable.

    Raised with ``durability="full"`` when flushing to disk (``fsync``) fails
    after the commit point of a write whose commit is a rename, an unlink or
    a log line (the file backend's lone writes): the write stays visible
    while the machine runs, but may not survive a power cut. Writing it again
    would write it twice (an append, say); check the storage instead.
    """

    def message(self) -> str:
        return (
            f"{self.location}: the write is committed and every reader sees it, but the storage did not "
            f"confirm it durable ({self.reason}): it may not survive a power cut (do not write it again)"
        )


@attrs.define(auto_exc=True, slots=False)
class MigrationError(StateStoreError, RuntimeError):
    """A migration failed, was refused, or cannot run; its transaction was rolled back.

    The store stays at the version before the migration named here.
    ``collection`` and ``key`` name the record being migrated when it failed
    (empty and None otherwise); the original exception is chained.
    """

    location: str
    schema: str
    version: int
    name: str
    direction: str
    reason: str
    collection: str = ""
    key: Any = None

    def message(self) -> str:
        where = f" in {self.collection!r}" if self.collection else ""
        where += f" at key {self.key!r}" if self.key is not None else ""
        if self.name:
            step = f"migration {self.version} ({self.name}, {self.direction})"
        else:  # a version the code declares no Migration for: no data was changed by a step
            step = f"version {self.version} ({self.direction}; no migration declared, so no record was changed)"
        return f"{self.location}: {step} of schema {self.schema!r} failed{where}: {self.reason}"


@attrs.define(auto_exc=True, slots=False)
class MigrationHistoryError(StateStoreError, RuntimeError):
    """The store's migration history disagrees with the migrations the code declares.

    A migration was renamed or renumbered after stores applied it, or one the
    store applied is no longer declared. Nothing was touched; open with
    ``check_history=False`` to proceed anyway.
    """

    location: str
    schema: str
    version: int
    reason: str

    def message(self) -> str:
        return (
            f"{self.location}: schema {self.schema!r}, migration {self.version}: {self.reason} "
            "(open with check_history=False to proceed anyway)"
        )


@attrs.define(auto_exc=True, slots=False)
class LegacyNotFoundError(StateStoreError, FileNotFoundError):
    """An explicit legacy import found none of the layout's files: nothing was imported, no store was created.

    Importing anyway would create an empty store, which the application's
    next start would take for the imported one (a store is never imported
    into again): a mistyped install folder must not cost the real import.
    """

    location: str
    root: str
    looked_for: tuple[str, ...]

    def message(self) -> str:
        return (
            f"{self.location}: no file of the legacy layout under {self.root} "
            f"(looked for {', '.join(self.looked_for)}), so nothing was imported and no store was created"
        )


@attrs.define(auto_exc=True, slots=False)
class LegacyImportError(StateStoreError, ValueError):
    """A legacy import found records it could not read and ``on_error="abort"``: no store was created.

    ``problems`` lists every :class:`~statestore.legacy.Reject` (path,
    line, column, JSON pointer, reason, raw text).
    """

    location: str
    root: str
    problems: tuple[Any, ...]

    def message(self) -> str:
        shown = "; ".join(str(p) for p in self.problems[:3])
        more = f"; and {len(self.problems) - 3} more" if len(self.problems) > 3 else ""
        return (
            f"{self.location}: legacy import from {self.root} rejected {len(self.problems)} record(s), "
            f"so no store was created: {shown}{more}. Fix those files and start again, or import with "
            'on_error="quarantine" to keep the rejects aside in the store (store.rejects())'
        )
