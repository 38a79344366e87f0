"""Directory-relative file I/O for the file backend that never follows a link.

A :class:`Dir` holds an open descriptor of one store directory and resolves
every name relative to it with ``O_NOFOLLOW``, so a symbolic link planted
inside a store (a record, a log, a collection folder) can never redirect a
read or a write outside it: the operation fails with
:class:`~statestore.errors.CorruptStoreError` naming the path instead.
Writes are atomic (a unique temporary file, then ``os.replace``), so a reader
never sees half a file. This relies on POSIX ``*at()`` calls (``dir_fd``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Generic, NoReturn, Protocol, TypeVar

from statestore.backends.fs import make_private_dirs
from statestore.errors import BackendError, CorruptStoreError

__all__ = ["TMP_PREFIX", "Dir", "FileHandle", "Kept", "descriptor_budget", "unique_hex"]

#: Temporary files start with a dot, which no record or log file name does.
TMP_PREFIX = ".tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not hang an open
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_LINK_ERRNOS = {errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP), getattr(errno, "EFTYPE", errno.ELOOP)}


class _Unique:
    """Names no other process or call uses: 64 random bits drawn once per process, then a counter.

    A ``getrandom`` per temporary file and per journal id was two system
    calls of every commit; a fork() child draws its own bits (a copy of the
    parent's would repeat the parent's next names).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.count = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.count):x}"


_UNIQUE = _Unique()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_UNIQUE.reset)


def unique_hex() -> str:
    """A hex name unique to this call among every process's (see ``_Unique``)."""
    return _UNIQUE.next()


def _link_error(path: Path) -> CorruptStoreError:
    return CorruptStoreError(str(path), "is a symbolic link or not a regular file; statestore never follows links")


def fail(exc: OSError, path: Path, name: str | None = None) -> NoReturn:
    """Raise the statestore error ``translate`` makes of ``exc`` about ``path`` (or ``path / name``).

    For ``except OSError as exc: fail(exc, path, name)`` on the paths every
    commit takes: the same error, without the three calls a ``with`` costs.
    """
    where = path if name is None else path / name
    if exc.errno in _LINK_ERRNOS or exc.errno == errno.ENOTDIR:
        raise _link_error(where) from None
    raise BackendError(str(where), f"{exc.strerror or exc}") from exc


class translate:  # lower case: used like the function it replaced, ``with translate(path):``
    """Turn an OSError about ``path`` (or ``path / name``) into a statestore error naming it.

    The joined path is only built when there is an error to report: this
    wraps every file operation of the backend. A class rather than a
    ``contextlib.contextmanager``: the generator machinery cost ~1 µs per
    use, and a single put passes through here eight times or more.
    """

    __slots__ = ("name", "path")

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path, self.name = path, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None or not isinstance(exc, OSError):
            return
        fail(exc, self.path, self.name)


class _Closable(Protocol):
    def close(self) -> None: ...


_T = TypeVar("_T", bound=_Closable)


def descriptor_budget() -> int:
    """How many descriptors of one kind (folders, logs) a store keeps open: an eighth of the limit.

    So a store of any number of collections and logs works under a limit of
    64 descriptors (8 of each kind), and uses up to 64 of each where the
    limit is generous; the rest are opened when needed and closed after.
    """
    try:
        import resource  # POSIX only, as is the whole backend (dir_fd, flock)

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 8
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 64
    return max(2, min(64, soft // 8))


class Kept(Generic[_T]):
    """Open things (folders, log files) by name, at most ``limit`` of them, least recently used dropped first.

    A dropped one is not closed here: it closes itself when the last
    reference goes (``__del__``), so a thread still using it is never left
    with a closed, or worse reused, descriptor. Thread-safe.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: OrderedDict[str, _T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> _T | None:
        with self._lock:
            item = self._items.get(name)
            if item is not None:
                self._items.move_to_end(name)
            return item

    def put(self, name: str, item: _T) -> None:
        with self._lock:
            self._items[name] = item
            self._items.move_to_end(name)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def pop(self, name: str) -> _T | None:
        with self._lock:
            return self._items.pop(name, None)

    def __len__(self) -> int:
        return len(self._items)

    def after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held the old one at fork())."""
        self._lock = threading.Lock()

    def close_all(self) -> None:
        """Close every kept one now (the store is closing) and forget them."""
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for item in items:
            item.close()

    def clear(self) -> None:
        """Forget every kept one; each closes when no one uses it any more."""
        with self._lock:
            self._items = OrderedDict()


class FileHandle:
    """A kept file descriptor and the inode it was opened on; closed by :meth:`close` or when dropped."""

    __slots__ = ("fd", "ino")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        try:
            self.ino = os.fstat(fd).st_ino
        except BaseException:
            self.fd = -1
            os.close(fd)
            raise

    def close(self) -> None:
        """Close the descriptor; closing twice does nothing."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never an unraisable error at interpreter exit
            self.close()


class Dir:
    """An open directory; names passed to its methods are single path components.

    Closed by :meth:`close`, or when the last reference to it goes.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never an unraisable error at interpreter exit
            self.close()

    @classmethod
    def open_root(cls, path: Path, *, create: bool) -> Dir | None:
        """Open the store's root (following links in the path the caller chose); None if absent."""
        if create:
            with translate(path):
                make_private_dirs(path)  # every folder created 0700, parents too
        try:
            fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BackendError(str(path), f"{exc.strerror or exc}") from exc
        return cls(fd, path)

    def subdir(self, name: str, *, create: bool) -> Dir | None:
        """Open the directory ``name`` inside this one (made 0700 if ``create``); None if absent."""
        path = self.path / name
        with translate(path):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=self.fd)
            try:
                fd = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=self.fd)
            except FileNotFoundError:
                return None
        return Dir(fd, path)

    def close(self) -> None:
        """Close the descriptor; closing twice does nothing."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def open(self, name: str, flags: int, *, create: bool = False) -> int | None:
        """A descriptor of regular file ``name``; None if it does not exist and ``create`` is false."""
        flags |= _NOFOLLOW | _CLOEXEC | _NONBLOCK | (os.O_CREAT if create else 0)
        try:
            try:
                fd = os.open(name, flags, 0o600, dir_fd=self.fd)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise _link_error(self.path / name)
        except OSError as exc:
            fail(exc, self.path, name)
        return fd

    def read(self, name: str) -> bytes | None:
        """The whole content of regular file ``name``, or None if it does not exist (as :meth:`open`).

        One ``read`` of the size ``fstat`` gave plus one byte: when it returns
        exactly that size the file ended there (a record file is replaced by
        rename, never changed in place). Otherwise (a file that grew or
        shrank meanwhile) it reads on to the end, as a loop of reads does.
        """
        try:
            try:
                fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK, dir_fd=self.fd)
            except FileNotFoundError:
                return None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise _link_error(self.path / name)
                size = st.st_size
                data = os.read(fd, size + 1)
                if len(data) != size:
                    chunks = [data]
                    while chunk := os.read(fd, 1 << 20):
                        chunks.append(chunk)
                    data = b"".join(chunks)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            fail(exc, self.path, name)

    def write(self, name: str, data: bytes, *, sync: bool) -> None:
        """Replace ``name`` with ``data`` atomically (0600); ``sync`` fsyncs the file first.

        The directory itself is not synced; call :meth:`sync` once after a batch.
        """
        self.rename(self.write_temp(name, data, sync=sync), name)

    def write_temp(self, name: str, data: bytes, *, sync: bool) -> str:
        """Write ``data`` to a new temporary file (0600) for ``name``; return its name.

        A full disk fails here, before anything is committed; :meth:`rename`
        then needs no space.
        """
        tmp = TMP_PREFIX + _UNIQUE.next()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=self.fd)
            try:
                written = os.write(fd, data)
                if written < len(data):
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self.fd)
                raise
            os.close(fd)
        except OSError as exc:
            fail(exc, self.path, name)
        return tmp

    def rename(self, tmp: str, name: str) -> None:
        """Move temporary file ``tmp`` over ``name``."""
        try:
            # Atomic rename: a reader sees the old file or the new one, never half of either.
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            fail(exc, self.path, name)

    def exists(self, name: str) -> bool:
        """Whether an entry called ``name`` exists (a link counts; it is not followed)."""
        with translate(self.path, name):
            try:
                os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
        return True

    def remove(self, name: str) -> bool:
        """Delete ``name``; True if it existed."""
        with translate(self.path, name):
            try:
                os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                return False
        return True

    def names(self) -> list[str]:
        """Every entry name in the directory."""
        with translate(self.path):
            return os.listdir(self.fd)

    def sweep(self) -> None:
        """Delete temporary files a killed writer left behind."""
        for name in self.names():
            if name.startswith(TMP_PREFIX):
                self.remove(name)

    def sync(self) -> None:
        """fsync the directory, making renames and deletions in it durable."""
        with translate(self.path):
            os.fsync(self.fd)
