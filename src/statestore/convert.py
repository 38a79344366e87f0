"""Copy, compare and dump whole stores, on any backend, without the application's code.

Everything here works on what a store says about itself: each schema's
stored description, and the raw JSON of its records and log entries
(statestore's internal logs included), read through the backend primitives.
So a copy keeps keys, records, revisions, entry seqs, streams, versions and
timestamps exactly, and two stores holding the same state dump to the same
bytes whatever their backends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from statestore.backends.fs import make_private_dirs
from statestore.backends.locations import require_backend
from statestore.backends.sqlite import SQLiteStore
from statestore.backends.stored import described_schemas, stored_schemas
from statestore.codec import dumps
from statestore.errors import CopyError, StoreExistsError
from statestore.open import Location, open_store, parse_location
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import INTERNAL_LOGS, RawEntry, Store, StoredSchemas

__all__ = [
    "CollectionDiff",
    "LogDiff",
    "RecordChange",
    "SchemaDiff",
    "StoreDiff",
    "copy_store",
    "diff_stores",
    "dump_store",
]

# ---------------------------------------------------------------- reading a whole store


@contextlib.contextmanager
def _opened(store: str | os.PathLike[str] | Store) -> Iterator[Store]:
    """An open store for ``store``: the object itself, or the location opened read-only without code."""
    if isinstance(store, Store):
        yield store
    else:
        with open_store(store, mode="read") as opened:
            yield opened


class _Content:
    """The declarations of everything a store holds, from its stored descriptions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.schemas: StoredSchemas = store._read_schemas()
        described = described_schemas(self.schemas, store.location)
        self.collections: dict[str, Collection[Any]] = {c.name: c for s in described for c in s.collections}
        logs = [lg for s in described for lg in s.logs]
        self.logs: dict[str, Log[Any]] = {lg.name: lg for lg in (*logs, *INTERNAL_LOGS)}

    def records(self, name: str) -> list[tuple[KeyValue, int, dict[str, Any]]]:
        decl = self.collections.get(name)
        return [] if decl is None else self.store._scan(decl, {})

    def entries(self, name: str) -> list[RawEntry]:
        decl = self.logs.get(name)
        if decl is None:
            return []
        return self.store._entries(decl, stream=None, prefix=None, after=0, limit=None)


# ---------------------------------------------------------------- copy


class _NewSQLiteStore(SQLiteStore):
    """An SQLite store opened without checking or creating schemas: ``copy_store`` writes them itself.

    A normal open would record a "create" step in the migration history,
    which the copy must instead take from the source, unchanged.
    """

    def _open_schemas(self, *, check_history: bool = True, backup: bool = True) -> None:
        return None


def _new_file_store(path: Path, schemas: Sequence[Schema]) -> Store:
    """The file backend's counterpart of :class:`_NewSQLiteStore` (made here: the backend needs fcntl, POSIX)."""
    from statestore.backends.files import FileStore

    class _NewFileStore(FileStore):
        def _open_schemas(self, *, check_history: bool = True, backup: bool = True) -> None:
            return None

    return _NewFileStore(path, schemas)


def _companions(path: Path) -> list[Path]:
    """``path`` and what SQLite keeps beside it (``-wal``, ``-shm``, ``-journal``), existing ones only."""
    return [p for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))) if p.exists()]


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        for p in _companions(path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def copy_store(
    src: str | os.PathLike[str] | Store, dst: str | os.PathLike[str], *, overwrite: bool = False
) -> Location:
    """Copy the store ``src`` to the location ``dst`` (any backend to any backend), exactly; return ``dst``.

    Kept as they are: every schema's name, version and description, every
    record's key, JSON and revision, every log entry's seq, stream, version
    and timestamp, and statestore's internal logs (migration history...).
    The source is read in one read transaction, so a store in use copies as
    one consistent state. The copy is built in a temporary sibling of
    ``dst`` and moved into place only when complete: a failure or a kill
    leaves no destination (at worst a ``.<name>.copy-*`` sibling).

    An existing ``dst`` raises StoreExistsError unless ``overwrite=True``;
    even then it must be a statestore store (never a stranger's folder). The
    store being overwritten must not be in use. A log whose seqs the
    destination cannot reproduce (a gap) raises CopyError. ``dst`` may not
    be ``memory:`` (ValueError) nor the source itself (StoreExistsError),
    nor inside the source, nor one of the files SQLite keeps beside it, nor
    a folder the source is inside (CopyError, whatever the backends; paths
    are compared with symbolic links resolved): writing there would damage
    the source.
    """
    loc = parse_location(dst)
    if loc.backend == "postgres" and loc.url is not None:
        return _copy_to_postgres(src, loc, loc.url, overwrite=overwrite)
    if loc.path is None:
        raise ValueError("copy_store needs a destination on disk (sqlite:PATH or files:PATH), not memory:")
    target = loc.path.absolute()
    with _opened(src) as source:
        own = getattr(source, "path", None)
        if isinstance(own, Path) and own.absolute() == target:
            raise StoreExistsError(str(loc), "is the source store itself")
        if isinstance(own, Path):
            refuse_overlap(own, target, str(loc))
        if os.path.lexists(target) and not _empty_dir(target):  # an empty folder is replaced by the rename
            if not overwrite:
                raise StoreExistsError(str(loc))
            stored_schemas(loc.backend, target, str(loc))  # refuses what is not a store
        make_private_dirs(target.parent)
        tmp = target.with_name(f".{target.name}.copy-{secrets.token_hex(4)}")
        try:
            _build(source, loc, tmp)
            _move_into_place(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
    return Location(loc.backend, loc.path)


def overlap(source: Path, target: Path) -> str | None:
    """How writing ``target`` would touch the store at ``source``, or None if it would not.

    ``"itself"`` (the same path), ``"inside"`` (a path inside the store's
    folder), ``"holds"`` (a folder the store is inside) or ``"beside"`` (one
    of the files SQLite keeps beside a database: ``-wal``, ``-shm``,
    ``-journal``, and the ``.lock`` statestore keeps). Paths are compared
    with symbolic links resolved.
    """
    src, dst = Path(os.path.realpath(source)), Path(os.path.realpath(target))
    if src == dst:
        return "itself"
    if src in dst.parents:
        return "inside"
    if dst in src.parents:
        return "holds"
    if dst.parent == src.parent and any(dst.name == src.name + s for s in ("-wal", "-shm", "-journal", ".lock")):
        return "beside"
    return None


def refuse_overlap(source: Path, target: Path, location: str) -> None:
    """CopyError if ``target`` is inside ``source`` (or beside it, as SQLite's companions are) or contains it."""
    how = overlap(source, target)
    if how == "itself":
        raise StoreExistsError(location, "is the source store itself")
    if how == "inside":
        raise CopyError(location, f"the destination is inside the source store {source}: copy it elsewhere")
    if how == "holds":
        raise CopyError(location, f"the source store {source} is inside the destination: copy it elsewhere")
    if how == "beside":
        raise CopyError(location, f"the destination is a file SQLite keeps beside the source store {source}")


def _copy_to_postgres(src: str | os.PathLike[str] | Store, loc: Location, url: str, *, overwrite: bool) -> Location:
    """``copy_store`` into a PostgreSQL schema: built in a temporary schema, renamed into place in one transaction."""
    require_backend(loc)
    # Imported here: only a PostgreSQL destination needs psycopg.
    from statestore.backends.postgres import (
        PostgresStore,
        aside_schema,
        place_schema,
        schema_exists,
        split_url,
        with_schema,
    )

    _url, schema, _shown = split_url(url)
    with _opened(src) as source:
        if isinstance(source, PostgresStore) and source.same_store(url):
            raise StoreExistsError(str(loc), "is the source store itself")
        if schema_exists(url) and not overwrite:
            raise StoreExistsError(str(loc))
        tmp = with_schema(url, aside_schema(schema, "copy"))

        class _NewPostgresStore(PostgresStore):
            def _open_schemas(self, *, check_history: bool = True, backup: bool = True) -> None:
                return None

        try:
            _build(source, loc, Path(), make=lambda schemas: _NewPostgresStore(tmp, schemas))
            place_schema(tmp, url, replace=overwrite)
        except BaseException:
            place_schema(tmp, None, replace=False)  # drops the half-built copy
            raise
    return loc


def _build(source: Store, loc: Location, tmp: Path, make: Callable[[Sequence[Schema]], Store] | None = None) -> None:
    with source.transaction():  # one consistent snapshot of the source
        content = _Content(source)
        schemas = described_schemas(content.schemas, source.location)
        new: Store
        if make is not None:
            new = make(schemas)
        else:
            new = _NewSQLiteStore(tmp, schemas) if loc.backend == "sqlite" else _new_file_store(tmp, schemas)
        try:
            with new.transaction():
                new._sync_structure(new.collections, [*new.logs, *INTERNAL_LOGS], full=True)
                for name, (version, description) in content.schemas.items():
                    new._set_schema(name, version, description)
                for decl in new.collections:
                    for key, revision, data in content.records(decl.name):
                        new._write(decl, key, revision, data, dumps(data))
                for log in (*new.logs, *INTERNAL_LOGS):
                    for seq, stream, version, at, data in content.entries(log.name):
                        got = new._add_entry(log, stream, version, at, data, dumps(data))
                        if got != seq:
                            reason = f"log {log.name!r}: entry {seq} would become entry {got} (the source skips seqs)"
                            raise CopyError(str(loc), reason)
            new._after_migration()
        finally:
            new.close()


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished copy to ``target``, first moving any old store (and its companions) aside."""
    aside = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    old = []
    # Companions before the database: it must never be paired with another's write-ahead log.
    for path in reversed(_companions(target)) if not target.is_dir() else [target]:
        moved = aside.with_name(aside.name + path.name[len(target.name) :])
        os.rename(path, moved)
        old.append(moved)
    os.rename(tmp, target)
    for path in old:
        _remove(path)


# ---------------------------------------------------------------- diff


@attrs.frozen
class RecordChange:
    """A key both stores hold with different contents: the top-level ``fields`` that differ, and revisions."""

    key: KeyValue
    fields: tuple[str, ...]
    revision_a: int
    revision_b: int


@attrs.frozen
class CollectionDiff:
    """How a collection differs: keys only in b (``added``), only in a (``removed``), and ``changed``."""

    name: str
    added: tuple[KeyValue, ...] = ()
    removed: tuple[KeyValue, ...] = ()
    changed: tuple[RecordChange, ...] = ()


@attrs.frozen
class LogDiff:
    """How a log differs: the seqs whose entries differ or that only one store has, and both counts."""

    name: str
    seqs: tuple[int, ...]
    count_a: int
    count_b: int


@attrs.frozen
class SchemaDiff:
    """A schema the stores hold differently: ``(version, description)`` on each side, None when absent."""

    name: str
    a: tuple[int, dict[str, Any]] | None
    b: tuple[int, dict[str, Any]] | None


@attrs.frozen
class StoreDiff:
    """What :func:`diff_stores` found; empty tuples everywhere when the stores hold the same state."""

    a: str
    b: str
    schemas: tuple[SchemaDiff, ...] = ()
    collections: tuple[CollectionDiff, ...] = ()
    logs: tuple[LogDiff, ...] = ()

    @property
    def equal(self) -> bool:
        """True when schemas, records (with revisions) and log entries are all the same."""
        return not (self.schemas or self.collections or self.logs)

    def summary(self, limit: int = 20) -> str:
        """Readable text, at most ``limit`` lines of detail per section (then a count of the rest)."""
        if self.equal:
            return f"{self.a} and {self.b} hold the same state"
        lines = [f"--- {self.a}", f"+++ {self.b}"]
        for s in self.schemas:
            lines.append(f"schema {s.name}: {_side(s.a)} -> {_side(s.b)}")
        for c in self.collections:
            lines.append(f"collection {c.name}: +{len(c.added)} -{len(c.removed)} ~{len(c.changed)}")
            detail = [f"  + {k!r}" for k in c.added] + [f"  - {k!r}" for k in c.removed]
            for ch in c.changed:
                what = ", ".join(ch.fields) if ch.fields else "revision only"
                detail.append(f"  ~ {ch.key!r}: {what} (revision {ch.revision_a} -> {ch.revision_b})")
            lines += _bounded(detail, limit)
        for lg in self.logs:
            lines.append(f"log {lg.name}: {lg.count_a} -> {lg.count_b} entries, {len(lg.seqs)} differ")
            lines += _bounded([f"  seq {seq}" for seq in lg.seqs], limit)
        return "\n".join(lines)


def _side(got: tuple[int, dict[str, Any]] | None) -> str:
    return "absent" if got is None else f"version {got[0]}"


def _bounded(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"  ... and {len(lines) - limit} more"]


def diff_stores(
    a: str | os.PathLike[str] | Store, b: str | os.PathLike[str] | Store, *, internal: bool = True
) -> StoreDiff:
    """Compare two stores of any backends; locations are opened read-only, stores are left open.

    Records are matched by key and compare equal when their JSON and their
    revision are the same; log entries are matched by seq and compare seq,
    stream, version, timestamp and JSON. Internal logs (migration
    history, legacy import provenance and rejects) are compared too, so only
    a copy (or the same store) is equal; two stores filled the same way at
    other times differ there. With ``internal=False`` only the schemas, the
    user collections and the user logs are compared: two imports of the
    same legacy install are then equal.
    """
    with _opened(a) as sa, _opened(b) as sb, sa.transaction(), sb.transaction():
        ca, cb = _Content(sa), _Content(sb)
        schemas = tuple(
            SchemaDiff(name, ca.schemas.get(name), cb.schemas.get(name))
            for name in sorted({*ca.schemas, *cb.schemas})
            if ca.schemas.get(name) != cb.schemas.get(name)
        )
        collections = []
        for name in sorted({*ca.collections, *cb.collections}):
            diff = _diff_records(name, ca.records(name), cb.records(name))
            if diff is not None:
                collections.append(diff)
        logs = []
        internal_names = set() if internal else {lg.name for lg in INTERNAL_LOGS}
        for name in sorted({*ca.logs, *cb.logs} - internal_names):
            # Compared as canonical JSON: 1, 1.0 and true are equal in Python, not in a store.
            ea = {e[0]: dumps(e) for e in ca.entries(name)}
            eb = {e[0]: dumps(e) for e in cb.entries(name)}
            seqs = tuple(seq for seq in sorted({*ea, *eb}) if ea.get(seq) != eb.get(seq))
            if seqs:
                logs.append(LogDiff(name, seqs, len(ea), len(eb)))
        return StoreDiff(sa.location, sb.location, schemas, tuple(collections), tuple(logs))


def _diff_records(
    name: str, rows_a: list[tuple[KeyValue, int, dict[str, Any]]], rows_b: list[tuple[KeyValue, int, dict[str, Any]]]
) -> CollectionDiff | None:
    ra = {k: (rev, data) for k, rev, data in rows_a}
    rb = {k: (rev, data) for k, rev, data in rows_b}
    added = tuple(k for k, _r, _d in rows_b if k not in ra)
    removed = tuple(k for k, _r, _d in rows_a if k not in rb)
    changed = []
    for key, rev_a, data_a in rows_a:
        if key not in rb:
            continue
        rev_b, data_b = rb[key]
        if rev_a != rev_b or dumps(data_a) != dumps(data_b):
            fields = tuple(f for f in sorted({*data_a, *data_b}) if _field(data_a, f) != _field(data_b, f))
            changed.append(RecordChange(key, fields, rev_a, rev_b))
    if not (added or removed or changed):
        return None
    return CollectionDiff(name, added, removed, tuple(changed))


def _field(data: dict[str, Any], name: str) -> str | None:
    """A field's canonical JSON (None when absent: a missing field differs from a null one)."""
    return dumps(data[name]) if name in data else None


# ---------------------------------------------------------------- dump


def dump_store(store: str | os.PathLike[str] | Store, out: TextIO) -> int:
    """Write the whole store to ``out`` as canonical JSON lines; return the number of lines.

    One line per schema (``{"schema", "version", "description"}``, by
    name), per record (``{"collection", "key", "revision", "record"}``, by
    collection name then key order) and per log entry (``{"log", "seq",
    "stream", "version", "at", "record"}``, by log name then seq), internal
    logs included. Keys are sorted and compact (``codec.dumps``), so stores
    holding the same state dump to the same bytes, whatever their backend.
    Nothing location-specific (path, backend, store id) is written.
    """
    count = 0
    with _opened(store) as opened, opened.transaction():
        content = _Content(opened)
        for name in sorted(content.schemas):
            version, description = content.schemas[name]
            out.write(dumps({"schema": name, "version": version, "description": description}) + "\n")
            count += 1
        for name in sorted(content.collections):
            for key, revision, data in content.records(name):
                out.write(dumps({"collection": name, "key": key, "revision": revision, "record": data}) + "\n")
                count += 1
        for name in sorted(content.logs):
            for seq, stream, version, at, data in content.entries(name):
                line = {"log": name, "seq": seq, "stream": stream, "version": version, "at": at, "record": data}
                out.write(dumps(line) + "\n")
                count += 1
    return count
