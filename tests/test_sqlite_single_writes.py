"""A single insert or put on SQLite is one statement of its own (``SQLiteStore._write_alone``).

These tests pin each edge of that path: it is taken (one statement, no
transaction), and wherever it must not write it writes nothing and the
transaction path answers exactly as before (a migration by another process,
a damaged or exhausted revision, a busy store, a write inside a transaction,
a closed or read-only store), at the store's durability, per thread and
across processes.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import attrs
import pytest

import statestore as ss
from _sqlite_raw import Statements, children, keep, raw, warm
from statestore.testing.models import SCHEMA, SETTINGS, TASKS, TICKETS, Setting, Task, Ticket


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


def test_a_single_put_or_insert_is_one_statement(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        sql = warm(store)
        tasks = store[TASKS]
        assert tasks.insert(Task("t1", title="one")) == 1
        assert sql.take() == ["INSERT"]
        assert tasks.put(Task("t1", title="two")) == 2
        assert tasks.put(Task("t1", title="three")) == 3
        assert tasks.put(Task("t2")) == 1
        assert sql.take() == ["INSERT", "INSERT", "INSERT"]
        assert not store._con().in_transaction  # type: ignore[attr-defined]
        assert tasks.get_versioned("t1") == ss.Versioned(Task("t1", title="three"), 3)
        # An int key and a composite key take it too.
        sql.take()
        assert store[TICKETS].put(Ticket(7, "a")) == 1
        assert store[TICKETS].put(Ticket(7, "b")) == 2
        assert store[SETTINGS].put(Setting("u", "/p", "n", "v")) == 1
        assert store[SETTINGS].insert(Setting("u", "/p", "m", "v")) == 1
        assert store[SETTINGS].put(Setting("u", "/p", "n", "w")) == 2
        assert sql.take() == ["INSERT"] * 5
        assert store[TICKETS].get_versioned(7) == ss.Versioned(Ticket(7, "b"), 2)
        assert store[SETTINGS].get(("u", "/p", "n")) == Setting("u", "/p", "n", "w")
        # What another connection sees: committed rows with integer revisions.
        rows = raw(path).execute("SELECT key, revision, typeof(revision) FROM tasks ORDER BY key").fetchall()
        assert rows == [("t1", 3, "integer"), ("t2", 1, "integer"), ("warm", 1, "integer")]


def test_an_insert_of_a_stored_key_writes_nothing_and_says_so(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        sql = warm(store)
        tasks = store[TASKS]
        tasks.put(Task("t1", title="one"))
        tasks.put(Task("t1", title="two"))
        sql.take()
        with pytest.raises(ss.AlreadyExistsError) as info:
            tasks.insert(Task("t1", title="three"))
        assert info.value.actual == 2
        assert sql.take() == ["INSERT", "BEGIN", "PRAGMA user_version", "INSERT", "SELECT", "ROLLBACK"]
        assert tasks.get_versioned("t1") == ss.Versioned(Task("t1", title="two"), 2)


def test_writes_inside_a_transaction_are_rolled_back_with_it(path: Path) -> None:
    """A single write inside a transaction must be part of it, not a commit of its own."""
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        warm(store)
        tasks = store[TASKS]
        tasks.put(Task("kept", title="before"))
        with pytest.raises(RuntimeError), store.transaction():
            assert tasks.put(Task("kept", title="inside")) == 2
            assert tasks.insert(Task("new")) == 1
            assert tasks.put(Task("new")) == 2
            raise RuntimeError("roll back")
        assert tasks.get_versioned("kept") == ss.Versioned(Task("kept", title="before"), 1)
        assert "new" not in tasks
        with store.transaction():
            assert tasks.put(Task("kept", title="committed")) == 2
        assert tasks.get_versioned("kept") == ss.Versioned(Task("kept", title="committed"), 2)


# --------------------------------------------------------------------------- the schemas moved


@attrs.define
class Person1:
    id: str
    name: str


@attrs.define
class Person2:
    id: str
    first: str
    last: str


def _split(d: dict[str, object]) -> dict[str, object]:
    first, _, last = str(d.pop("name")).partition(" ")
    return {**d, "first": first, "last": last}


def _join(d: dict[str, object]) -> dict[str, object]:
    return {"id": d["id"], "name": f"{d['first']} {d['last']}"}


PEOPLE1 = ss.Collection("people", Person1, key="id")
PEOPLE2 = ss.Collection("people", Person2, key="id")
PEOPLE1_INDEXED = ss.Collection("people", Person1, key="id", indexes=["name"])
V1 = ss.Schema("app", version=1, collections=[PEOPLE1])
V1_INDEXED = ss.Schema("app", version=1, collections=[PEOPLE1_INDEXED])
V2 = ss.Schema(
    "app",
    version=2,
    collections=[PEOPLE2],
    migrations=[
        ss.Migration(
            2, "split", up=lambda m: m.map_records("people", _split), down=lambda m: m.map_records("people", _join)
        )
    ],
)


def test_a_migration_by_another_process_between_two_single_puts_is_refused(path: Path) -> None:
    loc = f"sqlite:{path}"
    ss.open_store(loc, V1).close()
    with ss.open_store(loc, V1) as old:
        sql = Statements(old)
        people = old[PEOPLE1]
        assert people.put(Person1("ada", "Ada Lovelace")) == 1
        assert people.put(Person1("ada", "Ada King")) == 2
        assert sql.take() == ["INSERT", "INSERT"]  # the one-statement path, before the migration
        with ss.open_store(loc, V2, backup=False) as new:
            migrated = new[PEOPLE2].get_versioned("ada")
            assert migrated is not None
            assert migrated.record == Person2("ada", "Ada", "King")
        for write in (
            lambda: people.put(Person1("ada", "Ada Again")),
            lambda: people.put(Person1("bob", "Bob Old")),
            lambda: people.insert(Person1("cy", "Cy Old")),
        ):
            with pytest.raises(ss.SchemaTooNewError):
                write()
    with ss.open_store(loc, V2, mode="read") as new:
        assert new[PEOPLE2].get_versioned("ada") == migrated
        assert new[PEOPLE2].keys() == ["ada"]


USERS = ss.Collection("users", Person1, key="id")
V2_RENAMED = ss.Schema(
    "app",
    version=2,
    collections=[USERS],
    migrations=[ss.Migration(2, "rename", up=lambda m: m.rename_collection("people", "users"))],
)


def test_a_single_put_into_a_table_another_process_renamed_says_the_store_moved(path: Path) -> None:
    """The statement fails (no such table): the transaction path reports the migration, not damage."""
    loc = f"sqlite:{path}"
    ss.open_store(loc, V1).close()
    with ss.open_store(loc, V1) as old:
        sql = Statements(old)
        assert old[PEOPLE1].put(Person1("ada", "Ada")) == 1
        assert sql.take() == ["INSERT"]
        ss.open_store(loc, V2_RENAMED, backup=False).close()
        for write in (
            lambda: old[PEOPLE1].put(Person1("ada", "Ada Again")),
            lambda: old[PEOPLE1].insert(Person1("b", "B")),
        ):
            with pytest.raises(ss.SchemaTooNewError):
                write()
    with ss.open_store(loc, V2_RENAMED, mode="read") as new:
        assert new[USERS].get_versioned("ada") == ss.Versioned(Person1("ada", "Ada"), 1)
        assert new[USERS].keys() == ["ada"]


def test_a_store_this_object_migrated_down_refuses_single_writes(path: Path) -> None:
    loc = f"sqlite:{path}"
    ss.open_store(loc, V1).close()
    with ss.open_store(loc, V2, backup=False) as store:
        store[PEOPLE2].put(Person2("ada", "Ada", "King"))
        store[PEOPLE2].put(Person2("ada", "Ada", "Lovelace"))
        store.migrate(to=1, backup=False)
        with pytest.raises(ss.MigrationRequiredError):
            store[PEOPLE2].put(Person2("ada", "Ada", "Byron"))
        with pytest.raises(ss.MigrationRequiredError):
            store[PEOPLE2].insert(Person2("bob", "Bob", "B"))
    with ss.open_store(loc, V1, mode="read") as store:
        assert store[PEOPLE1].keys() == ["ada"]


def test_a_schema_change_that_keeps_the_version_lets_single_writes_go_on(path: Path) -> None:
    """Another process adds an index (user_version moves, the version does not): writes go on, checked once."""
    loc = f"sqlite:{path}"
    ss.open_store(loc, V1).close()
    with ss.open_store(loc, V1) as store:
        sql = Statements(store)
        people = store[PEOPLE1]
        assert people.put(Person1("ada", "Ada")) == 1
        assert sql.take() == ["INSERT"]
        ss.open_store(loc, V1_INDEXED).close()
        assert people.put(Person1("ada", "Ada Lovelace")) == 2
        taken = sql.take()
        assert taken[0] == "INSERT"  # wrote nothing: the mark moved
        assert "BEGIN" in taken  # the transaction path checked the schemas and wrote
        assert people.put(Person1("ada", "Ada King")) == 3
        assert sql.take() == ["INSERT"]  # the mark is current again
        assert people.get_versioned("ada") == ss.Versioned(Person1("ada", "Ada King"), 3)


# --------------------------------------------------------------------------- damaged or exhausted revisions


@pytest.mark.parametrize("revision", ["'x'", "0", "-3", "2.5", "x'01'"])
def test_a_single_put_over_a_damaged_revision_writes_nothing_and_reports_it(path: Path, revision: str) -> None:
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1", title="stored"))
    raw(path).execute(f"UPDATE tasks SET revision={revision} WHERE key='t1'")
    before = raw(path).execute("SELECT revision, data FROM tasks WHERE key='t1'").fetchone()
    with ss.open_store(loc, SCHEMA) as store:
        warm(store)
        for write in (lambda: store[TASKS].put(Task("t1", title="new")), lambda: store[TASKS].insert(Task("t1"))):
            with pytest.raises(ss.CorruptStoreError, match="revision"):
                write()
    assert raw(path).execute("SELECT revision, data FROM tasks WHERE key='t1'").fetchone() == before


def test_a_single_put_over_the_last_64_bit_revision_writes_nothing(path: Path) -> None:
    """SQL's revision + 1 would turn into a REAL there: the put is left to the transaction path, as update is."""
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1", title="stored"))
    raw(path).execute(f"UPDATE tasks SET revision={2**63 - 1} WHERE key='t1'")
    with ss.open_store(loc, SCHEMA) as store:
        warm(store)
        with pytest.raises(Exception) as by_update:  # noqa: PT011 - whatever the transaction path raises
            store[TASKS].update("t1", lambda t: t)
        with pytest.raises(by_update.type):
            store[TASKS].put(Task("t1", title="new"))
    row = raw(path).execute("SELECT revision, typeof(revision), data FROM tasks WHERE key='t1'").fetchone()
    assert row[:2] == (2**63 - 1, "integer")
    assert json.loads(row[2])["title"] == "stored"


# --------------------------------------------------------------------------- busy, closed, read-only, durability


def test_a_busy_store_raises_store_busy_after_one_wait(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, busy_timeout=0.2) as store:
        sql = warm(store)
        store[TASKS].put(Task("t1"))
        sql.take()
        blocker = raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            for write in (lambda: store[TASKS].put(Task("t1", title="x")), lambda: store[TASKS].insert(Task("t2"))):
                with pytest.raises(ss.StoreBusyError) as info:
                    write()
                assert info.value.timeout == 0.2
                assert sql.take() == ["INSERT"]  # no second wait on the transaction path
        finally:
            blocker.execute("ROLLBACK")
        assert store[TASKS].get_versioned("t1") == ss.Versioned(Task("t1"), 1)
        assert "t2" not in store[TASKS]


def test_a_single_put_waits_for_another_writer_within_the_busy_timeout(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, busy_timeout=10) as store:
        sql = warm(store)
        store[TASKS].put(Task("t1"))
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        keep(blocker)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("UPDATE tasks SET data = data WHERE key = 't1'")  # a write that commits while the put waits
        committing: list[float] = []  # set just before the other writer's COMMIT runs
        timer = threading.Timer(0.3, lambda: (committing.append(time.monotonic()), blocker.execute("COMMIT")))
        sql.take()
        timer.start()
        try:
            assert store[TASKS].put(Task("t1", title="after")) == 2
            assert committing, "the put returned while the other writer held the lock"
            assert sql.take() == ["INSERT"]
        finally:
            timer.join()
        assert store[TASKS].get_versioned("t1") == ss.Versioned(Task("t1", title="after"), 2)


def test_closed_and_read_only_stores_refuse_single_writes(path: Path) -> None:
    loc = f"sqlite:{path}"
    store = ss.open_store(loc, SCHEMA)
    store[TASKS].put(Task("t1"))
    tasks = store[TASKS]
    store.close()
    with pytest.raises(ss.StoreClosedError):
        tasks.put(Task("t1"))
    with pytest.raises(ss.StoreClosedError):
        tasks.insert(Task("t2"))
    with ss.open_store(loc, SCHEMA, mode="read") as reader:
        with pytest.raises(ss.ReadOnlyError):
            reader[TASKS].put(Task("t1", title="x"))
        with pytest.raises(ss.ReadOnlyError):
            reader[TASKS].insert(Task("t2"))
        assert reader[TASKS].get_versioned("t1") == ss.Versioned(Task("t1"), 1)
        assert reader[TASKS].keys() == ["t1"]


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_single_writes_commit_at_the_store_durability(path: Path, durability: str, synchronous: int) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, durability=durability) as store:  # type: ignore[arg-type]
        sql = warm(store)
        assert store[TASKS].put(Task("t1")) == 1
        assert store[TASKS].put(Task("t1", title="two")) == 2
        assert sql.take() == ["INSERT", "INSERT"]
        con: sqlite3.Connection = store._con()  # type: ignore[attr-defined]
        assert con.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert not con.in_transaction
        # Committed: another connection reads it while the store is still open.
        assert raw(path).execute("SELECT revision FROM tasks WHERE key='t1'").fetchone() == (2,)


# --------------------------------------------------------------------------- threads and processes


def test_threads_putting_one_key_get_distinct_revisions(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        warm(store)
        got: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def work(name: str) -> None:
            start.wait()
            mine = [store[TASKS].put(Task("shared", title=name)) for _ in range(50)]
            with lock:
                got.extend(mine)

        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == list(range(1, 201))
        versioned = store[TASKS].get_versioned("shared")
        assert versioned is not None
        assert versioned.revision == 200


_CHILD = """
import json, sys
import statestore as ss
from statestore.testing.models import SCHEMA, TASKS, Task
loc, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ss.open_store(loc, SCHEMA) as store:
    tasks = store[TASKS]
    print(json.dumps([tasks.put(Task("shared", title=name)) for _ in range(n)]))
"""


def test_processes_putting_one_key_get_distinct_revisions(path: Path) -> None:
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("shared"))
    got = children(_CHILD, loc)
    assert sorted(got) == list(range(2, 302))
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        versioned = store[TASKS].get_versioned("shared")
        assert versioned is not None
        assert versioned.revision == 301


def test_a_composite_key_given_as_a_tuple_subclass_reads_and_writes_the_same_row(path: Path) -> None:
    """The primitives reach the connection directly now: a named tuple is still a composite key."""
    SettingKey = namedtuple("SettingKey", "scope project name")
    key = SettingKey("u", "/p", "n")
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        settings = store[SETTINGS]
        settings.put(Setting("u", "/p", "n", "v"))
        assert settings.get(key) == Setting("u", "/p", "n", "v")
        assert settings.update(key, lambda s: Setting("u", "/p", "n", "w")) == Setting("u", "/p", "n", "w")
        assert settings.get_versioned(("u", "/p", "n")) == ss.Versioned(Setting("u", "/p", "n", "w"), 2)
        assert settings.delete(key)
        assert len(settings) == 0


_KILLED_CHILD = """
import sys
import statestore as ss
from statestore.testing.models import SCHEMA, TASKS, Task
loc, start = sys.argv[1], int(sys.argv[2])
with ss.open_store(loc, SCHEMA) as store:
    tasks = store[TASKS]
    for i in range(start, start + 1_000_000):
        assert tasks.insert(Task(f"n{i:07d}")) == 1
        rev = tasks.put(Task("k", title=str(i)))
        print(i, rev, flush=True)
"""


def test_single_writes_a_killed_process_reported_are_all_there(path: Path) -> None:
    """SIGKILL while single writes run: every one that returned is stored, and nothing else is half done."""
    loc = f"sqlite:{path}"
    ss.open_store(loc, SCHEMA).close()
    start = 0
    for _round in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_CHILD, loc, str(start)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(100)]  # 100 writes acknowledged, more under way
        child.kill()
        rest = child.stdout.read()  # what the pipe held (communicate() would skip what readline() buffered)
        child.stdout.close()
        child.wait(timeout=60)
        complete = [line for line in [*lines, *rest.splitlines(keepends=True)] if line.endswith("\n")]
        last_i, last_rev = map(int, complete[-1].split())
        with ss.open_store(loc, SCHEMA, mode="read") as store:
            tasks = store[TASKS]
            stored = tasks.get_versioned("k")
            assert stored is not None
            # At most one put was under way when the kill came: it is stored whole or not at all.
            assert stored.revision in (last_rev, last_rev + 1)
            assert stored.record.title == str(last_i + stored.revision - last_rev)
            inserted = [k for k in tasks if isinstance(k, str) and k.startswith("n")]
            assert inserted[: last_i + 1] == [f"n{i:07d}" for i in range(last_i + 1)]
            assert len(inserted) in (last_i + 1, last_i + 2)
        assert raw(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        start = len(inserted)


@attrs.define
class Shadow:
    id: str
    user_version: int = 0


SHADOW = ss.Collection("pragma_user_version", Shadow, key="id", indexes=["user_version"])
OTHER = ss.Schema("other", version=1, collections=[SHADOW])


def test_a_collection_named_like_the_pragma_function_cannot_stand_in_for_the_schema_mark(path: Path) -> None:
    """A table called pragma_user_version answers that name before the pragma does: the mark is read otherwise."""
    loc = f"sqlite:{path}"
    ss.open_store(loc, [V1, OTHER]).close()
    with ss.open_store(loc, [V1, OTHER]) as old:
        mark = raw(path).execute("PRAGMA user_version").fetchone()[0]
        old[SHADOW].put(Shadow("x", user_version=mark))  # what a plain "FROM pragma_user_version" would read
        assert old[PEOPLE1].put(Person1("ada", "Ada King")) == 1
        with ss.open_store(loc, [V2, OTHER], backup=False) as new:
            assert new[PEOPLE2].get("ada") == Person2("ada", "Ada", "King")
            new[SHADOW].put(Shadow("x", user_version=mark))  # the table still says the old mark
        assert raw(path).execute("PRAGMA user_version").fetchone()[0] != mark
        with pytest.raises(ss.SchemaTooNewError):
            old[PEOPLE1].put(Person1("ada", "Ada Old"))
        with pytest.raises(ss.SchemaTooNewError):
            old[PEOPLE1].insert(Person1("bob", "Bob Old"))
    with ss.open_store(loc, [V2, OTHER], mode="read") as new:
        assert new[PEOPLE2].keys() == ["ada"]
        assert new[PEOPLE2].get("ada") == Person2("ada", "Ada", "King")
