"""Read transactions on the file backend load nothing until touched (issue 14, point 2).

A read transaction is a snapshot as of its start; on the file backend it
registers on ``.statestore/readers.lock`` and reads each collection or log
only when first touched, through the old versions writers keep for it in
``.statestore/versions/`` (docs/files-backend.md, "Read transactions").
Bounded: the kill test runs 6 writer lives of at most ~1 s each.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

import statestore as ss
from _lazy import fill, open_files, run_threads, snapshot_error, versions_dir
from statestore.backends.files import FileStore
from statestore.backends.files.log import LogFiles
from statestore.backends.files.versions import LazyColls
from statestore.testing.models import EVENTS, SETTINGS, TASKS, TICKETS, Event, Setting, Task, Ticket

sys.path.insert(0, str(Path(__file__).parent))
import _stress_child as child

CHILD = Path(__file__).parent / "_stress_child.py"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


class Counted:
    """Counts record files parsed and log lines parsed (every read of either goes through these)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records = 0
        self.lines = 0
        read_rec, parse_line = FileStore._read_rec, LogFiles._parse_line

        def counting_read_rec(store: FileStore, coll: Any, name: str) -> Any:
            self.records += 1
            return read_rec(store, coll, name)

        def counting_parse_line(store: Any, *a: Any, **kw: Any) -> Any:
            self.lines += 1
            return parse_line(store, *a, **kw)

        monkeypatch.setattr(FileStore, "_read_rec", counting_read_rec)
        monkeypatch.setattr(LogFiles, "_parse_line", counting_parse_line)


# ---------------------------------------------------------------- cost


@pytest.mark.parametrize("n", [40, 400])
def test_first_read_transaction_get_reads_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """A fresh process's first read transaction doing one get reads one record file and no log line,
    at 40 and at 400 records (+ as many tickets and log entries)."""
    root = tmp_path / "state"
    fill(root, n)
    with open_files(root, mode="read") as reader:
        counted = Counted(monkeypatch)  # (opening reads the history log: not the transaction's doing)
        with reader.transaction():
            task = reader[TASKS].get("t0003")
            again = reader[TASKS].get("t0003")
        assert task == again == Task("t0003", status="todo", points=3, title="n0")
        assert (counted.records, counted.lines) == (2, 0)


def test_first_touch_of_a_log_does_not_parse_the_others(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(root, 30)
    with open_files(root, mode="read") as reader:
        counted = Counted(monkeypatch)
        with reader.transaction():
            assert len(reader.history()) == 1  # the internal history log only
            assert counted.lines == 1
            assert len(reader[EVENTS]) == 30
    assert counted.records == 0


# ---------------------------------------------------------------- what a late first touch sees


def snapshot(store: FileStore) -> dict[str, Any]:
    """Everything a reader can see, by every path: point gets, all(), len(), keys, finds, logs."""
    tasks, tickets = store[TASKS], store[TICKETS]
    keys = [f"t{i:04}" for i in range(60)] + ["new1", "new2"]
    return {
        "get": {k: store[TASKS].get(k) for k in keys},
        "revision": {k: (v.revision if (v := store[TASKS].get_versioned(k)) is not None else None) for k in keys},
        "tickets_get": {i: tickets.get(i) for i in range(0, 60, 7)},
        "all": tasks.all(),
        "len": len(tasks),
        "keys": tickets.keys(),
        "find_index": tasks.find(status="todo"),
        "find_plain": tasks.find(title="n1"),
        "count": tasks.count(status="done"),
        "settings": store[SETTINGS].all(),
        "events": [(e.seq, e.record) for e in store[EVENTS].read()],
        "events_len": len(store[EVENTS]),
        "history": len(store.history()),
    }


def write_everything(writer: FileStore) -> None:
    """Updates, inserts, deletes, a lone write, a journal over the inline limit, appends."""
    tasks = writer[TASKS]
    tasks.put(Task("t0001", status="changed", points=-1))  # a lone write (one file renamed)
    tasks.delete("t0002")
    tasks.insert(Task("new1", status="todo", title="n1"))
    with writer.transaction():  # small: the journal travels in the head
        tasks.put(Task("t0003", status="done", title="n1"))
        tasks.delete("t0004")
        writer[TICKETS].delete(5)
        writer[EVENTS].append(Event("late"))
    with writer.transaction():  # large: journal.json
        for i in range(10, 60):
            tasks.put(Task(f"t{i:04}", title="x" * 400, status="todo"))
        tasks.insert(Task("new2", status="done"))
        writer[SETTINGS].put(Setting("s", "p", "n", "v"))
    writer[EVENTS].append(Event("alone"))
    tasks.put(Task("t0001", status="again"))


def test_a_late_first_touch_sees_the_start(root: Path) -> None:
    fill(root, 40)
    with open_files(root, mode="read") as eager:
        expected = snapshot(eager)
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        with reader.transaction():
            reader[TASKS].get("t0007")  # one point read first: the collection stays unloaded
            write_everything(writer)
            assert versions_dir(root).is_dir()  # the writer kept old versions for this reader
            assert snapshot(reader) == expected
            with writer.transaction():  # and more, after the first touches
                writer[TASKS].put(Task("t0005", points=55))
                writer[TASKS].delete("t0006")
                writer[TICKETS].put(Ticket(1000))
                writer[EVENTS].append(Event("later"))
            assert snapshot(reader) == expected
        assert snapshot(reader) != expected
        writer[TASKS].put(Task("t0000"))  # no reader registered: the versions go
        assert not versions_dir(root).exists()


@pytest.mark.parametrize("warm", [False, True])
def test_point_reads_inside_the_transaction_see_the_start(root: Path, warm: bool) -> None:
    """Point reads only (the transaction never loads the collection whole): updated, deleted, inserted,
    rewritten twice; from the files, or (warm) from the process's cache of the collection."""
    fill(root, 20)
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        if warm:
            assert len(reader[TASKS].all()) == 20
        with reader.transaction():
            before = reader[TASKS].get("t0001")
            writer[TASKS].put(Task("t0001", points=100))
            writer[TASKS].put(Task("t0001", points=200))
            writer[TASKS].delete("t0002")
            writer[TASKS].insert(Task("brand-new"))
            with writer.transaction():
                writer[TASKS].put(Task("t0003", points=300))
                writer[TASKS].delete("t0001")
            assert reader[TASKS].get("t0001") == before
            assert reader[TASKS].get("t0002") == Task("t0002", status="done", points=2, title="n2")
            assert reader[TASKS].get("t0003") == Task("t0003", status="todo", points=3, title="n0")
            assert reader[TASKS].get("brand-new") is None
            assert reader[TASKS].get_versioned("t0003").revision == 1  # type: ignore[union-attr]
            assert "t0002" in reader[TASKS]
            assert len(reader[TASKS]) == 20  # (from the index files, corrected by the kept versions)
            if not warm:  # (warm: the transaction shares the process's cache, or a copy with the versions over it)
                assert TASKS.name not in reader._txn().colls  # type: ignore[union-attr]  # (never loaded whole)
            assert [t.id for t in reader[TASKS].find(points=2)] == ["t0002"]
        assert reader[TASKS].get("t0001") is None


@attrs.define
class Item:
    id: str
    n: int


@attrs.define
class Note:
    text: str


ITEMS = ss.Collection("items", Item, key="id", indexes=["n"])
GONE = ss.Collection("gone", Item, key="id")
NOTES = ss.Log("notes", Note)
V1 = ss.Schema("lazy", version=1, collections=[ITEMS, GONE], logs=[NOTES])


def _up(m: Any) -> None:
    m.map_records("items", lambda r: {**r, "n": r["n"] + 1000})
    m.drop_collection("gone")
    m.map_entries("notes", lambda e: {"text": e["text"].upper()})


V2 = ss.Schema(
    "lazy",
    version=2,
    collections=[ITEMS],
    logs=[NOTES],
    migrations=[ss.Migration(2, "bump, drop, shout", up=_up, down=lambda m: None)],
)


def test_a_migration_after_the_start_is_not_seen(root: Path) -> None:
    """A migration (records rewritten, a collection dropped, a log rewritten) in another store object."""
    with open_files(root, V1) as store, store.transaction():
        for i in range(30):
            store[ITEMS].put(Item(f"i{i:02}", i))
            store[GONE].put(Item(f"g{i:02}", i))
            store[NOTES].append(Note(f"note {i}"))
    with open_files(root, V1, mode="read") as reader, reader.transaction():
        first = reader[ITEMS].get("i03")
        with open_files(root, V2, backup=False) as migrated:
            assert migrated[ITEMS].get("i03") == Item("i03", 1003)
        assert not (root / "gone").exists()
        assert first == reader[ITEMS].get("i03") == Item("i03", 3)
        assert reader[GONE].get("g07") == Item("g07", 7)
        assert len(reader[GONE]) == 30
        assert [i.n for i in reader[ITEMS].find(n=5)] == [5]
        assert [i.n for i in reader[ITEMS].all()] == list(range(30))
        assert [e.record.text for e in reader[NOTES].read()] == [f"note {i}" for i in range(30)]


def test_readers_in_threads_each_hold_their_own_registration(root: Path) -> None:
    """4 reader threads x 5 rounds: each registers and reads one record, then a writer thread commits
    3 rewrites of all 30 records (one counter) while they hold their snapshots, then 3 more while
    they finish one after the other; each reader's later reads must match its first one."""
    with open_files(root, child.SCHEMA) as writer:
        with writer.transaction():
            for i in range(30):
                writer[child.RECS].put(child.Rec(f"r{i:03}", 0, 30))
        failures: list[str] = []
        kept: list[bool] = []
        registered, written, done = threading.Barrier(5), threading.Barrier(5), threading.Barrier(5)
        counter = [0]

        def commit(times: int) -> None:
            for _ in range(times):
                counter[0] += 1
                with writer.transaction():
                    for i in range(30):
                        writer[child.RECS].put(child.Rec(f"r{i:03}", counter[0], 30))

        def write() -> None:
            for _ in range(5):
                registered.wait()
                commit(3)
                kept.append(versions_dir(root).is_dir())
                written.wait()
                commit(3)
                done.wait()  # (a reader that registers during a commit takes the eager snapshot)

        with open_files(root, child.SCHEMA, mode="read") as reader:

            def read(n: int) -> None:
                for _ in range(5):
                    with reader.transaction():
                        if not isinstance(reader._txn().colls, LazyColls):  # type: ignore[union-attr]
                            failures.append("not a lazy transaction")
                        first = reader[child.RECS].get("r017")
                        registered.wait()
                        written.wait()
                        time.sleep(0.002 * n)
                        rows = [(r.counter, r.size) for r in reader[child.RECS].all()]
                        again = reader[child.RECS].get("r003")
                    done.wait()
                    error = snapshot_error(first, rows, again)
                    if error:
                        failures.append(error)

            run_threads(write, *(functools.partial(read, n) for n in range(4)))
        assert failures == []
        assert kept == [True] * 5
        writer[child.RECS].put(child.Rec("r000", -1, 30))  # no reader now: the versions go
        assert not versions_dir(root).exists()


# ---------------------------------------------------------------- kills


LIVES = 6


@pytest.mark.slow
def test_killed_writers_never_change_what_a_lazy_reader_sees(root: Path) -> None:
    """6 writer processes (40-120 records per transaction, one counter) SIGKILLed after 0.2-1 s each
    (the first after its first commit and then 0.2-1 s), while read transactions begun before, during
    and after each life touch the records late."""
    rng = random.Random(14)
    root.parent.mkdir(exist_ok=True)
    with open_files(root, child.SCHEMA) as seed, seed.transaction():
        for i in range(child.MAX):
            seed[child.RECS].put(child.Rec(f"r{i:03}", 0, child.MAX))
    bad: list[str] = []
    with open_files(root, child.SCHEMA, mode="read") as reader:
        recs = reader[child.RECS]
        outer = reader.transaction()
        outer.__enter__()  # begun before every life: must see the seed to the end
        assert isinstance(reader._txn().colls, LazyColls)  # type: ignore[union-attr]
        try:
            for life in range(LIVES):
                proc = subprocess.Popen(
                    [sys.executable, str(CHILD), "writer", str(root), str(life)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                if life == 0:  # (the first life is killed after its first commit, however slow the machine)
                    assert proc.stdout is not None
                    assert proc.stdout.readline() == b"ready\n"
                deadline = time.monotonic() + rng.uniform(0.2, 1.0)
                while time.monotonic() < deadline:
                    inner = threading.Thread(target=lambda: _check_inner(reader, bad))
                    inner.start()
                    inner.join()
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
                rows = [(r.counter, r.size) for r in recs.all()] if life == LIVES - 1 else None
                first = recs.get(f"r{rng.randrange(child.MAX):03}")
                if first is None or (first.counter, first.size) != (0, child.MAX):
                    bad.append(f"outer get after life {life}: {first}")
                if rows is not None and rows != [(0, child.MAX)] * child.MAX:
                    bad.append(f"outer all: {sorted(set(rows))[:4]} of {len(rows)}")
        finally:
            outer.__exit__(None, None, None)
    assert bad == []
    assert versions_dir(root).exists()  # the killed writers preserved for the outer reader
    with open_files(root, child.SCHEMA) as after:  # no reader now: the next writer clears them
        after[child.RECS].put(child.Rec("r000", 1, child.MAX))
        assert not versions_dir(root).exists()


def _check_inner(reader: FileStore, bad: list[str]) -> None:
    recs = reader[child.RECS]
    with reader.transaction():
        first = recs.get("r000")
        time.sleep(0.01)
        rows = [(r.counter, r.size) for r in recs.all()]
        count = len(recs)
    if first is None or child.torn(rows) or rows[0] != (first.counter, first.size) or count != len(rows):
        bad.append(f"inner: {first} {sorted(set(rows))[:4]} of {len(rows)}")


def test_backups_and_dumps_leave_versions_and_the_readers_lock_out(root: Path, tmp_path: Path) -> None:
    fill(root, 5)
    with open_files(root) as writer, open_files(root, mode="read") as reader, reader.transaction():
        reader[TASKS].get("t0001")
        writer[TASKS].put(Task("t0001", points=7))
        assert versions_dir(root).is_dir()
        out = io.StringIO()
        ss.dump_store(writer, out)
        assert "versions" not in out.getvalue()
        backup = writer._backup("test")
        assert backup is not None
        assert not (backup / ".statestore" / "versions").exists()
        assert not (backup / ".statestore" / "readers.lock").exists()
        copy = tmp_path / "copy"
        ss.copy_store(writer, f"files:{copy}")
        assert not (copy / ".statestore" / "versions").exists()
    assert not versions_dir(root).exists()  # the writer closed after the reader ended: it deleted them
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) > 5


def test_versions_are_copied_where_hard_links_fail(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(root, 5)

    def no_link(*_a: Any, **_kw: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    with open_files(root) as writer, open_files(root, mode="read") as reader, reader.transaction():
        before = reader[TASKS].get("t0001")
        monkeypatch.setattr(os, "link", no_link)
        writer[TASKS].put(Task("t0001", points=7))
        writer[TASKS].delete("t0002")
        kept = [p for p in versions_dir(root).rglob("*") if p.is_file() and p.name != "manifest.json"]
        assert kept
        assert all(p.stat().st_nlink == 1 for p in kept)  # copies, not links
        assert reader[TASKS].get("t0001") == before
        assert reader[TASKS].get("t0002") == Task("t0002", status="done", points=2, title="n2")


def test_a_commit_whose_versions_cannot_be_kept_does_not_happen(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from statestore.backends.files.fileio import Dir

    fill(root, 5)
    with open_files(root) as writer, open_files(root, mode="read") as reader, reader.transaction():
        before = reader[TASKS].get("t0001")

        def no_link(*_a: Any, **_kw: Any) -> None:
            raise OSError(28, "No space left on device")

        real_subdir = Dir.subdir

        def full_disk(self: Dir, name: str, *, create: bool) -> Dir | None:
            if create and name.split(".")[0].isdigit():
                raise ss.BackendError(str(self.path / name), "No space left on device")
            return real_subdir(self, name, create=create)

        monkeypatch.setattr(os, "link", no_link)
        monkeypatch.setattr(Dir, "subdir", full_disk)
        with pytest.raises(ss.StateStoreError):
            writer[TASKS].put(Task("t0001", points=7))
        with pytest.raises(ss.StateStoreError), writer.transaction():
            writer[TASKS].put(Task("t0001", points=8))
            writer[TASKS].delete("t0003")
        monkeypatch.undo()
        assert reader[TASKS].get("t0001") == before
        with open_files(root, mode="read") as fresh:
            assert fresh[TASKS].get("t0001") == before
            assert fresh[TASKS].get("t0003") is not None
        writer[TASKS].put(Task("t0001", points=9))  # and the writer goes on
        assert reader[TASKS].get("t0001") == before


def test_len_inside_a_lazy_transaction_is_the_count_at_its_start(root: Path) -> None:
    """20 rounds: random inserts, rewrites and deletes (lone, small and large transactions) after a
    read transaction began; its first len() and an indexed find (from the index files and the kept
    versions) must be the count and records at its start, and so must they after a full load."""
    rng = random.Random(2)
    fill(root, 30)
    with open_files(root) as writer, open_files(root, mode="read") as counter:
        tasks = writer[TASKS]

        def some_writes() -> None:
            for _ in range(rng.randint(1, 4)):
                size = rng.choice([1, 3, 60])
                with writer.transaction():
                    for _ in range(size):
                        key = f"t{rng.randrange(80):04}"
                        if rng.random() < 0.4:
                            tasks.delete(key)
                        else:
                            tasks.put(Task(key, title="x" * (400 if size > 10 else 1), points=rng.randrange(9)))

        for _ in range(20):
            some_writes()
            expected = len(counter[TASKS])
            points = rng.randrange(9)
            found = counter[TASKS].find(points=points)
            with open_files(root, mode="read") as reader, reader.transaction():  # (nothing cached yet)
                some_writes()
                got = len(reader[TASKS])
                some_writes()
                got_found = reader[TASKS].find(points=points)  # (from the index files too)
                loaded = TASKS.name in reader._txn().colls  # type: ignore[union-attr]
                some_writes()
                assert (got, len(reader[TASKS].all()), len(reader[TASKS])) == (expected,) * 3
                assert got_found == found == reader[TASKS].find(points=points)
            assert not loaded


def test_log_len_inside_a_lazy_transaction_reads_from_the_summary(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """400 entries (a summary every 16 KiB): len() and last_seq() read the lines after the summary only,
    up to the end the transaction recorded at its start; once a writer rewrote the summary past that
    end, the log is indexed instead (still the count at the start)."""
    fill(root, 400)
    assert (root / ".statestore" / "index" / "events.count").exists()
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        counted = Counted(monkeypatch)
        with reader.transaction():
            for i in range(20):
                writer[EVENTS].append(Event("after", n=i))
            counted.lines = 0  # (the writer's own reading)
            assert (len(reader[EVENTS]), reader[EVENTS].last_seq()) == (400, 400)
            assert counted.lines < 200
            assert [e.seq for e in reader[EVENTS].read()][-2:] == [399, 400]
        with open_files(root, mode="read") as fresh, fresh.transaction():  # (no index of the log here yet)
            for i in range(300):  # past the next summary rewrite
                writer[EVENTS].append(Event("after", n=i))
            assert (len(fresh[EVENTS]), fresh[EVENTS].last_seq()) == (420, 420)
        assert (len(reader[EVENTS]), reader[EVENTS].last_seq()) == (720, 720)


def test_info_does_not_count_kept_versions(root: Path) -> None:
    from statestore.cli.reading import _size

    fill(root, 5)
    size = _size(root)
    versions_dir(root).mkdir()
    (versions_dir(root) / "7.abc").mkdir()
    (versions_dir(root) / "7.abc" / "0").write_bytes(b"x" * 10_000)
    assert _size(root) == size
