"""``statestore backups``: the backups a store's migrations left beside it, and pruning them.

A backup is named by the backend that takes it: ``<stem>.backup-<label><suffix>``
beside an SQLite file (``.db`` when the store has no suffix), a folder
``<name>.backup-<label>`` beside a files store, where ``<label>`` is
``<schema>-v<version>[-<schema>-v<version>…]-<UTC time>-<4 hex digits>``.
Only names of exactly that shape count: nothing else beside the store is
ever listed or deleted.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Backup", "find_backups", "remove_backup"]


@attrs.frozen
class Backup:
    """One backup: where, what it was taken before (``app-v1``), when (UTC, from its name), its size."""

    path: Path
    before: str
    taken: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "before": self.before, "taken": self.taken, "bytes": self.size}


def _pattern(prefix: str, suffix: str) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(prefix)}\.backup-(?P<before>.+-v\d+)-(?P<time>\d{{8}}T\d{{6}}Z)-[0-9a-f]{{4}}{re.escape(suffix)}$"
    )


def find_backups(backend: str, path: Path) -> list[Backup]:
    """The backups beside the store at ``path`` (``backend`` "sqlite" or "files"), oldest first."""
    if backend == "sqlite":
        pattern, want_dir = _pattern(path.stem, path.suffix or ".db"), False
    else:
        pattern, want_dir = _pattern(path.name, ""), True
    parent = path.parent
    if not parent.is_dir():
        return []
    found: list[tuple[datetime, int, Backup]] = []
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or entry.is_symlink() or entry.is_dir() != want_dir:
            continue
        taken = datetime.strptime(match["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        found.append((taken, entry.stat().st_mtime_ns, Backup(entry, match["before"], taken.isoformat(), _size(entry))))
    # The name says the second; the modification time orders backups taken within one.
    return [b for _, _, b in sorted(found, key=lambda t: (t[0], t[1], t[2].path.name))]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_backup(path: Path) -> None:
    """Delete one backup (a file, or a files store's folder) and an SQLite backup's -wal/-shm files."""
    if path.is_dir():
        shutil.rmtree(path)
        return
    path.unlink()
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
