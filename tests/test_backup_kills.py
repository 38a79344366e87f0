"""A migration's backup is complete or absent, whatever moment its process is killed (both backends).

A child process migrates a store down and up forever, each migration taking
a backup first; the test kills it with SIGKILL at random moments. After each
kill, every backup present must open in read mode and hold the whole store
(SQLite: with no journal beside it). Bounded: 12 kills per backend, every third
after a migration has finished (so some backup is checked however slow the
machine is).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import statestore as ss

sys.path.insert(0, str(Path(__file__).parent))
import _stress_child as child

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

CHILD = Path(__file__).parent / "_stress_child.py"
KILLS = 12


def _location(backend: str, folder: Path) -> str:
    return f"sqlite:{folder / 'state.db'}" if backend == "sqlite" else f"files:{folder / 'state'}"


def _check_backup(backend: str, path: Path) -> None:
    """The backup opens read-only (without the application's code) and holds every record and entry."""
    if backend == "sqlite":
        beside = [p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-")]
        assert beside == [], f"{path.name} has {beside} beside it"
    out = io.StringIO()
    ss.dump_store(f"{backend}:{path}", out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    items = [d for d in lines if d.get("collection") == "items"]
    assert len(items) == child.ITEM_COUNT, f"{path.name}: {len(items)} of {child.ITEM_COUNT} records"
    assert [d["record"]["text"] for d in lines if d.get("log") == "notes"] == ["seeded"]
    with ss.open_store(f"{backend}:{path}", mode="read") as store:  # a read-mode open of its own
        assert store.schemas[0].version in (1, 2)


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_a_kill_during_a_backup_leaves_a_complete_backup_or_none(tmp_path: Path, backend: str) -> None:
    location = _location(backend, tmp_path)
    child.seed_backups(location)
    rng = random.Random(7)
    checked = partial = 0
    for round_ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), "backups", location], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
        if round_ % 3 == 0:  # (these kills come after a migration finished: a backup to check, however slow)
            assert proc.stdout.readline() == b"migrated\n", proc.stderr.read() if proc.stderr else b""
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        partial += any(p.name.startswith(".state") and ".partial-backup-" in p.name for p in tmp_path.iterdir())
        for path in sorted(tmp_path.iterdir()):
            if ".backup-" in path.name and not path.name.startswith("."):
                _check_backup(backend, path)
                checked += 1
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    print(f"{backend}: {KILLS} kills ({partial} during a backup), {checked} complete backups checked")
    assert checked > 0
    with ss.open_store(location, child.V2) as store:  # the store itself is whole
        assert len(store[child.ITEMS]) == child.ITEM_COUNT
