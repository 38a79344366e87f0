"""The file backend under stress, damage and limits (issue 11, "File backend").

Readers racing a writer whose journals are over the inline limit, log
entries far larger than a read buffer, damaged log lines, a torn change
head, deleted data left in internal files, and a descriptor limit of 64.
Bounded: each test takes seconds (the counts are in the test names' comments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import statestore as ss
from statestore.backends.files import FileStore
from statestore.backends.files.fileio import Dir, descriptor_budget
from statestore.backends.files.journal import Head
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task

sys.path.insert(0, str(Path(__file__).parent))
import _stress_child as child

CHILD = Path(__file__).parent / "_stress_child.py"


def open_files(root: Path, **kw: Any) -> FileStore:
    store = ss.open_store(f"files:{root}", SCHEMA, **kw)
    assert isinstance(store, FileStore)
    return store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ---------------------------------------------------------------- 1. no torn views

READERS = 2
CHECKS_PER_READER = 10_000  # 20,000 reader checks in all
READ_SECONDS = 240.0  # a cap for a loaded machine, not a target: on a quiet one the checks take ~10-20 s


@pytest.mark.slow
def test_readers_never_see_half_a_large_transaction(tmp_path: Path) -> None:
    """2 reader processes x 10,000 checks (all(), read transactions, dump_store, copy_store) against a
    writer rewriting 40-120 records per transaction, all with the same counter: 0 torn views."""
    root = tmp_path / "state"
    writer = subprocess.Popen(
        [sys.executable, str(CHILD), "writer", str(root), "11"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        first = writer.stdout.readline()
        assert first == b"ready\n", writer.stderr.read() if writer.stderr else first
        readers = []
        for i in range(READERS):
            scratch = tmp_path / f"scratch{i}"
            scratch.mkdir()
            readers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(CHILD),
                        "reader",
                        str(root),
                        str(CHECKS_PER_READER),
                        str(READ_SECONDS),
                        str(scratch),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        results = []
        for proc in readers:
            out, err = proc.communicate(timeout=READ_SECONDS + 60)
            assert proc.returncode == 0, err.decode()
            results.append(json.loads(out))
        assert writer.poll() is None, writer.stderr.read() if writer.stderr else "writer died"
    finally:
        writer.kill()
        writer.communicate()
    total = {k: sum(r[k] for r in results) for k in ("checks", "all", "transactions", "dumps", "copies", "torn")}
    with ss.open_store(f"files:{root}", child.SCHEMA, mode="read") as store:
        commits = store[child.RECS]["r000"].counter
    print(f"torn-read stress: {total}, against {commits} writer commits")
    examples = [e for r in results for e in r["examples"]]
    assert total["torn"] == 0, f"{total['torn']} torn views in {total['checks']} checks: {examples}"
    assert total["checks"] >= READERS * CHECKS_PER_READER, total
    assert total["dumps"] > 0, total
    assert total["copies"] > 0, total
    with ss.open_store(f"files:{root}", child.SCHEMA, mode="read") as store:
        assert not child.torn([(r.counter, r.size) for r in store[child.RECS].all()])
    assert commits > 1


def test_a_reader_overlapping_a_large_commit_sees_it_whole(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: the reader looks for the journal just before the writer commits one over the inline
    limit, then reads the record files while the writer is half-way through applying it."""
    with open_files(root) as writer, writer.transaction():
        for i in range(6):
            writer[TASKS].put(Task(f"t{i}", title="old", points=0))
    writer = open_files(root)
    reader = open_files(root, mode="read")
    assert {t.points for t in reader[TASKS].all()} == {0}
    at_journal, go, half, finish = (threading.Event() for _ in range(4))
    renames = [0]
    fired = [False]
    original_write, original_rename, original_journal = Dir.write, Dir.rename, FileStore._journal

    def write(self: Dir, name: str, data: bytes, *, sync: bool) -> None:
        if name == "journal.json" and threading.current_thread() is not threading.main_thread():
            at_journal.set()
            assert go.wait(10)
        original_write(self, name, data, sync=sync)

    def rename(self: Dir, tmp: str, name: str) -> None:
        original_rename(self, tmp, name)
        if self.path.name == "tasks" and threading.current_thread() is not threading.main_thread():
            renames[0] += 1
            if renames[0] == 3:
                half.set()
                assert finish.wait(10)

    def journal(self: FileStore, head: Head) -> Any:
        got = original_journal(self, head)
        if self is reader and not fired[0]:
            fired[0] = True
            go.set()  # the writer commits and starts applying...
            assert half.wait(10)  # ...and is half-way when this reader goes on to read the files
        return got

    monkeypatch.setattr(Dir, "write", write)
    monkeypatch.setattr(Dir, "rename", rename)
    monkeypatch.setattr(FileStore, "_journal", journal)

    def commit() -> None:
        with writer.transaction():
            for i in range(6):
                writer[TASKS].put(Task(f"t{i}", title="new" + "x" * 4000, points=1))

    thread = threading.Thread(target=commit)
    thread.start()
    try:
        assert at_journal.wait(10)
        seen = {t.points for t in reader[TASKS].all()}
    finally:
        go.set()
        half.set()
        finish.set()
        thread.join(10)
    monkeypatch.undo()
    assert len(seen) == 1, f"torn view: points {seen}"
    assert {t.points for t in reader[TASKS].all()} == {1}
    reader.close()
    writer.close()


# ---------------------------------------------------------------- 2. entries of any size


@pytest.mark.parametrize("mib", [9, 50])
def test_log_entries_larger_than_a_read_chunk(root: Path, mib: int) -> None:
    big = "y" * (mib << 20)
    with open_files(root) as store:
        events = store[EVENTS]
        events.append(Event("before"), stream="s")
        e = events.append(Event("big", actor=big), stream="s")
        assert (e.seq, e.version) == (2, 2)
        got = events.read(stream="s")
        assert [(x.seq, x.version) for x in got] == [(1, 1), (2, 2)]
        assert got[1].record.actor == big
        after = events.append(Event("after"), stream="s")
        assert (after.seq, after.version) == (3, 3)
    with open_files(root, mode="read") as reader:  # a fresh index, read from the file
        got = reader[EVENTS].read(stream="s")
        assert [(x.seq, x.version, x.record.type) for x in got] == [(1, 1, "before"), (2, 2, "big"), (3, 3, "after")]
        assert got[1].record.actor == big
        assert reader[EVENTS].last_seq() == 3
    with open_files(root) as store:  # a writer that reopens appends after it, no seq or version repeated
        last = store[EVENTS].append(Event("last"), stream="s", expect_version=3)
        assert (last.seq, last.version) == (4, 4)
        assert [x.seq for x in store[EVENTS].read(after=1)] == [2, 3, 4]
    seqs = [json.loads(line)["seq"] for line in (root / "events.jsonl").read_bytes().splitlines()]
    assert seqs == [1, 2, 3, 4]


# ---------------------------------------------------------------- 3. a damaged log


def _two_entries(root: Path) -> Path:
    with open_files(root) as store:
        store[EVENTS].append(Event("a"), stream="s")
        store[EVENTS].append(Event("b"), stream="s")
    return root / "events.jsonl"


@pytest.mark.parametrize("blank", ["\n", "\n\n", "  \n", "\r\n"])
def test_blank_lines_in_a_log_hold_nothing_and_are_skipped(root: Path, blank: str) -> None:
    path = _two_entries(root)
    text = path.read_text()
    first, second = text.splitlines(keepends=True)
    path.write_text(first + blank + second + blank)
    with open_files(root, mode="read") as reader:
        assert [(e.seq, e.record.type) for e in reader[EVENTS].read()] == [(1, "a"), (2, "b")]
    with open_files(root) as store:
        e = store[EVENTS].append(Event("c"), stream="s")
        assert (e.seq, e.version) == (3, 3)
        assert [x.record.type for x in store[EVENTS].read(after=1)] == ["b", "c"]
    with open_files(root, mode="read") as reader:
        assert [x.seq for x in reader[EVENTS].read()] == [1, 2, 3]


@pytest.mark.parametrize("garbage", ["garbage\n", "{}\n", '{"seq": 3}\n', "\0\0\0\n"])
def test_a_garbage_line_names_the_file_and_line_and_says_how_to_repair(root: Path, garbage: str) -> None:
    path = _two_entries(root)
    with open(path, "a") as f:
        f.write("\n" + garbage)  # a blank line, then the damage: line 4
    for mode in ("read", "write"):
        with open_files(root, mode=mode) as store:
            with pytest.raises(ss.CorruptStoreError) as info:
                store[EVENTS].read()
            assert info.value.location == str(path)
            assert info.value.line == 4
            message = str(info.value)
            assert f"{path}:4" in message
            assert "repair" in message
            assert "delete" in message
            if mode == "write":
                with pytest.raises(ss.CorruptStoreError) as again:
                    store[EVENTS].append(Event("c"))
                assert again.value.line == 4
                store[TASKS].put(Task("t1"))  # the rest of the store works
                assert store[TASKS]["t1"].id == "t1"
    assert path.read_text().endswith(garbage)  # never rewritten behind the user's back
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))  # the repair the message describes
    with open_files(root) as store:
        assert store[EVENTS].append(Event("c"), stream="s").seq == 3


# ---------------------------------------------------------------- 4. a torn change head


def _tear_head(root: Path) -> None:
    head = root / ".statestore" / "changes"
    raw = head.read_bytes()
    current = Head.decode(raw)
    assert current is not None
    size = len(current.encode())
    head.write_bytes(raw[: size // 2] + b"\0" * 17)  # a full disk or a power cut mid-rewrite
    assert Head.decode(head.read_bytes()) is None


def test_a_torn_head_does_not_slow_readers_and_the_next_writer_repairs_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_files(root) as store:
        for i in range(5):
            store[TASKS].put(Task(f"t{i}", title="x" * 100))
        store[EVENTS].append(Event("e"))
    _tear_head(root)
    reads = [0]
    original = FileStore._read_head

    def counted(self: FileStore) -> Head:
        reads[0] += 1
        return original(self)

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a reader slept {seconds} s")

    monkeypatch.setattr(FileStore, "_read_head", counted)
    with open_files(root, mode="read") as reader:
        monkeypatch.setattr(time, "sleep", no_sleep)
        reads[0] = 0
        ops = 0
        for _ in range(20):
            assert reader[TASKS]["t3"].title == "x" * 100
            assert len(reader[TASKS].all()) == 5
            assert [e.record.type for e in reader[EVENTS].read()] == ["e"]
            with reader.transaction():
                assert len(reader[TASKS]) == 5
            ops += 4
        monkeypatch.setattr(time, "sleep", _real_sleep)
        assert reads[0] <= 2 * ops, f"{reads[0]} head reads for {ops} reads"
        with open_files(root) as writer:
            writer[TASKS].put(Task("t9"))  # the next writer repairs the head
        assert Head.decode((root / ".statestore" / "changes").read_bytes()) is not None
        assert len(reader[TASKS].all()) == 6  # and readers follow it again
        assert reader[TASKS]["t9"].id == "t9"


_real_sleep = time.sleep


# ---------------------------------------------------------------- 5. deleted data leaves no trace


def _holding(folder: Path, token: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and token in p.read_bytes()]


@pytest.mark.parametrize("large", [False, True], ids=["inline-journal", "journal-file"])
def test_deleted_and_overwritten_records_leave_no_trace_in_the_store(root: Path, large: bool) -> None:
    gone, replaced = b"tok-deleted-5f3a9c", b"tok-overwritten-77e1b0"
    pad = "p" * 20_000 if large else ""
    with open_files(root) as store:
        with store.transaction():
            store[TASKS].put(Task("t1", title=gone.decode() + pad))
            store[TASKS].put(Task("t2", title=replaced.decode() + pad))
            for i in range(20):
                store[TASKS].put(Task(f"f{i}", title="filler" * 40))
        assert _holding(root, gone)  # written: it is in the record file
        with store.transaction():
            store[TASKS].delete("t1")
            store[TASKS].put(Task("t2", title="fresh"))
        assert _holding(root, gone) == []
        assert _holding(root, replaced) == []
        for i in range(5):
            store[TASKS].put(Task(f"n{i}"))
        assert _holding(root, gone) == []
        assert _holding(root, replaced) == []
    newer = ss.Schema(
        "contract",
        version=2,
        collections=[*SCHEMA.collections],
        logs=[*SCHEMA.logs],
        migrations=[*SCHEMA.migrations, ss.Migration(2, "nothing", up=lambda m: None, down=lambda m: None)],
    )
    with ss.open_store(f"files:{root}", newer):  # takes a backup first
        pass
    backups = [p for p in root.parent.iterdir() if ".backup-" in p.name]
    assert len(backups) == 1
    assert _holding(backups[0], gone) == []
    assert _holding(backups[0], replaced) == []


# ---------------------------------------------------------------- 6. a descriptor limit of 64


def test_eighty_collections_work_under_a_descriptor_limit_of_64(tmp_path: Path) -> None:
    """80 collections and 6 logs, read and written, in a process limited to 64 descriptors."""
    proc = subprocess.run(
        [sys.executable, str(CHILD), "fdlimit", str(tmp_path / "many")], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stdout == b"ok\n"


def test_a_store_object_keeps_a_bounded_number_of_descriptors(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
    if before is None:
        pytest.skip("needs /proc/self/fd to count descriptors")
    with ss.open_store(f"files:{tmp_path / 'many'}", child.FD_SCHEMA) as store:
        for coll in child.FD_COLLECTIONS:
            store[coll].put(child.Rec("k", 1, 1))
            assert store[coll]["k"].size == 1
        for log in child.FD_LOGS:
            store[log].append(child.Note("n"))
        held = len(os.listdir("/proc/self/fd")) - before
    # Folders and log files kept open are bounded (an eighth of the limit each); head, lock, root and .statestore.
    assert held <= 2 * descriptor_budget() + 4, held
    assert held < 80, f"{held} descriptors held by one store of 80 collections and 6 logs"
