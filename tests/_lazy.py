"""Helpers shared by the tests of the file backend's lazy read transactions (test_files_lazy_*.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
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


def snapshot_error(first: Any, rows: list[tuple[int, int]], again: Any) -> str | None:
    """What is wrong with one read transaction's reads of _stress_child's one-counter records, if anything.

    ``first`` and ``again``: two records read by key; ``rows``: (counter, size) of every record.
    """
    import _stress_child as child

    if first is None or again is None:
        return "a record vanished"
    if child.torn(rows) or rows[0] != (first.counter, first.size) or again.counter != first.counter:
        return f"{first.counter} {again.counter} {sorted(set(rows))[:4]}"
    return None


def run_threads(*targets: Callable[[], None]) -> None:
    """Start a thread per target and wait for all of them."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
