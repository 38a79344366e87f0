"""The file backend survives SIGKILL at any moment: nothing acknowledged is lost, nothing is half-done.

A child process (``_files_crash_child.py``) writes in a loop -- single puts,
and transactions that move one unit between two records and append one log
entry -- acknowledging every write that returned. The test kills it with
SIGKILL at random moments, over and over on the same store, and after each
kill checks the store: every acknowledged write is there, the two records
still add up, the log holds exactly one entry per committed move, and no
file is torn.
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
from _files_crash_child import ITEMS, MOVES, SCHEMA, TOTAL

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

CHILD = Path(__file__).parent / "_files_crash_child.py"
KILLS = 60


def run_and_kill(root: Path, rng: random.Random, after_a_move: bool) -> tuple[set[int], set[int]]:
    """Start a writer, kill it at a random moment (after its first move, if asked).

    Returns the acknowledged puts and moves.
    """
    proc = subprocess.Popen([sys.executable, str(CHILD), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
    seen: list[bytes] = []  # lines read before the kill: acknowledged too
    while after_a_move and not (seen and seen[-1].startswith(b"t ")):
        line = proc.stdout.readline()
        assert line.endswith(b"\n"), proc.stderr.read() if proc.stderr else line
        seen.append(line)
    time.sleep(rng.uniform(0.0, 0.12))
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    puts, moves = set(), set()
    for line in b"".join([*seen, out]).decode().split("\n")[:-1]:  # a torn last line was never acknowledged
        kind, _, number = line.partition(" ")
        (puts if kind == "p" else moves).add(int(number))
    return puts, moves


def check(root: Path, acked_puts: set[int], acked_moves: set[int]) -> None:
    with ss.open_store(f"files:{root}", SCHEMA, mode="read") as reader:
        # A read-only reader sees whole transactions even before any writer rolls the journal forward.
        a, b = reader[ITEMS]["a"].n, reader[ITEMS]["b"].n
        assert a + b == TOTAL
        assert len(reader[MOVES].read()) == b
    with ss.open_store(f"files:{root}", SCHEMA) as store:
        items, moves = store[ITEMS], store[MOVES]
        with store.transaction():  # a write transaction rolls a committed journal forward
            pass
        assert not (root / ".statestore" / "journal.json").exists()
        head = Head.decode((root / ".statestore" / "changes").read_bytes())
        assert head is not None
        assert head.journal is None
        a, b = items["a"].n, items["b"].n
        assert a + b == TOTAL, "a transaction was half applied"
        entries = moves.read()
        assert len(entries) == b, "log and records disagree: a transaction was half applied"
        assert [e.seq for e in entries] == list(range(1, b + 1))
        assert [e.version for e in entries] == list(range(1, b + 1))
        logged = {e.record.i for e in entries}
        assert acked_moves <= logged, f"acknowledged moves lost: {sorted(acked_moves - logged)[:5]}"
        keys: list[str] = items.keys()  # type: ignore[assignment]  # str keys by declaration
        present = {int(k[1:]) for k in keys if k.startswith("p")}
        assert acked_puts <= present, f"acknowledged puts lost: {sorted(acked_puts - present)[:5]}"
    # No torn file: every record parses and the log ends with a complete line.
    for path in (root / "items").iterdir():
        if not path.name.startswith("."):
            json.loads(path.read_text(encoding="utf-8"))
    log = root / "moves.jsonl"
    if log.exists() and log.stat().st_size:
        data = log.read_bytes()
        assert data.endswith(b"\n"), "the log ends in a torn line after recovery"
        assert all(json.loads(line) for line in data.split(b"\n")[:-1])


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", "statestore"))
    root = tmp_path / "state"
    all_puts: set[int] = set()
    all_moves: set[int] = set()
    deadline = time.monotonic() + 150  # (a cap for a very slow machine, not a measure: 60 kills take ~30 s)
    kills = 0
    while kills < KILLS and time.monotonic() < deadline:
        puts, moves = run_and_kill(root, rng, after_a_move=kills % 2 == 0)
        all_puts |= puts
        all_moves |= moves
        kills += 1
        check(root, all_puts, all_moves)
    assert kills >= 20, f"only {kills} kills fit in the time budget"
    # Every other kill came after an acknowledged move, each with a number of its own.
    assert len(all_moves) >= (kills + 1) // 2, "the child hardly ever committed a transaction"
