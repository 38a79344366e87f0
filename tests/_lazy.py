"""Helpers shared by the tests of the file backend's lazy read transactions (test_files_lazy_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import statestore as ss
from statestore.backends.files import FileStore
from statestore.testing.models import EVENTS, SCHEMA, TASKS, TICKETS, Event, Task, Ticket


def open_files(root: Path, schema: Any = SCHEMA, **kw: Any) -> FileStore:
    store = ss.open_store(f"files:{root}", schema, **kw)
    assert isinstance(store, FileStore)
    return store


def versions_dir(root: Path) -> Path:
    return root / ".statestore" / "versions"


def fill(root: Path, n: int) -> None:
    with open_files(root) as store, store.transaction():
        for i in range(n):
            store[TASKS].put(Task(f"t{i:04}", status="todo" if i % 2 else "done", points=i, title=f"n{i % 3}"))
            store[TICKETS].put(Ticket(i, f"ticket {i}"))
            store[EVENTS].append(Event("made", n=i))
