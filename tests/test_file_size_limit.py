"""Writes that the kernel refuses part-way (a file size limit, as a full disk does), on SQLite and files.

A child process lowers ``RLIMIT_FSIZE`` (ignoring ``SIGXFSZ``) so that the
kernel's own ``write`` fails with EFBIG once a file would grow past the
limit, in the middle of a transaction's writes, then raises the limit and
writes again. The write that failed must be a StateStoreError naming the
store, leave nothing of itself, and the same store object must go on
working. (tests/test_files_full_disk.py injects ENOSPC at each step of the
file backend instead.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import statestore as ss
from statestore.testing.models import SCHEMA, TASKS, Task

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")

_CHILD = """
import resource, signal, sys
import statestore as ss
from statestore.testing.models import SCHEMA, TASKS, Task

location, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
with ss.open_store(location, SCHEMA) as store:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        with store.transaction():
            for i in range(40):
                store[TASKS].put(Task(f"big{i:02}", title="x" * 20_000))
    except ss.StateStoreError as exc:
        print("refused", type(exc).__name__, exc)
    else:
        print("written")
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    store[TASKS].put(Task("later"))
    print("later", store[TASKS].keys())
"""


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_a_transaction_the_kernel_cuts_short_writes_nothing(backend: str, tmp_path: Path) -> None:
    location = f"sqlite:{tmp_path / 'state.db'}" if backend == "sqlite" else f"files:{tmp_path / 'state'}"
    with ss.open_store(location, SCHEMA) as store:
        store[TASKS].put(Task("a"))
    # 600 KB of records: the SQLite WAL or the file backend's journal passes a 200 KB limit part-way.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, location, str(200_000)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused BackendError "), out.stdout
    assert str(tmp_path) in lines[0]
    assert lines[1] == "later ['a', 'later']"
    with ss.open_store(location, SCHEMA) as store:
        assert store[TASKS].keys() == ["a", "later"]
