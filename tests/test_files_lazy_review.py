"""Review of the file backend's lazy read transactions: one test per finding.

All six are fixed: a change head lost and started again, an empty versions manifest a power cut
left, a forked child keeping an ended reader's lock, versions a long-lived writer never
deleted, many reader threads under a descriptor limit of 64, and versions no reader needs
while read transactions always overlap (on Linux, where each reader marks its generation).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from _lazy import fill, open_files, versions_dir
from statestore.backends.files import FileStore, versions
from statestore.backends.files.registrations import MARKS
from statestore.backends.files.versions import LazyColls
from statestore.store import INTERNAL_LOGS
from statestore.testing.models import TASKS, Task


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


def lazy(store: FileStore) -> bool:
    txn = store._txn()
    return txn is not None and isinstance(txn.colls, LazyColls)


def test_versions_outlive_their_reader_when_another_writer_goes_on(root: Path) -> None:
    """Writer A keeps a version for a lazy reader, then closes while the reader is still registered
    (its close-time sweep must not delete them). The reader ends. Writer B, open since before the
    versions existed, commits again and again with no reader registered: the old version of t0001
    (data overwritten since) stays in .statestore/versions for as long as B lives."""
    fill(root, 5)
    with open_files(root) as b:
        with open_files(root, mode="read") as reader, reader.transaction():
            assert lazy(reader)
            reader[TASKS].get("t0001")
            with open_files(root) as a:
                a[TASKS].put(Task("t0001", points=7))
                assert versions_dir(root).is_dir()
        for i in range(3):
            b[TASKS].put(Task("t0002", points=i))  # each commit is granted readers.lock: no reader exists
        assert not versions_dir(root).exists()


_MANY_READERS = """
import json, resource, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
import statestore as ss
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task
root, n = sys.argv[1], int(sys.argv[2])
w = ss.open_store(f"files:{root}", SCHEMA)  # a writer in the same process, open throughout
with w.transaction():
    for i in range(10):
        w[TASKS].put(Task(f"t{i}"))
        w[EVENTS].append(Event("x"))
reader = ss.open_store(f"files:{root}", SCHEMA, mode="read")
inside = threading.Barrier(n)
errors, done = [], []
def read():
    try:
        with reader.transaction():
            reader[TASKS].get("t1")
            inside.wait(timeout=60)  # every thread inside its read transaction at once
            assert len(reader[TASKS].all()) == 10 and len(reader[EVENTS]) == 10
            done.append(1)
    except threading.BrokenBarrierError:
        pass
    except Exception as exc:
        errors.append(repr(exc))
        inside.abort()
threads = [threading.Thread(target=read) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": sorted(set(errors)), "done": len(done)}))
"""


@pytest.mark.parametrize("threads", [20, 40])
def test_many_reader_threads_under_a_descriptor_limit_of_64(root: Path, threads: int) -> None:
    """Many threads of one process (with a write-mode store open too), each inside a read transaction
    at the same time, under RLIMIT_NOFILE 64 (the limit descriptor_budget() says a store works under).
    Each lazy transaction holds readers.lock and one descriptor per log until it ends; once a store's
    lazy transactions hold its share (descriptor_budget()), further ones take the eager snapshot,
    which holds none. Before that bound, from 14 threads on one failed with BackendError 'Too many
    open files' (the eager fallback ran out too)."""
    out = subprocess.run(
        [sys.executable, "-c", _MANY_READERS, str(root), str(threads)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"errors": [], "done": threads}


def test_a_store_s_lazy_transactions_hold_at_most_its_descriptor_share(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for two lazy transactions, a third at the same time takes the eager snapshot (and
    reads the same); once they end, their descriptors are counted out and the next one is lazy."""
    fill(root, 5)
    with open_files(root, mode="read") as reader:
        need = 1 + len(reader.logs) + len(INTERNAL_LOGS)
        monkeypatch.setattr(versions, "descriptor_budget", lambda: 2 * need)
        kinds: list[bool] = []
        inside, leave = threading.Barrier(4), threading.Event()

        def read() -> None:
            with reader.transaction():
                kinds.append(lazy(reader))
                assert reader[TASKS].get("t0001") == Task("t0001", status="todo", points=1, title="n1")
                inside.wait(timeout=30)
                leave.wait(timeout=30)

        threads = [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        inside.wait(timeout=30)
        assert sorted(kinds) == [False, True, True]
        assert reader._reader_held == 2 * need
        leave.set()
        for thread in threads:
            thread.join()
        assert reader._reader_held == 0
        with reader.transaction():
            assert lazy(reader)


def test_a_forked_child_does_not_keep_an_ended_read_transaction_registered(root: Path) -> None:
    """A process forks (a multiprocessing worker, say) while inside a lazy read transaction; the
    child never touches the store (its _after_fork runs only on its next use). The parent's
    transaction ends by closing its descriptor of readers.lock, but the child's inherited copy
    keeps the same open file description, so LOCK_SH stays: every later commit, with no read
    transaction anywhere, is refused readers.lock, links old versions, and never deletes them."""
    fill(root, 5)
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        with reader.transaction():
            assert lazy(reader)
            reader[TASKS].get("t0001")
            with warnings.catch_warnings():
                # Python 3.12+ warns about fork() in a process with threads: this test forks on purpose.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the child: lives on, never uses the store
                try:
                    time.sleep(30)
                finally:
                    os._exit(0)
        try:
            writer[TASKS].put(Task("t0001", points=7))
            writer[TASKS].put(Task("t0002", points=8))
            assert not versions_dir(root).exists()
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.skipif(not MARKS, reason="readers mark their generation with open file description locks (Linux)")
def test_versions_no_reader_needs_go_while_read_transactions_overlap(root: Path) -> None:
    """Read transactions that overlap (A, then B starts, then A ends; as in any server answering
    requests at once) keep readers.lock shared at every commit, so no writer is ever granted it. Once
    A ends, the 20 folders kept before B started (every generation <= B's start) can serve no one:
    the next commit deletes them, with the overwritten records they hold, and keeps those B needs.
    (Before each reader marked its generation, they stayed for as long as some read transaction was
    always running: the store grew by one folder per commit.)"""
    fill(root, 5)
    with open_files(root) as writer, open_files(root, mode="read") as a, open_files(root, mode="read") as b:
        with a.transaction():
            assert a[TASKS].get("t0001") == Task("t0001", status="todo", points=1, title="n1")
            for i in range(20):
                writer[TASKS].put(Task("t0001", points=i))
            b_txn = b.transaction()
            b_txn.__enter__()
            assert b[TASKS].get("t0002") == Task("t0002", status="done", points=2, title="n2")
            kept_for_a = folders(root)
            assert len(kept_for_a) == 20
            assert a[TASKS].get("t0001") == Task("t0001", status="todo", points=1, title="n1")
        try:
            b_start = b._txn().colls.lazy.gen  # type: ignore[union-attr]
            for i in range(20):
                writer[TASKS].put(Task("t0002", points=100 + i))
            kept = folders(root)
            assert [g for g in kept if g <= b_start] == []
            assert len([g for g in kept if g > b_start]) == 20  # one per commit since B started
            assert b[TASKS].get("t0002") == Task("t0002", status="done", points=2, title="n2")
            assert b[TASKS].get("t0001") == Task("t0001", points=19)
        finally:
            b_txn.__exit__(None, None, None)
        writer[TASKS].put(Task("t0003"))  # no reader now: granted the lock, it deletes the rest
        assert not versions_dir(root).exists()


def folders(root: Path) -> list[int]:
    return sorted(int(p.name.partition(".")[0]) for p in versions_dir(root).iterdir())


def test_a_manifest_emptied_by_a_power_cut_does_not_break_reads(root: Path) -> None:
    """versions/ is written without fsync ("readers do not outlive a crash"). After a power cut, the
    folder of a commit that was being prepared (generation head + 1, never committed) can hold a
    manifest.json that is empty (a new file renamed into place without fsync: ext4's
    auto_da_alloc covers only a rename over an existing file). Every record and log file is sound, but
    until some write-mode process commits, every lazy read transaction that touches a collection
    raises CorruptStoreError instead of reading it: `statestore check` then reports one problem per
    collection (exit 1) and `statestore dump` fails, though both should ignore versions/."""
    fill(root, 5)
    with open_files(root, mode="read") as probe:
        gen = probe._read_head().gen
    folder = versions_dir(root) / f"{gen + 1}.0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_bytes(b"")  # what the power cut left of it
    with open_files(root, mode="read") as reader:
        assert reader[TASKS].get("t0001") is not None  # outside a transaction: fine
        with reader.transaction():
            assert lazy(reader)
            assert reader[TASKS].get("t0001") == Task("t0001", status="todo", points=1, title="n1")


def test_a_lost_change_head_does_not_bring_back_overwritten_versions(root: Path) -> None:
    """docs/files-backend.md names this edge: deleting .statestore/changes restarts the generations
    at 0, so versions left from before look newer than a reader's g0, and says "a write-mode open
    repairs the head". It does not: after the write-mode open the head is still generation 0, and a
    lazy read transaction shows t0001 as it was three commits ago (points 0) while a read outside a
    transaction shows points 3, until some writer granted readers.lock commits."""
    fill(root, 2)
    with open_files(root) as writer:
        with open_files(root, mode="read") as reader, reader.transaction():
            reader[TASKS].get("t0001")
            for i in range(1, 4):
                writer[TASKS].put(Task("t0001", points=i))
        assert versions_dir(root).is_dir()  # (the writer is still open: nothing deleted them yet)
        (root / ".statestore" / "changes").unlink()
        with open_files(root) as reopened:  # the write-mode open that should repair the head
            assert reopened[TASKS].get("t0001") == Task("t0001", points=3)
            with open_files(root, mode="read") as reader:
                assert reader[TASKS].get("t0001") == Task("t0001", points=3)
                with reader.transaction():
                    assert lazy(reader)
                    assert reader[TASKS].get("t0001") == Task("t0001", points=3)
