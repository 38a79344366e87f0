"""A single append on SQLite is one statement of its own (``SQLiteStore._append_alone``), and the schema mark row.

As ``test_sqlite_single_writes.py`` does for insert and put: the path is taken
(one statement, no transaction), and wherever it must not write it writes
nothing and the transaction path answers as before (an expected version that
is not the stream's, a damaged or last version, a migration by another
process, a busy store, an append inside a transaction), per thread and
across processes, with ``at`` in ``seq`` order.

The single statements compare the ``schema_mark`` row of ``_statestore_meta``,
which triggers on ``_statestore_schemas`` move: a migration by an older
statestore (which moves only ``PRAGMA user_version`` and the schemas table)
must stop them too, and a store made before the row existed gets it on its
first write-mode open.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

import statestore as ss
from _sqlite_raw import Statements, children, raw, warm
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


def _rows(path: Path) -> list[tuple[object, ...]]:
    return (
        raw(path).execute("SELECT seq, stream, version, typeof(version), at, data FROM events ORDER BY seq").fetchall()
    )


def test_a_single_append_is_one_statement(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        sql = warm(store)
        events = store[EVENTS]
        written = [
            events.append(Event("a", n=1), stream="s"),
            events.append(Event("b", n=2), stream="s"),
            events.append(Event("c", n=3), stream="t"),
            events.append(Event("d", n=4), stream="s", expect_version=2),
            events.append(Event("e", n=5), stream="u", expect_version=0),
        ]
        assert sql.take() == ["INSERT"] * 5
        assert not store._con().in_transaction  # type: ignore[attr-defined]
        assert [(e.seq, e.stream, e.version) for e in written] == [
            (1, "s", 1),
            (2, "s", 2),
            (3, "t", 1),
            (4, "s", 3),
            (5, "u", 1),
        ]
        assert events.read() == written
        assert all(e.at.utcoffset() == timedelta(0) for e in written)
    rows = _rows(path)
    # What another connection sees: integer versions, and ``at`` as the entries carry it.
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(e.seq, e.stream, e.version, "integer") for e in written]
    assert [r[4] for r in rows] == [e.at.isoformat(timespec="microseconds") for e in written]
    assert [json.loads(str(r[5])) for r in rows] == [
        {"type": e.record.type, "actor": "", "n": e.record.n} for e in written
    ]


def test_an_expected_version_that_is_not_the_streams_writes_nothing_and_says_so(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        sql = warm(store)
        events = store[EVENTS]
        events.append(Event("a"), stream="s")
        events.append(Event("b"), stream="s")
        sql.take()
        for expected in (0, 1, 3, 2**63 - 1):
            with pytest.raises(ss.StreamConflictError) as info:
                events.append(Event("stale"), stream="s", expect_version=expected)
            assert (info.value.expected, info.value.actual) == (expected, 2)
            # Declined by the statement; the transaction path then found the conflict and wrote nothing.
            assert sql.take() == ["INSERT", "BEGIN", "PRAGMA user_version", "SELECT", "ROLLBACK"]
        with pytest.raises(ss.StreamConflictError):
            events.append(Event("stale"), stream="new", expect_version=1)
    assert [(r[1], r[2]) for r in _rows(path)] == [("s", 1), ("s", 2)]


def test_an_append_inside_a_transaction_is_part_of_it(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        sql = warm(store)
        events = store[EVENTS]
        events.append(Event("kept"), stream="s")
        with pytest.raises(RuntimeError), store.transaction():
            assert events.append(Event("inside"), stream="s").version == 2
            raise RuntimeError("roll back")
        taken = sql.take()
        assert taken[:2] == ["INSERT", "BEGIN"]
        assert taken[-1] == "ROLLBACK"
        assert taken.count("INSERT") == 2  # the lone append, then the one inside the transaction
        assert [e.record.type for e in events.read()] == ["kept"]
        assert events.append(Event("after"), stream="s").version == 2


@pytest.mark.parametrize("version", ["'x'", "2.5", "x'01'"])
def test_a_single_append_after_a_damaged_version_writes_nothing_and_reports_it(path: Path, version: str) -> None:
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[EVENTS].append(Event("a"), stream="s")
    raw(path).execute(f"UPDATE events SET version = {version} WHERE stream = 's'")
    before = _rows(path)
    with ss.open_store(loc, SCHEMA) as store:
        warm(store)
        for append in (
            lambda: store[EVENTS].append(Event("b"), stream="s"),
            lambda: store[EVENTS].append(Event("b"), stream="s", expect_version=1),
        ):
            with pytest.raises(ss.CorruptStoreError, match="version"):
                append()
    assert _rows(path) == before


def test_a_single_append_after_the_last_64_bit_version_writes_nothing(path: Path) -> None:
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[EVENTS].append(Event("a"), stream="s")
    raw(path).execute(f"UPDATE events SET version = {2**63 - 1} WHERE stream = 's'")
    before = _rows(path)
    with ss.open_store(loc, SCHEMA) as store:
        warm(store)
        with pytest.raises(ss.StreamVersionLimitError):
            store[EVENTS].append(Event("b"), stream="s")
        # One below the last still has a successor: the statement writes it.
        raw(path).execute(f"UPDATE events SET version = {2**63 - 2} WHERE stream = 's'")
        assert store[EVENTS].append(Event("c"), stream="s").version == 2**63 - 1
    rows = _rows(path)
    assert rows[0][1:4] == ("s", 2**63 - 2, "integer")
    assert rows[1][1:4] == ("s", 2**63 - 1, "integer")
    assert len(rows) == len(before) + 1


def test_a_busy_store_raises_store_busy_after_one_wait(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, busy_timeout=0.2) as store:
        sql = warm(store)
        store[EVENTS].append(Event("a"), stream="s")
        sql.take()
        blocker = raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            start = time.monotonic()
            with pytest.raises(ss.StoreBusyError) as info:
                store[EVENTS].append(Event("b"), stream="s")
            assert time.monotonic() - start < 10  # (one wait of 0.2 s: the statements below show it)
            assert info.value.timeout == 0.2
            assert sql.take() == ["INSERT"]  # no second wait on the transaction path
        finally:
            blocker.execute("ROLLBACK")
        assert [e.record.type for e in store[EVENTS].read()] == ["a"]


def test_threads_appending_to_one_stream_get_distinct_versions_in_seq_order(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        warm(store)
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                for i in range(50):
                    store[EVENTS].append(Event(name, n=i), stream="shared")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        entries = store[EVENTS].read(stream="shared")
        assert [e.version for e in entries] == list(range(1, 201))
        assert [e.at for e in entries] == sorted(e.at for e in entries)


_CHILD = """
import json, sys
import statestore as ss
from statestore.testing.models import EVENTS, SCHEMA, Event
loc, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ss.open_store(loc, SCHEMA) as store:
    print(json.dumps([store[EVENTS].append(Event(name, n=i), stream="shared").version for i in range(n)]))
"""


def test_processes_appending_to_one_stream_get_distinct_versions_with_at_in_seq_order(path: Path) -> None:
    loc = f"sqlite:{path}"
    ss.open_store(loc, SCHEMA).close()
    got = children(_CHILD, loc)
    assert sorted(got) == list(range(1, 301))
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        entries = store[EVENTS].read()
    assert [e.version for e in entries] == list(range(1, 301))  # seq order is version order
    assert [e.at for e in entries] == sorted(e.at for e in entries)  # stamped under the write lock


# --------------------------------------------------------------------------- the schema mark row


def _older_statestore_migrates(path: Path, to: int) -> None:
    """What an older statestore's migration does to the marks: ``user_version`` and the schemas table, no more."""
    con = raw(path)
    con.execute("BEGIN IMMEDIATE")
    mark = con.execute("PRAGMA user_version").fetchone()[0]
    con.execute(f"PRAGMA user_version = {mark + 1}")
    con.execute("UPDATE _statestore_schemas SET version = ? WHERE name = 'contract'", (to,))
    con.execute("COMMIT")


def test_a_migration_by_an_older_statestore_stops_single_writes(path: Path) -> None:
    loc = f"sqlite:{path}"
    ss.open_store(loc, SCHEMA).close()
    with ss.open_store(loc, SCHEMA) as store:
        sql = warm(store)
        store[EVENTS].append(Event("a"), stream="s")
        store[TASKS].put(Task("t1"))
        assert sql.take() == ["INSERT", "INSERT"]
        _older_statestore_migrates(path, to=2)
        for write in (
            lambda: store[TASKS].put(Task("t1", title="x")),
            lambda: store[TASKS].insert(Task("t2")),
            lambda: store[EVENTS].append(Event("b"), stream="s"),
            lambda: store[EVENTS].append(Event("b"), stream="s", expect_version=1),
        ):
            with pytest.raises(ss.SchemaTooNewError):
                write()
    assert [r[1:3] for r in _rows(path)] == [("s", 1)]
    assert raw(path).execute("SELECT key, revision FROM tasks ORDER BY key").fetchall() == [("t1", 1), ("warm", 1)]


def test_the_mark_row_moves_with_every_change_of_the_schemas_table(path: Path) -> None:
    ss.open_store(f"sqlite:{path}", SCHEMA).close()
    con = raw(path)

    def mark() -> str:
        return str(con.execute("SELECT value FROM _statestore_meta WHERE key = 'schema_mark'").fetchone()[0])

    seen = [mark()]
    con.execute("UPDATE _statestore_schemas SET description = description")  # same values: still a change
    seen.append(mark())
    con.execute("INSERT INTO _statestore_schemas VALUES ('other', 1, '{}')")
    seen.append(mark())
    con.execute("DELETE FROM _statestore_schemas WHERE name = 'other'")
    seen.append(mark())
    assert [int(m) for m in seen] == [int(seen[0]) + i for i in range(4)]
    con.execute("BEGIN")
    con.execute("UPDATE _statestore_schemas SET version = version")
    con.execute("ROLLBACK")
    assert mark() == seen[-1]  # moved and rolled back with the transaction


def _forget_the_mark(path: Path) -> None:
    """Make the store look as an older statestore made it: no mark row, no triggers."""
    con = raw(path)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f'DROP TRIGGER "{name}"')
    con.execute("DELETE FROM _statestore_meta WHERE key = 'schema_mark'")


def _triggers(path: Path) -> list[str]:
    rows = raw(path).execute("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").fetchall()
    return [r[0] for r in rows]


def test_a_store_an_older_statestore_made_gets_the_mark_on_its_first_write_mode_open(path: Path) -> None:
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    made = _triggers(path)
    assert made == ["_statestore_mark_delete", "_statestore_mark_insert", "_statestore_mark_update"]
    _forget_the_mark(path)
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        assert store[TASKS].get("t1") == Task("t1")
    assert _triggers(path) == []  # a read-mode open writes nothing
    with ss.open_store(loc, SCHEMA) as store:
        assert _triggers(path) == made
        sql = warm(store)
        assert store[TASKS].put(Task("t1", title="x")) == 2
        assert store[EVENTS].append(Event("a"), stream="s").version == 1
        assert sql.take() == ["INSERT", "INSERT"]  # the single statements run again
        _older_statestore_migrates(path, to=2)
        with pytest.raises(ss.SchemaTooNewError):
            store[TASKS].put(Task("t1", title="y"))


def test_without_the_mark_row_single_writes_take_the_transaction_path(path: Path) -> None:
    """A mark row deleted while the store is open (by hand): writes go on, each one a transaction of its own."""
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        sql = warm(store)
        raw(path).execute("DELETE FROM _statestore_meta WHERE key = 'schema_mark'")
        assert store[TASKS].put(Task("t1")) == 1
        assert store[EVENTS].append(Event("a"), stream="s").version == 1
        taken = sql.take()
        assert taken.count("BEGIN") == 2
        assert taken.count("COMMIT") == 2
        assert store[TASKS].get("t1") == Task("t1")


# --------------------------------------------------------------------------- names that look like SQLite's messages


@pytest.mark.parametrize("name", ["busy_events", "locked", "readonly_log"])
def test_a_log_named_like_a_busy_or_read_only_store_gets_the_right_errors(path: Path, name: str) -> None:
    """SQLite's messages name the table ("NOT NULL constraint failed: busy_events.version").

    The error is told by its code (or the start of SQLite's own message), never by a name in it.
    """
    log = ss.Log(name, Event)
    schema = ss.Schema("named", version=1, collections=[TASKS], logs=[log])
    loc = f"sqlite:{path}"
    with ss.open_store(loc, schema) as store:
        warm(store)
        store[log].append(Event("a"), stream="s")
        with pytest.raises(ss.StreamConflictError):
            store[log].append(Event("b"), stream="s", expect_version=5)
        raw(path).execute(f"UPDATE {name} SET version = 'x'")
        with pytest.raises(ss.CorruptStoreError, match="version"):
            store[log].append(Event("b"), stream="s")
        raw(path).execute(f"UPDATE {name} SET version = 1")
        # Another process records the schema again (same version): both marks move, appends go on.
        con = raw(path)
        con.execute("BEGIN IMMEDIATE")
        con.execute(f"PRAGMA user_version = {con.execute('PRAGMA user_version').fetchone()[0] + 1}")
        con.execute("UPDATE _statestore_schemas SET description = description")
        con.execute("COMMIT")
        assert store[log].append(Event("c"), stream="s").version == 2
        assert store[log].append(Event("d"), stream="s").version == 3
    assert [(r[0], r[1]) for r in raw(path).execute(f"SELECT stream, version FROM {name} ORDER BY seq")] == [
        ("s", 1),
        ("s", 2),
        ("s", 3),
    ]


def test_a_collection_named_busy_renamed_by_another_process_says_the_store_moved(path: Path) -> None:
    """ "no such table: busy_people" is a migration by another process, not a busy store."""
    people = ss.Collection("busy_people", Task, key="id")
    v1 = ss.Schema("app", version=1, collections=[people])
    v2 = ss.Schema(
        "app",
        version=2,
        collections=[ss.Collection("users", Task, key="id")],
        migrations=[ss.Migration(2, "rename", up=lambda m: m.rename_collection("busy_people", "users"))],
    )
    loc = f"sqlite:{path}"
    ss.open_store(loc, v1).close()
    with ss.open_store(loc, v1) as old:
        old[people].put(Task("t1"))
        ss.open_store(loc, v2, backup=False).close()
        for write in (lambda: old[people].put(Task("t1", title="x")), lambda: old[people].insert(Task("t2"))):
            with pytest.raises(ss.SchemaTooNewError):
                write()


def test_an_older_store_opens_while_another_writer_holds_it_and_gets_the_mark_later(path: Path) -> None:
    """Adding the mark is the only write an open of a current store makes: a busy store does not stop the open."""
    loc = f"sqlite:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    _forget_the_mark(path)
    blocker = raw(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        store = ss.open_store(loc, SCHEMA, busy_timeout=0.1)
    finally:
        blocker.execute("ROLLBACK")
    with store:
        assert _triggers(path) == []
        sql = Statements(store)
        assert store[TASKS].put(Task("t1", title="x")) == 2
        assert store[EVENTS].append(Event("a"), stream="s").version == 1
        taken = sql.take()
        assert taken.count("BEGIN") == 2  # no mark: the transaction path
    with ss.open_store(loc, SCHEMA) as store:
        assert len(_triggers(path)) == 3
        sql = warm(store)
        assert store[TASKS].put(Task("t1", title="y")) == 3
        assert sql.take() == ["INSERT"]
