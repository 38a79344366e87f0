"""The shape of the per-operation work on every backend (issue 14); timings live in tools/bench.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import statestore as ss
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task


@pytest.fixture(params=["sqlite", "files", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {"sqlite": f"sqlite:{tmp_path}/s.db", "files": f"files:{tmp_path}/s", "memory": "memory:"}[request.param]


def test_no_getpid_per_operation(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork() is noticed through os.register_at_fork, not a getpid() system call on every operation."""
    with ss.open_store(location, SCHEMA) as store:
        tasks, events = store[TASKS], store[EVENTS]
        tasks.put(Task("t0"))
        calls = 0
        getpid = os.getpid

        def counting() -> int:
            nonlocal calls
            calls += 1
            return getpid()

        monkeypatch.setattr(os, "getpid", counting)
        for i in range(20):
            tasks.put(Task(f"t{i}"))
            assert tasks.get(f"t{i}") is not None
            tasks.find(status="todo")
            events.append(Event("e"), stream="s")
        assert calls == 0
