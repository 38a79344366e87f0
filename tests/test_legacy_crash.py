"""SIGKILL during a legacy import never leaves a store behind that lacks data."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import statestore as ss
from statestore.examples.tracker import APPROVALS, EPICS, EVENTS, LAYOUT, SCHEMA, STATES, TASKS
from statestore.legacy import store_exists

CHILD = Path(__file__).with_name("_import_crash_child.py")
TRACKER = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "tracker"
KILLS = 12  # per backend


def _complete(location: str) -> None:
    with ss.open_store(location, SCHEMA, mode="read") as store:
        counts = [len(store[c]) for c in (EPICS, TASKS, STATES, APPROVALS)]
        assert counts == [20, 300, 200, 150]
        assert store[EVENTS].last_seq() == 1500
        assert len(store.imports()) == 503


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_sigkill_during_import_leaves_no_store_or_a_complete_one(backend: str, tmp_path: Path) -> None:
    root = shutil.copytree(TRACKER, tmp_path / "old")
    before = sorted((p.relative_to(root), p.read_bytes()) for p in root.rglob("*") if p.is_file())
    rng = random.Random(7)
    # How long one import takes here, so the kills land all over it.
    started = time.monotonic()
    subprocess.run([sys.executable, str(CHILD), f"{backend}:{tmp_path}/probe/s.db", str(root)], check=True)
    span = time.monotonic() - started
    outcomes = {"none": 0, "complete": 0}
    for i in range(KILLS):
        location = f"{backend}:{tmp_path}/run{i}/state.db" if backend == "sqlite" else f"files:{tmp_path}/run{i}/state"
        child = subprocess.Popen([sys.executable, str(CHILD), location, str(root)], stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * span)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if store_exists(location):
            _complete(location)
            outcomes["complete"] += 1
        else:
            outcomes["none"] += 1
        # The next start imports (again, or for the first time) and ends complete.
        ss.import_legacy(location, SCHEMA, ss.Legacy(root, LAYOUT))
        _complete(location)
        leftovers = [p.name for p in Path(location.split(":", 1)[1]).parent.iterdir() if ".import-" in p.name]
        assert leftovers == []
    assert sorted((p.relative_to(root), p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before
    assert outcomes["none"] > 0, outcomes  # some kills landed mid-import
