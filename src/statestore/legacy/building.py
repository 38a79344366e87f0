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
import gc
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from statestore.backends.fs import make_private_dirs
from statestore.backends.locations import parse_location, require_backend, store_exists
from statestore.errors import (
    CorruptStoreError,
    LegacyNotFoundError,
    StoreBusyError,
)
from statestore.legacy.declarations import (
    After,
    ImportReport,
    Legacy,
    OnError,
    Progress,
)
from statestore.legacy.placing import rename_imported, sweep_asides, target_of
from statestore.legacy.writing import Build
from statestore.schema import Schema
from statestore.store import Durability

__all__ = ["import_legacy", "legacy_present", "run_import"]

_log = logging.getLogger("statestore")


def legacy_present(legacy: Legacy) -> bool:
    """True if at least one source of the layout has a file under its root."""
    return any(src.files(legacy.root_of(src)) for src in legacy.layout.sources)


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
    When none of the layout's files is there, LegacyNotFoundError (nothing
    imported, no store created), unless a store exists and ``replace`` and
    ``dry_run`` are off: then it is left alone, as above.
    """
    on_error = on_error or legacy.on_error
    after = after or legacy.after
    if on_error not in ("abort", "quarantine"):
        raise ValueError(f"on_error must be 'abort' or 'quarantine', not {on_error!r}")
    if after not in ("keep", "rename"):
        raise ValueError(f"after must be 'keep' or 'rename', not {after!r}")
    if not legacy_present(legacy) and (replace or dry_run or not store_exists(location)):
        # An empty store would pass for the imported one from then on (a mistyped install folder).
        looked_for = tuple(src.path for src in legacy.layout.sources)
        raise LegacyNotFoundError(os.fspath(location), legacy.describe(), looked_for)
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
    backend, path = target_of(location)
    if backend == "postgres":
        return _run_postgres_import(
            location, schema, legacy, on_error, after, dry_run, replace, progress, busy_timeout, converter, durability
        )
    if backend == "memory" and not dry_run:
        raise ValueError("a legacy import needs a store that lasts (sqlite:, files: or postgresql://), not memory:")
    if backend != "memory":
        _check_apart(backend, path, legacy)
    build = Build(location, schema, legacy, on_error, progress, converter, durability)
    if dry_run:
        with _collector_paused():
            try:
                return build.dry_run()
            finally:
                build.release()
    created = _missing_parents(path.parent)
    make_private_dirs(path.parent)
    lock_path = path.with_name(path.name + ".import.lock")
    lock = filelock.FileLock(str(lock_path), timeout=max(busy_timeout, 0.0), mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreBusyError(location, busy_timeout) from None
    placed = False
    try:
        sweep_asides(path)
        exists = store_exists(location)
        if exists and not replace:
            placed = True
            return ImportReport(location, legacy.describe(), legacy.layout.version, (), (), imported_store=False)
        if not exists and not _vacant(path):
            raise CorruptStoreError(location, "something that is not a statestore store is here; not importing over it")
        with _collector_paused():
            try:
                build.read(dry_run=False)
                report = build.write(path, replace=exists)
            finally:
                build.release()
        placed = True
        parts = ", ".join(f"{s.imported} {s.into} from {s.path}" for s in report.sources)
        _log.info(
            "%s: imported %d records from %s (%s), %d rejected",
            location,
            report.imported,
            legacy.describe(),
            parts,
            report.rejected,
        )
        if report.rejects and on_error == "quarantine":
            _log.info("%s: %d rejected legacy records quarantined in the store", location, report.rejected)
    finally:
        if not placed and created:
            # No store came: the folders made for it go too (with our lock file, the only thing
            # in them unless someone else is using them, when rmdir fails and they stay).
            lock_path.unlink(missing_ok=True)
        lock.release()
        if not placed:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    if after == "rename":
        rename_imported(f for _index, _src, f in build.reader.files if f not in build.reader.outside)
    return report


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while an import builds its many objects, then as it was.

    An import allocates millions of objects it keeps (every record read is
    kept until the store is built), so each collection pass scans them all
    again for nothing: about 30 % of an import's time. Reference counting
    still frees everything else as usual.
    """
    # What it kept is released (by reference counting) before the collector is back on, or
    # its first pass would scan all of it, once, for nothing: a quarter of a second per 100,000.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    while not folder.exists() and folder.parent != folder:
        out.append(folder)
        folder = folder.parent
    return out


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
    parsed = parse_location(location)
    require_backend(parsed)
    from statestore.backends.postgres import import_lock, schema_exists, schema_vacant

    url = parsed.url
    assert url is not None
    location = str(parsed)  # shown from here on: without the password
    build = Build(location, schema, legacy, on_error, progress, converter, durability)
    if dry_run:
        with _collector_paused():
            try:
                return build.dry_run()
            finally:
                build.release()
    with import_lock(url, busy_timeout):
        exists = schema_exists(url)
        if exists and not replace:
            return ImportReport(location, legacy.describe(), legacy.layout.version, (), (), imported_store=False)
        if not exists and not schema_vacant(url):
            raise CorruptStoreError(location, "something that is not a statestore store is here; not importing over it")
        with _collector_paused():
            try:
                build.read(dry_run=False)
                report = build.write_postgres(url, replace=exists, busy_timeout=busy_timeout)
            finally:
                build.release()
        _log.info(
            "%s: imported %d records from %s, %d rejected",
            location,
            report.imported,
            legacy.describe(),
            report.rejected,
        )
    if after == "rename":
        rename_imported(f for _index, _src, f in build.reader.files if f not in build.reader.outside)
    return report


def _check_apart(backend: str, path: Path, legacy: Legacy) -> None:
    """Refuse a store that the legacy install's sources would read, or that would hold them.

    An SQLite file may sit in the old install's folder (``~/.tracker/state.db``
    beside the old JSON files) unless a source names it; a store folder may
    not contain the install nor lie inside it, where globs could read it.
    """
    where = path.resolve()
    if backend == "sqlite":
        names = {where, where.with_name(where.name + "-wal"), where.with_name(where.name + "-shm")}
        for src in legacy.layout.sources:
            if any(f.resolve() in names for f in src.files(legacy.root_of(src))):
                raise ValueError(f"the store {path} is one of the legacy install's source files")
    for given in legacy.all_roots():
        root = given.resolve()
        if backend == "sqlite":
            if where == root or where in root.parents:
                raise ValueError(f"the legacy install {given} is inside the store's place {path}")
        elif where == root or where in root.parents or root in where.parents:
            raise ValueError(f"the store folder {path} and the legacy install {given} must not be inside one another")
