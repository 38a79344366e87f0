"""Small file-system helpers shared by the backends."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
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
