"""Which generation each lazy reader reads as of: one byte of ``readers.lock`` per reader (Linux).

A lazy read transaction's shared ``flock`` on ``.statestore/readers.lock``
tells a writer that *some* reader exists, not which versions it needs. On
Linux the transaction also marks itself with an open file description lock
(``F_OFD_SETLK``, a read lock, owned like ``flock`` by its own descriptor):

* byte 0 from before it reads the change head (its ``g0`` is not known yet:
  it may need any version);
* then byte ``g0 + 1``, byte 0 released;
* nothing once it ends (unlocked before its descriptor is closed, so a child
  ``fork()``ed meanwhile does not keep the mark; a killed reader's marks go
  with its descriptor).

A writer refused the exclusive ``flock`` asks (``F_OFD_GETLK`` with a write
lock on bytes ``0 .. F``) whether a reader with ``g0 < F``, or one not yet
past byte 0, exists: if none, no reader needs the versions folder of
generation ``F``. Byte-range locks and ``flock`` are separate on Linux's
local file systems; where ``flock`` is emulated by byte-range locks (NFS),
a reader's ``flock`` covers every byte, so writers see every folder as
needed, as without marks.

Elsewhere (no ``F_OFD_SETLK``) readers mark nothing and writers keep every
folder until one is granted the exclusive lock. Any failure to mark or to
ask reads as "needed": a folder is never deleted on a guess.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys

__all__ = ["MARKS", "mark", "needed_below", "unmark", "unneeded"]

#: Whether this system has open file description locks (Linux 3.15+).
MARKS = sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")

# struct flock with a 64-bit off_t (what F_OFD_* take on every Linux ABI):
# l_type, l_whence, l_start, l_len, l_pid (0 for these locks). Native
# alignment lays it out as the C compiler does; the zero bytes after it cover
# any padding at its end.
_FLOCK = struct.Struct("@hhqqi")
_PAD = bytes(16)


def _fcntl(fd: int, cmd: int, kind: int, start: int, length: int) -> tuple[int, int]:
    raw = fcntl.fcntl(fd, cmd, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0) + _PAD)
    got_kind, _whence, got_start, _length, _pid = _FLOCK.unpack(raw[: _FLOCK.size])
    return got_kind, got_start


def mark(fd: int, gen: int | None) -> bool:
    """Mark the reader holding ``fd``: byte 0 (``gen`` None), or byte ``gen + 1`` and then byte 0 released.

    False if the mark could not be made (the reader must not rely on it);
    a failure to release byte 0 leaves it marked, which only keeps more.
    """
    if not MARKS:
        return False
    try:
        if gen is None:
            _fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, 0, 1)
        else:
            _fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, gen + 1, 1)
            _fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, 0, 1)
    except (OSError, OverflowError, struct.error):
        return False
    return True


def unmark(fd: int) -> None:
    """Release every mark ``fd``'s reader holds (before its descriptor is closed)."""
    if MARKS:
        with contextlib.suppress(OSError, OverflowError, struct.error):
            _fcntl(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, 0, 0)


def needed_below(fd: int, gen: int) -> bool:
    """Whether a marked reader may need the versions of generation ``gen``: one with ``g0 < gen``, or unplaced.

    ``fd`` is the writer's own descriptor of readers.lock (it holds no marks).
    True whenever the system cannot say.
    """
    if not MARKS:
        return True
    try:
        kind, _start = _fcntl(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, 0, gen + 1)
    except (OSError, OverflowError, struct.error):
        return True
    return kind != fcntl.F_UNLCK


def unneeded(fd: int, gens: list[int]) -> int:
    """How many of the sorted generations ``gens``, from the lowest, no marked reader needs.

    A folder one reader needs is needed for every higher generation too, so
    the answer is a boundary, found by halving: a few questions however many
    folders there are.
    """
    lo, hi = 0, len(gens)  # gens[:lo] no reader needs; gens[hi:] some reader may
    while lo < hi:
        mid = (lo + hi) // 2
        if needed_below(fd, gens[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo
