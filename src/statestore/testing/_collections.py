"""The collection contract: insert, put, get, update, delete, find, keys, replace_all, unique."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.testing._common import AWKWARD_KEYS, StoreFixture
from statestore.testing._common import task as _task
from statestore.testing.models import (
    ACCOUNTS,
    SETTINGS,
    TASKS,
    TICKETS,
    Account,
    Meta,
    Priority,
    Setting,
    Task,
    Ticket,
)

__all__ = ["CollectionContract"]


class CollectionContract(StoreFixture):
    """insert, put, get, update, delete, find, all, keys, len, in, replace_all, unique."""

    # ------------------------------------------------------------ insert / put

    def test_insert_then_get(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        assert tasks.insert(_task(title="Write docs")) == 1
        assert tasks.get("t1") == _task(title="Write docs")
        assert tasks["t1"] == _task(title="Write docs")

    def test_insert_existing_key_raises_and_keeps_original(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.insert(_task(title="first"))
        with pytest.raises(ss.AlreadyExistsError) as info:
            tasks.insert(_task(title="second"))
        assert (info.value.collection, info.value.key) == ("tasks", "t1")
        assert isinstance(info.value, ss.ConflictError)
        assert tasks["t1"].title == "first"
        assert tasks.get_versioned("t1") == ss.Versioned(_task(title="first"), 1)

    def test_put_upserts_and_counts_revisions(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        assert tasks.put(_task(title="a")) == 1
        assert tasks.put(_task(title="b")) == 2
        assert tasks.put(_task(title="c")) == 3
        assert tasks.get_versioned("t1") == ss.Versioned(_task(title="c"), 3)

    def test_revisions_are_per_key(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a"))
        tasks.put(_task("a"))
        assert tasks.put(_task("b")) == 1

    def test_put_expect_revision_matches(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(title="a"))
        assert tasks.put(_task(title="b"), expect_revision=1) == 2
        assert tasks["t1"].title == "b"

    def test_put_expect_revision_mismatch_raises_and_writes_nothing(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(title="a"))
        tasks.put(_task(title="b"))
        with pytest.raises(ss.ConflictError) as info:
            tasks.put(_task(title="stale"), expect_revision=1)
        assert (info.value.key, info.value.expected, info.value.actual) == ("t1", 1, 2)
        assert tasks.get_versioned("t1") == ss.Versioned(_task(title="b"), 2)

    def test_put_expect_revision_zero_means_absent(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        assert tasks.put(_task(title="new"), expect_revision=0) == 1
        with pytest.raises(ss.ConflictError) as info:
            tasks.put(_task(title="again"), expect_revision=0)
        assert (info.value.expected, info.value.actual) == (0, 1)
        assert tasks["t1"].title == "new"

    def test_put_expect_revision_on_missing_key(self, store: ss.Store) -> None:
        with pytest.raises(ss.ConflictError) as info:
            store[TASKS].put(_task(), expect_revision=3)
        assert (info.value.expected, info.value.actual) == (3, 0)
        assert "t1" not in store[TASKS]

    def test_wrong_record_type_is_rejected(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError) as info:
            store[TASKS].put(Ticket(1))  # type: ignore[arg-type]
        assert info.value.what == "tasks"
        assert len(store[TASKS]) == 0

    def test_non_json_value_is_rejected_naming_the_field(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError) as info:
            store[TASKS].put(_task(ratio=float("nan")))
        assert info.value.key == "t1"
        assert len(store[TASKS]) == 0

    # ------------------------------------------------------------ keys

    @pytest.mark.parametrize("key", AWKWARD_KEYS)
    def test_awkward_keys_round_trip(self, store: ss.Store, key: str) -> None:
        tasks = store[TASKS]
        tasks.insert(_task(key, title=key))
        assert tasks[key].title == key
        assert key in tasks
        assert tasks.keys() == [key]
        assert tasks.delete(key) is True
        assert key not in tasks

    def test_awkward_keys_never_collide(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for key in AWKWARD_KEYS:
            tasks.insert(_task(key, title=key))
        assert tasks.keys() == sorted(AWKWARD_KEYS)
        for key in AWKWARD_KEYS:
            assert tasks[key].title == key

    def test_keys_in_code_point_order(self, store: ss.Store) -> None:
        keys = ["b", "a", "B", "é", "aa", "a b", "10", "9", "日"]
        for key in keys:
            store[TASKS].put(_task(key))
        assert store[TASKS].keys() == sorted(keys)
        assert [t.id for t in store[TASKS].all()] == sorted(keys)

    def test_int_keys_in_numeric_order(self, store: ss.Store) -> None:
        tickets = store[TICKETS]
        for n in [10, 2, -5, 1, 300]:
            tickets.insert(Ticket(n, f"#{n}"))
        assert tickets.keys() == [-5, 1, 2, 10, 300]
        assert tickets[10].title == "#10"

    def test_composite_keys(self, store: ss.Store) -> None:
        settings = store[SETTINGS]
        settings.put(Setting("user", "/p", "b", "1"))
        settings.put(Setting("global", "/p", "a", "2"))
        settings.put(Setting("user", "/p", "a", "3"))
        settings.put(Setting("user", "/p b", "a", "4"))
        assert settings.keys() == [
            ("global", "/p", "a"),
            ("user", "/p", "a"),
            ("user", "/p", "b"),
            ("user", "/p b", "a"),
        ]
        assert settings[("user", "/p", "a")].value == "3"
        assert ("user", "/p", "b") in settings
        assert settings.delete(("user", "/p", "b")) is True
        assert settings.get(("user", "/p", "b")) is None

    def test_key_of_wrong_type_is_a_validation_error(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError):
            store[TASKS].get(1)
        with pytest.raises(ss.ValidationError):
            store[TICKETS].get("1")
        with pytest.raises(ss.ValidationError):
            store[TICKETS].get(True)
        with pytest.raises(ss.ValidationError):
            store[SETTINGS].get(("user", "/p"))
        assert 1 not in store[TASKS]

    def test_key_that_is_not_unicode_is_rejected(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError):
            store[TASKS].put(_task("bad\ud800"))
        assert len(store[TASKS]) == 0

    # ------------------------------------------------------------ reads

    def test_get_missing(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        assert tasks.get("nope") is None
        assert tasks.get_versioned("nope") is None
        with pytest.raises(ss.NotFoundError) as info:
            tasks["nope"]
        assert isinstance(info.value, KeyError)
        assert (info.value.collection, info.value.key) == ("tasks", "nope")

    def test_empty_collection(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        assert tasks.all() == []
        assert tasks.keys() == []
        assert len(tasks) == 0
        assert "t1" not in tasks
        assert tasks.find(status="todo") == []
        assert list(tasks) == []

    def test_records_are_copies(self, store: ss.Store) -> None:
        task = _task(tags=["a"])
        store[TASKS].put(task)
        task.tags.append("b")
        got = store[TASKS]["t1"]
        assert got.tags == ["a"]
        got.tags.append("c")
        assert store[TASKS]["t1"].tags == ["a"]

    def test_records_from_find_and_update_are_copies(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(tags=["a"], meta=Meta("o", {"k": "v"})))
        for got in (tasks.find(status="todo")[0], tasks.find(title="")[0], tasks.all()[0], tasks["t1"]):
            got.tags.append("x")
            got.meta.labels["k"] = "changed"
        updated = tasks.update("t1", lambda t: None)
        updated.tags.append("y")
        assert tasks["t1"].tags == ["a"]
        assert tasks["t1"].meta.labels == {"k": "v"}
        assert [t.tags for t in tasks.find(status="todo")] == [["a"]]

    def test_types_round_trip_exactly(self, store: ss.Store) -> None:
        due = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        task = Task(
            "t1",
            title='ünïcödé\n"quoted" \ud800 lone surrogate',
            points=-7,
            tags=["x", "", "y y"],
            due=due,
            priority=Priority.HIGH,
            meta=Meta("ann", {"k": "v", "ü": "ß"}),
            ratio=0.1,
            done=True,
        )
        store[TASKS].put(task)
        got = store[TASKS]["t1"]
        assert got == task
        assert got.due == due
        assert got.due is not None
        assert got.due.utcoffset() == timedelta(hours=2)
        assert got.priority is Priority.HIGH

    # ------------------------------------------------------------ find

    def _three(self, store: ss.Store) -> ss.CollectionView[Task]:
        tasks = store[TASKS]
        tasks.put(_task("c", status="todo", points=3, title="x"))
        tasks.put(_task("a", status="done", points=1, title="x"))
        tasks.put(_task("b", status="todo", points=1, title="y"))
        return tasks

    def test_iteration_yields_keys(self, store: ss.Store) -> None:
        tasks = self._three(store)
        assert list(tasks) == ["a", "b", "c"]
        assert all(key in tasks for key in tasks)

    def test_find_on_indexed_field_in_key_order(self, store: ss.Store) -> None:
        tasks = self._three(store)
        assert [t.id for t in tasks.find(status="todo")] == ["b", "c"]
        assert [t.id for t in tasks.find(points=1)] == ["a", "b"]
        assert tasks.find(status="nope") == []

    def test_find_on_unindexed_field(self, store: ss.Store) -> None:
        tasks = self._three(store)
        assert [t.id for t in tasks.find(title="x")] == ["a", "c"]

    def test_find_on_several_fields(self, store: ss.Store) -> None:
        tasks = self._three(store)
        assert [t.id for t in tasks.find(status="todo", points=1)] == ["b"]
        assert [t.id for t in tasks.find(status="todo", title="x")] == ["c"]

    def test_find_without_conditions_is_all(self, store: ss.Store) -> None:
        tasks = self._three(store)
        assert tasks.find() == tasks.all()
        assert [t.id for t in tasks.all()] == ["a", "b", "c"]

    def test_find_compares_in_stored_form(self, store: ss.Store) -> None:
        due = datetime(2026, 1, 1, tzinfo=timezone.utc)
        tasks = store[TASKS]
        tasks.put(_task("a", due=due, priority=Priority.HIGH, tags=["x", "y"], meta=Meta("o")))
        tasks.put(_task("b"))
        assert [t.id for t in tasks.find(due=due)] == ["a"]
        assert [t.id for t in tasks.find(due=None)] == ["b"]
        assert [t.id for t in tasks.find(priority=Priority.HIGH)] == ["a"]
        assert [t.id for t in tasks.find(tags=["x", "y"])] == ["a"]
        assert [t.id for t in tasks.find(meta=Meta("o"))] == ["a"]
        assert [t.id for t in tasks.find(done=False)] == ["a", "b"]

    def test_find_does_not_confuse_types(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", status="1", points=1))
        assert [t.id for t in tasks.find(status="1")] == ["a"]
        assert [t.id for t in tasks.find(points=1)] == ["a"]
        # A value of another type than the field's is an error, never a silent empty list.
        with pytest.raises(ss.ValidationError, match="expected str"):
            tasks.find(status=1)
        with pytest.raises(ss.ValidationError, match="expected int"):
            tasks.find(points="1")
        with pytest.raises(ss.ValidationError, match="expected int"):
            tasks.find(points=True)

    def test_find_unknown_field_raises(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError) as info:
            store[TASKS].find(colour="red")
        assert "colour" in str(info.value)

    def test_find_follows_writes(self, store: ss.Store) -> None:
        tasks = self._three(store)
        tasks.put(_task("b", status="done"))
        tasks.delete("c")
        tasks.put(_task("d", status="todo"))
        assert [t.id for t in tasks.find(status="todo")] == ["d"]
        assert [t.id for t in tasks.find(status="done")] == ["a", "b"]

    def test_find_on_composite_collection(self, store: ss.Store) -> None:
        settings = store[SETTINGS]
        settings.put(Setting("u", "p", "b", rank=1))
        settings.put(Setting("u", "p", "a", rank=1))
        settings.put(Setting("g", "p", "c", rank=2))
        assert [s.name for s in settings.find(rank=1)] == ["a", "b"]
        assert [s.name for s in settings.find(scope="u")] == ["a", "b"]

    # ------------------------------------------------------------ update

    def test_update_returns_new_record_and_bumps_revision(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(points=1))
        new = tasks.update("t1", lambda t: attrs.evolve(t, points=t.points + 1))
        assert new.points == 2
        assert tasks.get_versioned("t1") == ss.Versioned(new, 2)

    def test_update_in_place_when_fn_returns_none(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(tags=["a"]))

        def add_tag(task: Task) -> None:
            task.tags.append("b")

        assert tasks.update("t1", add_tag).tags == ["a", "b"]
        assert tasks["t1"].tags == ["a", "b"]

    def test_update_missing_key(self, store: ss.Store) -> None:
        calls: list[Task] = []
        with pytest.raises(ss.NotFoundError):
            store[TASKS].update("nope", calls.append)
        assert calls == []
        assert len(store[TASKS]) == 0

    def test_update_fn_error_writes_nothing(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task(points=1))

        def boom(task: Task) -> Task:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            tasks.update("t1", boom)
        assert tasks.get_versioned("t1") == ss.Versioned(_task(points=1), 1)

    def test_update_cannot_change_the_key(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task())
        with pytest.raises(ss.ValidationError):
            tasks.update("t1", lambda t: attrs.evolve(t, id="t2"))
        assert tasks.keys() == ["t1"]

    def test_update_checks_the_key_it_gets_back_as_put_does(self, store: ss.Store) -> None:
        # Equal to the stored key yet of another type (True == 1 == 1.0): refused as a key, before its fields.
        tickets = store[TICKETS]
        tickets.put(Ticket(1, "a"))
        other: object
        for other in (True, 1.0):

            def rekey(t: Ticket, other: object = other) -> Ticket:
                return attrs.evolve(t, number=other)  # type: ignore[arg-type]  # the wrong type on purpose

            with pytest.raises(ss.ValidationError) as info:
                tickets.update(1, rekey)
            reason = f"key field must be int, got {type(other).__name__}"
            assert (info.value.key, info.value.path, info.value.reason) == (other, "$.number", reason)
        assert tickets.get_versioned(1) == ss.Versioned(Ticket(1, "a"), 1)
        assert tickets.update(1, lambda t: attrs.evolve(t, title="b")) == Ticket(1, "b")
        assert tickets.get_versioned(1) == ss.Versioned(Ticket(1, "b"), 2)

    def test_update_checks_unique_fields(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e"))
        accounts.put(Account("b", "y@e"))
        with pytest.raises(ss.UniqueViolationError) as info:
            accounts.update("b", lambda a: attrs.evolve(a, email="x@e"))
        assert (info.value.key, info.value.existing_key) == ("b", "a")
        assert accounts.get_versioned("b") == ss.Versioned(Account("b", "y@e"), 1)
        assert accounts.update("b", lambda a: attrs.evolve(a, email="z@e")) == Account("b", "z@e")
        assert accounts.get_versioned("b") == ss.Versioned(Account("b", "z@e"), 2)

    # ------------------------------------------------------------ delete

    def test_delete(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task())
        assert tasks.delete("t1") is True
        assert tasks.get("t1") is None
        assert tasks.delete("t1") is False
        assert tasks.delete("never") is False

    def test_revision_restarts_after_delete(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task())
        tasks.put(_task())
        tasks.delete("t1")
        assert tasks.insert(_task()) == 1

    # ------------------------------------------------------------ replace_all

    def test_replace_all(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a"))
        tasks.put(_task("b"))
        tasks.replace_all([_task("b", title="B"), _task("c")])
        assert tasks.keys() == ["b", "c"]
        assert tasks.get_versioned("b") == ss.Versioned(_task("b", title="B"), 2)
        assert tasks.get_versioned("c") == ss.Versioned(_task("c"), 1)

    def test_replace_all_with_nothing_empties(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a"))
        tasks.replace_all([])
        assert len(tasks) == 0

    def test_replace_all_duplicate_keys_change_nothing(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a"))
        with pytest.raises(ss.ValidationError):
            tasks.replace_all([_task("b"), _task("b")])
        assert tasks.keys() == ["a"]

    def test_replace_all_may_swap_unique_values(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e"))
        accounts.put(Account("b", "y@e"))
        accounts.replace_all([Account("a", "y@e"), Account("b", "x@e")])
        assert accounts["a"].email == "y@e"

    def test_replace_all_unique_clash_changes_nothing(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e"))
        with pytest.raises(ss.UniqueViolationError):
            accounts.replace_all([Account("b", "y@e"), Account("c", "y@e")])
        assert accounts.keys() == ["a"]

    # ------------------------------------------------------------ unique

    def test_unique_violation(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.insert(Account("a", "x@e"))
        with pytest.raises(ss.UniqueViolationError) as info:
            accounts.insert(Account("b", "x@e"))
        err = info.value
        assert (err.key, err.fields, err.value, err.existing_key) == ("b", ("email",), "x@e", "a")
        assert isinstance(err, ss.ConflictError)
        assert accounts.keys() == ["a"]
        with pytest.raises(ss.UniqueViolationError):
            accounts.put(Account("b", "x@e"))
        assert accounts.keys() == ["a"]

    def test_unique_allows_rewriting_the_same_record(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e", "o", "h"))
        assert accounts.put(Account("a", "x@e", "o", "h")) == 2

    def test_unique_ignores_none(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", None, "o", "h1"))
        accounts.put(Account("b", None, "o", "h2"))
        assert len(accounts) == 2

    def test_composite_unique(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", None, "o", "h"))
        accounts.put(Account("b", None, "o2", "h"))
        with pytest.raises(ss.UniqueViolationError) as info:
            accounts.put(Account("c", None, "o", "h"))
        assert info.value.fields == ("org", "handle")
        assert info.value.value == ("o", "h")

    def test_unique_value_is_free_after_delete_or_change(self, store: ss.Store) -> None:
        accounts = store[ACCOUNTS]
        accounts.put(Account("a", "x@e"))
        accounts.put(Account("b", "y@e"))
        accounts.delete("a")
        accounts.put(Account("c", "x@e"))
        accounts.put(Account("b", "z@e"))
        accounts.put(Account("d", "y@e"))
        assert [a.email for a in accounts.all()] == ["z@e", "x@e", "y@e"]

    def test_undeclared_collection(self, store: ss.Store) -> None:
        other = ss.Collection("others", Task, key="id")
        with pytest.raises(ss.UnknownNameError):
            store[other]
        with pytest.raises(ss.UnknownNameError):
            store[ss.Collection("tasks", Ticket, key="number")]
        with pytest.raises(ss.UnknownNameError):  # a look-alike with another key
            store[ss.Collection("tasks", Task, key="title")]
        same = ss.Collection("tasks", Task, key="id", indexes=["status", "points"])
        store[same].put(_task())  # an identical declaration is the same collection
        assert store[TASKS].keys() == ["t1"]

    def test_int_keys_must_fit_in_64_bits(self, store: ss.Store) -> None:
        tickets = store[TICKETS]
        tickets.put(Ticket(2**63 - 1))
        tickets.put(Ticket(-(2**63)))
        for big in (2**63, -(2**63) - 1, 10**30):
            with pytest.raises(ss.ValidationError, match="64 bits"):
                tickets.put(Ticket(big))
        assert tickets.keys() == [-(2**63), 2**63 - 1]

    # Revisions are 64-bit signed integers on every backend (the planted one goes in through
    # the backend's _write, past the shared layer, as a copy keeping revisions would).

    @pytest.mark.parametrize("coll", ["tasks", "accounts"])  # one-step writes, and unique fields' path
    def test_a_write_past_the_last_64_bit_revision_is_refused_and_writes_nothing(
        self, store: ss.Store, coll: str
    ) -> None:
        last = 2**63 - 1
        decl: Any
        record: Any
        changed: Any
        decl, record, changed = (
            (TASKS, _task("a", title="kept"), _task("a", title="lost"))
            if coll == "tasks"
            else (ACCOUNTS, Account("a", email="kept@x"), Account("a", email="lost@x"))
        )
        view: Any = store[decl]
        data, text = store.codec.encode(coll, decl.type, record, "a")
        with store.transaction():
            store._write(decl, "a", last, data, text)
        assert view.get_versioned("a") == ss.Versioned(record, last)

        def kept() -> None:
            assert view.get_versioned("a") == ss.Versioned(record, last)

        writes: list[Callable[[], object]] = [
            lambda: view.put(changed),
            lambda: view.put(changed, expect_revision=last),
            lambda: view.update("a", lambda _old: changed),
            lambda: view.replace_all([changed]),
        ]
        for write in writes:
            with pytest.raises(ss.RevisionLimitError) as info:
                write()
            assert (info.value.collection, info.value.key, info.value.revision) == (coll, "a", last)
            assert str(info.value) == f"{coll}: 'a' is at revision {last}, the last a 64-bit revision can be"
            assert isinstance(info.value, ss.StateStoreError)
            assert isinstance(info.value, OverflowError)  # what Python raises for an int past its type's range
            kept()
        with store.transaction():  # inside a transaction: refused, and the transaction goes on
            with pytest.raises(ss.RevisionLimitError):
                view.put(changed)
            view.insert(attrs.evolve(record, id="b") if coll == "tasks" else Account("b"))
        assert len(view) == 2
        kept()
        with pytest.raises(ss.AlreadyExistsError):
            view.insert(changed)
        kept()
        assert view.delete("a")  # revisions start again at 1 after a delete
        assert view.put(changed) == 1

    def test_a_record_one_below_the_last_revision_reaches_it(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        data, text = store.codec.encode("tasks", Task, _task("a"), "a")
        with store.transaction():
            store._write(TASKS, "a", 2**63 - 2, data, text)
        assert tasks.put(_task("a", title="x")) == 2**63 - 1
        assert tasks.get_versioned("a") == ss.Versioned(_task("a", title="x"), 2**63 - 1)
