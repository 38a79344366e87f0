"""The transaction contract: atomic across collections and logs, rollback, nesting."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import statestore as ss
from statestore.testing._common import StoreFixture
from statestore.testing._common import task as _task
from statestore.testing.models import (
    ACCOUNTS,
    EVENTS,
    TASKS,
    TICKETS,
    Account,
    Event,
    Task,
    Ticket,
)

__all__ = ["TransactionContract"]


class TransactionContract(StoreFixture):
    """store.transaction(): atomic across collections and logs, rollback, nesting."""

    def test_commit_across_collections_and_logs(self, store: ss.Store) -> None:
        with store.transaction():
            store[TASKS].put(_task("a"))
            store[TICKETS].put(Ticket(1))
            store[EVENTS].append(Event("x"), stream="s")
        assert store[TASKS].keys() == ["a"]
        assert store[TICKETS].keys() == [1]
        assert store[EVENTS].last_seq() == 1

    def test_exception_rolls_everything_back(self, store: ss.Store) -> None:
        store[TASKS].put(_task("keep", title="before"))
        with pytest.raises(RuntimeError, match="boom"), store.transaction():
            store[TASKS].put(_task("new"))
            store[TASKS].put(_task("keep", title="changed"))
            store[TASKS].delete("keep")
            store[EVENTS].append(Event("x"), stream="s")
            raise RuntimeError("boom")
        assert store[TASKS].keys() == ["keep"]
        assert store[TASKS].get_versioned("keep") == ss.Versioned(_task("keep", title="before"), 1)
        assert store[EVENTS].last_seq() == 0
        assert store[EVENTS].read() == []

    def test_reads_see_own_writes(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        with store.transaction():
            tasks.put(_task("a", status="todo"))
            assert tasks["a"].status == "todo"
            assert [t.id for t in tasks.find(status="todo")] == ["a"]
            assert len(tasks) == 1
            assert tasks.keys() == ["a"]
            tasks.delete("a")
            assert tasks.get("a") is None
            entry = store[EVENTS].append(Event("x"), stream="s")
            assert store[EVENTS].read(stream="s") == [entry]
            assert store[EVENTS].append(Event("y"), stream="s").version == 2

    def test_nested_failure_rolls_back_inner_only(self, store: ss.Store) -> None:
        with store.transaction():
            store[TASKS].put(_task("outer"))
            with pytest.raises(RuntimeError), store.transaction():
                store[TASKS].put(_task("inner"))
                store[EVENTS].append(Event("inner"), stream="s")
                raise RuntimeError
            store[EVENTS].append(Event("outer"), stream="s")
        assert store[TASKS].keys() == ["outer"]
        assert [(e.record.type, e.version) for e in store[EVENTS].read()] == [("outer", 1)]

    def test_nested_success_commits_with_outer(self, store: ss.Store) -> None:
        with store.transaction():
            with store.transaction():
                store[TASKS].put(_task("inner"))
            store[TASKS].put(_task("outer"))
        assert store[TASKS].keys() == ["inner", "outer"]

    def test_outer_failure_discards_committed_inner(self, store: ss.Store) -> None:
        with pytest.raises(RuntimeError), store.transaction():
            with store.transaction():
                store[TASKS].put(_task("inner"))
            raise RuntimeError
        assert len(store[TASKS]) == 0

    def test_failed_operation_inside_transaction_leaves_no_trace(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e"))
        with store.transaction():
            accounts.put(Account("b", "y@e"))
            with pytest.raises(ss.UniqueViolationError):
                accounts.replace_all([Account("c", "q@e"), Account("d", "q@e")])
            with pytest.raises(ss.ConflictError):
                accounts.put(Account("a", "z@e"), expect_revision=7)
        assert accounts.keys() == ["a", "b"]

    def test_a_transaction_object_serves_one_block(self, store: ss.Store) -> None:
        txn = store.transaction()
        with txn:
            store[TASKS].put(_task("a"))
        with pytest.raises(RuntimeError, match="used once"), txn:
            pass
        with store.transaction():  # the store is not left inside a transaction
            store[TASKS].put(_task("b"))
        assert store[TASKS].keys() == ["a", "b"]

    def test_transaction_is_reusable_after_rollback(self, store: ss.Store) -> None:
        with pytest.raises(ValueError, match="x"), store.transaction():
            raise ValueError("x")
        with store.transaction():
            store[TASKS].put(_task())
        assert len(store[TASKS]) == 1

    def test_update_is_a_transaction_of_its_own_or_a_nested_one(self, store: ss.Store) -> None:
        # What fn writes goes with the update: committed with it, or undone with it (alone, or
        # back to the update's savepoint inside a transaction that then goes on and commits).
        tasks, tickets, events = store[TASKS], store[TICKETS], store[EVENTS]
        tasks.put(_task("a", points=1))

        def bump_and_log(fail: bool) -> Callable[[Task], None]:
            def fn(task: Task) -> None:
                events.append(Event(f"saw {task.points}"), stream="s")
                tickets.put(Ticket(task.points))
                task.points += 1
                if fail:
                    raise ValueError("no")

            return fn

        assert tasks.update("a", bump_and_log(False)).points == 2
        with pytest.raises(ValueError, match="no"):
            tasks.update("a", bump_and_log(True))
        with store.transaction():
            tickets.put(Ticket(100))
            with pytest.raises(ValueError, match="no"):
                tasks.update("a", bump_and_log(True))
            with pytest.raises(ss.NotFoundError):
                tasks.update("gone", bump_and_log(False))
            assert tasks.update("a", bump_and_log(False)).points == 3
        assert tasks.get_versioned("a") == ss.Versioned(_task("a", points=3), 3)
        assert tickets.keys() == [1, 2, 100]
        assert [e.record.type for e in events.read()] == ["saw 1", "saw 2"]
        with store.transaction():  # the store is not left inside a transaction
            tickets.put(Ticket(200))
        with pytest.raises(ValueError, match="outer"), store.transaction():
            tasks.update("a", bump_and_log(False))
            raise ValueError("outer")
        assert tasks.get_versioned("a") == ss.Versioned(_task("a", points=3), 3)
        assert tickets.keys() == [1, 2, 100, 200]
        store.close()
        with pytest.raises(ss.StoreClosedError):
            tasks.update("a", bump_and_log(False))
