"""Old record versions kept for lazy readers, and deleted when no reader needs them (a FileStore mixin).

A lazy read transaction (``versions``) reads as of the change head's
generation ``g0`` and touches record files later; writers keep what it
needs:

* A writer, before the commit point of a commit that replaces or deletes
  record files, tries ``flock(LOCK_EX | LOCK_NB)`` on its own descriptor of
  ``.statestore/readers.lock``. Granted: no lazy reader exists and none can
  register until the writer releases it after the head is settled (so any
  later reader's ``g0`` is at least this commit's generation); the writer
  also deletes versions kept earlier. Refused: before its commit point, the
  writer hard-links (or copies) every record file the commit replaces or
  deletes into ``.statestore/versions/<gen>.<hex>/`` (``gen``: the commit's
  new generation) and writes a manifest naming each (collection, file) and
  whether it existed.
* On Linux each lazy reader also marks its ``g0`` on readers.lock (an open
  file description lock on one byte, see ``registrations``), so a writer
  refused the lock deletes the folders no live reader needs: while read
  transactions always overlap, the folder does not grow by one per commit.
  A folder a writer killed before its commit point left goes the same way.
  Elsewhere only a writer granted the lock deletes them.

Nothing here is fsynced: readers do not outlive a crash, and the next writer
granted the lock deletes whatever is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from typing import TYPE_CHECKING

from statestore.backends.files.cache import ROOT
from statestore.backends.files.fileio import Dir, unique_hex
from statestore.backends.files.journal import LOCK
from statestore.backends.files.registrations import MARKS, unneeded
from statestore.errors import StateStoreError
from statestore.store import Mode

__all__ = ["MANIFEST", "READERS", "VERSIONS", "KeptVersions", "kept_folders"]

#: The file lazy readers hold a shared flock on (in ``.statestore/``).
READERS = "readers.lock"
#: The folder of kept versions (in ``.statestore/``).
VERSIONS = "versions"
#: Each kept folder's list of what it holds, written last (a folder without it was never committed).
MANIFEST = "manifest.json"


def kept_folders(names: list[str]) -> list[tuple[int, str]]:
    """The versions folders among ``names``, with their generations, lowest first.

    A name that does not start with a generation (ASCII digits:
    ``"²".isdigit()`` is true too) is no kept folder and is left alone.
    """
    folders = []
    for name in names:
        gen = name.partition(".")[0]
        if gen.isascii() and gen.isdigit():
            folders.append((int(gen), name))
    return sorted(folders)


class KeptVersions:
    """The writers' side of lazy read transactions, for :class:`~statestore.backends.files.store.FileStore`."""

    # Set by FileStore.
    mode: Mode
    _sys: Dir | None
    _readers_fd: int | None  # a writer's own descriptor of readers.lock
    _readers_held: bool  # whether it holds LOCK_EX now (a commit in progress)
    _versions_left: bool  # whether kept versions may exist (kept here, or found at open)
    _own_gen: int  # the generation of this process's last commit that changed record files
    _mutex: threading.Lock  # (FileStore's) threads queue here for the write lock
    _lock_fd: int | None  # (FileStore's) descriptor of write.lock

    if TYPE_CHECKING:

        def _dir(self, name: str, *, create: bool = False) -> Dir | None: ...

    def _open_versions(self) -> None:
        """At a write-mode open: make readers.lock, and note versions left by other processes."""
        self._readers_held = False
        self._versions_left = False
        self._own_gen = -2  # the generation of our last commit that changed record files
        if self.mode == "write" and self._sys is not None:
            self._readers_fd = self._sys.open(READERS, os.O_RDWR, create=True)
            self._versions_left = self._sys.exists(VERSIONS)
            # Left by processes gone (or from before a change head was lost and started again at
            # generation 0, when their numbers would pass for future ones): deleted now if no writer
            # and no reader holds the store, else by the next writer granted readers.lock.
            self._sweep_versions()

    def _guard_readers(self, gen: int, files: list[tuple[str, str]]) -> None:
        """Before the commit point of a commit changing record ``files`` (we hold the write lock).

        Takes readers.lock exclusively if no lazy reader holds it (kept until
        ``_release_readers``), deleting the versions kept so far; otherwise
        keeps the current version of each file for the readers. A failure to
        keep them raises, before the commit point: the commit does not happen.
        """
        files = [(c, n) for c, n in files if c != ROOT]
        if not files or self._sys is None:
            return
        fd = self._readers_fd
        if fd is None:
            fd = self._readers_fd = self._sys.open(READERS, os.O_RDWR, create=True)
        assert fd is not None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # refused (or no flock here at all: keeping versions is the safe side)
            self._keep_versions(gen, files)
            self._prune_versions(fd, gen)
            return
        self._readers_held = True
        if not self._versions_left and gen != self._own_gen + 1:
            # Another writer committed since our last commit: it may have kept versions (one stat).
            self._versions_left = self._sys.exists(VERSIONS)
        self._own_gen = gen
        if self._versions_left:
            # No reader is registered, and none can register until we release the lock.
            with contextlib.suppress(OSError):
                shutil.rmtree(self._sys.path / VERSIONS)
            self._versions_left = False

    def _release_readers(self) -> None:
        """After the head is settled: lazy readers may register again (their g0 is at least ours)."""
        if self._readers_held:
            self._readers_held = False
            if self._readers_fd is not None:
                with contextlib.suppress(OSError):  # (closing the descriptor would release it too)
                    fcntl.flock(self._readers_fd, fcntl.LOCK_UN)

    def _sweep_versions(self) -> None:
        """At close: delete the versions this process kept if no writer and no lazy reader holds the store.

        Best effort and never waiting (kept versions may hold deleted data: they
        should not outlive the readers they were kept for). If anyone holds
        either lock, the next writer granted readers.lock deletes them.
        """
        if not self._versions_left or self._readers_fd is None or self._sys is None:
            return
        if not self._mutex.acquire(False):
            return  # a thread of ours is writing (or closing): leave it to a later commit
        try:
            fd = self._lock_fd
            if fd is None:
                fd = self._lock_fd = self._sys.open(LOCK, os.O_RDWR, create=True)
            assert fd is not None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another writer: it may be keeping versions right now
            try:
                try:
                    fcntl.flock(self._readers_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # a lazy reader still needs them
                try:
                    shutil.rmtree(self._sys.path / VERSIONS, ignore_errors=True)
                    self._versions_left = False
                finally:
                    fcntl.flock(self._readers_fd, fcntl.LOCK_UN)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _prune_versions(self, fd: int, below: int) -> None:
        """Delete the versions folders of generations below ``below`` that no marked reader needs.

        Called holding the write lock, refused the exclusive readers.lock. A
        reader that marks itself after this looks reads a change head of
        generation ``below - 1`` or later, so needs none of them. Nothing
        happens where readers leave no marks.
        """
        if not MARKS or self._sys is None:
            return
        top = self._sys.subdir(VERSIONS, create=False)
        if top is None:
            return
        try:
            names = top.names()
        except StateStoreError:
            return  # (cannot list it: every folder counts as needed)
        finally:
            top.close()
        named = kept_folders(names)
        gens = sorted({gen for gen, _ in named if gen < below})  # (one per generation)
        count = unneeded(fd, gens)
        last = gens[count - 1] if count else -1  # the highest generation no reader needs
        for gen, name in named:
            if gen <= last:
                shutil.rmtree(self._sys.path / VERSIONS / name, ignore_errors=True)

    def _keep_versions(self, gen: int, files: list[tuple[str, str]]) -> None:
        """Keep the current version of each (collection, file) in ``versions/<gen>.<hex>/`` with a manifest."""
        assert self._sys is not None
        self._versions_left = True
        top = self._sys.subdir(VERSIONS, create=True)
        assert top is not None
        try:
            folder = top.subdir(f"{gen}.{unique_hex()}", create=True)
        finally:
            top.close()
        assert folder is not None
        try:
            listed: list[list[str | None]] = []
            for i, (coll_name, name) in enumerate(files):
                src = self._dir(coll_name)
                kept: str | None = str(i)
                if src is None:
                    kept = None
                else:
                    try:
                        os.link(name, str(i), src_dir_fd=src.fd, dst_dir_fd=folder.fd, follow_symlinks=False)
                    except FileNotFoundError:
                        kept = None
                    except OSError:  # no hard links here (EPERM, EXDEV, EMLINK): copy the bytes
                        raw = src.read(name)
                        if raw is None:
                            kept = None
                        else:
                            folder.write(str(i), raw, sync=False)
                listed.append([coll_name, name, kept])
            # Written last, by rename: a folder without it was never committed, and readers skip it.
            folder.write(MANIFEST, json.dumps({"gen": gen, "files": listed}).encode("utf-8"), sync=False)
        finally:
            folder.close()
