"""The migration contract: the same migrations give the same stores on every persistent backend."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.migrations import MigrationContext
from statestore.testing._migration_app import (
    M2,
    M3,
    M4,
    NOTES1,
    NOTES4,
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
    check_v4,
    down3,
    people2,
    seed,
    up3,
)
from statestore.testing._migration_steps import MigrationStepContract

__all__ = ["MigrationContract"]


class MigrationContract(MigrationStepContract):
    """Migrations, history, backups, refusals and several schemas per store.

    ``store_factory(schema, mode=..., **options)`` passes ``options``
    (``backup``, ``check_history``) on to ``open_store``; its ``path`` is the
    store's file or folder.
    """

    def test_chain_up_down_and_up_again(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False) as store:
            check_v4(store)
            assert store[USERS].get_versioned("alan") == ss.Versioned(Person2("alan", "Alan", "M Turing"), 3)
            rows = [(r.version, r.direction, r.name) for r in store.history()]
            assert rows == [(1, "create", ""), (2, "up", M2.name), (3, "up", M3.name), (4, "up", M4.name)]
            # Down one step at a time, checking the data with the code of each version.
            steps = store.migrate(to=3, backup=False)
            assert [(r.version, r.direction) for r in steps] == [(4, "down")]
        with store_factory(V3) as store:
            assert store[USERS].all() == people2()
            assert [e.record for e in store[NOTES1].read()] == [Note1("hello"), Note1("careful!")]
            store.migrate(to=2, backup=False)
        with store_factory(V2) as store:
            assert store[PEOPLE2].all() == people2()
            store.migrate(to=1, backup=False)
        with store_factory(V1, mode="read") as store:
            check_v1(store)
        with store_factory(V4, backup=False) as store:
            check_v4(store)
            directions = [r.direction for r in store.history()]
            assert directions == ["create", "up", "up", "up", "down", "down", "down", "up", "up", "up"]

    def test_migrate_down_in_one_call_then_reopen_migrates_up(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False) as store:
            steps = store.migrate(to=1, backup=False)
            assert [r.version for r in steps] == [4, 3, 2]
        with store_factory(V1, mode="read") as store:
            check_v1(store)
        with pytest.raises(ss.MigrationRequiredError):
            store_factory(V4, mode="read")
        with store_factory(V4, backup=False) as store:
            check_v4(store)

    def test_a_store_created_at_the_latest_version_runs_no_migration(self, store_factory: Any) -> None:
        with store_factory(V4) as store:
            store[USERS].put(Person2("x", "X"))
            assert [(r.version, r.direction) for r in store.history()] == [(4, "create")]
        with store_factory(V4, mode="read") as store:
            assert store[USERS].keys() == ["x"]

    def test_failing_migration_rolls_back_and_names_the_record(self, store_factory: Any) -> None:
        def explode(m: MigrationContext) -> None:
            def fn(d: dict[str, Any]) -> dict[str, Any]:
                if d["id"] == "alan":
                    raise ValueError("no middle names")
                return {**d, "touched": True}

            m.map_records("users", fn)

        bad = ss.Migration(4, "explodes on alan", up=explode)
        v4bad = ss.Schema("app", version=4, collections=[USERS], logs=[NOTES1], migrations=[M2, M3, bad])
        with store_factory(V1) as store:
            seed(store)
        with pytest.raises(ss.MigrationError) as info:
            store_factory(v4bad, backup=False)
        err = info.value
        assert (err.version, err.name, err.direction, err.collection, err.key) == (4, bad.name, "up", "users", "alan")
        assert "no middle names" in str(err)
        assert isinstance(err.__cause__, ValueError)
        # Steps 2 and 3 committed; step 4 left nothing behind.
        with store_factory(V3, mode="read") as store:
            assert store[USERS].all() == people2()
            assert [(r.version, r.direction) for r in store.history()] == [(1, "create"), (2, "up"), (3, "up")]

    def test_migration_error_pickles(self) -> None:
        import pickle

        err = ss.MigrationError("x", "app", 3, "n", "up", "bad", "users", "k")
        assert str(pickle.loads(pickle.dumps(err))) == str(err)

    def test_map_records_deletes_rekeys_and_rejects_bad_records(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)

        def rekey(m: MigrationContext) -> None:
            m.map_records("people", lambda d: None if d["id"] == "plato" else {**d, "id": d["id"].upper()})

        v2 = ss.Schema(
            "app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "rekey", up=rekey)]
        )
        with store_factory(v2) as store:
            assert store[PEOPLE1].keys() == ["ADA", "ALAN"]
            assert store[PEOPLE1]["ALAN"] == Person1("ALAN", "Alan M Turing")

        def keyless(m: MigrationContext) -> None:
            m.map_records("people", lambda d: {"name": d["name"]})

        v3 = ss.Schema(
            "app",
            version=3,
            collections=[PEOPLE1],
            logs=[NOTES1],
            migrations=[ss.Migration(2, "rekey", up=rekey), ss.Migration(3, "keyless", up=keyless)],
        )
        with pytest.raises(ss.MigrationError, match="no key field 'id'") as info:
            store_factory(v3, backup=False)
        assert (info.value.collection, info.value.key) == ("people", "ADA")

    def test_context_reads_and_writes_raw_dicts(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        seen: dict[str, Any] = {}

        def look(m: MigrationContext) -> None:
            seen["records"] = m.records("people")
            seen["one"] = m.get("people", "ada")
            seen["missing"] = m.get("people", "nobody")
            seen["entries"] = [(e["seq"], e["stream"], e["record"]) for e in m.entries("notes")]
            m.put("people", {"id": "zeno", "name": "Zeno"})
            seen["deleted"] = m.delete("people", "plato")

        v2 = ss.Schema(
            "app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "look", up=look)]
        )
        with store_factory(v2) as store:
            assert store[PEOPLE1].keys() == ["ada", "alan", "zeno"]
        assert seen["records"][0] == {"id": "ada", "name": "Ada Lovelace"}
        assert seen["one"] == {"id": "ada", "name": "Ada Lovelace"}
        assert seen["missing"] is None
        assert seen["entries"] == [(1, "a", {"text": "hello"}), (2, "b", {"text": "careful!"})]
        assert seen["deleted"] is True

    def test_drop_collection_and_a_collection_the_code_no_longer_declares(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        only_notes = ss.Schema("app", version=2, collections=[], logs=[NOTES1])
        with store_factory(only_notes) as store:  # undeclared: kept, untouched
            assert store[NOTES1].last_seq() == 2
        dropping = ss.Schema(
            "app",
            version=3,
            collections=[PEOPLE1],
            logs=[NOTES1],
            migrations=[ss.Migration(3, "drop people", up=lambda m: m.drop_collection("people"))],
        )
        with store_factory(dropping, backup=False):  # a retired collection is still reachable
            pass
        with store_factory(
            ss.Schema("app", version=3, collections=[PEOPLE1], logs=[NOTES1], migrations=dropping.migrations)
        ) as store:
            assert store[PEOPLE1].keys() == []

    def test_drop_collection(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        dropping = ss.Schema(
            "app",
            version=2,
            collections=[],
            logs=[NOTES1],
            migrations=[ss.Migration(2, "drop people", up=lambda m: m.drop_collection("people"))],
        )
        with store_factory(dropping):
            pass
        again = ss.Schema("app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=dropping.migrations)
        with store_factory(again) as store:
            assert store[PEOPLE1].keys() == []

    def test_rename_onto_a_collection_with_records_fails(self, store_factory: Any) -> None:
        with store_factory(ss.Schema("app", version=1, collections=[PEOPLE1, USERS], logs=[NOTES1])) as store:
            seed(store)
            store[USERS].put(Person2("u", "U"))
        v2 = ss.Schema("app", version=2, collections=[USERS], logs=[NOTES1], migrations=[ss.Migration(2, "r", up3)])
        with pytest.raises(ss.MigrationError, match="already holds records"):
            store_factory(v2, backup=False)

    def test_unique_clash_after_migration_fails_the_last_step(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            store[PEOPLE1].put(Person1("a", "Same Name"))
            store[PEOPLE1].put(Person1("b", "Same Name"))
        unique = ss.Collection("people", Person2, key="id", unique=["last"])
        v2 = ss.Schema("app", version=2, collections=[unique], logs=[NOTES1], migrations=[M2])
        with pytest.raises(ss.MigrationError, match="share unique last"):
            store_factory(v2, backup=False)
        with store_factory(V1, mode="read") as store:
            assert [p.name for p in store[PEOPLE1].all()] == ["Same Name", "Same Name"]

    def test_downgrade_without_down_refuses_before_running(self, store_factory: Any) -> None:
        one_way = ss.Migration(3, "one way", up=up3)
        v3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, one_way])
        with store_factory(V1) as store:
            seed(store)
        with store_factory(v3, backup=False) as store:
            with pytest.raises(ss.MigrationError, match="no down step") as info:
                store.migrate(to=1, backup=False)
            assert info.value.version == 3
            assert store[USERS].all() == people2()  # nothing ran: still at 3
            with pytest.raises(ValueError, match="to must be a version from 1 to 3"):
                store.migrate(to=4)
            assert store.migrate(to=3) == []

    def test_newer_store_is_refused_in_both_modes_untouched(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False):
            pass
        for mode in ("read", "write"):
            with pytest.raises(ss.SchemaTooNewError):
                store_factory(V2, mode=mode)
        with store_factory(V4, mode="read") as store:
            assert len(store.history()) == 4

    def test_history_that_disagrees_is_refused_unless_allowed(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V3, backup=False):
            pass
        renamed = ss.Migration(3, "rename people to members", up=up3, down=down3)
        v3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, renamed])
        for mode in ("read", "write"):
            with pytest.raises(ss.MigrationHistoryError, match="rename people to members") as info:
                store_factory(v3, mode=mode)
            assert info.value.version == 3
        missing = ss.Schema("app", version=4, collections=[USERS], logs=[NOTES4], migrations=[M3, M4])
        with pytest.raises(ss.MigrationHistoryError, match="declares no migration"):
            store_factory(missing)
        with store_factory(v3, check_history=False) as store:
            assert store[USERS].keys() == ["ada", "alan", "plato"]

    def test_backup_is_taken_before_the_first_pending_migration(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        before = set(store_factory.path.parent.iterdir())
        with store_factory(V4) as store:
            check_v4(store)
        backups = sorted(set(store_factory.path.parent.iterdir()) - before)
        backups = [p for p in backups if "backup" in p.name]
        assert len(backups) == 1
        assert ".backup-app-v1-" in backups[0].name
        # A backup is a store at the old version: open it as one (or move it back in place).
        with store_factory.open_at(backups[0], V1, mode="read") as old:  # the factory knows its backend
            check_v1(old)
        with store_factory(V4) as store:  # nothing pending: no new backup
            pass
        assert len([p for p in store_factory.path.parent.iterdir() if "backup" in p.name]) == 1

    def test_no_backup_when_asked(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False):
            pass
        assert not [p for p in store_factory.path.parent.iterdir() if "backup" in p.name]

    def test_several_schemas_in_one_store(self, store_factory: Any) -> None:
        @attrs.define
        class Job:
            id: str
            state: str = "queued"

        @attrs.define
        class Audit:
            what: str

        jobs = ss.Collection("jobs", Job, key="id")
        audit = ss.Log("audit", Audit)
        queue1 = ss.Schema("queue", version=1, collections=[jobs])
        audit1 = ss.Schema("audit", version=1, collections=[], logs=[audit])

        def shout(m: MigrationContext) -> None:
            m.map_entries("audit", lambda e: {"what": e["what"].upper()})

        audit2 = ss.Schema(
            "audit", version=2, collections=[], logs=[audit], migrations=[ss.Migration(2, "shout", shout)]
        )
        with store_factory([queue1, audit1]) as store:
            store[jobs].put(Job("j1"))
            store[audit].append(Audit("queued j1"))
        with store_factory([queue1, audit2], backup=False) as store:
            assert store[jobs].all() == [Job("j1")]
            assert [e.record for e in store[audit].read()] == [Audit("QUEUED J1")]
            assert [r.version for r in store.history("queue")] == [1]
            assert [r.version for r in store.history("audit")] == [1, 2]
            with pytest.raises(ValueError, match="say which"):
                store.migrate(to=1)
            with pytest.raises(ss.MigrationError, match="no down step"):
                store.migrate(to=1, schema="audit", backup=False)
        # One part alone opens the shared store; a part may not reuse another part's names.
        with store_factory(queue1, mode="read") as store:
            assert store[jobs].keys() == ["j1"]
        clash = ss.Schema("other", version=1, collections=[ss.Collection("jobs", Job, key="id")])
        with pytest.raises(ss.SchemaMismatchError, match="already used by schema 'queue'"):
            store_factory(clash)
        with pytest.raises(ss.SchemaError, match="names are unique across a store"):
            store_factory([queue1, clash])
