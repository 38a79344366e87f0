"""Child processes for the stress tests (test_files_stress.py, test_backup_kills.py).

Usage: ``python _stress_child.py ROLE ARGS...``. Kept importable on its own
(no pytest, no conftest): the tests run it with ``subprocess``.

* ``writer STORE SEED`` -- rewrites 40 to 120 records per transaction (a journal
  over the 16 KiB inline limit), every record carrying the transaction's
  counter and the record count, deleting the records past the count; prints
  ``ready`` once the first transaction committed, then writes until killed.
* ``reader STORE CHECKS SECONDS SCRATCH`` -- checks the store until it has made
  CHECKS checks or SECONDS passed: ``all()``, read transactions, ``dump_store``
  and ``copy_store``; prints one JSON line with its counts and torn views.
* ``backups LOCATION`` -- migrates the store down and up forever (each
  migration takes a backup first), printing ``ready`` first and ``migrated``
  after each migration: killed at random.
* ``fdlimit STORE`` -- under a descriptor limit of 64, opens a store of 80
  collections and 6 logs and reads and writes every one of them.
"""

from __future__ import annotations

import io
import json
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import attrs

import statestore as ss


@attrs.define
class Rec:
    id: str
    counter: int
    size: int
    pad: str = ""


@attrs.define
class Note:
    text: str


RECS = ss.Collection("recs", Rec, key="id")
NOTES = ss.Log("notes", Note)
SCHEMA = ss.Schema("stress", version=1, collections=[RECS], logs=[NOTES])
MAX = 120
PAD = "x" * 400  # 40 records of ~500 bytes: a journal over the 16 KiB that travels inside the head

# ---------------------------------------------------------------- torn reads


def writer(root: str, seed: int) -> None:
    rng = random.Random(seed)
    store = ss.open_store(f"files:{root}", SCHEMA)
    recs = store[RECS]
    counter = 0
    while True:
        counter += 1
        size = rng.randint(40, MAX)
        with store.transaction():
            for i in range(size):
                recs.put(Rec(f"r{i:03}", counter, size, PAD))
            for i in range(size, MAX):
                recs.delete(f"r{i:03}")
        if counter == 1:
            print("ready", flush=True)


def torn(rows: list[tuple[int, int]]) -> bool:
    """Whether (counter, size) rows are not one committed state: mixed counters or the wrong count."""
    return len(set(rows)) != 1 or len(rows) != rows[0][1]


def reader(root: str, checks: int, seconds: float, scratch: str) -> None:
    store = ss.open_store(f"files:{root}", SCHEMA, mode="read")
    recs = store[RECS]
    counts = {"checks": 0, "all": 0, "transactions": 0, "dumps": 0, "copies": 0, "torn": 0}
    examples: list[str] = []
    deadline = time.monotonic() + seconds
    n = 0

    def seen(kind: str, rows: list[tuple[int, int]]) -> None:
        counts["checks"] += 1
        counts[kind] += 1
        if torn(rows):
            counts["torn"] += 1
            if len(examples) < 5:
                examples.append(f"{kind}: {sorted(set(rows))[:6]} of {len(rows)}")

    while counts["checks"] < checks and time.monotonic() < deadline:
        n += 1
        if n % 250 == 0:
            out = io.StringIO()
            ss.dump_store(store, out)
            lines = [json.loads(line) for line in out.getvalue().splitlines()]
            seen(
                "dumps", [(d["record"]["counter"], d["record"]["size"]) for d in lines if d.get("collection") == "recs"]
            )
        elif n % 1000 == 125:
            dest = Path(scratch) / f"copy-{n}"
            ss.copy_store(store, f"files:{dest}")
            with ss.open_store(f"files:{dest}", SCHEMA, mode="read") as copy:
                seen("copies", [(r.counter, r.size) for r in copy[RECS].all()])
            shutil.rmtree(dest)
        elif n % 4 == 0:
            with store.transaction():
                rows = [(r.counter, r.size) for r in recs.all()]
                first = recs.get("r000")
                if first is None or (first.counter, first.size) != rows[0] or len(recs) != len(rows):
                    rows.append((-1, -1))  # get(), count() and all() disagree inside one snapshot
            seen("transactions", rows)
        else:
            seen("all", [(r.counter, r.size) for r in recs.all()])
    store.close()
    print(json.dumps({**counts, "examples": examples}), flush=True)


# ---------------------------------------------------------------- backups


@attrs.define
class Item:
    id: str
    n: int


ITEMS = ss.Collection("items", Item, key="id")
V1 = ss.Schema("backups", version=1, collections=[ITEMS], logs=[NOTES])
_NOOP = ss.Migration(2, "nothing to change", up=lambda m: None, down=lambda m: None)
V2 = ss.Schema("backups", version=2, collections=[ITEMS], logs=[NOTES], migrations=[_NOOP])
ITEM_COUNT = 400


def seed_backups(location: str) -> None:
    with ss.open_store(location, V1) as store, store.transaction():
        for i in range(ITEM_COUNT):
            store[ITEMS].put(Item(f"i{i:04}", i))
        store[NOTES].append(Note("seeded"))
    with ss.open_store(location, V2):  # migrated once: the loop below goes down and up
        pass


def backups(location: str) -> None:
    store = ss.open_store(location, V2, backup=False)
    print("ready", flush=True)
    while True:
        store.migrate(to=1)
        print("migrated", flush=True)  # a complete backup of this migration exists now
        store.migrate(to=2)
        print("migrated", flush=True)


# ---------------------------------------------------------------- descriptors

FD_COLLECTIONS = [ss.Collection(f"c{i:02}", Rec, key="id") for i in range(80)]
FD_LOGS = [ss.Log(f"log{i}", Note) for i in range(6)]
FD_SCHEMA = ss.Schema("many", version=1, collections=FD_COLLECTIONS, logs=FD_LOGS)


def fdlimit(root: str) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    location = f"files:{root}"
    with ss.open_store(location, FD_SCHEMA) as store:
        for round_ in range(3):
            for coll in FD_COLLECTIONS:
                store[coll].put(Rec(f"k{round_}", round_, 1))
            for log in FD_LOGS:
                store[log].append(Note(f"{log.name}-{round_}"), stream="s")
            with store.transaction():  # one transaction touching every collection and log
                for coll in FD_COLLECTIONS:
                    store[coll].put(Rec(f"t{round_}", round_, 2))
                for log in FD_LOGS:
                    store[log].append(Note(f"t-{round_}"), stream="t")
        with ss.open_store(location, FD_SCHEMA, mode="read") as reader:
            for coll in FD_COLLECTIONS:
                assert reader[coll].keys() == ["k0", "k1", "k2", "t0", "t1", "t2"], coll.name
            for log in FD_LOGS:
                assert len(reader[log].read()) == 6, log.name
            with reader.transaction():  # a snapshot of everything at once
                assert sum(len(reader[c]) for c in FD_COLLECTIONS) == 6 * 80
    with ss.open_store(location, FD_SCHEMA) as again:
        for coll in FD_COLLECTIONS:
            assert again[coll]["t2"].size == 2
        for log in FD_LOGS:
            assert [e.version for e in again[log].read(stream="s")] == [1, 2, 3]
    print("ok", flush=True)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "writer":
        writer(args[0], int(args[1]))
    elif role == "reader":
        reader(args[0], int(args[1]), float(args[2]), args[3])
    elif role == "backups":
        backups(args[0])
    elif role == "fdlimit":
        fdlimit(args[0])
    else:
        raise SystemExit(f"unknown role {role!r}")
