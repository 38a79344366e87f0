"""Concurrency with real processes (multiprocessing "spawn"), threads and fork().

Every test takes the ``location`` fixture, parametrized over the persistent
backends: SQLite now, and the file backend as soon as ``open_store("files:...")``
stops raising NotImplementedError (checked once, at import). Declarations and
worker functions live in ``_procs.py`` because spawned children must import them.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

# Spawned children get the parent's sys.path, so this makes ``_procs`` importable there too.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _procs  # noqa: E402 - needs the sys.path entry above
import statestore as ss  # noqa: E402
from _procs import COUNTERS, EVENTS, ITEMS, SCHEMA, Counter, Event, Item  # noqa: E402

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
TIMEOUT = 90.0  # seconds a group of children may take before the test fails instead of hanging

LOCATIONS: dict[str, Callable[[Path, str], str]] = {
    "sqlite": lambda tmp_path, kind: f"{kind}:{tmp_path}/state.db",
    "files": lambda tmp_path, kind: f"{kind}:{tmp_path}/state",
}


def _available(kind: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ss.open_store(LOCATIONS[kind](Path(tmp), kind), SCHEMA).close()
        except NotImplementedError:
            return False
    return True


BACKENDS = ["sqlite"] + [kind for kind in ("files",) if _available(kind)] + ["postgres"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store location of each persistent backend (PostgreSQL: a fresh schema on the test server)."""
    kind: str = request.param
    if kind == "postgres":
        return str(request.getfixturevalue("postgres_server").url())
    return LOCATIONS[kind](tmp_path, kind)


@pytest.fixture
def store(location: str) -> Iterator[ss.Store]:
    with ss.open_store(location, SCHEMA) as s:
        yield s


def run_processes(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``fn(*a)`` for each ``a`` in its own spawned process, all starting together; return results in order.

    A child's exception fails the test with the child's traceback.
    """
    barrier = SPAWN.Barrier(len(args))
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_procs.run, args=(fn, i, barrier, results, *a), daemon=True) for i, a in enumerate(args)
    ]
    for p in procs:
        p.start()
    try:
        out: dict[int, Any] = {}
        errors: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while len(out) + len(errors) < len(procs):
            try:
                status, index, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"children did not finish within {TIMEOUT}s")
            if status == "ok":
                out[index] = value
            else:
                errors.append(f"child {index}:\n{value}")
        assert not errors, "\n".join(errors)
        for p in procs:
            p.join(timeout=TIMEOUT)
            assert p.exitcode == 0, p.exitcode
        return [out[i] for i in range(len(procs))]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
        results.close()
        results.join_thread()


# --------------------------------------------------------------------------- processes


def test_concurrent_updates_from_processes_are_exact(store: ss.Store, location: str) -> None:
    store[COUNTERS].put(Counter("c"))
    procs, times = 4, 200
    assert run_processes(_procs.increment, [(location, "c", times)] * procs) == [times] * procs
    got = store[COUNTERS].get_versioned("c")
    assert got is not None
    assert got.record.n == procs * times
    assert got.revision == 1 + procs * times


def test_compare_and_swap_increments_from_processes_are_exact(store: ss.Store, location: str) -> None:
    # Each process reads, then writes with expect_revision: a lost update would leave the count short.
    store[COUNTERS].put(Counter("c"))
    procs, times = 4, 100
    results = run_processes(_procs.cas_increment, [(location, "c", times)] * procs)
    assert [r["done"] for r in results] == [times] * procs
    got = store[COUNTERS].get_versioned("c")
    assert got is not None
    assert (got.record.n, got.revision) == (procs * times, 1 + procs * times)


def test_concurrent_appends_with_expect_version_never_share_a_version(store: ss.Store, location: str) -> None:
    procs, count = 4, 40
    results = run_processes(_procs.append_versioned, [(location, "s", p, count) for p in range(procs)])
    total = procs * count
    entries = store[EVENTS].read(stream="s")
    assert [e.version for e in entries] == list(range(1, total + 1))
    seqs = [e.seq for e in entries]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    # Each (proc, i) was appended exactly once: nothing lost, nothing doubled by a retry.
    assert sorted((e.record.proc, e.record.i) for e in entries) == [(p, i) for p in range(procs) for i in range(count)]
    # What each child was told matches what is stored.
    told = sorted(pair for r in results for pair in r["appended"])
    assert told == [(e.seq, e.version) for e in entries]


def test_mixed_write_load_lets_no_backend_error_escape(store: ss.Store, location: str) -> None:
    store[COUNTERS].put(Counter("total"))
    procs = 4
    results = run_processes(_procs.mixed_load, [(location, p, 150, 1000 + p) for p in range(procs)])
    unexpected = [u for r in results for u in r["unexpected"]]
    # Above all no sqlite3.OperationalError ("database is locked") and no StoreBusyError.
    assert not unexpected, "\n".join(f"{name}: {msg}\n{tb}" for name, msg, tb in unexpected)

    counter = store[COUNTERS].get("total")
    assert counter is not None
    assert counter.n == sum(r["increments"] for r in results)
    # A transaction is all or nothing, across collections and logs.
    committed = sorted(ref for r in results for ref in r["committed"])
    assert sorted(i.id for i in store[ITEMS].find(owner="tx")) == committed
    tx_events = store[EVENTS].read(stream="tx")
    assert sorted(e.record.ref for e in tx_events) == committed
    assert store[ITEMS].find(owner="rb") == []
    assert all(e.record.kind == "tx" for e in tx_events)
    for stream in ("shared", "tx", *(f"proc-{p}" for p in range(procs))):
        versions = [e.version for e in store[EVENTS].read(stream=stream)]
        assert versions == list(range(1, len(versions) + 1)), stream
    # Every shared key was inserted by exactly one process; the others were told it existed.
    inserted = sorted(key for r in results for key in r["inserted"])
    assert inserted == sorted(i.id for i in store[ITEMS].find(owner="shared"))
    assert sum(r["handled"].get("AlreadyExistsError", 0) for r in results) > 0  # the race did happen


class _Holder:
    """A spawned process holding a write transaction open (with one uncommitted write) until released."""

    def __init__(self, location: str) -> None:
        # Every synchronisation object stays referenced here: one that is garbage
        # collected before the child unpickles it no longer exists for the child.
        self.ready, self.release, self.barrier = SPAWN.Event(), SPAWN.Event(), SPAWN.Barrier(1)
        self.results = SPAWN.Queue()
        self.process = SPAWN.Process(
            target=_procs.run,
            args=(_procs.hold_write_lock, 0, self.barrier, self.results, location, self.ready, self.release),
            daemon=True,
        )

    def __enter__(self) -> _Holder:
        self.process.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.ready.wait(timeout=0.05):
            if not self.process.is_alive() or time.monotonic() > deadline:
                detail = self.results.get(timeout=1) if not self.results.empty() else "(no report)"
                pytest.fail(f"the holder never took the write lock: {detail}")
        return self

    def finish(self) -> None:
        self.release.set()
        status, _, value = self.results.get(timeout=TIMEOUT)
        assert (status, value) == ("ok", "committed"), value
        self.process.join(timeout=TIMEOUT)

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.results.close()
        self.results.join_thread()
        # Let the process's semaphores go now, at a safe point. Python 3.13 reports one freed by a
        # garbage collection that runs inside the resource tracker's own call as an unraisable
        # ReentrantCallError (seen once in CI on this test), which pytest turns into a failure.
        del self.process, self.ready, self.release, self.barrier, self.results
        gc.collect()


def test_follow_sees_entries_of_other_processes_promptly(store: ss.Store, location: str) -> None:
    procs, count = 2, 5
    seen: list[tuple[ss.Entry[Event], datetime]] = []

    def follower() -> None:
        for entry in store[EVENTS].follow(stream="follow", timeout=TIMEOUT, poll=0.02):
            seen.append((entry, datetime.now(timezone.utc)))
            if len(seen) == procs * count:
                return

    thread = threading.Thread(target=follower)
    thread.start()
    try:
        results = run_processes(_procs.append_spaced, [(location, p, count, 0.1) for p in range(procs)])
    finally:
        thread.join(timeout=TIMEOUT)
    assert sorted(e.seq for e, _ in seen) == sorted(seq for r in results for seq in r)
    assert [e.seq for e, _ in seen] == sorted(e.seq for e, _ in seen)
    # ``at`` is stamped just before the child commits: this is commit-to-delivery latency. With
    # poll=0.02 it is ~0.03 s on a quiet machine; the bound leaves room for a loaded one (a stalled
    # fsync, a starved thread) and still catches a follower that stopped polling.
    assert max(got - e.at for e, got in seen) < timedelta(seconds=3)


def test_busy_store_raises_store_busy_error_and_changes_nothing(location: str) -> None:
    with ss.open_store(location, SCHEMA, busy_timeout=0.2) as busy:
        items, events = busy[ITEMS], busy[EVENTS]
        items.put(Item("k", owner="before", n=1))
        events.append(Event(0, 0), stream="s")
        with _Holder(location) as holder:
            writes: list[Callable[[], object]] = [
                lambda: items.put(Item("k", owner="after", n=2)),
                lambda: items.insert(Item("new")),
                lambda: items.update("k", lambda it: None),
                lambda: items.delete("k"),
                lambda: events.append(Event(0, 1), stream="s"),
            ]
            for write in writes:
                start = time.monotonic()
                with pytest.raises(ss.StoreBusyError) as info:
                    write()
                assert isinstance(info.value, TimeoutError)
                assert not isinstance(info.value, sqlite3.Error)
                assert time.monotonic() - start >= 0.15
            with pytest.raises(ss.StoreBusyError), busy.transaction():
                items.put(Item("in-txn"))
            # Readers are not blocked by the writer, and see only committed data.
            assert items.get("k") == Item("k", owner="before", n=1)
            assert "held" not in items
            holder.finish()
        assert items.get_versioned("k") == ss.Versioned(Item("k", owner="before", n=1), 1)
        assert [e.version for e in events.read(stream="s")] == [1]
        assert items.get("new") is None
        assert items.get("in-txn") is None
        # The holder's transaction committed; the store works normally again.
        assert items.get("held") == Item("held", owner="holder")
        items.put(Item("k", owner="after", n=2))
        assert items.get_versioned("k") == ss.Versioned(Item("k", owner="after", n=2), 2)


def test_opening_for_writing_does_not_wait_for_another_writer(location: str) -> None:
    ss.open_store(location, SCHEMA).close()
    with _Holder(location) as holder:
        with ss.open_store(location, SCHEMA, busy_timeout=0.2) as s:
            assert s[ITEMS].get("held") is None
        holder.finish()


# --------------------------------------------------------------------------- threads


def _in_threads(n: int, fn: Callable[[int], None]) -> None:
    """Run ``fn(i)`` in ``n`` threads started together; re-raise the first exception."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=TIMEOUT)
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_concurrent_updates_from_threads_sharing_a_store_are_exact(store: ss.Store) -> None:
    counters = store[COUNTERS]
    counters.put(Counter("c"))

    def work(_: int) -> None:
        for _ in range(200):
            counters.update("c", _procs._bump)

    _in_threads(4, work)
    assert counters.get_versioned("c") == ss.Versioned(Counter("c", 800), 801)


def test_concurrent_transactions_from_threads_are_isolated(store: ss.Store) -> None:
    items, events = store[ITEMS], store[EVENTS]

    def work(t: int) -> None:
        for i in range(30):
            with store.transaction():
                items.put(Item(f"t{t}-{i}", owner=f"t{t}"))
                events.append(Event(t, i), stream=f"t{t}")
                events.append(Event(t, i), stream="all")

    _in_threads(4, work)
    assert len(items) == 120
    assert [e.version for e in events.read(stream="all")] == list(range(1, 121))
    for t in range(4):
        assert [e.record.i for e in events.read(stream=f"t{t}")] == list(range(30))


def test_open_transaction_is_invisible_to_other_threads_until_commit(store: ss.Store) -> None:
    items, events = store[ITEMS], store[EVENTS]
    written, seen, finish = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with store.transaction():
                items.put(Item("x", owner="w"))
                events.append(Event(1, 1), stream="w")
                # Inside its own transaction the writer sees its writes.
                assert items.get("x") == Item("x", owner="w")
                written.set()
                if not finish.wait(timeout=TIMEOUT):
                    raise TimeoutError("reader never finished")
        except BaseException as exc:
            errors.append(exc)
        finally:
            written.set()
            seen.set()

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert written.wait(timeout=TIMEOUT)
        assert items.get("x") is None
        assert "x" not in items
        assert len(items) == 0
        assert items.find(owner="w") == []
        assert events.read(stream="w") == []
        assert events.last_seq() == 0
    finally:
        finish.set()
        t.join(timeout=TIMEOUT)
    assert not errors, errors
    assert seen.is_set()
    assert items.get("x") == Item("x", owner="w")
    assert [e.record for e in events.read(stream="w")] == [Event(1, 1)]


# --------------------------------------------------------------------------- fork


def _start_fork(child: Callable[[], None]) -> int:
    """Run ``child`` in a forked process and return its pid without waiting.

    The child leaves through os._exit so pytest's own teardown never runs twice.
    """
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads; these tests fork on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not collected
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int) -> int:
    """Wait for a forked child; its exit status (0 when it returned normally)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _fork(child: Callable[[], None]) -> int:
    """Run ``child`` in a forked process; return its exit status."""
    return _exit_code(_start_fork(child))


def test_store_keeps_working_across_fork(store: ss.Store, location: str) -> None:
    items, events, counters = store[ITEMS], store[EVENTS], store[COUNTERS]
    # The parent has used the store (and holds a connection, with unflushed WAL frames for SQLite).
    for i in range(50):
        items.put(Item(f"parent-{i}", owner="parent"))
    counters.put(Counter("c"))
    events.append(Event(0, 0), stream="s")

    def child() -> None:
        assert items.get("parent-0") == Item("parent-0", owner="parent")
        items.put(Item("child", owner="child"))
        counters.update("c", _procs._bump)
        events.append(Event(1, 0), stream="s")
        with store.transaction():
            items.put(Item("child-txn", owner="child"))
        assert len(items) == 52
        store.close()

    assert _fork(child) == 0
    # The parent's store still works and sees the child's writes.
    assert items.get("child") == Item("child", owner="child")
    assert items.get("child-txn") == Item("child-txn", owner="child")
    counters.update("c", _procs._bump)
    assert counters.get_versioned("c") == ss.Versioned(Counter("c", 2), 3)
    events.append(Event(0, 1), stream="s")
    assert [(e.record.proc, e.version) for e in events.read(stream="s")] == [(0, 1), (1, 2), (0, 3)]
    for i in range(50):
        items.put(Item(f"parent-after-{i}", owner="parent"))
    store.close()
    # Nothing the child did to its inherited copy of the parent's connection damaged the store.
    with ss.open_store(location, SCHEMA) as again:
        assert len(again[ITEMS]) == 102
        assert again[ITEMS].get("child") == Item("child", owner="child")
    if location.startswith("sqlite:"):
        con = sqlite3.connect(location.removeprefix("sqlite:"))
        try:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            con.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_child_forked_inside_a_transaction_can_write_after_the_parent_commits(location: str) -> None:
    with ss.open_store(location, SCHEMA, busy_timeout=2) as store:
        items = store[ITEMS]
        items.put(Item("k", owner="before"))

        def child() -> None:
            # No cyclic garbage collection before the first write, as in any child that
            # writes soon after fork(); the parent's transaction is not the child's.
            gc.disable()
            items.put(Item("from-child", owner="child"))

        with store.transaction():
            items.put(Item("k", owner="parent-txn"))
            pid = _start_fork(child)
        # Committed: the child's write (waiting for the write lock) can now go ahead.
        code = _exit_code(pid)
        assert items.get("k") == Item("k", owner="parent-txn")
        assert code == 0
        assert items.get("from-child") == Item("from-child", owner="child")


# --------------------------------------------------------------------------- migrations


def test_racing_openers_migrate_an_old_store_exactly_once(location: str) -> None:
    with ss.open_store(location, SCHEMA) as old:
        old[COUNTERS].put(Counter("a", 1))
        old[COUNTERS].put(Counter("b", 2))
    procs = 6
    seen = run_processes(_procs.open_migrating, [(location,)] * procs)
    assert seen == [[101, 102]] * procs  # every opener saw the migrated store, migrated once
    with ss.open_store(location, _procs.SCHEMA_V2, mode="read") as store:
        assert [(r.version, r.direction) for r in store.history()] == [(1, "create"), (2, "up")]
        assert [c.n for c in store[COUNTERS].all()] == [101, 102]
    assert len(_backups(location)) == 1  # taken once, before the first pending migration


def _backups(location: str) -> list[str]:
    """The backups beside the store: files or folders, or PostgreSQL schemas ``<schema>_backup_…``."""
    if location.startswith("postgresql://"):
        import psycopg

        from statestore.backends.postgres import split_url

        url, schema, _shown = split_url(location)
        with psycopg.connect(url) as con:
            rows = con.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (schema + "_backup_",)
            ).fetchall()
        return [r[0] for r in rows]
    return [p.name for p in Path(location.split(":", 1)[1]).parent.iterdir() if ".backup-" in p.name]


# --------------------------------------------------------------------------- legacy import


def test_eight_processes_starting_together_import_exactly_once(location: str, tmp_path: Path) -> None:
    import shutil

    from statestore.examples.tracker import SCHEMA as TRACKER

    root = shutil.copytree(Path(__file__).parent.parent / "fixtures" / "legacy" / "tracker", tmp_path / "old")
    seen = run_processes(_procs.open_with_legacy, [(location, str(root))] * 8)
    assert seen == [300] * 8
    with ss.open_store(location, TRACKER, mode="read") as store:
        assert len(store.imports()) == 503  # one provenance row per file: imported once, not eight times
        assert [h.direction for h in store.history()] == ["create"]
