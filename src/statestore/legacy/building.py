"""Running a legacy import: read, check, build aside, verify, migrate, move into place (statestore.legacy).

The new store is built beside its final place (``.<name>.import-<random>``),
in one transaction, at the layout's schema version; its record and entry
counts are checked against what was read; pending migrations run on it; and
only then is it moved into place, without ever replacing a store another
process created meanwhile. A crash at any step leaves at most a hidden
leftover that the next import removes. Imports serialize on
``<name>.import.lock`` beside the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import filelock

from statestore.backends.fs import make_private_dirs
from statestore.backends.locations import connect, parse_location, store_exists
from statestore.codec import Codec, dumps
from statestore.errors import (
    CorruptStoreError,
    LegacyImportError,
    MigrationError,
    StoreBusyError,
    ValidationError,
)
from statestore.legacy.declarations import (
    After,
    Function,
    ImportReport,
    Legacy,
    OnError,
    Progress,
    Reject,
    SourceReport,
)
from statestore.legacy.reading import Checker, Item, Reader
from statestore.schema import IMPORTS, REJECTS, Collection, KeyValue, Log, Schema
from statestore.store import Durability, Store
from statestore.views import CollectionView

__all__ = ["import_legacy", "legacy_present", "run_import"]

_log = logging.getLogger("statestore")

#: What was read for one collection: key -> every (item, stored dict, text) with that key.
Records = dict[str, dict[KeyValue, list[tuple[Item, Any, str]]]]
Entries = dict[str, list[tuple[Item, Any, str]]]


def _target(location: str) -> tuple[str, Path]:
    loc = parse_location(location)
    return loc.backend, loc.path if loc.path is not None else Path()


def legacy_present(legacy: Legacy) -> bool:
    """True if at least one source of the layout has a file under the root."""
    return any(src.files(legacy.root) for src in legacy.layout.sources)


def import_legacy(
    location: str | os.PathLike[str],
    schema: Schema,
    legacy: Legacy,
    *,
    on_error: OnError | None = None,
    after: After | None = None,
    dry_run: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    busy_timeout: float = 300.0,
    converter: Any = None,
    durability: Durability = "normal",
) -> ImportReport:
    """Import ``legacy`` into a new store at ``location``; return the report.

    ``on_error`` and ``after`` default to the ``Legacy``'s. A store already
    at ``location`` is left alone (the report says ``imported_store=False``)
    unless ``replace=True``, which imports anew and keeps the old store
    beside it as ``<name>.replaced-<time>``. Anything else at ``location``
    (a file, a folder with files) is refused with CorruptStoreError; a store
    a source would read, or a store folder holding the install or inside it,
    with ValueError (an SQLite file beside the old JSON files is fine). ``dry_run`` reads and
    validates everything, writes nothing and returns the report with every
    reject (it never raises for them). Otherwise, with ``on_error="abort"``
    and anything rejected, raises LegacyImportError (every reject in
    ``problems``) and creates no store. When the layout's version is older
    than the schema's, the pending migrations run on the new store before it
    is moved into place, so one that fails leaves no store either.
    ``progress(done, total)`` is called with bytes read. Concurrent calls
    serialize on ``<store>.import.lock``; ``durability`` is the new store's.
    """
    on_error = on_error or legacy.on_error
    after = after or legacy.after
    if on_error not in ("abort", "quarantine"):
        raise ValueError(f"on_error must be 'abort' or 'quarantine', not {on_error!r}")
    if after not in ("keep", "rename"):
        raise ValueError(f"after must be 'keep' or 'rename', not {after!r}")
    return run_import(
        os.fspath(location),
        schema,
        legacy,
        on_error=on_error,
        after=after,
        dry_run=dry_run,
        replace=replace,
        progress=progress,
        busy_timeout=busy_timeout,
        converter=converter,
        durability=durability,
    )


def _vacant(path: Path) -> bool:
    """Nothing at ``path`` but, at most, an empty file or an empty folder."""
    if not path.exists() and not path.is_symlink():
        return True
    if path.is_symlink():
        return False
    if path.is_dir():
        return not any(path.iterdir())
    return path.stat().st_size == 0


def run_import(
    location: str,
    schema: Schema,
    legacy: Legacy,
    *,
    on_error: OnError,
    after: After,
    dry_run: bool,
    replace: bool,
    progress: Progress | None,
    busy_timeout: float,
    converter: Any,
    durability: Durability,
) -> ImportReport:
    """``statestore.legacy.import_legacy``, its arguments checked."""
    backend, path = _target(location)
    if backend == "postgres":
        return _run_postgres_import(
            location, schema, legacy, on_error, after, dry_run, replace, progress, busy_timeout, converter, durability
        )
    if backend == "memory" and not dry_run:
        raise ValueError("a legacy import needs a store on disk (sqlite: or files:), not memory:")
    if backend != "memory":
        _check_apart(backend, path, legacy)
    build = _Build(location, schema, legacy, on_error, progress, converter, durability)
    if dry_run:
        return build.read(dry_run=True)
    make_private_dirs(path.parent)
    lock = filelock.FileLock(
        str(path.with_name(path.name + ".import.lock")), timeout=max(busy_timeout, 0.0), mode=0o600
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreBusyError(location, busy_timeout) from None
    try:
        _sweep_asides(path)
        exists = store_exists(location)
        if exists and not replace:
            return ImportReport(location, str(legacy.root), legacy.layout.version, (), (), imported_store=False)
        if not exists and not _vacant(path):
            raise CorruptStoreError(location, "something that is not a statestore store is here; not importing over it")
        report = build.read(dry_run=False)
        build.write(path, replace=exists)
        parts = ", ".join(f"{s.imported} {s.into} from {s.path}" for s in report.sources)
        _log.info(
            "%s: imported %d records from %s (%s), %d rejected",
            location,
            report.imported,
            legacy.root,
            parts,
            report.rejected,
        )
        if report.rejects and on_error == "quarantine":
            _log.info("%s: %d rejected legacy records quarantined in the store", location, report.rejected)
    finally:
        lock.release()
    if after == "rename":
        for _index, _src, f in build.reader.files:
            with contextlib.suppress(OSError):
                f.rename(f.with_name(f.name + ".imported"))
    return report


def _run_postgres_import(
    location: str,
    schema: Schema,
    legacy: Legacy,
    on_error: OnError,
    after: After,
    dry_run: bool,
    replace: bool,
    progress: Progress | None,
    busy_timeout: float,
    converter: Any,
    durability: Durability,
) -> ImportReport:
    """``run_import`` into PostgreSQL: importers on every machine serialize on an advisory lock."""
    from statestore.backends.postgres import import_lock, schema_exists, schema_vacant

    url = parse_location(location).url
    assert url is not None
    build = _Build(location, schema, legacy, on_error, progress, converter, durability)
    if dry_run:
        return build.read(dry_run=True)
    with import_lock(url, busy_timeout):
        exists = schema_exists(url)
        if exists and not replace:
            return ImportReport(location, str(legacy.root), legacy.layout.version, (), (), imported_store=False)
        if not exists and not schema_vacant(url):
            raise CorruptStoreError(location, "something that is not a statestore store is here; not importing over it")
        report = build.read(dry_run=False)
        build.write_postgres(url, replace=exists)
        _log.info(
            "%s: imported %d records from %s, %d rejected", location, report.imported, legacy.root, report.rejected
        )
    if after == "rename":
        for _index, _src, f in build.reader.files:
            with contextlib.suppress(OSError):
                f.rename(f.with_name(f.name + ".imported"))
    return report


def _check_apart(backend: str, path: Path, legacy: Legacy) -> None:
    """Refuse a store that the legacy install's sources would read, or that would hold them.

    An SQLite file may sit in the old install's folder (``~/.tracker/state.db``
    beside the old JSON files) unless a source names it; a store folder may
    not contain the install nor lie inside it, where globs could read it.
    """
    root, where = legacy.root.resolve(), path.resolve()
    if backend == "sqlite":
        names = {where, where.with_name(where.name + "-wal"), where.with_name(where.name + "-shm")}
        if any(f.resolve() in names for src in legacy.layout.sources for f in src.files(legacy.root)):
            raise ValueError(f"the store {path} is one of the legacy install's source files")
        if where == root or where in root.parents:
            raise ValueError(f"the legacy install {legacy.root} is inside the store's place {path}")
        return
    if where == root or where in root.parents or root in where.parents:
        raise ValueError(f"the store folder {path} and the legacy install {legacy.root} must not be inside one another")


def _aside_prefix(path: Path) -> str:
    return f".{path.name}.import-"


def _sweep_asides(path: Path) -> None:
    """Remove stores half-built by imports that crashed (we hold the import lock)."""
    prefix = _aside_prefix(path)
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


class _Build:
    """One import: what was read, and the store built from it."""

    def __init__(
        self,
        location: str,
        schema: Schema,
        legacy: Legacy,
        on_error: OnError,
        progress: Progress | None,
        converter: Any,
        durability: Durability,
    ) -> None:
        layout = legacy.layout
        if layout.version > schema.version:
            raise ValueError(
                f"the legacy layout is for version {layout.version}, newer than the schema's {schema.version}"
            )
        self.location, self.schema, self.legacy, self.on_error = location, schema, legacy, on_error
        self.converter, self.durability = converter, durability
        self.now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        self.reader = Reader(legacy, progress, self.now)
        # Each source's declaration: the schema's own, or (a layout older than the code) the
        # application's declaration of that version, under its name then.
        self.decls: dict[str, Collection[Any] | Log[Any]] = {}
        typed: dict[str, bool] = {}
        for src in layout.sources:
            own = schema.collection(src.into.name) or schema.log(src.into.name)
            decl = src.into
            if own is not None and (own is decl or own.describe() == decl.describe()):
                # The code's declaration: its types describe records at the code's version only.
                typed[decl.name] = layout.version == schema.version
            elif own is not None and layout.version == schema.version:
                raise ValueError(f"legacy source {src.path!r}: {decl.name!r} is declared differently by the schema")
            else:
                typed[decl.name] = True
            other = self.decls.get(decl.name)
            if other is not None and other.describe() != decl.describe():
                raise ValueError(f"legacy sources declare {decl.name!r} in two different ways")
            self.decls[decl.name] = decl
        self.checker = Checker(Codec(converter), typed)
        self.records: Records = {}
        self.entries: Entries = {}
        self.rejects: list[Reject] = []
        # (source index, file or Function name) -> [imported, rejected]
        self.counts: dict[tuple[int, str], list[int]] = {}

    # ------------------------------------------------------------ reading

    def read(self, *, dry_run: bool) -> ImportReport:
        """Read and check everything; raise LegacyImportError if anything is bad and on_error is abort."""
        key_checkers: dict[str, Callable[[Any], KeyValue]] = {}
        for item in self.reader.items():
            decl = self.decls[item.into]
            counts = self.counts.setdefault((item.source, item.rel), [0, 0])
            if item.reject is not None:
                self.rejects.append(item.reject)
                counts[1] += 1
                continue
            checked = self.checker.check(item, decl)
            if isinstance(checked, Reject):
                self.rejects.append(checked)
                counts[1] += 1
                continue
            data, text = checked
            if isinstance(decl, Collection):
                valid = key_checkers.get(decl.name)
                if valid is None:
                    valid = key_checkers[decl.name] = _key_checker(decl)
                try:
                    key = valid(decl.key_of(data))
                except ValidationError as exc:
                    raw = item.raw or text
                    self.rejects.append(
                        Reject(item.rel, item.line, None, item.pointer, exc.reason, raw, into=decl.name)
                    )
                    counts[1] += 1
                    continue
                self.records.setdefault(decl.name, {}).setdefault(key, []).append((item, data, text))
            else:
                self.entries.setdefault(decl.name, []).append((item, data, text))
            counts[0] += 1
        self._reject_shared_keys()
        self.rejects.sort(key=lambda r: (r.path, r.line or 0, r.pointer or ""))
        report = ImportReport(
            self.location,
            str(self.legacy.root),
            self.legacy.layout.version,
            tuple(self._source_reports()),
            tuple(self.rejects),
            dry_run,
            imported_store=not dry_run,
        )
        if self.rejects and self.on_error == "abort" and not dry_run:
            raise LegacyImportError(self.location, str(self.legacy.root), tuple(self.rejects))
        return report

    def _reject_shared_keys(self) -> None:
        """A key two records share: neither is imported (which one is right is not ours to guess)."""
        for name, by_key in self.records.items():
            for key, copies in by_key.items():
                if len(copies) > 1:
                    places = ", ".join(_place(i) for i, _, _ in copies)
                    for item, _data, text in copies:
                        reason = f"duplicate key {key!r} ({places})"
                        self.rejects.append(
                            Reject(item.rel, item.line, None, item.pointer, reason, item.raw or text, into=name)
                        )
                        counts = self.counts[item.source, item.rel]
                        counts[0] -= 1
                        counts[1] += 1

    def _source_reports(self) -> Iterator[SourceReport]:
        for index, src in enumerate(self.legacy.layout.sources):
            keys = [k for k in self.counts if k[0] == index]
            if not keys and not isinstance(src, Function) and not src.files(self.legacy.root):
                continue  # nothing of it is there
            imported = sum(self.counts[k][0] for k in keys)
            rejected = sum(self.counts[k][1] for k in keys)
            yield SourceReport(src.path, src.into.name, imported + rejected, imported, rejected)

    # ------------------------------------------------------------ writing

    def write(self, path: Path, *, replace: bool) -> None:
        """Build the store aside, verify it, migrate it, and move it into place."""
        backend = _target(self.location)[0]
        aside_path = path.with_name(f"{_aside_prefix(path)}{secrets.token_hex(4)}{path.suffix}")
        try:
            self._build_at(f"{backend}:{aside_path}")
            _move_into_place(aside_path, path, replace=replace)
        except BaseException:
            _remove(aside_path)
            raise
        finally:
            aside_path.with_name(aside_path.name + ".lock").unlink(missing_ok=True)  # SQLite's migration lock

    def write_postgres(self, url: str, *, replace: bool) -> None:
        """``write`` for a PostgreSQL store: built in a schema aside, renamed into place in one transaction.

        With ``replace`` the schema of the store being replaced is kept as
        ``<schema>_replaced_<time>``, as the file backends keep theirs.
        """
        from statestore.backends.postgres import place_schema, split_url, with_schema

        schema = split_url(url)[1]
        aside = with_schema(url, f"{schema[:40]}_import_{secrets.token_hex(4)}")
        try:
            self._build_at(aside)
            keep = f"{schema[:40]}_replaced_{time.strftime('%Y%m%dt%H%M%Sz', time.gmtime())}" if replace else None
            place_schema(aside, url, replace=replace, keep_as=keep)
        except BaseException:
            place_schema(aside, None, replace=False)  # drops the half-built store
            raise

    def _build_at(self, aside: str) -> None:
        """Build the store at the location ``aside``, verify it and migrate it to the code's version."""
        schema, layout = self.schema, self.legacy.layout
        decls = list(self.decls.values())
        collections = {d.name: d for d in decls if isinstance(d, Collection)}
        logs = {d.name: d for d in decls if isinstance(d, Log)}
        if layout.schema is not None and layout.version < schema.version:
            # The application's schema of that version: every collection its migrations expect.
            for c in layout.schema.collections:
                collections.setdefault(c.name, c)
            for lg in layout.schema.logs:
                logs.setdefault(lg.name, lg)
        old = Schema(
            schema.name, version=layout.version, collections=list(collections.values()), logs=list(logs.values())
        )
        options: dict[str, Any] = {"durability": self.durability, "converter": self.converter}
        with connect(parse_location(aside), [old], backup=False, check_history=False, **options) as store:
            self._fill(store)
        self._verify(aside, old)
        if layout.version < schema.version:
            # Migrations run here, on the store no one else sees yet: one that fails leaves no store.
            try:
                with connect(parse_location(aside), [schema], backup=False, **options):
                    pass
            except MigrationError as exc:
                raise attrs.evolve(exc, location=self.location) from exc.__cause__

    def _fill(self, store: Store) -> None:
        """Everything, in one transaction: records, entries, provenance and quarantine."""
        with store.transaction():
            for name, by_key in self.records.items():
                decl = self.decls[name]
                assert isinstance(decl, Collection)
                rows = ((key, 1, copies[0][1], copies[0][2]) for key, copies in by_key.items() if len(copies) == 1)
                store._write_many(decl, rows)
            for name, entries in self.entries.items():
                decl = self.decls[name]
                assert isinstance(decl, Log)
                store._add_entries(decl, _numbered(entries))  # a new store: every stream starts at 1
            stream, legacy = store.schema.name, self.legacy
            for n, ((index, rel), info) in enumerate(self.reader.seen.items(), 1):
                good, bad = self.counts.get((index, rel), [0, 0])
                row = {
                    "path": rel,
                    "into": legacy.layout.sources[index].into.name,
                    "size": info.size,
                    "mtime": info.mtime,
                    "sha256": info.sha256,
                    "imported": good,
                    "rejected": bad,
                    "root": str(legacy.root),
                    "version": legacy.layout.version,
                }
                store._add_entry(IMPORTS, stream, n, self.now, row, dumps(row))
            for n, reject in enumerate(self.rejects, 1):
                row = attrs.asdict(reject)
                store._add_entry(REJECTS, stream, n, self.now, row, dumps(row))

    def _verify(self, aside: str, schema: Schema) -> None:
        """Reopen the built store and check it holds exactly what was read."""
        with connect(parse_location(aside), [schema], mode="read", check_history=False) as store:
            for coll in schema.collections:
                want = sum(1 for copies in self.records.get(coll.name, {}).values() if len(copies) == 1)
                got = store._count(coll)
                if got != want:
                    reason = f"collection {coll.name!r} holds {got} records after the import, not {want}"
                    raise CorruptStoreError(aside, reason)
            for log in schema.logs:
                want = len(self.entries.get(log.name, ()))
                got = store._last_seq(log)
                if got != want:
                    raise CorruptStoreError(aside, f"log {log.name!r} holds {got} entries after the import, not {want}")


def _place(item: Item) -> str:
    if item.line is not None:
        return f"{item.rel}:{item.line}"
    return f"{item.rel} at {item.pointer}" if item.pointer else item.rel


def _key_checker(decl: Collection[Any]) -> Callable[[Any], KeyValue]:
    """The shared layer's key validation for ``decl`` (str/int parts, 64-bit ints, no lone surrogates)."""
    view: CollectionView[Any] = CollectionView.__new__(CollectionView)
    view.decl = decl
    view._key_types = tuple(decl.field_types[f] for f in decl.key_fields)
    return view._key


def _numbered(rows: Sequence[tuple[Item, Any, str]]) -> Iterator[tuple[str, int, str, Any, str]]:
    """(stream, version, at, data, text) with versions 1, 2, 3... per stream, in order."""
    versions: dict[str, int] = {}
    for item, data, text in rows:
        version = versions[item.stream] = versions.get(item.stream, 0) + 1
        yield item.stream, version, item.at, data, text


def _move_into_place(aside: Path, path: Path, *, replace: bool) -> None:
    """Move the finished store to ``path``, never over a store that appeared meanwhile.

    With ``replace`` the store at ``path`` is first renamed ``<name>.replaced-<time>``
    (and renamed back if the move then fails).
    """
    if aside.is_file():
        # One self-contained file (no -wal beside it) before it is moved into place.
        con = sqlite3.connect(aside)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
        _fsync(aside)
    kept: list[tuple[Path, Path]] = []
    if replace:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        for suffix in ("", "-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                moved = path.with_name(f"{path.name}.replaced-{stamp}{suffix}")
                side.rename(moved)
                kept.append((moved, side))
    elif path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    elif path.is_file() and path.stat().st_size == 0:
        path.unlink()
    try:
        _place_without_replacing(aside, path)
    except BaseException:
        for moved, side in kept:
            with contextlib.suppress(OSError):
                moved.rename(side)
        raise
    _fsync(path.parent)


def _place_without_replacing(aside: Path, path: Path) -> None:
    if aside.is_dir():
        try:
            os.rename(aside, path)  # fails if a non-empty folder appeared at path meanwhile
        except OSError:
            if path.exists():
                raise CorruptStoreError(str(path), "another store was created here during the import") from None
            raise
        return
    try:
        os.link(aside, path)  # unlike rename, fails if a store appeared at path meanwhile
    except FileExistsError:
        raise CorruptStoreError(str(path), "another store was created here during the import") from None
    except OSError:
        # No hard links here (vfat, some network file systems): claim the name exclusively, then
        # rename over our own empty claim (we hold the import lock, so no other import races it).
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise CorruptStoreError(str(path), "another store was created here during the import") from None
        os.replace(aside, path)
        return
    os.unlink(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
