"""Placing a store built aside (statestore.legacy).

Its hidden name beside the final place, moving it into place without ever
replacing a store that appeared meanwhile, and removing leftovers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from statestore.backends.locations import parse_location
from statestore.errors import CorruptStoreError

__all__ = ["aside_prefix", "move_into_place", "remove_store_files", "rename_imported", "sweep_asides", "target_of"]

_log = logging.getLogger("statestore")


def target_of(location: str) -> tuple[str, Path]:
    """The backend and path a location names (an empty path for a server's)."""
    loc = parse_location(location)
    return loc.backend, loc.path if loc.path is not None else Path()


def aside_prefix(path: Path) -> str:
    return f".{path.name}.import-"


def sweep_asides(path: Path) -> None:
    """Remove stores half-built by imports that crashed (we hold the import lock)."""
    prefix = aside_prefix(path)
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def move_into_place(aside: Path, path: Path, *, replace: bool) -> None:
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


def remove_store_files(path: Path) -> None:
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


def rename_imported(files: Iterable[Path]) -> None:
    """``after="rename"``: each legacy file read becomes ``<name>.imported``, never replacing a file.

    When that name is taken (an earlier import renamed a file of the same
    name), the next free ``<name>.imported-2``, ``-3``... is used. A symbolic
    link is renamed itself, not its target. The new name is made with a hard
    link before the old one goes, so no file is ever replaced; where the file
    system has no hard links, a rename to a name found free. A file that
    cannot be renamed stays as it is (logged): the store holds what it read.
    """
    for f in files:
        for n in itertools.count(1):
            target = f.with_name(f"{f.name}.imported" if n == 1 else f"{f.name}.imported-{n}")
            try:
                try:
                    os.link(f, target, follow_symlinks=False)
                except FileExistsError:
                    continue
                except OSError:  # no hard links here (EPERM, ENOTSUP...): rename to a free name
                    if os.path.lexists(target):
                        continue
                    os.rename(f, target)
                else:
                    os.unlink(f)
            except OSError as exc:
                _log.warning("legacy file %s could not be renamed after the import: %s", f, exc)
            break
