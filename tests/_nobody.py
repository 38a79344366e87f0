"""Running a test's code as the user ``nobody`` (tests run as root cannot see a permission refused)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable

import pytest


def nobody() -> pwd.struct_passwd:
    """The user ``nobody``; the test skips unless it runs as root (to hand files over) and there is one."""
    if os.geteuid() != 0:
        pytest.skip("needs root to hand the store to another user")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user called nobody to drop privileges to")


def as_nobody(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child whose uid and gid are ``nobody``'s; its result, or the error it raised."""
    user = nobody()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            out = fn()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        os.write(write_end, out.encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return data.decode()
