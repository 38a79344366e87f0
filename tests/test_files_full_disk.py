"""A full disk at every step of a write, on the file backend.

Each operation below is first run with every system call that can need
space counted; then, for each such call in turn, on a copy of the store as
it was, that call fails with ENOSPC ("No space left on device"). Whatever
step it hits:

* the error the caller gets is a StateStoreError naming a path (never a raw
  ``OSError`` or a traceback from inside the backend), and it means nothing
  was written: a step that fails after the commit point (settling the
  change head) is left to the next writer, as after a kill, and the
  operation succeeds (told it failed, a caller would append twice);
* so the store holds everything the operation wrote, or, if it raised, none
  of it, as the same store object sees it, as a new one sees it, and once
  space is back;
* with ``durability="full"``, a flush (``fsync``) that fails after the
  commit point of a lone write (a rename, an unlink or a log line) is a
  NotDurableError, which says the write is committed; the store then holds
  all of it;
* the store object that failed goes on working: its next write succeeds
  (no lock left held, no transaction left open), and ``statestore check``
  finds nothing wrong.

The failures are injected by replacing the ``os`` functions the backend
calls (``write``, ``pwrite``, ``ftruncate``, ``fsync``, ``open``, ``mkdir``,
``link``, ``rename``, ``replace``); the sweep covers each call site a write
goes through, in order.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import statestore as ss
from statestore.backends.files.cache import EMBED_LIMIT
from statestore.cli.check import check_store
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task

_SPACE_CALLS = ("write", "pwrite", "ftruncate", "fsync", "open", "mkdir", "link", "rename", "replace")


class _Full:
    """Counts the calls that may need space; makes the ``fail_at``-th one fail with ENOSPC."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at = fail_at
        self.calls = 0
        self.failed: str | None = None

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "open" and len(args) > 1 and not args[1] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                return real(*args, **kwargs)  # opening to read needs no space
            self.calls += 1
            if self.calls == self.fail_at:
                self.failed = name
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return call


@contextmanager
def _disk(monkeypatch: pytest.MonkeyPatch, fail_at: int | None) -> Iterator[_Full]:
    full = _Full(fail_at)
    with monkeypatch.context() as m:
        for name in _SPACE_CALLS:
            m.setattr(os, name, full.wrap(name, getattr(os, name)))
        yield full


def _state(store: ss.Store) -> tuple[list[Any], list[Any]]:
    return store[TASKS].all(), [(e.seq, e.stream, e.version, e.record) for e in store[EVENTS].read()]


def _seed(root: Path) -> None:
    with ss.open_store(f"files:{root}", SCHEMA) as store:
        for i in range(3):
            store[TASKS].put(Task(f"t{i}", title="before"))
        store[EVENTS].append(Event("seeded"), stream="s")


def _put_one(store: ss.Store) -> None:
    store[TASKS].put(Task("t1", title="after"))


def _insert_one(store: ss.Store) -> None:
    store[TASKS].insert(Task("new", title="after"))


def _update_one(store: ss.Store) -> None:
    store[TASKS].update("t2", lambda t: setattr(t, "title", "after"))


def _delete_one(store: ss.Store) -> None:
    store[TASKS].delete("t1")


def _append_one(store: ss.Store) -> None:
    store[EVENTS].append(Event("after"), stream="s")


def _small_transaction(store: ss.Store) -> None:
    with store.transaction():
        store[TASKS].put(Task("t0", title="after"))
        store[TASKS].delete("t2")
        store[EVENTS].append(Event("after"), stream="s")


def _large_transaction(store: ss.Store) -> None:
    # A journal past the size the change head carries inline: journal.json, renamed into place.
    with store.transaction():
        for i in range(3):
            store[TASKS].put(Task(f"big{i}", title="after " + "x" * (EMBED_LIMIT // 2)))
        store[EVENTS].append(Event("after"), stream="s")


OPERATIONS = {
    "put": _put_one,
    "insert": _insert_one,
    "update": _update_one,
    "delete": _delete_one,
    "append": _append_one,
    "small transaction": _small_transaction,
    "large transaction": _large_transaction,
}


def _expected(root: Path, tmp_path: Path, op: Callable[[ss.Store], None], durability: str) -> tuple[Any, Any, int]:
    """The state before and after ``op`` (on copies), and how many calls needing space ``op`` made."""
    before_dir, after_dir = tmp_path / "before", tmp_path / "after"
    shutil.copytree(root, before_dir)
    shutil.copytree(root, after_dir)
    with ss.open_store(f"files:{before_dir}", SCHEMA, mode="read") as store:
        before = _state(store)
    monkeypatch = pytest.MonkeyPatch()
    try:
        with ss.open_store(f"files:{after_dir}", SCHEMA, durability=durability) as store:  # type: ignore[arg-type]
            _state(store)  # caches warm, as in the runs below
            with _disk(monkeypatch, None) as full:
                op(store)
            after = _state(store)
    finally:
        monkeypatch.undo()
    return before, after, full.calls


@pytest.mark.parametrize("durability", ["normal", "full"])
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_a_full_disk_at_any_step_leaves_all_or_nothing(
    name: str, durability: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = OPERATIONS[name]
    seed = tmp_path / "seed"
    _seed(seed)
    before, after, calls = _expected(seed, tmp_path, op, durability)
    assert before != after
    assert calls > 0
    failed = not_durable = 0
    for k in range(1, calls + 1):
        root = tmp_path / f"run{k}"
        shutil.copytree(seed, root)
        with ss.open_store(f"files:{root}", SCHEMA, durability=durability) as store:  # type: ignore[arg-type]
            _state(store)
            raised: BaseException | None = None
            with _disk(monkeypatch, k) as full:
                try:
                    op(store)
                except BaseException as exc:
                    raised = exc
            assert full.failed is not None, f"call {k} of {calls} was not made the second time"
            where = f"{name}, durability {durability}: ENOSPC at call {k} of {calls} ({full.failed})"
            if raised is not None:
                assert isinstance(raised, ss.StateStoreError), f"{where}: raised {raised!r}"
                assert str(root) in str(raised), f"{where}: the error names no path in the store: {raised}"
            seen = _state(store)
            if raised is None:
                assert seen == after, f"{where}: succeeded, but the object does not see all of it"
            elif isinstance(raised, ss.NotDurableError):
                # (durability="full": a flush after the commit point failed, and the error says so)
                assert durability == "full", f"{where}: {raised!r}"
                assert seen == after, f"{where}: NotDurableError, but the object does not see the write"
                not_durable += 1
            else:
                assert seen == before, f"{where}: reported a failure, but the object sees a write"
            with ss.open_store(f"files:{root}", SCHEMA, mode="read") as other:
                assert _state(other) == seen, f"{where}: another store object sees something else"
            failed += raised is not None
            # Space is back: the same object writes again.
            store[TASKS].put(Task("later", title="space is back"))
            assert store[TASKS]["later"].title == "space is back"
        later = Task("later", title="space is back")
        with ss.open_store(f"files:{root}", SCHEMA) as store:
            assert _state(store) == (sorted([*seen[0], later], key=lambda t: t.id), seen[1]), f"{where}: reopened"
        with ss.open_store(f"files:{root}", SCHEMA, mode="read") as store:
            report = check_store(store)
        assert report.problems + report.warnings == (), where
    assert failed > not_durable  # (some steps come before the commit point)
    if durability == "full" and name in ("put", "insert", "update", "delete", "append"):
        assert not_durable > 0  # (a lone write's commit is a rename, an unlink or a line: its flush comes after)
