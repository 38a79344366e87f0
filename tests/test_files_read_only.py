"""A files store in folders its user may read but not write (a read-only copy, a mount, chmod -w)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import statestore as ss

# Imported here, not after dropping privileges: ``nobody`` may not read the standard library's files.
import statestore.cli.check
import statestore.cli.commands
import statestore.cli.reading
from _nobody import as_nobody, nobody
from statestore.cli import main
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task


@pytest.fixture
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A files store owned by ``nobody``: every folder 0500, every file 0400."""
    user = nobody()
    base = Path(tempfile.mkdtemp(prefix="statestore-ro-"))
    try:
        base.chmod(0o755)
        root = base / "store"
        with ss.open_store(f"files:{root}", SCHEMA) as store:
            store[TASKS].put(Task("a", status="todo"))
            store[EVENTS].append(Event("e"), stream="s")
        for folder, _dirs, files in os.walk(root, topdown=False):
            for name in files:
                os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)
                os.chmod(os.path.join(folder, name), 0o400)
            os.chown(folder, user.pw_uid, user.pw_gid)
            os.chmod(folder, 0o500)
        yield root
    finally:
        for folder, _dirs, _files in os.walk(base):
            os.chmod(folder, 0o700)
        shutil.rmtree(base)


def test_read_mode_reads_everything(read_only: Path) -> None:
    location = f"files:{read_only}"

    def reads() -> str:
        with ss.open_store(location, SCHEMA, mode="read") as store:
            got = [store[TASKS].get("a"), store[TASKS].find(status="todo"), len(store[TASKS])]
            got.append([e.record for e in store[EVENTS].read()])
            with store.transaction():
                got += [store[TASKS].get("a"), len(store[TASKS]), store[EVENTS].last_seq()]
            return repr(got)

    task = Task("a", status="todo")
    assert as_nobody(reads) == repr([task, [task], 1, [Event("e")], task, 1, 1])


def test_write_mode_says_which_file_it_may_not_write(read_only: Path) -> None:
    def write() -> str:
        with ss.open_store(f"files:{read_only}", SCHEMA) as store:
            store[TASKS].put(Task("b"))
        return "written"

    got = as_nobody(write)
    assert got.startswith("BackendError: "), got
    assert str(read_only) in got
    assert "Permission denied" in got


def test_the_command_reads_it(read_only: Path) -> None:
    def command(*args: str) -> str:
        result = CliRunner().invoke(main, list(args))
        return f"{result.exit_code} {result.output}"

    location = f"files:{read_only}"
    for args in (("ls", location, "tasks"), ("info", location), ("check", location), ("log", location, "events")):
        got = as_nobody(lambda args=args: command(*args))
        assert got.startswith("0 "), (args, got)
    assert "ok (1 records" in as_nobody(lambda: command("check", location))
