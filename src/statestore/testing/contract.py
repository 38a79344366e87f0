"""The contract every statestore backend must meet, written once for all of them.

Each test takes the ``store`` fixture (a fresh, empty store of
:data:`~statestore.testing.models.SCHEMA`) or the ``store_factory`` fixture
(``store_factory(schema=SCHEMA, *, mode="write") -> Store``, every call opening
the *same* location). Subclass the classes in a test module of your own and
provide ``store_factory``; see the README's "Testing your own backend".
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.testing.models import (
    ACCOUNTS,
    EVENTS,
    SCHEMA,
    SETTINGS,
    TASKS,
    TICKETS,
    Account,
    Event,
    Meta,
    Priority,
    Setting,
    Task,
    Ticket,
)

__all__ = [
    "CollectionContract",
    "LogContract",
    "PersistenceContract",
    "StoreContract",
    "TransactionContract",
]

#: Keys that trip naive key-to-file-name or SQL mappings.
AWKWARD_KEYS = [
    "plain",
    "with space",
    "a/b",
    "../escape",
    "..",
    ".",
    ".hidden",
    "back\\slash",
    "Foo",
    "foo",
    "FOO",
    "CON",
    "nul.txt",
    "ünïcödé ✓",
    "日本語",
    "emoji 🎉",
    "x" * 300,
    "trailing.",
    "trailing ",
    "pct%_like",
    "quote\"'",
    "nul\x00byte",
    "new\nline",
]


def _task(key: str = "t1", **kw: Any) -> Task:
    return Task(key, **kw)


class CollectionContract:
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
        assert tasks.find(status=1) == []
        assert [t.id for t in tasks.find(status="1")] == ["a"]
        assert tasks.find(points="1") == []

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


class LogContract:
    """append, read by stream and prefix, after, limit, expect_version, last_seq."""

    def test_append_returns_entry(self, store: ss.Store) -> None:
        before = datetime.now(timezone.utc)
        entry = store[EVENTS].append(Event("started", "ann"), stream="task:t1")
        after = datetime.now(timezone.utc)
        assert (entry.seq, entry.stream, entry.version, entry.record) == (1, "task:t1", 1, Event("started", "ann"))
        assert entry.at.tzinfo is not None
        assert entry.at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= entry.at <= after + timedelta(seconds=1)

    def test_versions_per_stream_and_seq_across_log(self, store: ss.Store) -> None:
        events = store[EVENTS]
        a1 = events.append(Event("a"), stream="a")
        b1 = events.append(Event("b"), stream="b")
        a2 = events.append(Event("a"), stream="a")
        assert [(e.seq, e.version) for e in (a1, b1, a2)] == [(1, 1), (2, 1), (3, 2)]
        assert events.last_seq() == 3

    def test_read_returns_what_was_appended(self, store: ss.Store) -> None:
        events = store[EVENTS]
        written = [events.append(Event("e", n=i), stream=f"s{i % 2}") for i in range(5)]
        assert events.read() == written
        assert events.read(stream="s1") == [written[1], written[3]]

    def test_default_stream(self, store: ss.Store) -> None:
        events = store[EVENTS]
        entry = events.append(Event("x"))
        assert entry.stream == ""
        assert events.read(stream="") == [entry]

    def test_exact_stream_match_never_substring(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["fn-1", "fn-10", "fn-1.2", "xfn-1", "fn-"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream="fn-1")] == ["fn-1"]

    def test_prefix_match(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["task:1", "task:10", "tasks", "task;", "task", "other:1", "task:\U0010ffff"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="task:")] == ["task:1", "task:10", "task:\U0010ffff"]
        assert [e.stream for e in events.read(stream_prefix="task:1")] == ["task:1", "task:10"]
        assert len(events.read(stream_prefix="")) == 7

    def test_prefix_has_no_wildcards(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["a%b", "axb", "a_b", "ayb"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="a%")] == ["a%b"]
        assert [e.stream for e in events.read(stream_prefix="a_")] == ["a_b"]

    def test_after_and_limit(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for i in range(10):
            events.append(Event("e", n=i), stream="s" if i % 3 else "t")
        assert [e.seq for e in events.read(after=7)] == [8, 9, 10]
        assert [e.seq for e in events.read(after=2, limit=3)] == [3, 4, 5]
        assert [e.seq for e in events.read(stream="s", after=3, limit=2)] == [5, 6]
        assert [e.seq for e in events.read(stream_prefix="t", after=1)] == [4, 7, 10]
        assert events.read(limit=0) == []
        assert events.read(after=10) == []
        assert events.read(after=99) == []

    def test_expect_version(self, store: ss.Store) -> None:
        events = store[EVENTS]
        assert events.append(Event("a"), stream="s", expect_version=0).version == 1
        assert events.append(Event("b"), stream="s", expect_version=1).version == 2
        with pytest.raises(ss.StreamConflictError) as info:
            events.append(Event("stale"), stream="s", expect_version=1)
        assert (info.value.key, info.value.expected, info.value.actual) == ("s", 1, 2)
        assert isinstance(info.value, ss.ConflictError)
        assert [e.record.type for e in events.read(stream="s")] == ["a", "b"]
        assert events.last_seq() == 2

    def test_expect_version_on_new_stream(self, store: ss.Store) -> None:
        with pytest.raises(ss.StreamConflictError) as info:
            store[EVENTS].append(Event("a"), stream="new", expect_version=2)
        assert info.value.actual == 0
        assert store[EVENTS].last_seq() == 0

    def test_empty_log(self, store: ss.Store) -> None:
        events = store[EVENTS]
        assert events.last_seq() == 0
        assert events.read() == []
        assert events.read(stream="x") == []
        assert events.read(stream_prefix="x") == []

    def test_bad_read_arguments(self, store: ss.Store) -> None:
        events = store[EVENTS]
        with pytest.raises(ss.ValidationError):
            events.read(stream="a", stream_prefix="a")
        with pytest.raises(ss.ValidationError):
            events.read(after=-1)
        with pytest.raises(ss.ValidationError):
            events.read(limit=-1)
        with pytest.raises(ss.ValidationError):
            events.append(Event("x"), stream=5)  # type: ignore[arg-type]
        with pytest.raises(ss.ValidationError):
            events.append(Event("x"), stream="bad\udfff")
        with pytest.raises(ss.ValidationError):
            events.append(Task("t"), stream="s")  # type: ignore[arg-type]
        assert events.last_seq() == 0

    def test_unicode_streams(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["日本:1", "日本:2", "ü", "a b/c\\d"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="日本:")] == ["日本:1", "日本:2"]
        assert [e.stream for e in events.read(stream="a b/c\\d")] == ["a b/c\\d"]


class TransactionContract:
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

    def test_transaction_is_reusable_after_rollback(self, store: ss.Store) -> None:
        with pytest.raises(ValueError, match="x"), store.transaction():
            raise ValueError("x")
        with store.transaction():
            store[TASKS].put(_task())
        assert len(store[TASKS]) == 1


class StoreContract(CollectionContract, LogContract, TransactionContract):
    """Every behaviour a backend must share, for a store that may be in memory."""

    def test_close_is_idempotent_and_final(self, store: ss.Store) -> None:
        store.close()
        store.close()
        assert store.closed
        with pytest.raises(ss.StoreClosedError):
            store[TASKS].get("t1")
        with pytest.raises(ss.StoreClosedError):
            store[TASKS].put(_task())
        with pytest.raises(ss.StoreClosedError):
            store[EVENTS].read()

    def test_context_manager_closes(self, store: ss.Store) -> None:
        with store as same:
            assert same is store
        assert store.closed

    @pytest.mark.parametrize(
        "error",
        [
            ss.NotFoundError("tasks", "t1"),
            ss.ConflictError("tasks", "t1", 1, 2),
            ss.AlreadyExistsError("tasks", ("a", 1), 0, 1),
            ss.UniqueViolationError("accounts", "b", 0, 0, fields=("email",), value="x", existing_key="a"),
            ss.StreamConflictError("events", "s", 1, 2),
            ss.ReadOnlyError("sqlite:x.db", "put"),
            ss.StoreBusyError("sqlite:x.db", 1.5),
            ss.StoreNotFoundError("files:x", legacy="/old"),
            ss.CorruptStoreError("files:x", "bad", line=3),
            ss.SchemaTooNewError("x", "s", 3, 2),
            ss.MigrationRequiredError("x", "s", 1, 2),
            ss.ValidationError("tasks", "t1", "$.due", "bad"),
            ss.SchemaError("bad name", "collection 'X'"),
        ],
    )
    def test_errors_pickle_and_name_their_subject(self, error: ss.StateStoreError) -> None:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert attrs.asdict(copy) == attrs.asdict(error)
        assert str(copy) == str(error)
        assert isinstance(copy, ss.StateStoreError)


class PersistenceContract:
    """Reopening, read mode and schema versions: for backends that keep data.

    ``store_factory`` must also have a ``path`` attribute: the file or folder
    the store lives in, which must not exist before the first open.
    """

    def test_reopen_keeps_everything(self, store_factory: Any) -> None:
        with store_factory() as store:
            store[TASKS].put(_task("a", title="x"))
            store[TASKS].put(_task("a", title="y"))
            store[SETTINGS].put(Setting("u", "p", "n", "v"))
            first = store[EVENTS].append(Event("e"), stream="s")
        with store_factory() as store:
            assert store[TASKS].get_versioned("a") == ss.Versioned(_task("a", title="y"), 2)
            assert store[SETTINGS].keys() == [("u", "p", "n")]
            assert store[EVENTS].read() == [first]
            second = store[EVENTS].append(Event("f"), stream="s")
            assert (second.seq, second.version) == (2, 2)

    def test_read_mode_on_missing_store_creates_nothing(self, store_factory: Any) -> None:
        path = store_factory.path
        parent_before = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else None
        with pytest.raises(ss.StoreNotFoundError):
            store_factory(mode="read")
        assert not path.exists()
        parent_after = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else None
        assert parent_after == parent_before

    def test_read_mode_refuses_writes(self, store_factory: Any) -> None:
        with store_factory() as store:
            store[TASKS].put(_task("a"))
            store[ACCOUNTS].put(Account("x"))
        with store_factory(mode="read") as store:
            assert store.mode == "read"
            tasks, events = store[TASKS], store[EVENTS]
            attempts: list[Callable[[], object]] = [
                lambda: tasks.insert(_task("b")),
                lambda: tasks.put(_task("a")),
                lambda: tasks.update("a", lambda t: t),
                lambda: tasks.delete("a"),
                lambda: tasks.replace_all([]),
                lambda: events.append(Event("x")),
                lambda: store[ACCOUNTS].put(Account("y")),
            ]
            for attempt in attempts:
                with pytest.raises(ss.ReadOnlyError):
                    attempt()
            with store.transaction():
                assert tasks.keys() == ["a"]
                with pytest.raises(ss.ReadOnlyError):
                    tasks.put(_task("c"))
            assert tasks.get_versioned("a") == ss.Versioned(_task("a"), 1)
            assert events.read() == []

    def test_read_mode_sees_other_writers(self, store_factory: Any) -> None:
        with store_factory() as writer, store_factory(mode="read") as reader:
            assert reader[TASKS].get("a") is None
            writer[TASKS].put(_task("a", status="todo"))
            writer[EVENTS].append(Event("x"), stream="s")
            assert reader[TASKS]["a"].status == "todo"
            assert [t.id for t in reader[TASKS].find(status="todo")] == ["a"]
            assert reader[EVENTS].last_seq() == 1

    def test_read_transaction_is_a_consistent_snapshot(self, store_factory: Any) -> None:
        with store_factory() as writer:
            writer[TASKS].put(_task("a"))
            writer[EVENTS].append(Event("x"), stream="s")
            with store_factory(mode="read") as reader, reader.transaction():
                assert reader[TASKS].keys() == ["a"]
                writer[TASKS].put(_task("b"))
                writer[TASKS].delete("a")
                writer[EVENTS].append(Event("y"), stream="s")
                assert reader[TASKS].keys() == ["a"]
                assert reader[TASKS].get("b") is None
                assert reader[EVENTS].last_seq() == 1
            with store_factory(mode="read") as reader:
                assert reader[TASKS].keys() == ["b"]
                assert reader[EVENTS].last_seq() == 2

    def test_two_store_objects_see_each_others_writes(self, store_factory: Any) -> None:
        with store_factory() as one, store_factory() as two:
            one[TASKS].put(_task("a", status="todo"))
            assert [t.id for t in two[TASKS].find(status="todo")] == ["a"]
            two[TASKS].put(_task("a", status="done"))
            assert one[TASKS].find(status="todo") == []
            assert one[TASKS].get_versioned("a") == ss.Versioned(_task("a", status="done"), 2)
            one[EVENTS].append(Event("x"), stream="s")
            assert two[EVENTS].append(Event("y"), stream="s").version == 2
            assert [e.seq for e in one[EVENTS].read(stream="s")] == [1, 2]

    def test_schema_too_new_refuses_both_modes(self, store_factory: Any) -> None:
        newer = ss.Schema("contract", version=2, collections=SCHEMA.collections, logs=SCHEMA.logs)
        with store_factory(newer) as store:
            store[TASKS].put(_task("a"))
        for mode in ("write", "read"):
            with pytest.raises(ss.SchemaTooNewError) as info:
                store_factory(SCHEMA, mode=mode)
            assert (info.value.stored, info.value.code) == (2, 1)
        with store_factory(newer, mode="read") as store:
            assert store[TASKS].keys() == ["a"]

    @pytest.mark.parametrize("mode", ["read", "write"])
    def test_older_store_without_a_migration_path_is_refused(self, store_factory: Any, mode: str) -> None:
        with store_factory() as store:
            store[TASKS].put(_task())
        newer = ss.Schema("contract", version=2, collections=SCHEMA.collections, logs=SCHEMA.logs)
        with pytest.raises(ss.MigrationRequiredError) as info:
            store_factory(newer, mode=mode)
        assert (info.value.stored, info.value.code) == (1, 2)
        with store_factory() as store:  # left at version 1, untouched
            assert store[TASKS].get_versioned("t1") == ss.Versioned(_task(), 1)

    def test_new_index_and_collection_appear_on_reopen(self, store_factory: Any) -> None:
        plain = ss.Collection("tasks", Task, key="id")
        with store_factory(ss.Schema("contract", version=1, collections=[plain])) as store:
            store[plain].put(_task("a", title="x", status="done"))
            store[plain].put(_task("b", title="y"))
        with store_factory() as store:
            assert [t.id for t in store[TASKS].find(status="done")] == ["a"]
            assert store[TICKETS].keys() == []
            store[TICKETS].put(Ticket(1))
            store[EVENTS].append(Event("x"))
        with store_factory(mode="read") as store:
            assert [t.id for t in store[TASKS].find(points=0)] == ["a", "b"]
            assert store[TICKETS].keys() == [1]

    @pytest.mark.parametrize("indexed", [False, True])
    def test_field_added_later_compares_as_null_in_find(self, store_factory: Any, indexed: bool) -> None:
        @attrs.define
        class Before:
            id: str

        @attrs.define
        class After:
            id: str
            owner: str | None = None
            archived: bool = False

        before = ss.Collection("tasks", Before, key="id")
        with store_factory(ss.Schema("contract", version=1, collections=[before])) as s:
            s[before].put(Before("old"))
        after = ss.Collection("tasks", After, key="id", indexes=["owner", "archived"] if indexed else [])
        with store_factory(ss.Schema("contract", version=1, collections=[after])) as s:
            s[after].put(After("new", owner="ann", archived=False))
            assert s[after]["old"] == After("old")  # decodes with the defaults
            assert [a.id for a in s[after].find(owner=None)] == ["old"]
            assert [a.id for a in s[after].find(archived=False)] == ["new"]  # stored JSON, not defaults

    def test_record_that_no_longer_fits_names_collection_key_and_field(self, store_factory: Any) -> None:
        @attrs.define
        class Loose:
            id: str
            points: str = "many"

        @attrs.define
        class Strict:
            id: str
            points: int = 0

        with store_factory(
            ss.Schema("contract", version=1, collections=[ss.Collection("tasks", Loose, key="id")])
        ) as s:
            s[s.schema.collections[0]].put(Loose("t9"))
        strict = ss.Collection("tasks", Strict, key="id")
        with store_factory(ss.Schema("contract", version=1, collections=[strict])) as s:
            with pytest.raises(ss.ValidationError) as info:
                s[strict].get("t9")
            assert (info.value.what, info.value.key, info.value.path) == ("tasks", "t9", "$.points")
            assert s[strict].keys() == ["t9"]
