"""Each lazy reader marks the generation it reads as of; writers delete the versions no marked reader needs.

(backends/files/registrations.py; Linux, where open file description locks exist.)
"""

from __future__ import annotations

import fcntl
import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from _lazy import open_files, run_threads, snapshot_error, versions_dir
from statestore.backends.files import registrations
from statestore.backends.files.keeping import READERS
from statestore.testing.models import TASKS, Task

sys.path.insert(0, str(Path(__file__).parent))
import _stress_child as child

CHILD = Path(__file__).parent / "_stress_child.py"

pytestmark = pytest.mark.skipif(not registrations.MARKS, reason="needs open file description locks (Linux)")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
    return root


def folders(root: Path) -> list[int]:
    if not versions_dir(root).exists():
        return []
    return sorted(int(p.name.partition(".")[0]) for p in versions_dir(root).iterdir())


def readers_fd(root: Path) -> int:
    return os.open(root / ".statestore" / READERS, os.O_RDWR)


def test_a_mark_says_which_generations_a_reader_needs(root: Path) -> None:
    """A reader marked with g0 = 5 needs the versions of generations 6 and later, not 5 or earlier;
    one marked at byte 0 (its g0 not read yet) needs every one; an unmarked one none."""
    reader, writer = readers_fd(root), readers_fd(root)
    try:
        assert not registrations.needed_below(writer, 10**6)
        assert registrations.mark(reader, None)
        assert registrations.needed_below(writer, 0)
        assert registrations.mark(reader, 5)
        assert [g for g in range(10) if registrations.needed_below(writer, g)] == [6, 7, 8, 9]
        registrations.unmark(reader)
        assert not registrations.needed_below(writer, 10**6)
    finally:
        os.close(reader)
        os.close(writer)


def test_the_folders_no_reader_needs_are_the_lowest_generations(root: Path) -> None:
    """Readers marked with g0 = 3 and g0 = 7: of folders 1, 2, 3, 4, 5, 8 the first three go."""
    fds = [readers_fd(root) for _ in range(3)]
    try:
        assert registrations.mark(fds[0], 7)
        assert registrations.mark(fds[1], 3)
        assert registrations.unneeded(fds[2], [1, 2, 3, 4, 5, 8]) == 3
        assert registrations.unneeded(fds[2], [8, 9]) == 0
        assert registrations.unneeded(fds[2], []) == 0
        registrations.unmark(fds[1])
        assert registrations.unneeded(fds[2], [1, 2, 3, 4, 5, 8]) == 5
    finally:
        for fd in fds:
            os.close(fd)


def test_a_generation_past_the_lock_range_keeps_byte_0_marked(root: Path) -> None:
    """A g0 whose byte would be past the largest offset cannot be marked: byte 0 stays, so every
    version is kept for that reader (never a guess that deletes one)."""
    reader, writer = readers_fd(root), readers_fd(root)
    try:
        assert registrations.mark(reader, None)
        assert not registrations.mark(reader, 2**63 - 1)
        assert registrations.needed_below(writer, 0)
        assert registrations.needed_below(writer, 2**63 - 1)  # (asking past the range: "needed")
    finally:
        os.close(reader)
        os.close(writer)


def test_a_reader_still_reading_the_head_keeps_every_version(root: Path) -> None:
    """Registered (shared flock) and marked at byte 0, as a reader is before it knows its g0: the
    writers' commits keep a folder each and delete none."""
    fd = readers_fd(root)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert registrations.mark(fd, None)
        with open_files(root) as writer:
            for i in range(5):
                writer[TASKS].put(Task("t1", points=i))
            assert len(folders(root)) == 5
    finally:
        os.close(fd)


def test_a_killed_reader_s_versions_go_while_another_reads_on(root: Path) -> None:
    """Reader A (another process) is killed inside its transaction; reader B, begun later, reads on.
    The next commit deletes what only A needed and keeps what B needs."""
    script = (
        "import sys, time, statestore as ss\n"
        "from statestore.testing.models import SCHEMA, TASKS\n"
        "s = ss.open_store(f'files:{sys.argv[1]}', SCHEMA, mode='read')\n"
        "with s.transaction():\n"
        "    s[TASKS].get('t1')\n"
        "    print('in', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"in\n"
        with open_files(root) as writer, open_files(root, mode="read") as b:
            for i in range(3):
                writer[TASKS].put(Task("t1", points=i))
            with b.transaction():
                assert b[TASKS].get("t1") == Task("t1", points=2)
                writer[TASKS].put(Task("t1", points=10))
                assert len(folders(root)) == 4
                proc.kill()
                proc.wait()  # (its descriptors, and with them its marks, are gone)
                writer[TASKS].put(Task("t1", points=11))
                b_start = b._txn().colls.lazy.gen  # type: ignore[union-attr]
                assert [g for g in folders(root) if g <= b_start] == []
                assert len(folders(root)) == 2  # the two commits since B began
                assert b[TASKS].get("t1") == Task("t1", points=2)
    finally:
        proc.kill()
        proc.communicate()


def test_an_ended_reader_s_mark_does_not_stay_with_a_forked_child(root: Path) -> None:
    """A process forks inside reader A's transaction; A ends (its mark released before its
    descriptor is closed); the child, holding a copy of that descriptor, lives on. Reader B reads
    on: what only A needed goes at the next commit."""
    with open_files(root) as writer, open_files(root, mode="read") as a, open_files(root, mode="read") as b:
        with a.transaction():
            a[TASKS].get("t1")
            writer[TASKS].put(Task("t1", points=1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # (fork() with threads: on purpose)
                pid = os.fork()
            if pid == 0:
                try:
                    time.sleep(30)
                finally:
                    os._exit(0)
            b_txn = b.transaction()
            b_txn.__enter__()
            b[TASKS].get("t1")
        try:
            writer[TASKS].put(Task("t1", points=2))
            assert folders(root) == [b._txn().colls.lazy.gen + 1]  # type: ignore[union-attr]
        finally:
            b_txn.__exit__(None, None, None)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_overlapping_readers_see_their_snapshots_while_unneeded_versions_go(root: Path) -> None:
    """3 reader threads, each always inside a read transaction (a new one begun as the last ends,
    so they always overlap), against a writer rewriting all 30 records (one counter) 150 times:
    every read matches the transaction's first while the versions no reader needs are deleted as it
    goes; then one commit under one reader leaves only the folder that reader needs."""
    with open_files(root, child.SCHEMA) as writer:
        with writer.transaction():
            for i in range(30):
                writer[child.RECS].put(child.Rec(f"r{i:03}", 0, 30))
        failures: list[str] = []
        stop = threading.Event()

        def write() -> None:
            for counter in range(1, 151):
                with writer.transaction():
                    for i in range(30):
                        writer[child.RECS].put(child.Rec(f"r{i:03}", counter, 30))
            stop.set()

        with open_files(root, child.SCHEMA, mode="read") as reader:

            def read(n: int) -> None:
                rng = random.Random(n)
                while not stop.is_set():
                    with reader.transaction():
                        first = reader[child.RECS].get(f"r{rng.randrange(30):03}")
                        time.sleep(rng.uniform(0, 0.01))
                        rows = [(r.counter, r.size) for r in reader[child.RECS].all()]
                        again = reader[child.RECS].get(f"r{rng.randrange(30):03}")
                    error = snapshot_error(first, rows, again)
                    if error:
                        failures.append(error)

            run_threads(write, *(functools.partial(read, n) for n in range(3)))
            assert failures == []
            # (How many folders there were at once depends on the machine's speed: a reader lasting
            # through N commits needs N. One run here: at most 3; 77 before readers marked themselves.)
            with reader.transaction():
                reader[child.RECS].get("r000")
                writer[child.RECS].put(child.Rec("r000", -1, 30))
                assert folders(root) == [reader._txn().colls.lazy.gen + 1]  # type: ignore[union-attr]
                assert reader[child.RECS].get("r000") == child.Rec("r000", 150, 30)


def test_a_stray_name_in_the_versions_folder_is_no_generation(root: Path) -> None:
    """A folder named "²" (str.isdigit() says yes, int() says no) in .statestore/versions: reads and
    commits go on as if it were not there."""
    with open_files(root) as writer, open_files(root, mode="read") as reader, reader.transaction():
        assert reader[TASKS].get("t1") == Task("t1")
        writer[TASKS].put(Task("t1", points=1))
        (versions_dir(root) / "\u00b2").mkdir()
        (versions_dir(root) / "\u00b2.x").mkdir()
        assert reader[TASKS].get("t1") == Task("t1")
        writer[TASKS].put(Task("t1", points=2))
        assert reader[TASKS].get("t1") == Task("t1")


@pytest.mark.slow
def test_writers_killed_while_deleting_versions_never_change_what_readers_see(tmp_path: Path) -> None:
    """6 writer processes (40-120 records per transaction, one counter), each SIGKILLed 0.1-0.5 s after
    its first commit, while 2 reader threads of this process are always inside overlapping read
    transactions: every commit of a writer refused readers.lock deletes the folders no reader needs,
    and a kill may land in the middle of that. Every read matches its transaction's first; then one
    commit under one reader leaves only the folder that reader needs (what killed writers left goes)."""
    root = tmp_path / "state"
    rng = random.Random(23)
    with open_files(root, child.SCHEMA) as seed, seed.transaction():
        for i in range(child.MAX):
            seed[child.RECS].put(child.Rec(f"r{i:03}", 0, child.MAX))
    failures: list[str] = []
    stop = threading.Event()
    with open_files(root, child.SCHEMA, mode="read") as reader:

        def read(n: int) -> None:
            pace = random.Random(n)
            while not stop.is_set():
                with reader.transaction():
                    first = reader[child.RECS].get("r017")
                    time.sleep(pace.uniform(0, 0.02))
                    rows = [(r.counter, r.size) for r in reader[child.RECS].all()]
                    again = reader[child.RECS].get("r003")
                error = snapshot_error(first, rows, again)
                if error:
                    failures.append(error)

        def lives() -> None:
            try:
                for life in range(6):
                    proc = subprocess.Popen(
                        [sys.executable, str(CHILD), "writer", str(root), str(life)],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                    assert proc.stdout is not None
                    first = proc.stdout.readline()
                    assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
                    time.sleep(rng.uniform(0.1, 0.5))
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.communicate()
            finally:
                stop.set()

        run_threads(lives, *(functools.partial(read, n) for n in range(2)))
        assert failures == []
        with open_files(root, child.SCHEMA) as writer, reader.transaction():
            before = reader[child.RECS].get("r000")
            writer[child.RECS].put(child.Rec("r000", -1, 1))
            assert folders(root) == [reader._txn().colls.lazy.gen + 1]  # type: ignore[union-attr]
            assert reader[child.RECS].get("r000") == before
