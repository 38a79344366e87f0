"""What only the SQLite backend promises: its layout, pragmas, permissions and error translation."""

from __future__ import annotations

import gc
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import statestore as ss
from _nobody import as_nobody, nobody
from _sqlite_raw import raw
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


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "deep" / "dir" / "state.db"


def test_layout_is_queryable_with_plain_sql(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[TASKS].put(Task("t1", status="todo"))
        store[TASKS].put(Task("t2", status="done"))
        store[TASKS].put(Task("t2", status="done"))
        store[EVENTS].append(Event("x"), stream="task:t1")
    con = raw(path)
    assert con.execute("select key from tasks where status='todo'").fetchall() == [("t1",)]
    assert con.execute("select key, revision from tasks order by key").fetchall() == [("t1", 1), ("t2", 2)]
    data = con.execute("select data from tasks where key='t1'").fetchone()[0]
    assert con.execute("select json_extract(?, '$.status')", (data,)).fetchone()[0] == "todo"
    assert con.execute("select seq, stream, version from events").fetchall() == [(1, "task:t1", 1)]
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    internal = {"_statestore_meta", "_statestore_schemas", "_statestore_history", "_statestore_imports"}
    internal |= {"_statestore_rejects"}
    assert tables == {"tasks", "tickets", "settings", "accounts", "events", *internal}
    name, version, description = con.execute("select * from _statestore_schemas").fetchone()
    assert (name, version) == ("contract", 1)
    assert '"indexes":["status","points"]' in description
    meta = dict(con.execute("select key, value from _statestore_meta"))
    assert meta["format"] == "1"
    assert len(meta["store_id"]) == 32


def test_pragmas(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, durability="full") as store:
        assert isinstance(store, ss.SQLiteStore)
        con = store._con()
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert con.execute("pragma synchronous").fetchone()[0] == 2  # FULL
        assert con.execute("pragma foreign_keys").fetchone()[0] == 1
        assert con.execute("pragma busy_timeout").fetchone()[0] == 30000
    with ss.open_store(f"sqlite:{path}", SCHEMA, busy_timeout=1.5) as store:
        assert isinstance(store, ss.SQLiteStore)
        assert store._con().execute("pragma synchronous").fetchone()[0] == 1  # NORMAL
        assert store._con().execute("pragma busy_timeout").fetchone()[0] == 1500


def _plan(con: sqlite3.Connection, sql: str, *params: object) -> str:
    return " | ".join(r[-1] for r in con.execute("explain query plan " + sql, params))


def test_indexed_queries_use_indexes(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA):
        pass
    con = raw(path)
    assert "USING INDEX _statestore_ix__tasks__status" in _plan(con, "select key from tasks where status IS ?", "x")
    assert "_statestore_ux__accounts__email" in _plan(con, "select key from accounts where email IS ?", "x")
    plan = _plan(con, "select seq from events where 1 and stream >= ? and stream < ? order by seq", "a", "b")
    assert "INDEX sqlite_autoindex_events_1" in plan
    assert "stream>? AND stream<?" in plan
    indexes = {
        r[0] for r in con.execute("select name from sqlite_master where type='index' and name like '_statestore%'")
    }
    assert indexes == {
        "_statestore_ix__tasks__status",
        "_statestore_ix__tasks__points",
        "_statestore_ix__settings__rank",
        "_statestore_key__settings",
        "_statestore_ux__accounts__email",
        "_statestore_ux__accounts__org__handle",
        "_statestore_uj__accounts__email",
        "_statestore_uj__accounts__org__handle",
    }


def test_prefix_reads_use_a_range_not_like(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        assert isinstance(store, ss.SQLiteStore)
        statements: list[str] = []
        store._con().set_trace_callback(statements.append)
        store[EVENTS].read(stream_prefix="task:")
    select = next(s for s in statements if s.startswith("SELECT"))
    assert "LIKE" not in select.upper()
    assert "stream >= 'task:' AND stream < 'task;'" in select


def test_a_store_with_the_older_unique_indexes_gets_the_exact_ones(path: Path) -> None:
    """Stores made before: a UNIQUE index on json_extract's text, which SQLite cuts at a NUL."""
    with ss.open_store(f"sqlite:{path}", SCHEMA):
        pass
    con = raw(path)
    con.execute("DROP INDEX _statestore_uj__accounts__email")
    con.execute("CREATE UNIQUE INDEX _statestore_uq__accounts__email ON accounts(email)")
    con.close()
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[ACCOUNTS].put(Account("a", "x\0a"))
        store[ACCOUNTS].put(Account("b", "x\0b"))
    names = {r[0] for r in raw(path).execute("select name from sqlite_master where type='index'")}
    assert "_statestore_uj__accounts__email" in names
    assert "_statestore_uq__accounts__email" not in names


def test_unique_constraint_is_also_enforced_by_sqlite(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[ACCOUNTS].put(Account("a", "x@e"))
    with pytest.raises(sqlite3.IntegrityError):
        raw(path).execute("""insert into accounts(key, revision, data) values ('b', 1, '{"id":"b","email":"x@e"}')""")


def test_new_database_and_directory_are_private(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[TASKS].put(Task("t"))
        for suffix in ("", "-wal", "-shm"):
            file = path.with_name(path.name + suffix)
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_read_mode_connection_cannot_write(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA):
        pass
    with ss.open_store(f"sqlite:{path}", SCHEMA, mode="read") as store:
        assert isinstance(store, ss.SQLiteStore)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._con().execute("insert into tickets(key, revision, data) values (1, 1, '{}')")


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("hello, I am a text file\n" * 100)
    for mode in ("write", "read"):
        with pytest.raises(ss.CorruptStoreError) as info:
            ss.open_store(f"sqlite:{path}", SCHEMA, mode=mode)  # type: ignore[arg-type]
        assert str(path) in str(info.value)
    assert path.read_text() == "hello, I am a text file\n" * 100


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw(path).execute("create table users(id)")
    with pytest.raises(ss.CorruptStoreError, match="not a statestore database"):
        ss.open_store(f"sqlite:{path}", SCHEMA)
    assert {r[0] for r in raw(path).execute("select name from sqlite_master")} == {"users"}


def test_store_of_another_schema_in_read_mode(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA):
        pass
    other = ss.Schema("other", version=1, collections=[])
    with pytest.raises(ss.SchemaMismatchError, match="holds no schema 'other'"):
        ss.open_store(f"sqlite:{path}", other, mode="read")


def test_busy_writer_raises_store_busy(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA, busy_timeout=0.1) as store:
        blocker = raw(path)
        blocker.execute("begin immediate")
        try:
            with pytest.raises(ss.StoreBusyError) as info:
                store[TASKS].put(Task("t"))
            assert isinstance(info.value, TimeoutError)
            assert info.value.timeout == 0.1
        finally:
            blocker.execute("rollback")
        store[TASKS].put(Task("t"))
        assert store[TASKS].keys() == ["t"]


def test_threads_get_their_own_connections(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        assert isinstance(store, ss.SQLiteStore)
        seen: list[sqlite3.Connection] = []
        together = threading.Barrier(4)

        def work() -> None:
            seen.append(store._con())
            store[TASKS].put(Task(threading.current_thread().name))
            together.wait()  # all four alive at once: none can reuse another's connection

        threads = [threading.Thread(target=work, name=f"t{i}") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(c) for c in seen}) == 4
        assert len(store[TASKS]) == 4
    assert store._connections == []


def test_connections_of_finished_threads_are_closed(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        assert isinstance(store, ss.SQLiteStore)
        for i in range(50):
            t = threading.Thread(target=lambda i=i: store[TASKS].put(Task(f"t{i}")))
            t.start()
            t.join()
        gc.collect()
        assert len(store._connections) <= 2  # this thread's, and at most one not yet collected
        assert len(store[TASKS]) == 50


def test_removed_index_is_dropped(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[TASKS].put(Task("t", status="x"))
    fewer = ss.Collection("tasks", Task, key="id", indexes=["points"])
    with ss.open_store(f"sqlite:{path}", ss.Schema("contract", version=1, collections=[fewer])) as store:
        assert [t.id for t in store[fewer].find(status="x")] == ["t"]
    con = raw(path)
    indexes = {r[0] for r in con.execute("select name from sqlite_master where type='index' and tbl_name='tasks'")}
    assert "_statestore_ix__tasks__status" not in indexes
    assert "status" not in {r[1] for r in con.execute("pragma table_xinfo(tasks)")}


def test_adding_unique_over_clashing_data_is_refused(path: Path) -> None:
    loose = ss.Collection("accounts", Account, key="id")
    with ss.open_store(f"sqlite:{path}", ss.Schema("contract", version=1, collections=[loose])) as store:
        store[loose].put(Account("a", "x@e"))
        store[loose].put(Account("b", "x@e"))
    with pytest.raises(ss.SchemaMismatchError, match="unique email"):
        ss.open_store(f"sqlite:{path}", SCHEMA)
    with ss.open_store(f"sqlite:{path}", ss.Schema("contract", version=1, collections=[loose])) as store:
        assert len(store[loose]) == 2


def test_field_named_like_a_layout_column(tmp_path: Path) -> None:
    @attrs.define
    class Odd:
        id: str
        data: str = ""
        revision: int = 0

    odd = ss.Collection("odd", Odd, key="id", indexes=["data", "revision"])
    schema = ss.Schema("odd", version=1, collections=[odd])
    with ss.open_store(f"sqlite:{tmp_path}/o.db", schema) as store:
        store[odd].put(Odd("a", "x", 5))
        store[odd].put(Odd("a", "x", 5))
        assert [o.id for o in store[odd].find(data="x", revision=5)] == ["a"]
        assert store[odd].get_versioned("a") == ss.Versioned(Odd("a", "x", 5), 2)
    con = raw(tmp_path / "o.db")
    assert con.execute('select key, revision, "field:data" from odd').fetchall() == [("a", 2, "x")]


def test_composite_keys_are_stored_as_json_arrays(path: Path) -> None:
    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[SETTINGS].put(Setting("u", "p", "n"))
    assert raw(path).execute("select key from settings").fetchone()[0] == '["u","p","n"]'


def test_int_keys_are_integers(path: Path) -> None:
    from statestore.testing.models import TICKETS, Ticket

    with ss.open_store(f"sqlite:{path}", SCHEMA) as store:
        store[TICKETS].put(Ticket(7))
    assert raw(path).execute("select typeof(key) from tickets").fetchone()[0] == "integer"


def test_a_column_dropped_by_another_build_is_noticed(path: Path) -> None:
    """Two builds of an app on one store: the older one drops an index the newer one uses."""
    plain = ss.Collection("accounts", Account, key="id")
    with ss.open_store(f"sqlite:{path}", SCHEMA) as newer:
        newer[ACCOUNTS].put(Account("u1", "x@y"))
        newer[TASKS].put(Task("t1", status="todo"))
        assert [t.id for t in newer[TASKS].find(status="todo")] == ["t1"]
        older = ss.Schema("contract", version=1, collections=[ss.Collection("tasks", Task, key="id"), plain])
        ss.open_store(f"sqlite:{path}", older).close()  # drops the status, points and email columns
        assert [t.id for t in newer[TASKS].find(status="todo")] == ["t1"]
        assert newer[TASKS].find(status="done") == []
        with pytest.raises(ss.UniqueViolationError):
            newer[ACCOUNTS].put(Account("u2", "x@y"))
        assert newer[ACCOUNTS].keys() == ["u1"]


def test_fields_named_like_the_reserved_columns_do_not_collide(tmp_path: Path) -> None:
    @attrs.define
    class Both:
        id: str
        key: str = ""
        key_field: str = ""

    both = ss.Collection("both", Both, key="id", indexes=["key", "key_field"])
    with ss.open_store(f"sqlite:{tmp_path}/b.db", ss.Schema("b", version=1, collections=[both])) as store:
        store[both].put(Both("a", "k", "kf"))
        assert [b.id for b in store[both].find(key="k", key_field="kf")] == ["a"]


# ---------------------------------------------------------------- read mode for a user who cannot write the folder


@pytest.fixture
def unwritable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store in a folder (0500) that nobody owns and so cannot write; the folder's parents let nobody in."""
    user = nobody()
    base = Path(tempfile.mkdtemp(prefix="statestore-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "store"
        with ss.open_store(f"sqlite:{folder}/state.db", SCHEMA) as store:
            store[TICKETS].put(Ticket(1, "one"))
        for p in (folder, *folder.iterdir()):
            os.chown(p, user.pw_uid, user.pw_gid)
        folder.chmod(0o500)
        yield folder / "state.db"
    finally:
        shutil.rmtree(base)


def test_read_mode_in_a_folder_the_user_cannot_write_says_why(unwritable: Path) -> None:
    """No -shm beside the database and no right to create one: one line that says why and what to do."""
    from click.testing import CliRunner

    from statestore.cli import main

    def library() -> str:
        with ss.open_store(f"sqlite:{unwritable}", SCHEMA, mode="read") as store:
            return repr(store[TICKETS].all())

    def command() -> str:
        result = CliRunner().invoke(main, ["ls", str(unwritable), "tickets"])
        return f"{result.exit_code} {result.output}"

    got = as_nobody(library)
    assert got.startswith("BackendError: "), got
    assert f"{unwritable}-shm" in got
    assert str(unwritable.parent) in got
    assert "write access" in got
    got = as_nobody(command)
    assert got.startswith("1 Error: "), got
    assert got.count("\n") == 1, got
    assert f"{unwritable}-shm" in got
    assert "corrupt" not in got
    assert sorted(p.name for p in unwritable.parent.iterdir()) == ["state.db", "state.db.lock"]


def test_read_mode_in_a_folder_the_user_cannot_write_works_while_a_writer_has_it_open(unwritable: Path) -> None:
    """With the -wal and -shm a writer keeps (the user's own), SQLite needs to create nothing."""
    with ss.open_store(f"sqlite:{unwritable}", SCHEMA) as writer:
        writer[TICKETS].put(Ticket(2, "two"))
        nobody = pwd.getpwnam("nobody")
        for p in unwritable.parent.iterdir():
            os.chown(p, nobody.pw_uid, nobody.pw_gid)  # as if the user's own writer had made them

        def library() -> str:
            with ss.open_store(f"sqlite:{unwritable}", SCHEMA, mode="read") as store:
                return repr(store[TICKETS].all())

        assert as_nobody(library) == repr([Ticket(1, "one"), Ticket(2, "two")])
