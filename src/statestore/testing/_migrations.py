"""The migration contract: the same migrations give the same stores on every persistent backend."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.migrations import MigrationContext
from statestore.testing._common import StoreFixture

__all__ = ["MigrationContract"]


# A small app through four versions:
#   v1  people {id, name}, notes {text}
#   v2  people {id, first, last}            (split the name; down joins it)
#   v3  users  {id, first, last}            (people renamed to users)
#   v4  notes  {text, level}                (every note gets a level; down removes it)


@attrs.define
class Person1:
    id: str
    name: str


@attrs.define
class Person2:
    id: str
    first: str
    last: str = ""


@attrs.define
class Note1:
    text: str


@attrs.define
class Note4:
    text: str
    level: str = "info"


def _split(d: dict[str, Any]) -> dict[str, Any]:
    first, _, last = d.pop("name").partition(" ")
    return {**d, "first": first, "last": last}


def _join(d: dict[str, Any]) -> dict[str, Any]:
    first, last = d.pop("first"), d.pop("last")
    return {**d, "name": f"{first} {last}".strip()}


def _up2(m: MigrationContext) -> None:
    m.map_records("people", _split)


def _down2(m: MigrationContext) -> None:
    m.map_records("people", _join)


def _up3(m: MigrationContext) -> None:
    m.rename_collection("people", "users")


def _down3(m: MigrationContext) -> None:
    m.rename_collection("users", "people")


def _up4(m: MigrationContext) -> None:
    m.map_entries("notes", lambda e: {**e, "level": "warn" if "!" in e["text"] else "info"})


def _down4(m: MigrationContext) -> None:
    m.map_entries("notes", lambda e: {k: v for k, v in e.items() if k != "level"})


M2 = ss.Migration(2, "split person names", up=_up2, down=_down2)
M3 = ss.Migration(3, "rename people to users", up=_up3, down=_down3)
M4 = ss.Migration(4, "notes get a level", up=_up4, down=_down4)

PEOPLE1 = ss.Collection("people", Person1, key="id")
PEOPLE2 = ss.Collection("people", Person2, key="id", indexes=["last"])
USERS = ss.Collection("users", Person2, key="id", indexes=["last"])
NOTES1 = ss.Log("notes", Note1)
NOTES4 = ss.Log("notes", Note4)

V1 = ss.Schema("app", version=1, collections=[PEOPLE1], logs=[NOTES1])
V2 = ss.Schema("app", version=2, collections=[PEOPLE2], logs=[NOTES1], migrations=[M2])
V3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, M3])
V4 = ss.Schema("app", version=4, collections=[USERS], logs=[NOTES4], migrations=[M2, M3, M4])


def _seed(store: ss.Store) -> None:
    store[PEOPLE1].put(Person1("ada", "Ada Lovelace"))
    store[PEOPLE1].put(Person1("alan", "Alan Turing"))
    store[PEOPLE1].put(Person1("alan", "Alan M Turing"))  # revision 2
    store[PEOPLE1].put(Person1("plato", "Plato"))
    store[NOTES1].append(Note1("hello"), stream="a")
    store[NOTES1].append(Note1("careful!"), stream="b")


def _check_v1(store: ss.Store) -> None:
    assert store[PEOPLE1].all() == [
        Person1("ada", "Ada Lovelace"),
        Person1("alan", "Alan M Turing"),
        Person1("plato", "Plato"),
    ]
    assert [(e.seq, e.stream, e.version, e.record) for e in store[NOTES1].read()] == [
        (1, "a", 1, Note1("hello")),
        (2, "b", 1, Note1("careful!")),
    ]


def _people2() -> list[Person2]:
    return [Person2("ada", "Ada", "Lovelace"), Person2("alan", "Alan", "M Turing"), Person2("plato", "Plato", "")]


def _check_v4(store: ss.Store) -> None:
    assert store[USERS].all() == _people2()
    assert store[USERS].find(last="Lovelace") == [Person2("ada", "Ada", "Lovelace")]
    assert [(e.seq, e.stream, e.record) for e in store[NOTES4].read()] == [
        (1, "a", Note4("hello", "info")),
        (2, "b", Note4("careful!", "warn")),
    ]


class MigrationContract(StoreFixture):
    """Migrations, history, backups, refusals and several schemas per store.

    ``store_factory(schema, mode=..., **options)`` passes ``options``
    (``backup``, ``check_history``) on to ``open_store``; its ``path`` is the
    store's file or folder.
    """

    def test_chain_up_down_and_up_again(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(V4, backup=False) as store:
            _check_v4(store)
            assert store[USERS].get_versioned("alan") == ss.Versioned(Person2("alan", "Alan", "M Turing"), 3)
            rows = [(r.version, r.direction, r.name) for r in store.history()]
            assert rows == [(1, "create", ""), (2, "up", M2.name), (3, "up", M3.name), (4, "up", M4.name)]
            # Down one step at a time, checking the data with the code of each version.
            steps = store.migrate(to=3, backup=False)
            assert [(r.version, r.direction) for r in steps] == [(4, "down")]
        with store_factory(V3) as store:
            assert store[USERS].all() == _people2()
            assert [e.record for e in store[NOTES1].read()] == [Note1("hello"), Note1("careful!")]
            store.migrate(to=2, backup=False)
        with store_factory(V2) as store:
            assert store[PEOPLE2].all() == _people2()
            store.migrate(to=1, backup=False)
        with store_factory(V1, mode="read") as store:
            _check_v1(store)
        with store_factory(V4, backup=False) as store:
            _check_v4(store)
            directions = [r.direction for r in store.history()]
            assert directions == ["create", "up", "up", "up", "down", "down", "down", "up", "up", "up"]

    def test_migrate_down_in_one_call_then_reopen_migrates_up(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(V4, backup=False) as store:
            steps = store.migrate(to=1, backup=False)
            assert [r.version for r in steps] == [4, 3, 2]
        with store_factory(V1, mode="read") as store:
            _check_v1(store)
        with pytest.raises(ss.MigrationRequiredError):
            store_factory(V4, mode="read")
        with store_factory(V4, backup=False) as store:
            _check_v4(store)

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
            _seed(store)
        with pytest.raises(ss.MigrationError) as info:
            store_factory(v4bad, backup=False)
        err = info.value
        assert (err.version, err.name, err.direction, err.collection, err.key) == (4, bad.name, "up", "users", "alan")
        assert "no middle names" in str(err)
        assert isinstance(err.__cause__, ValueError)
        # Steps 2 and 3 committed; step 4 left nothing behind.
        with store_factory(V3, mode="read") as store:
            assert store[USERS].all() == _people2()
            assert [(r.version, r.direction) for r in store.history()] == [(1, "create"), (2, "up"), (3, "up")]

    def test_migration_error_pickles(self) -> None:
        import pickle

        err = ss.MigrationError("x", "app", 3, "n", "up", "bad", "users", "k")
        assert str(pickle.loads(pickle.dumps(err))) == str(err)

    def test_map_records_deletes_rekeys_and_rejects_bad_records(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)

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
            _seed(store)
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
            _seed(store)
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
            _seed(store)
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
            _seed(store)
            store[USERS].put(Person2("u", "U"))
        v2 = ss.Schema("app", version=2, collections=[USERS], logs=[NOTES1], migrations=[ss.Migration(2, "r", _up3)])
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
        one_way = ss.Migration(3, "one way", up=_up3)
        v3 = ss.Schema("app", version=3, collections=[USERS], logs=[NOTES1], migrations=[M2, one_way])
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(v3, backup=False) as store:
            with pytest.raises(ss.MigrationError, match="no down step") as info:
                store.migrate(to=1, backup=False)
            assert info.value.version == 3
            assert store[USERS].all() == _people2()  # nothing ran: still at 3
            with pytest.raises(ValueError, match="to must be a version from 1 to 3"):
                store.migrate(to=4)
            assert store.migrate(to=3) == []

    def test_newer_store_is_refused_in_both_modes_untouched(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(V4, backup=False):
            pass
        for mode in ("read", "write"):
            with pytest.raises(ss.SchemaTooNewError):
                store_factory(V2, mode=mode)
        with store_factory(V4, mode="read") as store:
            assert len(store.history()) == 4

    def test_history_that_disagrees_is_refused_unless_allowed(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(V3, backup=False):
            pass
        renamed = ss.Migration(3, "rename people to members", up=_up3, down=_down3)
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
            _seed(store)
        before = set(store_factory.path.parent.iterdir())
        with store_factory(V4) as store:
            _check_v4(store)
        backups = sorted(set(store_factory.path.parent.iterdir()) - before)
        backups = [p for p in backups if "backup" in p.name]
        assert len(backups) == 1
        assert ".backup-app-v1-" in backups[0].name
        # A backup is a store at the old version: open it as one (or move it back in place).
        with store_factory.open_at(backups[0], V1, mode="read") as old:  # the factory knows its backend
            _check_v1(old)
        with store_factory(V4) as store:  # nothing pending: no new backup
            pass
        assert len([p for p in store_factory.path.parent.iterdir() if "backup" in p.name]) == 1

    def test_no_backup_when_asked(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
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

    def test_refusals_of_the_context_name_what_went_wrong(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)

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
            _check_v1(store)  # every failed step left the store as it was

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
            _seed(store)

        def step(m: MigrationContext) -> None:
            m.map_records("people", lambda d: {**d, "name": value})

        bad = ss.Schema("app", version=2, collections=[PEOPLE1], logs=[NOTES1], migrations=[ss.Migration(2, "x", step)])
        with pytest.raises(ss.MigrationError) as info:
            store_factory(bad, backup=False)
        assert where in str(info.value), str(info.value)
        assert info.value.collection == "people"
        with store_factory(V1, mode="read") as store:
            _check_v1(store)

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

    def test_rename_to_a_name_the_code_does_not_declare(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
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
            _seed(store)
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
            _seed(store)
        with store_factory(V4, backup=False) as store:
            store.migrate(to=1)
            store.migrate(to=4)
            store.migrate(to=1)
        backups = [p for p in store_factory.path.parent.iterdir() if ".backup-" in p.name]
        assert len(backups) == 3

    def test_a_step_sees_its_own_rewrites_and_appends(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
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
            _seed(store)
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
        finally:
            old.close()

    def test_a_store_opened_before_a_migration_refuses_to_write_after_it(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)
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
            _seed(store)
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

        rename = ss.Migration(2, "rename people to users", up=_up3, down=_down3)
        reused = ss.Schema(
            "app",
            version=2,
            collections=[ss.Collection("users", Person1, key="id"), ss.Collection("people", Contact, key="email")],
            logs=[NOTES1],
            migrations=[rename],
        )
        with store_factory(V1) as store:
            _seed(store)
        with store_factory(reused, backup=False) as store:
            assert store[reused.collections[0]]["ada"] == Person1("ada", "Ada Lovelace")
            store[reused.collections[1]].put(Contact("x@y.z"))
            store[reused.collections[1]].delete("x@y.z")  # (it must be empty to take the records back)
            store.migrate(to=1, backup=False)
        with store_factory(V1, mode="read") as store:
            _check_v1(store)

    def test_another_thread_cannot_write_while_one_migrates(self, store_factory: Any) -> None:
        import threading
        import time

        with store_factory(V1) as store:
            _seed(store)
        outcome: list[str] = []

        def slow_down3(m: MigrationContext) -> None:
            started.set()
            time.sleep(0.3)
            _down3(m)

        started = threading.Event()
        m3 = ss.Migration(3, M3.name, up=_up3, down=slow_down3)
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
            _check_v1(store)

    def test_a_rolled_back_savepoint_inside_a_step_undoes_its_log_changes(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            _seed(store)

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
