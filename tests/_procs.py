"""Declarations and worker functions for the multi-process tests (test_concurrency.py).

Spawned children import this module by name, so it must stay importable on
its own: no pytest, no fixtures, nothing from conftest. The parent puts this
directory on ``sys.path`` and multiprocessing's "spawn" start method hands the
parent's ``sys.path`` to every child, so ``import _procs`` works there too.

Every worker runs through :func:`run`, which waits on a start barrier (so the
processes really contend) and reports either ``("ok", index, result)`` or
``("error", index, traceback)`` on a queue: a child never dies silently.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

import attrs

import statestore as ss


@attrs.define
class Counter:
    id: str
    n: int = 0


@attrs.define
class Item:
    id: str
    owner: str = ""
    n: int = 0
    tags: list[str] = attrs.Factory(list)


@attrs.define
class Event:
    proc: int
    i: int
    kind: str = ""
    ref: str = ""


COUNTERS = ss.Collection("counters", Counter, key="id")
ITEMS = ss.Collection("items", Item, key="id", indexes=["owner"])
EVENTS = ss.Log("events", Event)
SCHEMA = ss.Schema("concurrency", version=1, collections=[COUNTERS, ITEMS], logs=[EVENTS])

#: Exceptions the mixed load provokes on purpose and handles.
EXPECTED = (ss.AlreadyExistsError, ss.NotFoundError)


class Rollback(Exception):
    """Raised inside a transaction on purpose; everything it wrote must vanish."""


def open_store(location: str, busy_timeout: float = 30.0) -> ss.Store:
    return ss.open_store(location, SCHEMA, busy_timeout=busy_timeout)


def run(fn: Callable[..., Any], index: int, barrier: Any, results: Any, *args: Any) -> None:
    """Child entry point: wait for every sibling, run ``fn(*args)``, report on ``results``."""
    try:
        barrier.wait(timeout=60)
        results.put(("ok", index, fn(*args)))
    except BaseException:
        results.put(("error", index, traceback.format_exc()))


def _bump(c: Counter) -> None:
    c.n += 1


# --------------------------------------------------------------------------- workers


def increment(location: str, key: str, times: int) -> int:
    """``update`` the counter ``key`` by one, ``times`` times."""
    with open_store(location) as store:
        counters = store[COUNTERS]
        for _ in range(times):
            counters.update(key, _bump)
    return times


def append_versioned(location: str, stream: str, proc: int, count: int) -> dict[str, Any]:
    """Append ``count`` entries with ``expect_version``, re-reading the version after each conflict."""
    appended: list[tuple[int, int]] = []
    conflicts = 0
    with open_store(location) as store:
        events = store[EVENTS]
        seen = events.read(stream=stream)
        version = seen[-1].version if seen else 0
        i = 0
        while i < count:
            try:
                entry = events.append(Event(proc, i), stream=stream, expect_version=version)
            except ss.StreamConflictError:
                conflicts += 1
                version = events.read(stream=stream)[-1].version
                continue
            assert entry.version == version + 1, (entry.version, version)
            appended.append((entry.seq, entry.version))
            version = entry.version
            i += 1
    return {"appended": appended, "conflicts": conflicts}


def mixed_load(location: str, proc: int, ops: int, seed: int) -> dict[str, Any]:
    """A random mix of every kind of write, with reads; returns what happened.

    ``unexpected`` lists every exception that is not one of :data:`EXPECTED`
    (type, message, traceback); the test asserts it is empty.
    """
    rng = random.Random(seed)
    handled: Tally[str] = Tally()
    unexpected: list[tuple[str, str, str]] = []
    increments = 0
    committed: list[str] = []
    rolled_back: list[str] = []
    inserted: list[str] = []
    with open_store(location) as store:
        items, counters, events = store[ITEMS], store[COUNTERS], store[EVENTS]
        for i in range(ops):
            op = rng.choice(["put", "insert", "update", "update_missing", "append", "txn", "rollback", "read"])
            try:
                if op == "put":
                    items.put(Item(f"p{proc}-{i % 7}", owner=f"o{proc}", n=i, tags=["x"] * (i % 3)))
                elif op == "insert":
                    # Shared keys: the other processes race to insert the same ones.
                    key = f"shared-{rng.randrange(20)}"
                    items.insert(Item(key, owner="shared", n=proc))
                    inserted.append(key)
                elif op == "update":
                    counters.update("total", _bump)
                    increments += 1
                elif op == "update_missing":
                    items.update(f"never-{proc}-{i}", lambda it: None)
                elif op == "append":
                    events.append(Event(proc, i, "plain"), stream=rng.choice([f"proc-{proc}", "shared"]))
                elif op == "txn":
                    ref = f"tx-{proc}-{i}"
                    with store.transaction():
                        items.put(Item(ref, owner="tx", n=i))
                        events.append(Event(proc, i, "tx", ref), stream="tx")
                        counters.update("total", _bump)
                    committed.append(ref)
                    increments += 1
                elif op == "rollback":
                    ref = f"rb-{proc}-{i}"
                    try:
                        with store.transaction():
                            items.put(Item(ref, owner="rb", n=i))
                            events.append(Event(proc, i, "rb", ref), stream="tx")
                            raise Rollback(ref)
                    except Rollback:
                        rolled_back.append(ref)
                else:
                    items.find(owner="shared")
                    events.read(stream="shared", after=rng.randrange(50))
                    len(items)
            except EXPECTED as exc:
                handled[type(exc).__name__] += 1
            except Exception as exc:  # reported to the parent, which fails the test
                unexpected.append((type(exc).__name__, str(exc), traceback.format_exc()))
    return {
        "handled": dict(handled),
        "unexpected": unexpected,
        "increments": increments,
        "committed": committed,
        "rolled_back": rolled_back,
        "inserted": inserted,
    }


def append_spaced(location: str, proc: int, count: int, gap: float) -> list[int]:
    """Append ``count`` entries to stream ``follow``, ``gap`` seconds apart; return their seqs."""
    seqs = []
    with open_store(location) as store:
        for i in range(count):
            time.sleep(gap)
            seqs.append(store[EVENTS].append(Event(proc, i, "followed"), stream="follow").seq)
    return seqs


def hold_write_lock(location: str, ready: Any, release: Any) -> str:
    """Open a write transaction, write in it, signal ``ready`` and keep it open until ``release``."""
    with open_store(location) as store:
        with store.transaction():
            store[ITEMS].put(Item("held", owner="holder"))
            ready.set()
            if not release.wait(timeout=60):
                raise TimeoutError("never released")
        return "committed"


def _slow_bump(m: Any) -> None:
    import time

    time.sleep(0.3)  # long enough that every opener arrives while it runs
    m.map_records("counters", lambda d: {**d, "n": d["n"] + 100})


SCHEMA_V2 = ss.Schema(
    "concurrency",
    version=2,
    collections=[COUNTERS, ITEMS],
    logs=[EVENTS],
    migrations=[ss.Migration(2, "add 100 to every counter", up=_slow_bump)],
)


def open_migrating(location: str) -> list[int]:
    """Open an old store with the schema that migrates it; return the counters seen."""
    with ss.open_store(location, SCHEMA_V2, busy_timeout=60) as store:
        return [c.n for c in store[COUNTERS].all()]


def open_with_legacy(location: str, root: str) -> int:
    """Open a store that may need importing from ``root``; return how many tasks it holds."""
    from statestore.examples.tracker import LAYOUT, TASKS
    from statestore.examples.tracker import SCHEMA as TRACKER

    with ss.open_store(location, TRACKER, legacy=ss.Legacy(root, LAYOUT), busy_timeout=60) as store:
        return len(store[TASKS])


def cas_increment(location: str, key: str, times: int) -> dict[str, int]:
    """Add one to counter ``key`` ``times`` times by compare-and-swap (``expect_revision``), retrying conflicts."""
    conflicts = 0
    done = 0
    with open_store(location) as store:
        counters = store[COUNTERS]
        while done < times:
            got = counters.get_versioned(key)
            assert got is not None
            try:
                counters.put(Counter(key, got.record.n + 1), expect_revision=got.revision)
            except ss.ConflictError:
                conflicts += 1
                continue
            done += 1
    return {"done": done, "conflicts": conflicts}
