"""The persistence contract: reopening, read mode, schema versions (backends that keep data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.testing._common import StoreFixture
from statestore.testing._common import task as _task
from statestore.testing._drift import DriftContract
from statestore.testing.models import (
    ACCOUNTS,
    EVENTS,
    SCHEMA,
    SETTINGS,
    TASKS,
    TICKETS,
    Account,
    Event,
    Setting,
    Task,
    Ticket,
)

__all__ = ["PersistenceContract"]


class PersistenceContract(StoreFixture, DriftContract):
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

    def test_read_transaction_touching_things_late_sees_its_start(self, store_factory: Any) -> None:
        """What a read transaction first touches after other commits is still as of its start."""
        with store_factory() as writer:
            for key in ("a", "b", "c"):
                writer[TASKS].put(_task(key, status="todo"))
            writer[EVENTS].append(Event("x"), stream="s")
            with store_factory(mode="read") as reader, reader.transaction():
                # (One read first: SQLite's snapshot begins at a transaction's first read.)
                assert reader[TICKETS].get(1) is None
                with writer.transaction():
                    writer[TASKS].put(_task("a", status="done"))
                    writer[TASKS].delete("b")
                    writer[TASKS].insert(_task("d", status="todo"))
                    writer[EVENTS].append(Event("y"), stream="s")
                writer[TASKS].put(_task("c", status="done"))
                assert reader[TASKS].get("a") == _task("a", status="todo")
                assert reader[TASKS].get("b") == _task("b", status="todo")
                assert reader[TASKS].get("d") is None
                assert [t.id for t in reader[TASKS].find(status="todo")] == ["a", "b", "c"]
                assert len(reader[TASKS]) == 3
                assert [e.record for e in reader[EVENTS].read()] == [Event("x")]
                assert len(reader[EVENTS]) == 1

    def test_history_inside_a_read_transaction(self, store_factory: Any) -> None:
        store_factory().close()
        with store_factory(mode="read") as reader, reader.transaction():
            assert [row.direction for row in reader.history()] == ["create"]

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

    def test_older_store_in_read_mode_is_refused(self, store_factory: Any) -> None:
        with store_factory() as store:
            store[TASKS].put(_task())
        newer = ss.Schema("contract", version=2, collections=SCHEMA.collections, logs=SCHEMA.logs)
        with pytest.raises(ss.MigrationRequiredError) as info:
            store_factory(newer, mode="read")
        assert (info.value.stored, info.value.code) == (1, 2)
        with store_factory(mode="read") as store:  # left at version 1, untouched
            assert store[TASKS].get_versioned("t1") == ss.Versioned(_task(), 1)
            assert [(r.version, r.direction) for r in store.history()] == [(1, "create")]

    def test_version_step_without_a_migration_changes_no_data(self, store_factory: Any) -> None:
        with store_factory() as store:
            store[TASKS].put(_task())
        newer = ss.Schema("contract", version=2, collections=SCHEMA.collections, logs=SCHEMA.logs)
        with store_factory(newer) as store:
            assert store[TASKS].get_versioned("t1") == ss.Versioned(_task(), 1)
            assert [(r.version, r.name, r.direction) for r in store.history()] == [(1, "", "create"), (2, "", "up")]
        with pytest.raises(ss.SchemaTooNewError):
            store_factory(SCHEMA, mode="read")

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
        # Retyped at the same version: refused before anything is read or written.
        with pytest.raises(ss.SchemaDriftError, match="field 'points' changed type from str to int") as drift:
            store_factory(ss.Schema("contract", version=1, collections=[strict]))
        assert drift.value.changes == ("collection 'tasks': field 'points' changed type from str to int",)
        # At a new version without a migration that converts them, the records do not fit: the step fails.
        with pytest.raises(ss.MigrationError, match=r"tasks key 't9' at \$\.points.*expected int"):
            store_factory(ss.Schema("contract", version=2, collections=[strict]))
        with store_factory(
            ss.Schema("contract", version=1, collections=[ss.Collection("tasks", Loose, key="id")]), mode="read"
        ) as s:
            assert s[s.schema.collections[0]]["t9"] == Loose("t9")
