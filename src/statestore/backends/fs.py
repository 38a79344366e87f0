"""Small file-system helpers shared by the backends."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock

from statestore.errors import BackendError, CorruptStoreError, StoreBusyError


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (owner only).

    ``Path.mkdir(mode=..., parents=True)`` applies the mode to the last folder
    only; state can hold tokens, so every folder we create is private.
    Existing folders are left as they are.
    """
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process created it first
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


@contextlib.contextmanager
def migration_lock(path: Path, location: str, timeout: float) -> Iterator[None]:
    """Hold the store's migration lock (``filelock.FileLock`` on ``path``, mode 0600).

    Openers that find a store needing creation or migration take it, so
    exactly one of them does the work while the others wait and then see it
    done. Waiting longer than ``timeout`` seconds raises StoreBusyError. The
    lock is released if the holder dies, so a crash never wedges a store. A
    symbolic link planted at ``path`` is never followed: CorruptStoreError
    naming it; any other refusal of the OS is a BackendError naming the file.
    """
    lock = filelock.FileLock(str(path), timeout=max(timeout, 0.0), mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreBusyError(location, timeout) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise CorruptStoreError(
                str(path), "the migration lock is a symbolic link, which statestore never follows: remove it"
            ) from None
        raise BackendError(location, f"cannot take the migration lock {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


def backup_label(label: str) -> str:
    """``<label>-<UTC time>-<4 hex>``: a backup name part that two backups never share."""
    return f"{label}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"


#: In the hidden name of a backup being built: ``.<store>.partial-backup-<hex>`` (never ``.backup-``).
PARTIAL_BACKUP = ".partial-backup-"


def place_backup(store: Path, dest: Path, build: Callable[[Path], None], location: str) -> Path:
    """Build a backup of ``store`` aside, flush it, and rename it to ``dest``: complete or absent.

    ``build(tmp)`` writes the backup (a file or a folder) at ``tmp``, a hidden
    sibling ``.<store>.partial-backup-<hex>``; every file and folder in it is
    then fsynced, it is renamed to ``dest`` and the parent folder is fsynced.
    A process killed at any moment leaves either no ``dest`` or a whole one
    that opens as a store, and at worst a hidden partial sibling, which the
    next backup of the same store deletes. The caller holds the store's
    migration lock, so no other backup of this store is being built. A failure
    removes what was built and raises BackendError (for an OSError) naming
    ``dest``.
    """
    prefix = f".{store.name}{PARTIAL_BACKUP}"
    for stale in store.parent.iterdir():
        if stale.name.startswith(prefix):  # a partial backup (or its SQLite journal) of a killed process
            _remove_tree(stale)
    tmp = store.with_name(f"{prefix}{secrets.token_hex(4)}")
    try:
        build(tmp)
        _sync_tree(tmp)
        os.rename(tmp, dest)
        _sync_folder(dest.parent)
    except BaseException as exc:
        for path in store.parent.glob(f"{tmp.name}*"):  # with SQLite's -journal/-wal/-shm beside it
            _remove_tree(path)
        if isinstance(exc, OSError):
            raise BackendError(location, f"cannot write the backup {dest}: {exc.strerror or exc}") from None
        raise
    return dest


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _sync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(path: Path) -> None:
    """fsync ``path`` (a file, or a folder with everything in it, links excepted)."""
    if path.is_symlink():
        return
    if not path.is_dir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    for child in path.iterdir():
        _sync_tree(child)
    _sync_folder(path)
