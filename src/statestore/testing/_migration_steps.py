"""The migration contract, continued: what a step may do, and what other store objects see."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.migrations import MigrationContext
from statestore.testing._common import StoreFixture
from statestore.testing._migration_app import (
    M2,
    M3,
    NOTES1,
    PEOPLE1,
    PEOPLE2,
    USERS,
    V1,
    V2,
    V3,
    V4,
    Note1,
    Person1,
    Person2,
    check_v1,
    down3,
    seed,
    up3,
)

__all__ = ["MigrationStepContract"]


class MigrationStepContract(StoreFixture):
    """What a migration step may and may not do, and what store objects opened around a migration see."""

    def test_refusals_of_the_context_name_what_went_wrong(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)

        def collide(m: MigrationContext) -> None:
            m.map_records("people", lambda d: {**d, "id": "ada"})

        def not_a_dict(m: MigrationContext) -> None:
            m.map_entries("notes", lambda e: "text")  # type: ignore[arg-type,return-value]

        def unknown(m: MigrationContext) -> None:
            m.records("nobody")

        for fn, match, collection in [
            (collide, "the new key 'ada' is taken", "people"),
            (not_a_dict, "must return a dict", "notes"),
            (unknown, "no collection 'nobody'", "nobody"),
        ]:
            bad = ss.Schema(
                "app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "x", fn)]
            )
            with pytest.raises(ss.MigrationError, match=match) as info:
                store_factory(bad, backup=False)
            assert info.value.collection == collection
        with store_factory(V1, mode="read") as store:
            check_v1(store)  # every failed step left the store as it was

    @pytest.mark.parametrize(
        ("value", "where"),
        [
            ({1: "x"}, "$.name: expected an object with string keys, got 1"),
            ({"a": {None: 1}}, "$.name.a: expected an object with string keys, got null"),
            (("a", "b"), "$.name: expected a JSON value"),
            ([2**64], "$.name[0]: expected an integer from -2**63 to 2**63-1"),
            (float("inf"), "$.name: expected a finite number"),
        ],
    )
    def test_a_record_a_step_writes_must_be_json_as_stored_unconverted(
        self, store_factory: Any, value: Any, where: str
    ) -> None:
        """json.dumps would store {1: "x"} as {"1": "x"} and a tuple as a list: other data than the step gave."""
        with store_factory(V1) as store:
            seed(store)

        def step(m: MigrationContext) -> None:
            m.map_records("people", lambda d: {**d, "name": value})

        bad = ss.Schema("app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "x", step)])
        with pytest.raises(ss.MigrationError) as info:
            store_factory(bad, backup=False)
        assert where in str(info.value), str(info.value)
        assert info.value.collection == "people"
        with store_factory(V1, mode="read") as store:
            check_v1(store)

    def test_raw_access_checks_keys_as_the_api_does(self, store_factory: Any) -> None:
        """Found by review: m.get("tickets", "5") answered None and m.delete False for the int key 5."""

        @attrs.define
        class Numbered:
            id: int
            note: str = ""

        numbered = ss.Collection("numbered", Numbered, key="id")
        v1 = ss.Schema("n", version=1, collections=[numbered])
        with store_factory(v1) as store:
            store[numbered].put(Numbered(5, "five"))
        for call in (
            lambda m: m.get("numbered", "5"),
            lambda m: m.delete("numbered", "5"),
            lambda m: m.get("numbered", True),
        ):
            v2 = ss.Schema("n", version=2, collections=[numbered], migrations=[ss.Migration(2, "x", up=call)])
            with pytest.raises(ss.MigrationError, match="key field must be int") as info:
                store_factory(v2, backup=False)
            assert info.value.collection == "numbered"
        with store_factory(v1, mode="read") as store:
            assert store[numbered][5] == Numbered(5, "five")

    def test_a_retired_collection_declared_again_with_another_key_type_fails_the_step(self, store_factory: Any) -> None:
        """Found by review: the file backend called the store corrupt; SQLite and PostgreSQL failed the step."""

        @attrs.define
        class Numbered:
            id: int

        other = ss.Collection("other", Person1, key="id")
        v1 = ss.Schema("r", version=1, collections=[ss.Collection("x", Person1, key="id"), other])
        v2 = ss.Schema("r", version=2, collections=[other])
        v3 = ss.Schema("r", version=3, collections=[ss.Collection("x", Numbered, key="id"), other])
        with store_factory(v1) as store:
            store[v1.collections[0]].put(Person1("k", "K"))
        store_factory(v2, backup=False).close()
        with pytest.raises(ss.MigrationError) as info:
            store_factory(v3, backup=False)
        assert "after the migration" in str(info.value)
        with store_factory(v2, mode="read") as store:
            assert store.history()[-1].version == 2  # the step rolled back

    def test_a_log_entry_that_no_longer_fits_after_a_migration_is_named_by_its_seq(self, store_factory: Any) -> None:
        @attrs.define
        class Leveled:
            text: str
            level: str

        v2 = ss.Schema(
            "app",
            version=2,
            collections=[PEOPLE1],
            logs=[ss.Log("notes", Leveled)],
            migrations=[ss.Migration(2, "notes get a level, but the step forgets them", up=lambda m: None)],
        )
        with store_factory(V1) as store:
            seed(store)
        with pytest.raises(ss.MigrationError) as info:
            store_factory(v2, backup=False)
        assert "notes seq 1 (stream 'a') at $" in str(info.value)

    def test_rename_to_a_name_the_code_does_not_declare(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        aside = ss.Migration(2, "people aside", up=lambda m: m.rename_collection("people", "people_v1"))
        v2 = ss.Schema("app", version=2, collections=[], logs=[NOTES1], migrations=[aside])
        with store_factory(v2, backup=False):
            pass
        kept = ss.Collection("people_v1", Person1, key="id")
        v3 = ss.Schema("app", version=3, collections=[kept], logs=[NOTES1], migrations=[aside])
        with store_factory(v3, backup=False) as store:
            assert [p.id for p in store[kept].all()] == ["ada", "alan", "plato"]
            assert store[kept].get_versioned("alan") == ss.Versioned(Person1("alan", "Alan M Turing"), 2)

    def test_migrate_needs_write_mode_and_a_known_schema(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
            with pytest.raises(ValueError, match="no schema 'other'"):
                store.migrate(to=1, schema="other")
        with store_factory(V1, mode="read") as store, pytest.raises(ss.ReadOnlyError):
            store.migrate(to=1)

    def test_steps_may_pass_through_states_unique_fields_forbid(self, store_factory: Any) -> None:
        @attrs.define
        class Account:
            id: str
            email: str

        unique = ss.Collection("accounts", Account, key="id", unique=["email"])
        plain = ss.Collection("accounts", Account, key="id")
        with store_factory(ss.Schema("acc", version=1, collections=[unique])) as store:
            store[unique].put(Account("a", "a@x"))
            store[unique].put(Account("b", "b@x"))

        def swap(m: MigrationContext) -> None:
            m.map_records("accounts", lambda d: {**d, "email": "b@x" if d["email"] == "a@x" else "a@x"})

        v2 = ss.Schema("acc", version=2, collections=[unique], migrations=[ss.Migration(2, "swap", swap)])
        with store_factory(v2, backup=False) as store:
            assert [(a.id, a.email) for a in store[unique].all()] == [("a", "b@x"), ("b", "a@x")]
            with pytest.raises(ss.UniqueViolationError):
                store[unique].put(Account("c", "a@x"))  # the constraint is back after the last step

        def share(m: MigrationContext) -> None:
            m.map_records("accounts", lambda d: {**d, "email": "team@x"})

        v3 = ss.Schema(
            "acc", version=3, collections=[plain], migrations=[v2.migrations[0], ss.Migration(3, "s", share)]
        )
        with store_factory(v3, backup=False) as store:
            assert [a.email for a in store[plain].all()] == ["team@x", "team@x"]

    def test_backups_taken_in_one_second_do_not_collide(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False) as store:
            store.migrate(to=1)
            store.migrate(to=4)
            store.migrate(to=1)
        backups = [p for p in store_factory.path.parent.iterdir() if ".backup-" in p.name]
        assert len(backups) == 3

    def test_a_step_sees_its_own_rewrites_and_appends(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        seen: list[Any] = []

        def twice(m: MigrationContext) -> None:
            m.map_entries("notes", lambda e: {**e, "text": e["text"] + "+1"})
            m.map_entries("notes", lambda e: {**e, "text": e["text"] + "+2"})
            seen.append([e["record"]["text"] for e in m.entries("notes")])
            m.store[NOTES1].append(Note1("added"), stream="a")
            seen.append([(e["seq"], e["version"], e["record"]["text"]) for e in m.entries("notes")])

        v2 = ss.Schema("app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "t", twice)])
        with store_factory(v2, backup=False) as store:
            assert [(e.seq, e.stream, e.version, e.record.text) for e in store[NOTES1].read()] == [
                (1, "a", 1, "hello+1+2"),
                (2, "b", 1, "careful!+1+2"),
                (3, "a", 2, "added"),
            ]
            store[NOTES1].append(Note1("after"), stream="b")
            assert store[NOTES1].last_seq() == 4
        assert seen == [["hello+1+2", "careful!+1+2"], [(1, 1, "hello+1+2"), (2, 1, "careful!+1+2"), (3, 2, "added")]]

    def test_a_store_opened_before_a_rename_refuses_to_read_the_old_name(self, store_factory: Any) -> None:
        """Found by review: the old process read None (files), "corrupt store" (SQLite) or a raw error (PostgreSQL)."""
        with store_factory(V1) as store:
            seed(store)
        old = store_factory(V2, backup=False)  # an older build of the app, still running
        assert old[PEOPLE2]["ada"] == Person2("ada", "Ada", "Lovelace")
        with store_factory(V3, backup=False) as new:  # people is renamed users
            assert new[USERS]["ada"] == Person2("ada", "Ada", "Lovelace")
        try:
            reads: list[Callable[[], object]] = [
                lambda: old[PEOPLE2].get("alan"),
                lambda: old[PEOPLE2].all(),
                lambda: old[PEOPLE2].find(last="Turing"),
            ]
            for read in reads:
                with pytest.raises(ss.SchemaTooNewError):
                    read()
            called: list[object] = []
            with pytest.raises(ss.SchemaTooNewError):  # its table renamed: an update says why too
                old[PEOPLE2].update("ada", called.append)
            assert called == []
        finally:
            old.close()

    def test_a_read_transaction_begun_after_a_migration_refuses_to_read_the_old_name(self, store_factory: Any) -> None:
        """The file backend read the renamed collection as empty, inside the transaction and after it."""
        with store_factory(V1) as store:
            seed(store)
        olds = [store_factory(V2, backup=False), store_factory(V2, mode="read")]  # older builds, still running
        try:
            for old in olds:
                assert len(old[PEOPLE2]) == 3
            with store_factory(V3, backup=False) as new:  # people is renamed users
                assert len(new[USERS]) == 3
            for old in olds:
                with pytest.raises(ss.SchemaTooNewError), old.transaction():
                    old[PEOPLE2].all()
                with pytest.raises(ss.SchemaTooNewError):
                    old[PEOPLE2].all()
        finally:
            for old in olds:
                old.close()

    def test_a_read_transaction_that_outlives_a_log_rewrite_says_the_store_moved(self, store_factory: Any) -> None:
        """A migration rewrote a log a read transaction had not read yet: SchemaTooNewError, not "corrupt"."""
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V1, mode="read") as reader, reader.transaction():
            assert len(reader[NOTES1]) == 2
            store_factory(V4, backup=False).close()  # notes rewritten (every note gets a level)
            try:
                got = [e.record for e in reader[NOTES1].read()]
            except ss.SchemaTooNewError:
                pass  # (a snapshot that kept no copy of the old log)
            else:
                assert got == [Note1("hello"), Note1("careful!")]  # (one that did: as of its start)

    def test_a_store_opened_before_a_migration_refuses_to_write_after_it(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        old = store_factory(V1)  # an older build of the app, still running
        old[PEOPLE1].put(Person1("zed", "Zed Zero"))  # fine: nothing moved yet
        with store_factory(V2, backup=False) as new:
            assert new[PEOPLE2]["zed"] == Person2("zed", "Zed", "Zero")
        # The store is now newer than the old build: it must not write v1-shaped records into it.
        with pytest.raises(ss.SchemaTooNewError):
            old[PEOPLE1].put(Person1("late", "Late Comer"))
        with pytest.raises(ss.SchemaTooNewError):  # an insert too, though a backend may do it in one step
            old[PEOPLE1].insert(Person1("later", "Later Comer"))
        with pytest.raises(ss.SchemaTooNewError):
            old[NOTES1].append(Note1("late"))
        called: list[object] = []
        with pytest.raises(ss.SchemaTooNewError):  # before its function sees a record of the new shape
            old[PEOPLE1].update("zed", called.append)
        assert called == []
        old.close()
        with store_factory(V2, mode="read") as new:
            assert "late" not in new[PEOPLE2]
            assert "later" not in new[PEOPLE2]
        # And a store that went down a version itself stops writing too.
        with store_factory(V2, backup=False) as new:
            new.migrate(to=1, backup=False)
            with pytest.raises(ss.MigrationRequiredError):
                new[PEOPLE2].put(Person2("x", "X"))
            with pytest.raises(ss.MigrationRequiredError):
                new[PEOPLE2].insert(Person2("y", "Y"))

    def test_an_object_that_went_down_neither_reads_nor_writes_that_schema(self, store_factory: Any) -> None:
        """Found by review: after going down, store[USERS].get() answered None and len() 0 (users is people again)."""
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V3, backup=False) as store:
            assert store[USERS]["ada"] == Person2("ada", "Ada", "Lovelace")
            store.migrate(to=2, backup=False)
            reads: list[Callable[[], object]] = [
                lambda: store[USERS].get("ada"),
                lambda: len(store[USERS]),
                lambda: store[USERS].find(last="Lovelace"),
                lambda: store[USERS].all(),
                lambda: "ada" in store[USERS],
                lambda: store[NOTES1].read(),
                lambda: len(store[NOTES1]),
                lambda: store[NOTES1].last_seq(),
            ]
            for read in reads:
                with pytest.raises(ss.MigrationRequiredError) as info:
                    read()
                assert (info.value.schema, info.value.stored, info.value.code) == ("app", 2, 3)
            assert [row.version for row in store.history()][-1] == 3  # its own history still reads
            store.migrate(to=3, backup=False)  # up again: the object reads and writes as before
            assert store[USERS]["ada"] == Person2("ada", "Ada", "Lovelace")
            store[USERS].put(Person2("bob", "Bob", "B"))
        with store_factory(V3, mode="read") as store:
            assert store[USERS].keys() == ["ada", "alan", "bob", "plato"]

    def test_a_rename_is_undone_though_a_later_version_reuses_the_old_name(self, store_factory: Any) -> None:
        """Found by review: the down step keyed the records by the later version's "people" (by email)."""

        @attrs.define
        class Contact:
            email: str
            phone: str = ""

        rename = ss.Migration(2, "rename people to users", up=up3, down=down3)
        reused = ss.Schema(
            "app",
            version=2,
            collections=[ss.Collection("users", Person1, key="id"), ss.Collection("people", Contact, key="email")],
            logs=[NOTES1],
            migrations=[rename],
        )
        with store_factory(V1) as store:
            seed(store)
        with store_factory(reused, backup=False) as store:
            assert store[reused.collections[0]]["ada"] == Person1("ada", "Ada Lovelace")
            store[reused.collections[1]].put(Contact("x@y.z"))
            store[reused.collections[1]].delete("x@y.z")  # (it must be empty to take the records back)
            store.migrate(to=1, backup=False)
        with store_factory(V1, mode="read") as store:
            check_v1(store)

    def test_another_thread_cannot_write_while_one_migrates(self, store_factory: Any) -> None:
        import threading
        import time

        with store_factory(V1) as store:
            seed(store)
        outcome: list[str] = []

        def slow_down3(m: MigrationContext) -> None:
            started.set()
            time.sleep(0.3)
            down3(m)

        started = threading.Event()
        m3 = ss.Migration(3, M3.name, up=up3, down=slow_down3)
        v3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, m3])
        with store_factory(v3, backup=False) as store:

            def writer() -> None:
                started.wait(5)
                for write in (store[USERS].put, store[USERS].insert):
                    try:
                        write(Person2("late", "Late"))
                        outcome.append("written")
                    except ss.StateStoreError as exc:
                        outcome.append(type(exc).__name__)

            t = threading.Thread(target=writer)
            t.start()
            store.migrate(to=1, backup=False)
            t.join()
        assert outcome == ["MigrationRequiredError", "MigrationRequiredError"]
        with store_factory(V1, mode="read") as store:
            check_v1(store)

    def test_a_rolled_back_savepoint_inside_a_step_undoes_its_log_changes(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)

        def nested(m: MigrationContext) -> None:
            with contextlib.suppress(RuntimeError), m.store.transaction():
                m.store[NOTES1].append(Note1("kept?"), stream="a")
                m.map_entries("notes", lambda e: {**e, "text": "rolled back"})
                m.store[NOTES1].append(Note1("also rolled back"), stream="a")
                raise RuntimeError
            with contextlib.suppress(RuntimeError), m.store.transaction():
                m.map_entries("notes", lambda e: {**e, "text": "rolled back too"})
                raise RuntimeError
            m.map_entries("notes", lambda e: {**e, "text": e["text"].upper()})

        v2 = ss.Schema(
            "app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "n", nested)]
        )
        with store_factory(v2, backup=False) as store:
            assert [(e.seq, e.record.text) for e in store[NOTES1].read()] == [(1, "HELLO"), (2, "CAREFUL!")]
            assert store[NOTES1].append(Note1("next")).seq == 3
