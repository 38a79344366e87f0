"""``statestore check``: is a store sound? Read-only, on any backend, without the application's code.

Problems are what make the store wrong (a page SQLite reports damaged, a
record that does not decode or is filed under another key, a log whose seqs
or stream versions are out of order). Warnings are leftovers that are
harmless and that the next write-mode open cleans up (a killed writer's
temporary files, a journal still being applied) or that statestore did not
write (an unexpected file in a store folder).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, cast

import attrs

from statestore.backends.sqlite import SQLiteStore
from statestore.errors import StateStoreError
from statestore.schema import Collection, Log
from statestore.store import INTERNAL_LOGS, Store

if TYPE_CHECKING:
    from statestore.backends.files import FileStore

__all__ = ["CheckReport", "check_store"]


@attrs.frozen
class CheckReport:
    """What :func:`check_store` found, and how much it read."""

    location: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    records: int
    entries: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(store: Store) -> CheckReport:
    """Check every record and entry of ``store`` (open it in read mode) and its physical layout."""
    problems: list[str] = []
    warnings: list[str] = []
    if isinstance(store, SQLiteStore):
        problems += _sqlite_integrity(store)
    elif store.location.startswith("files:"):  # the files backend is imported only where it runs (POSIX)
        warnings += _files_layout(cast("FileStore", store))
    records = entries = 0
    with store.transaction():
        for coll in store.collections:
            try:
                rows = store._scan(coll, {})
            except (StateStoreError, ValueError) as exc:
                problems.append(f"collection {coll.name}: {exc}")
                continue
            records += len(rows)
            problems += _check_keys(coll, rows)
        for log in (*store.logs, *INTERNAL_LOGS):
            try:
                got = store._entries(log, stream=None, prefix=None, after=0, limit=None)
            except (StateStoreError, ValueError) as exc:
                problems.append(f"log {log.name}: {exc}")
                continue
            entries += len(got)
            problems += _check_entries(log, got)
    return CheckReport(store.location, tuple(problems), tuple(warnings), records, entries)


def _check_keys(coll: Collection[Any], rows: list[Any]) -> list[str]:
    out = []
    for key, revision, data in rows:
        if not isinstance(data, dict):
            out.append(f"collection {coll.name}: {key!r} is not a JSON object")
            continue
        try:
            inner = coll.key_of(data)
        except KeyError as exc:
            out.append(f"collection {coll.name}: {key!r} has no key field {exc}")
            continue
        if inner != key:
            out.append(f"collection {coll.name}: record filed under {key!r} holds key {inner!r}")
        if not isinstance(revision, int) or revision < 1:
            out.append(f"collection {coll.name}: {key!r} has revision {revision!r}")
    return out


def _check_entries(log: Log[Any], rows: list[Any]) -> list[str]:
    out = []
    last = 0
    versions: dict[str, int] = {}
    for seq, stream, version, _at, data in rows:
        if seq <= last:
            out.append(f"log {log.name}: seq {seq} follows seq {last}")
        last = seq
        expected = versions.get(stream, 0) + 1
        if version != expected:
            out.append(f"log {log.name}: seq {seq} is version {version} of stream {stream!r}, expected {expected}")
        versions[stream] = version
        if not isinstance(data, dict):
            out.append(f"log {log.name}: seq {seq} is not a JSON object")
    return out


def _sqlite_integrity(store: SQLiteStore) -> list[str]:
    try:
        con = sqlite3.connect(store.path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return [f"integrity_check failed: {exc}"]
    return [] if rows == ["ok"] else [f"integrity_check: {r}" for r in rows]


def _files_layout(store: FileStore) -> list[str]:
    from statestore.backends.files.cache import INTERNAL, MANIFEST
    from statestore.backends.files.fileio import TMP_PREFIX
    from statestore.backends.files.journal import JOURNAL

    out = []
    if store._journal(store._read_head()) is not None or (store.path / INTERNAL / JOURNAL).exists():
        out.append("a committed transaction is still being applied (a writer was killed?); the next write finishes it")
    known = {MANIFEST, INTERNAL, *(c.name for c in store.collections), *(f"{lg.name}.jsonl" for lg in store.logs)}
    for entry in sorted(store.path.iterdir()):
        if entry.name.startswith(TMP_PREFIX):
            out.append(f"{entry}: temporary file of a killed writer")
        elif entry.name not in known:
            out.append(f"{entry}: not part of the store")
    for coll in store.collections:
        folder = store.path / coll.name
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(TMP_PREFIX):
                out.append(f"{entry}: temporary file of a killed writer")
            elif not entry.name.endswith(".json") or not entry.is_file():
                out.append(f"{entry}: not a record file")
    return out
