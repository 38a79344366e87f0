"""Single writes outside a transaction (``_write_alone``, ``_append_alone``) survive SIGKILL at any moment.

A child process (``_files_alone_child.py``) inserts new records, replaces
existing ones with ``put`` and appends with ``expect_version``, each on its
own (the file backend's one-step paths, not a transaction), acknowledging
every write that returned. The test kills it at random moments, over and over
on the same store, and after each kill checks: every acknowledged write is
there (a replaced record at its acknowledged revision or later, with the
content of that revision), no record file is torn, the log's seqs and each
stream's versions run without gaps, a fresh process's indexed ``find``
(answered from the index files) equals a filter over every record, and the
next writer leaves a settled change head and a log ending in a whole line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import statestore as ss
from statestore.backends.files.journal import Head

sys.path.insert(0, str(Path(__file__).parent))
from _files_alone_child import KINDS, NOTES, RECS, SCHEMA, STREAMS, Note

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

CHILD = Path(__file__).parent / "_files_alone_child.py"
KILLS = 12


class Acked:
    """What the children acknowledged, over every run."""

    def __init__(self) -> None:
        self.inserted: set[int] = set()
        self.puts: dict[int, int] = {}  # record r<j> -> the highest revision acknowledged
        self.appends: dict[int, tuple[str, int, int]] = {}  # seq -> (stream, version, i)


def run_and_kill(root: Path, rng: random.Random, run: int, acked: Acked) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(root), str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
    time.sleep(rng.uniform(0.05, 0.2))  # (at least 0.05 s: every run acknowledges some writes, even on a slow disk)
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    for line in out.decode().split("\n")[:-1]:  # a torn last line was never acknowledged
        kind, *fields = line.split(" ")
        if kind == "i":
            acked.inserted.add(int(fields[0]))
        elif kind == "p":
            j, revision = int(fields[0]), int(fields[1])
            acked.puts[j] = max(acked.puts.get(j, 0), revision)
        else:
            acked.appends[int(fields[0])] = (fields[1], int(fields[2]), int(fields[3]))


def check(root: Path, acked: Acked) -> None:
    location = f"files:{root}"
    # A fresh process answers indexed finds from the index files, before any writer has recovered anything.
    with ss.open_store(location, SCHEMA, mode="read") as reader:
        found = {k: sorted(r.id for r in reader[RECS].find(kind=k)) for k in KINDS}
    with ss.open_store(location, SCHEMA, mode="read") as reader:
        every = reader[RECS].all()
        replaced = {j: reader[RECS].get_versioned(f"r{j}") for j in range(10)}
        entries = reader[NOTES].read()
        counted = len(reader[NOTES])
    assert found == {k: sorted(r.id for r in every if r.kind == k) for k in KINDS}, "a stale index was served"
    ids = {r.id for r in every}
    lost = {i for i in acked.inserted if f"n{i}" not in ids}
    assert not lost, f"acknowledged inserts lost: {sorted(lost)[:5]}"
    for j, got in replaced.items():
        if got is not None:
            assert got.record.n == got.revision, f"r{j}: content of revision {got.record.n} at revision {got.revision}"
        if j in acked.puts:
            assert got is not None, f"r{j}: acknowledged put lost"
            assert got.revision >= acked.puts[j], f"r{j}: acknowledged put lost"
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert counted == len(entries)
    for stream in STREAMS:
        versions = [e.version for e in entries if e.stream == stream]
        assert versions == list(range(1, len(versions) + 1)), f"stream {stream}: versions {versions[-5:]}"
    by_seq = {e.seq: e for e in entries}
    for seq, (stream, version, i) in acked.appends.items():
        assert seq in by_seq, f"acknowledged append {seq} lost"
        e = by_seq[seq]
        assert (e.stream, e.version, e.record.i) == (stream, version, i)
    for path in (root / "recs").iterdir():
        if not path.name.startswith("."):
            json.loads(path.read_text(encoding="utf-8"))  # no torn record file
    # The next writer settles what the killed one left and appends after a whole line.
    with ss.open_store(location, SCHEMA) as store:
        with store.transaction():
            pass
        head = Head.decode((root / ".statestore" / "changes").read_bytes())
        assert head is not None
        assert head.journal is None
        assert not head.journal_file
        store[NOTES].append(Note(-1, "check"), stream="check")
    data = (root / "notes.jsonl").read_bytes()
    assert data.endswith(b"\n")
    assert all(json.loads(line) for line in data.split(b"\n")[:-1])


def test_single_writes_outside_a_transaction_survive_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "state"
    ss.open_store(f"files:{root}", SCHEMA).close()
    rng = random.Random(os.environ.get("CRASH_SEED", "alone"))
    acked = Acked()
    for run in range(KILLS):
        run_and_kill(root, rng, run, acked)
        check(root, acked)
    assert len(acked.inserted) > KILLS
    assert len(acked.appends) > KILLS
    assert len(acked.puts) == 10
