"""The PostgreSQL backend: the persistence and migration contracts, and what only it has.

Every test here runs against the real server tests/_postgres.py starts (and
skips, saying why, on a machine without PostgreSQL; CI sets
STATESTORE_REQUIRE_POSTGRES=1 so that skip is a failure there).
"""

from __future__ import annotations

import json
import operator
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

import _postgres
import statestore as ss
from conftest import PostgresFactory, postgres_factory, postgres_unavailable
from statestore.testing import MigrationContract, PersistenceContract, StoreFactory
from statestore.testing._migration_app import V1, V4, check_v1, check_v4, seed


@pytest.fixture
def pg(postgres_server: _postgres.PostgresServer) -> Iterator[PostgresFactory]:
    factory = postgres_factory(postgres_server)
    yield factory
    factory.close_all()


class TestPostgresPersistence(PersistenceContract):
    """Reopen, read mode and schema versions, on PostgreSQL."""

    @pytest.fixture
    def store_factory(self, pg: PostgresFactory) -> StoreFactory:
        return pg

    def test_read_mode_on_missing_store_creates_nothing(self, store_factory: Any) -> None:
        # The contract's version looks at a folder; here the store is a schema.
        with pytest.raises(ss.StoreNotFoundError):
            store_factory(mode="read")
        assert store_factory.schemas() == []


class TestPostgresMigrations(MigrationContract):
    """Migrations, history, backups and several schemas, on PostgreSQL (backups are schemas)."""

    @pytest.fixture
    def store_factory(self, pg: PostgresFactory) -> StoreFactory:
        return pg

    def test_backup_is_taken_before_the_first_pending_migration(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4) as store:
            check_v4(store)
        backups = [s for s in store_factory.schemas() if "_backup_" in s]
        assert len(backups) == 1
        assert backups[0].startswith(f"{store_factory.pg_schema}_backup_app_v1_")
        with store_factory.open_at(Path(backups[0]), V1, mode="read") as old:
            check_v1(old)
        with store_factory(V4):  # nothing pending: no new backup
            pass
        assert len([s for s in store_factory.schemas() if "_backup_" in s]) == 1

    def test_no_backup_when_asked(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False):
            pass
        assert store_factory.schemas() == [store_factory.pg_schema]

    def test_backups_taken_in_one_second_do_not_collide(self, store_factory: Any) -> None:
        with store_factory(V1) as store:
            seed(store)
        with store_factory(V4, backup=False) as store:
            store.migrate(to=1)
            store.migrate(to=4)
            store.migrate(to=1)
        assert len([s for s in store_factory.schemas() if "_backup_" in s]) == 3


# --------------------------------------------------------------------------- declarations for the tests below


@attrs.define
class Task:
    id: str
    title: str = ""
    status: str = "todo"
    owner: str | None = None


TASKS = ss.Collection("tasks", Task, key="id", indexes=["status"], unique=["owner"])
SCHEMA = ss.Schema("pgtest", version=1, collections=[TASKS])
# No unique field: an insert or put outside a transaction is one statement of its own (_write_alone).
JOBS = ss.Collection("jobs", Task, key="id", indexes=["status"])
JOB_SCHEMA = ss.Schema("pgjobs", version=1, collections=[JOBS])


def _server_sql(server: _postgres.PostgresServer, sql: str, params: Any = None) -> list[Any]:
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as con:
        cur = con.execute(sql, params)
        return cur.fetchall() if cur.description else []


# --------------------------------------------------------------------------- the test server itself


def test_without_a_server_the_tests_skip_unless_ci_requires_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_postgres.REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no binaries here"):
        postgres_unavailable("no binaries here")
    monkeypatch.setenv(_postgres.REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"STATESTORE_REQUIRE_POSTGRES=1 but .*no binaries here"):
        postgres_unavailable("no binaries here")


def test_the_test_server_runs_unprivileged_on_a_unix_socket_only(postgres_server: _postgres.PostgresServer) -> None:
    settings = dict(
        _server_sql(
            postgres_server,
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'unix_socket_directories')",
        )
    )
    assert settings == {"listen_addresses": "", "unix_socket_directories": str(postgres_server.socket_dir)}
    owner = postgres_server.data.stat().st_uid
    assert owner != 0  # PostgreSQL refuses root; as root the tests run it as nobody


# --------------------------------------------------------------------------- locations and secrets


def test_location_names_the_schema_and_the_default_is_statestore() -> None:
    from statestore.backends.postgres import split_url

    url, schema, shown = split_url("postgresql://ann@db.example/app?sslmode=require&schema=tracker")
    assert (url, schema) == ("postgresql://ann@db.example/app?sslmode=require", "tracker")
    assert shown == "postgresql://ann@db.example/app?sslmode=require&schema=tracker"
    assert split_url("postgres://db.example/app")[1] == "statestore"
    assert ss.parse_location("postgres://db.example/app").backend == "postgres"
    assert ss.parse_location("postgresql://db.example/app?schema=x").backend == "postgres"


@pytest.mark.parametrize("bad", ["Tracker", "a-b", "x" * 64, "1abc", ""])
def test_a_schema_that_is_not_a_plain_identifier_is_refused(bad: str) -> None:
    from statestore.backends.postgres import split_url

    with pytest.raises(ss.ValidationError, match="lower-case identifier"):
        split_url(f"postgresql://u@h/db?schema={bad}")


def test_passwords_never_appear_in_locations_errors_or_repr(pg: PostgresFactory) -> None:
    secret = "s3cr3t-pw"  # noqa: S105 - a made-up password the test looks for
    location = pg.location.replace("postgresql://statestore@", f"postgresql://statestore:{secret}@")
    location += f"&password={secret}"
    loc = ss.parse_location(location)
    assert secret not in str(loc)
    assert secret not in repr(loc)
    with ss.open_store(location, SCHEMA) as store:  # trust authentication: the password is not needed
        assert secret not in store.location
        assert secret not in repr(store)
    # A server that is not there: the error names the location, without the password.
    gone = f"postgresql://ann:{secret}@/db?host=/nonexistent-socket-dir&schema=x&password={secret}"
    with pytest.raises(ss.BackendError) as info:
        ss.open_store(gone, SCHEMA, busy_timeout=2)
    assert secret not in str(info.value)
    assert "cannot connect" in str(info.value)


def test_statestore_info_does_not_show_the_password(pg: PostgresFactory) -> None:
    from click.testing import CliRunner

    from statestore.cli import main

    secret = "pw-in-url-42"  # noqa: S105
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1", "x"))
    location = pg.location.replace("postgresql://statestore@", f"postgresql://statestore:{secret}@")
    result = CliRunner().invoke(main, ["info", location])
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "tasks" in result.output


def test_without_psycopg_opening_says_which_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import statestore as ss\n"
        "try:\n"
        "    ss.open_store('postgresql://u@h/db', ss.Schema('x', version=1, collections=[]))\n"
        "except ss.BackendError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("pip install 'statestore[postgres]'")
    assert len(out.strip().splitlines()) == 1


def test_the_rest_of_the_package_does_not_import_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import statestore as ss, statestore.cli, statestore.convert, statestore.testing\n"
        "with ss.open_store('memory:', ss.Schema('x', version=1, collections=[])):\n"
        "    pass\n"
        "print('psycopg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- layout


def test_tables_are_plain_sql_with_lookup_columns_and_indexes(pg: PostgresFactory) -> None:
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1", "a\0b", status="doing", owner="ann"))
        store[TASKS].put(Task("t2", "c", status="todo"))
    rows = _server_sql(
        pg.server,
        f"SELECT convert_from(key, 'UTF8'), revision, status, owner FROM \"{pg.pg_schema}\".tasks ORDER BY key",
    )
    assert rows == [("t1", 1, '"doing"', '"ann"'), ("t2", 1, '"todo"', None)]
    indexes = {
        r[0] for r in _server_sql(pg.server, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (pg.pg_schema,))
    }
    assert any("UNIQUE INDEX" in d and "(owner)" in d for d in indexes)
    assert any("(status)" in d and "UNIQUE" not in d for d in indexes)
    data = _server_sql(pg.server, f'SELECT data FROM "{pg.pg_schema}".tasks ORDER BY key')[0][0]
    assert data == '{"id":"t1","owner":"ann","status":"doing","title":"a\\u0000b"}'  # canonical text, NUL escaped


def test_an_index_declared_later_is_filled_from_stored_records(pg: PostgresFactory) -> None:
    plain = ss.Collection("tasks", Task, key="id")
    with pg(ss.Schema("pgtest", version=1, collections=[plain])) as store:
        store[plain].put(Task("t1", status="doing"))
        store[plain].put(Task("t2", status="todo"))
    with pg(SCHEMA) as store:
        assert [t.id for t in store[TASKS].find(status="doing")] == ["t1"]
    rows = _server_sql(pg.server, f'SELECT status FROM "{pg.pg_schema}".tasks ORDER BY key')
    assert rows == [('"doing"',), ('"todo"',)]


# --------------------------------------------------------------------------- locking, read mode, lost connections


def test_a_writer_waits_at_most_the_busy_timeout_then_store_busy(pg: PostgresFactory) -> None:
    with pg(SCHEMA) as first:
        first[TASKS].put(Task("t1"))
    holder = pg(SCHEMA)
    waiter = ss.open_store(pg.location, SCHEMA, busy_timeout=0.5)
    try:
        with holder.transaction():
            holder[TASKS].put(Task("t1", "held"))
            started = time.monotonic()
            with pytest.raises(ss.StoreBusyError):
                waiter[TASKS].put(Task("t2"))
            assert 0.4 < time.monotonic() - started < 5
        assert waiter[TASKS]["t1"].title == "held"
        assert waiter[TASKS].get("t2") is None
        waiter[TASKS].put(Task("t2"))  # the lock is free again
    finally:
        waiter.close()


def _write_lock_shared(pg: PostgresFactory, store: ss.Store) -> Any:
    """A connection holding the store's write lock shared, as a single insert in flight does."""
    import psycopg

    con = psycopg.connect(pg.server.conninfo(), autocommit=True)
    con.execute("BEGIN")
    con.execute("SELECT pg_advisory_xact_lock_shared(%s)", (store._write_lock,))  # type: ignore[attr-defined]
    return con


def test_single_writes_do_not_wait_for_each_other_but_write_transactions_wait_for_them(pg: PostgresFactory) -> None:
    store = pg(JOB_SCHEMA)
    waiter = ss.open_store(pg.location, JOB_SCHEMA, busy_timeout=0.5)
    con = _write_lock_shared(pg, store)  # another client's single write, not yet committed
    try:
        # Went ahead beside it: the other write holds its lock throughout, so a single write that
        # waited for it would raise StoreBusyError after busy_timeout (0.5 s) instead of returning.
        assert waiter[JOBS].insert(Task("j1", "first", status="doing")) == 1
        assert waiter[JOBS].put(Task("j2", "second")) == 1
        assert waiter[JOBS].put(Task("j2", "third", status="doing")) == 2
        with pytest.raises(ss.StoreBusyError):
            waiter[JOBS].insert(Task("j1", "again"))  # a clash is found out on the transaction path
        busy: list[Any] = [
            lambda: waiter[JOBS].put(Task("j3"), expect_revision=0),  # compare-and-swap is a transaction
            lambda: waiter[JOBS].update("j1", lambda t: None),
            lambda: waiter[JOBS].delete("j1"),
        ]
        for write in busy:
            with pytest.raises(ss.StoreBusyError):
                write()
        with pytest.raises(ss.StoreBusyError), waiter.transaction():
            waiter[JOBS].insert(Task("j4"))  # inside a transaction a single write is part of it
        con.close()
        with pytest.raises(ss.AlreadyExistsError):
            waiter[JOBS].insert(Task("j1", "again"))
    finally:
        con.close()
        waiter.close()
    # The lookup columns were written with the records.
    assert [(t.id, t.title) for t in store[JOBS].find(status="doing")] == [("j1", "first"), ("j2", "third")]
    assert store[JOBS].keys() == ["j1", "j2"]
    assert store[JOBS].get_versioned("j2").revision == 2  # type: ignore[union-attr]


def test_single_puts_racing_on_one_key_each_get_their_own_revision(pg: PostgresFactory) -> None:
    stores = [pg(JOB_SCHEMA) for _ in range(4)]
    got: list[int] = []

    def put_many(store: ss.Store, n: int) -> None:
        got.extend(store[JOBS].put(Task("j1", f"{n}-{i}")) for i in range(50))

    threads = [threading.Thread(target=put_many, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(1, 201))
    assert stores[0][JOBS].get_versioned("j1").revision == 200  # type: ignore[union-attr]


def test_a_single_put_over_a_damaged_revision_reports_it(pg: PostgresFactory) -> None:
    store = pg(JOB_SCHEMA)
    store[JOBS].put(Task("j1"))
    _server_sql(pg.server, f'UPDATE "{pg.pg_schema}".jobs SET revision = 0')
    with pytest.raises(ss.CorruptStoreError, match="revision"):
        store[JOBS].put(Task("j1", "over it"))
    assert _server_sql(pg.server, f'SELECT revision, data FROM "{pg.pg_schema}".jobs')[0][0] == 0


def test_a_single_insert_never_slips_into_another_clients_write_transaction(pg: PostgresFactory) -> None:
    # A transaction that saw the key absent and then writes it must not overwrite a record
    # another client inserted in between: the insert waits for the transaction, then finds the key.
    holder = pg(JOB_SCHEMA)
    inserter = pg(JOB_SCHEMA)
    outcome: list[str] = []
    seen = threading.Event()

    def insert() -> None:
        seen.wait(5)
        try:
            inserter[JOBS].insert(Task("j1", "inserted"))
            outcome.append("inserted")
        except ss.AlreadyExistsError:
            outcome.append("already there")

    thread = threading.Thread(target=insert)
    thread.start()
    with holder.transaction():
        assert holder[JOBS].get("j1") is None
        seen.set()
        # The insert runs now, and must wait: until the server shows a lock waited for (or, wrongly,
        # the insert returns).
        deadline = time.monotonic() + 30
        while not outcome and not _server_sql(pg.server, "SELECT 1 FROM pg_locks WHERE NOT granted"):
            assert time.monotonic() < deadline, "the insert neither waited nor returned"
            time.sleep(0.01)
        assert outcome == []
        assert holder[JOBS].put(Task("j1", "transaction")) == 1
    thread.join(10)
    assert outcome == ["already there"]
    assert holder[JOBS]["j1"].title == "transaction"
    assert holder[JOBS].get_versioned("j1").revision == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("write", ["insert", "put"])
def test_a_connection_lost_during_a_single_write_says_its_outcome_is_unknown(pg: PostgresFactory, write: str) -> None:
    store = pg(JOB_SCHEMA)
    store[JOBS].insert(Task("j1"))
    pid = store._con().info.backend_pid  # type: ignore[attr-defined]
    _server_sql(pg.server, "SELECT pg_terminate_backend(%s)", (pid,))
    # One autocommit statement: had the server committed it before the connection went, no one
    # here could tell, so the error says so rather than "not committed".
    with pytest.raises(ss.BackendError, match=r"lost the connection.*whether the record was written is unknown"):
        getattr(store[JOBS], write)(Task("j2"))
    assert getattr(store[JOBS], write)(Task("j3")) == 1  # connects again
    assert store[JOBS].keys() == ["j1", "j3"]


def test_read_mode_connects_read_only(pg: PostgresFactory) -> None:
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    with pg(SCHEMA, mode="read") as reader:
        con = reader._con()  # type: ignore[attr-defined]
        assert con.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(ss.ReadOnlyError):
            reader[TASKS].put(Task("t2"))


def test_a_lost_connection_is_an_error_that_says_so_and_nothing_half_applied(pg: PostgresFactory) -> None:
    store = pg(SCHEMA)
    store[TASKS].put(Task("t1", "kept"))
    pid = store._con().info.backend_pid  # type: ignore[attr-defined]
    with pytest.raises(ss.BackendError, match="lost the connection"), store.transaction():
        store[TASKS].put(Task("t1", "half"))
        _server_sql(pg.server, "SELECT pg_terminate_backend(%s)", (pid,))
        store[TASKS].put(Task("t2", "never"))
    # The next operation connects again; the interrupted transaction left nothing.
    assert store[TASKS]["t1"].title == "kept"
    assert store[TASKS].get("t2") is None


def test_a_table_changed_under_a_prepared_statement_is_read_afresh(pg: PostgresFactory) -> None:
    # Reads run as statements prepared on the connection; another client changing a table's
    # columns (as a restored backup of an older layout might) must not leave them failing.
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1", "a", status="doing"))
        for _ in range(3):
            assert store[TASKS]["t1"].title == "a"
            assert [t.id for t in store[TASKS].find(status="doing")] == ["t1"]
        _server_sql(pg.server, f'ALTER TABLE "{pg.pg_schema}".tasks ALTER COLUMN revision TYPE integer')
        assert store[TASKS]["t1"].title == "a"
        assert [t.id for t in store[TASKS].find(status="doing")] == ["t1"]
        assert store[TASKS].get_versioned("t1").revision == 1  # type: ignore[union-attr]
        store[TASKS].put(Task("t1", "b", status="doing"))
        assert store[TASKS]["t1"].title == "b"


def test_appends_in_one_transaction_number_their_seqs_on_after_a_rolled_back_savepoint(pg: PostgresFactory) -> None:
    # seq is counted on this side while the transaction holds the write lock: a savepoint rolled
    # back takes its entries away, and the count with them.
    events = ss.Log("events", Task)
    schema = ss.Schema("pgtest", version=1, collections=[TASKS], logs=[events])
    with pg(schema) as store, pg(schema) as other:
        other[events].append(Task("e0"), stream="s")
        with store.transaction():
            assert store[events].append(Task("e1"), stream="s").seq == 2
            with pytest.raises(RuntimeError), store.transaction():
                store[events].append(Task("e2"), stream="s")
                store[events].append(Task("e3"), stream="t")
                raise RuntimeError("rolled back")
            third = store[events].append(Task("e4"), stream="s")
            assert (third.seq, third.version) == (3, 3)
        got = [(e.seq, e.stream, e.version, e.record.id) for e in other[events].read()]
        assert got == [(1, "s", 1, "e0"), (2, "s", 2, "e1"), (3, "s", 3, "e4")]
        other[events].append(Task("e5"), stream="t")
        assert [e.seq for e in store[events].read()] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("data", '{"id":"t2","title":NaN}', "NaN"),
        ("data", '{"id":"t2","title":"a","title":"b"}', "duplicate member 'title'"),
        ("data", '{"id":"t2","title":"a","n":1e400}', "1e400"),
        ("data", '{"id":"t2"} x', "not valid JSON"),
        ("data", "[1]", "not a JSON object"),
        ("data", '{"id":"t2"', "not valid JSON"),
        ("revision", 0, "revision 0"),
    ],
)
def test_damaged_rows_are_corrupt_store_errors_from_get_and_find(
    pg: PostgresFactory, column: str, value: Any, message: str
) -> None:
    with pg(SCHEMA) as store:
        for key in ("t1", "t2", "t3"):
            store[TASKS].put(Task(key, status="doing"))
        _server_sql(pg.server, f'UPDATE "{pg.pg_schema}".tasks SET {column} = %s WHERE key = %s', (value, b"t2"))
        assert store[TASKS]["t1"].id == "t1"
        with pytest.raises(ss.CorruptStoreError, match=message) as got:
            store[TASKS].get("t2")
        assert "'t2'" in str(got.value)
        with pytest.raises(ss.CorruptStoreError, match=message):
            store[TASKS].find(status="doing")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("at", "yesterday", "not an ISO timestamp"), ("data", "[]", "not a JSON object"), ("data", "{", "not valid JSON")],
)
def test_damaged_log_entries_are_corrupt_store_errors(
    pg: PostgresFactory, column: str, value: str, message: str
) -> None:
    events = ss.Log("events", Task)
    schema = ss.Schema("pgtest", version=1, collections=[TASKS], logs=[events])
    with pg(schema) as store:
        for n in range(3):
            store[events].append(Task(f"e{n}"), stream="s")
        _server_sql(pg.server, f'UPDATE "{pg.pg_schema}".events SET {column} = %s WHERE seq = 2', (value,))
        with pytest.raises(ss.CorruptStoreError, match=message) as got:
            store[events].read(stream="s")
        assert "seq 2" in str(got.value)


def test_a_key_that_is_not_utf8_is_a_corrupt_store_error(pg: PostgresFactory) -> None:
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1", status="doing"))
        _server_sql(pg.server, f'UPDATE "{pg.pg_schema}".tasks SET key = %s', (b"\xff",))
        with pytest.raises(ss.CorruptStoreError, match="not UTF-8"):
            store[TASKS].find(status="doing")


def test_a_transaction_that_lost_its_connection_writes_nothing_after_it(pg: PostgresFactory) -> None:
    # The caller catches the error and goes on inside the same transaction: what follows must not
    # run on a new connection, outside any transaction, as if the first half had not gone.
    store = pg(SCHEMA)
    store[TASKS].put(Task("t1", "kept"))
    pid = store._con().info.backend_pid  # type: ignore[attr-defined]
    with pytest.raises(ss.BackendError, match="lost the connection"), store.transaction():
        store[TASKS].put(Task("t1", "half"))
        _server_sql(pg.server, "SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(ss.BackendError, match="lost the connection"):
            store[TASKS].get("t1")
        store[TASKS].put(Task("t2", "never"))
    assert store[TASKS]["t1"].title == "kept"
    assert store[TASKS].get("t2") is None


def test_statements_the_server_lost_are_no_longer_prepared(pg: PostgresFactory) -> None:
    # A pooler in transaction mode hands each transaction a server connection of its own, where
    # the statements prepared on another are unknown: simulated by dropping them behind the store.
    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1", "a"))
        assert store[TASKS]["t1"].title == "a"
        store._con().execute("DEALLOCATE ALL")  # type: ignore[attr-defined]
        assert store[TASKS]["t1"].title == "a"  # a read outside a transaction runs again
        store._con().execute("DEALLOCATE ALL")  # type: ignore[attr-defined]
        store[TASKS].put(Task("t1", "b"))
        store[TASKS].put(Task("t2", "c"))
        assert [t.title for t in store[TASKS].find()] == ["b", "c"]


def test_statements_take_parameters_of_any_type_psycopg_adapts(pg: PostgresFactory) -> None:
    # The fast path encodes str, int, bytes and None itself; queries also send floats, booleans
    # and lists (for ANY), which psycopg adapts as it always did, prepared or not.
    with pg(SCHEMA) as store:
        sql = "SELECT %s::float8, %s::bool, 'b' = ANY(%s), %s::bigint, %s::text, %s::bytea"
        params = [1.5, True, ["a", "b"], 2**40, "x", b"\x00y"]
        expected = (1.5, True, True, 2**40, "x", b"\x00y")
        assert store._one(sql, params) == expected  # type: ignore[attr-defined]
        for _ in range(2):
            assert store._one(sql, params, True) == expected  # type: ignore[attr-defined]


def test_threads_sharing_a_store_each_use_their_own_connection(pg: PostgresFactory) -> None:
    store = pg(SCHEMA)
    store[TASKS].put(Task("n", title="0"))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                store[TASKS].update("n", lambda t: attrs.evolve(t, title=str(int(t.title) + 1)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store[TASKS]["n"].title == "100"


def test_stores_in_two_schemas_of_one_database_are_apart(pg: PostgresFactory, postgres_server: Any) -> None:
    other = postgres_factory(postgres_server)
    try:
        with pg(SCHEMA) as a, other(SCHEMA) as b:
            a[TASKS].put(Task("t1", "in a", owner="ann"))
            b[TASKS].put(Task("t1", "in b", owner="ann"))  # unique per store, not per database
            assert (a[TASKS]["t1"].title, b[TASKS]["t1"].title) == ("in a", "in b")
    finally:
        other.close_all()


# --------------------------------------------------------------------------- backups


def test_a_backup_restores_by_renaming_schemas(pg: PostgresFactory) -> None:
    with pg(V1) as store:
        seed(store)
    names = "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = %s ORDER BY 1, 2"
    before = _server_sql(pg.server, names, (pg.pg_schema,))
    with pg(V4):
        pass
    (backup,) = [s for s in pg.schemas() if "_backup_" in s]
    assert _server_sql(pg.server, names, (backup,)) == before  # same tables, same index names
    # The documented restore (docs/postgres.md): swap the schemas in one transaction.
    _server_sql(
        pg.server,
        f'BEGIN; ALTER SCHEMA "{pg.pg_schema}" RENAME TO "{pg.pg_schema}_old"; '
        f'ALTER SCHEMA "{backup}" RENAME TO "{pg.pg_schema}"; COMMIT',
    )
    with pg(V1, mode="read") as old:
        check_v1(old)
    from statestore.backends.postgres import find_backups

    assert find_backups(pg.location) == []  # the restored store (its comment kept) is not its own backup
    with pg(V4) as store:  # migrates the restored store again
        check_v4(store)
    assert len(find_backups(pg.location)) == 1


# --------------------------------------------------------------------------- the command


def test_backups_command_lists_and_prunes_backup_schemas(pg: PostgresFactory) -> None:
    import json

    from click.testing import CliRunner

    from statestore.cli import main

    with pg(V1) as store:
        seed(store)
    with pg(V4, backup=False) as store:
        store.migrate(to=1)
        store.migrate(to=4)
    runner = CliRunner()
    listed = runner.invoke(main, ["backups", "--json", pg.location])
    assert listed.exit_code == 0, listed.output
    backups = json.loads(listed.output)["backups"]
    assert [b["before"] for b in backups] == ["app-v4", "app-v1"]
    assert all(b["path"].startswith(f"{pg.pg_schema}_backup_") and b["bytes"] > 0 for b in backups)
    pruned = runner.invoke(main, ["backups", "--prune", "--keep", "1", pg.location])
    assert pruned.exit_code == 0, pruned.output
    assert [s for s in pg.schemas() if "_backup_" in s] == [backups[1]["path"]]


def test_info_names_the_schema_and_its_size(pg: PostgresFactory) -> None:
    import json

    from click.testing import CliRunner

    from statestore.cli import main

    with pg(SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    result = CliRunner().invoke(main, ["info", "--json", pg.location])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["backend"], info["path"]) == ("postgres", pg.pg_schema)
    assert info["size"] > 0


# --------------------------------------------------------------------------- follow: LISTEN/NOTIFY, else polling

EVENTS_LOG = ss.Log("events", Task)
LOGGED = ss.Schema("pgtest", version=1, collections=[TASKS], logs=[EVENTS_LOG])


def _follow_one_while_another_store_appends(pg: PostgresFactory, poll: float) -> float:
    """Seconds a follower with ``poll`` took to see an entry appended by another store object."""
    follower, writer = pg(LOGGED), pg(LOGGED)
    writer[EVENTS_LOG].append(Task("first"), stream="s")
    appended: list[float] = []

    def append_later() -> None:
        time.sleep(0.5)
        appended.append(time.monotonic())
        writer[EVENTS_LOG].append(Task("second"), stream="s")

    thread = threading.Thread(target=append_later)
    thread.start()
    try:
        seen = []
        for entry in follower[EVENTS_LOG].follow(after=0, timeout=20, poll=poll):
            seen.append(entry.record.id)
            if len(seen) == 2:
                break
        assert seen == ["first", "second"]
        return time.monotonic() - appended[0]
    finally:
        thread.join()


def test_follow_wakes_on_a_notification_not_on_its_poll(pg: PostgresFactory) -> None:
    # A poll of 10 s would take seconds to see the entry; the notification brings it at once.
    assert _follow_one_while_another_store_appends(pg, poll=10.0) < 2.0


def test_follow_polls_when_it_cannot_listen(pg: PostgresFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from statestore.backends.postgres import PostgresStore

    def refuse(self: PostgresStore, log: Any) -> Any:
        raise ss.BackendError(self.location, "LISTEN is not available here")

    monkeypatch.setattr(PostgresStore, "_listener", refuse)
    assert _follow_one_while_another_store_appends(pg, poll=0.05) < 2.0


def test_a_rolled_back_append_wakes_no_follower_and_is_never_followed(pg: PostgresFactory) -> None:
    writer = pg(LOGGED)
    with pytest.raises(RuntimeError), writer.transaction():
        writer[EVENTS_LOG].append(Task("never"), stream="s")
        raise RuntimeError("roll back")
    assert list(pg(LOGGED)[EVENTS_LOG].follow(after=0, timeout=0.3, poll=10.0)) == []


# --------------------------------------------------------------------------- legacy import into PostgreSQL
# (the import suite, tests/test_legacy.py, runs on PostgreSQL too; these are its tests about what lies
# beside a store, where a PostgreSQL store has schemas instead of files)

TRACKER_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "tracker"


@pytest.fixture
def tracker(tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(TRACKER_FIXTURE, tmp_path / "old"))


def test_import_replace_keeps_the_old_store_as_a_schema(pg: PostgresFactory, tracker: Path) -> None:
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER
    from statestore.examples.tracker import TASKS as TRACKER_TASKS

    legacy = ss.Legacy(tracker, LAYOUT)
    with ss.open_store(pg.location, TRACKER, legacy=legacy) as store:
        store[TRACKER_TASKS].delete("fn-1.1")
    assert ss.import_legacy(pg.location, TRACKER, legacy, replace=True).imported_store
    with ss.open_store(pg.location, TRACKER, mode="read") as store:
        assert "fn-1.1" in store[TRACKER_TASKS]
    (kept,) = [s for s in pg.schemas() if "_replaced_" in s]
    with ss.open_store(pg.server.url(kept), TRACKER, mode="read") as old:
        assert "fn-1.1" not in old[TRACKER_TASKS]


def test_import_drops_schemas_a_crashed_import_left(pg: PostgresFactory, tracker: Path) -> None:
    from statestore.backends.postgres import aside_schema
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    leftover = aside_schema(pg.pg_schema, "import")  # as a crashed import names its schema
    _server_sql(pg.server, f'CREATE SCHEMA "{leftover}"; CREATE TABLE "{leftover}".half (x int)')
    ss.import_legacy(pg.location, TRACKER, ss.Legacy(tracker, LAYOUT))
    assert pg.schemas() == [pg.pg_schema]


def test_import_never_builds_over_a_schema_that_is_not_a_store(pg: PostgresFactory, tracker: Path) -> None:
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    _server_sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}"; CREATE TABLE "{pg.pg_schema}".notes (t text)')
    _server_sql(pg.server, f"INSERT INTO \"{pg.pg_schema}\".notes VALUES ('mine')")
    with pytest.raises(ss.CorruptStoreError):
        ss.open_store(pg.location, TRACKER, legacy=ss.Legacy(tracker, LAYOUT))
    assert _server_sql(pg.server, f'SELECT t FROM "{pg.pg_schema}".notes') == [("mine",)]
    assert pg.schemas() == [pg.pg_schema]


def test_import_whose_migration_fails_leaves_no_store(pg: PostgresFactory, tmp_path: Path) -> None:
    import json

    @attrs.define
    class Person:
        id: str
        name: str

    people = ss.Collection("people", Person, key="id")

    def fail(m: ss.MigrationContext) -> None:
        raise RuntimeError("no")

    v2 = ss.Schema("app", version=2, collections=[people], migrations=[ss.Migration(2, "x", up=fail)])
    root = tmp_path / "old-app"
    root.mkdir()
    (root / "people.json").write_text(json.dumps([{"id": "ada", "name": "Ada"}]))
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("people.json", into=people)])
    with pytest.raises(ss.MigrationError):
        ss.open_store(pg.location, v2, legacy=ss.Legacy(root, layout))
    assert pg.schemas() == []  # neither the store nor the schema it was built in


def test_a_replace_that_cannot_be_placed_leaves_the_old_store(
    pg: PostgresFactory, tracker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statestore.backends import postgres
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER
    from statestore.examples.tracker import TASKS as TRACKER_TASKS

    with ss.open_store(pg.location, TRACKER, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        store[TRACKER_TASKS].delete("fn-1.1")
    real = postgres.place_schema

    def fails(tmp: str, url: str | None, **kw: Any) -> None:
        if url is None:
            return real(tmp, url, **kw)
        raise ss.BackendError("x", "disk full")

    monkeypatch.setattr(postgres, "place_schema", fails)
    with pytest.raises(ss.BackendError, match="disk full"):
        ss.import_legacy(pg.location, TRACKER, ss.Legacy(tracker, LAYOUT), replace=True)
    with ss.open_store(pg.location, TRACKER, mode="read") as store:
        assert "fn-1.1" not in store[TRACKER_TASKS]  # the old store, still in place
    assert pg.schemas() == [pg.pg_schema]


# ---------------------------------------------------------------- queries pushed down


def _decoded(monkeypatch: pytest.MonkeyPatch, store: Any) -> list[Any]:
    """A list that grows by one item for each row of a collection the server sends back."""
    seen: list[Any] = []
    run, run_group = store._all, store._all_of

    def counting(sql: str, *args: Any) -> Any:
        rows = run(sql, *args)
        if sql.startswith("SELECT key"):
            seen.extend(r[0] for r in rows)
        return rows

    def counting_group(group: Any) -> Any:  # statements sent together, in one round trip
        results = run_group(group)
        for (sql, _params, _prepare), rows in zip(group, results):
            if sql.startswith("SELECT key"):
                seen.extend(r[0] for r in rows)
        return results

    monkeypatch.setattr(store, "_all", counting)
    monkeypatch.setattr(store, "_all_of", counting_group)
    return seen


def test_conditions_on_index_fields_are_answered_by_the_server(pg: PostgresFactory, monkeypatch: Any) -> None:
    from statestore.testing.models import SCHEMA, TASKS, Task

    store = pg(SCHEMA)
    store[TASKS].replace_all(
        [Task(f"t{i:03}", status="done" if i % 20 == 0 else "todo", points=i % 7) for i in range(200)]
    )
    seen = _decoded(monkeypatch, store)
    done = store[TASKS].find(status="done")
    assert [t.id for t in done] == [f"t{i:03}" for i in range(0, 200, 20)]
    assert len(seen) == 10  # only the matching rows left the server
    seen.clear()
    assert store[TASKS].count(status=ss.one_of("done", "gone")) == 10
    assert store[TASKS].count(status=ss.prefix("do")) == 10
    assert seen == []  # exact conditions are counted on the server
    assert store[TASKS].count(points=ss.ge(6)) == 28
    assert len(seen) == 28  # a number range is widened on the server, checked here
    seen.clear()
    first = store[TASKS].find(status="todo", limit=3)
    assert [t.id for t in first] == ["t001", "t002", "t003"]
    assert len(seen) < 200  # a limit without order reads a batch, not the table
    seen.clear()
    assert store[TASKS].find(title="", status=ss.ne("todo"), limit=2) == done[:2]
    assert len(seen) < 200


def test_the_plan_uses_the_index_of_a_field(pg: PostgresFactory) -> None:
    from statestore.backends.postgres.queries import term_clause
    from statestore.query import Term
    from statestore.testing.models import SCHEMA, TASKS, Task

    store: Any = pg(SCHEMA)
    store[TASKS].replace_all([Task(f"t{i:05}", status=f"s{i}") for i in range(5000)])
    store._execute(f"ANALYZE {store._t('tasks')}")
    clause = term_clause(store._column(TASKS, "status"), Term("status", "prefix", "s12", "str"))
    assert clause is not None
    with store.transaction():
        plan = "\n".join(
            r[0] for r in store._all(f"EXPLAIN SELECT key FROM {store._t('tasks')} WHERE {clause.sql}", clause.params)
        )
    assert "Index" in plan, plan


def test_conditions_on_other_fields_are_answered_through_postgres_json(pg: PostgresFactory, monkeypatch: Any) -> None:
    from statestore.testing.models import SCHEMA, TASKS, Task

    store = pg(SCHEMA)
    tasks = [Task(f"t{i:03}", title=f"title {i % 10}", ratio=i / 4, done=i % 50 == 0) for i in range(200)]
    tasks.append(Task("nul", title="title 1\x00", ratio=1e300))  # PostgreSQL's JSON cannot parse this record
    store[TASKS].replace_all(tasks)
    seen = _decoded(monkeypatch, store)
    assert len(store[TASKS].find(title="title 3")) == 20
    assert len(seen) == 21  # the matches, and the record PostgreSQL could not look into
    seen.clear()
    assert "nul" in [t.id for t in store[TASKS].find(title=ss.prefix("title 1"))]
    assert len(seen) == 21
    seen.clear()
    assert store[TASKS].count(done=True, ratio=ss.gt(10)) == 3
    assert len(seen) == 4
    seen.clear()
    assert store[TASKS].count(title=ss.gt("title 8")) == 20
    assert len(seen) == 21
    assert store[TASKS].count(title=ss.gt("title 1\x00")) == 160  # an operand with NUL: compared in Python


def test_iter_in_an_index_order_reads_each_record_about_once(pg: PostgresFactory, monkeypatch: Any) -> None:
    from statestore.testing.models import SCHEMA, TASKS, Task

    store = pg(SCHEMA)
    store[TASKS].replace_all([Task(f"t{i:03}", points=(i * 37) % 300) for i in range(300)])
    seen = _decoded(monkeypatch, store)
    got = [t.points for t in store[TASKS].iter(order_by="-points", batch_size=20)]
    assert got == sorted(range(300), reverse=True)
    assert len(seen) < 2 * 300  # each batch starts where the last one ended, on the server


_TEXT_OPS = {"gt": str.__gt__, "ge": str.__ge__, "lt": str.__lt__, "le": str.__le__}


def test_ranges_on_a_text_index_field_are_answered_by_the_server(pg: PostgresFactory, monkeypatch: Any) -> None:
    from statestore.testing.models import SCHEMA, TASKS, Task

    store: Any = pg(SCHEMA)
    # Plain texts, and texts whose JSON has an escape (a quote, a backslash, a control character):
    # those the server cannot compare as they are, so it sends them for Python to decide.
    statuses = ["a", "ab", "ab c", "ab!", "b", "é", "\U0001f600", "\uffff", 'do"ne', "x\\y", "tab\there", ""]
    store[TASKS].replace_all([Task(f"t{i:02}", status=s) for i, s in enumerate(statuses)])
    seen = _decoded(monkeypatch, store)
    escaped = {'do"ne', "x\\y", "tab\there"}
    for op in ("gt", "ge", "lt", "le"):
        for bound in statuses:
            if bound in escaped:
                continue
            seen.clear()
            got = sorted(t.status for t in store[TASKS].find(status=getattr(ss, op)(bound)))
            want = sorted(s for s in statuses if _TEXT_OPS[op](s, bound))
            assert got == want, (op, bound)
            # Only the rows that meet it, and the escaped ones, left the server.
            assert len(seen) == len(set(want) | escaped), (op, bound)


@attrs.define
class Shift:
    id: str
    at: datetime | None = None


SHIFTS = ss.Collection("shifts", Shift, key="id", indexes=["at"])
SHIFT_SCHEMA = ss.Schema("pgshifts", version=1, collections=[SHIFTS])


def test_ranges_and_order_on_a_datetime_index_field_are_answered_by_the_server(
    pg: PostgresFactory, monkeypatch: Any
) -> None:
    from statestore.strict import parse_datetime

    store: Any = pg(SHIFT_SCHEMA)
    utc = timezone.utc
    store[SHIFTS].replace_all(
        [
            Shift("a", datetime(2024, 5, 17, 12, 0, tzinfo=utc)),
            Shift("b", datetime(2024, 5, 17, 14, 0, tzinfo=timezone(timedelta(hours=2)))),  # a's instant
            Shift("c", datetime(2024, 5, 17, 12, 0, 0, 1, tzinfo=utc)),
            Shift("d", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))),
            Shift("e", None),
            Shift("f", datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=15, minutes=59)))),
            Shift("g", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-15, minutes=-59)))),
        ]
    )
    # Spellings Python reads and the server's pattern does not (Python decides for them), edited
    # into the table by hand: lowercase t, a comma, z, a 7th zero digit, an offset past 15:59.
    odd = {
        "h": "2024-05-17t12:00:00Z",
        "i": "2024-05-17T11:59:59,5Z",
        "j": "2024-05-17T12:00:00z",
        "k": "2024-05-17T12:00:00.0000010+00:00",
        "l": "2024-05-18T08:00:00+20:00",
    }
    table = f'"{pg.pg_schema}".shifts'
    for key, text in odd.items():
        data = json.dumps({"id": key, "at": text})
        _server_sql(
            pg.server,
            f"INSERT INTO {table}(key, revision, data, at) VALUES (%s, 1, %s, %s)",
            (key.encode(), data, json.dumps(text)),
        )
    stored = {
        bytes(k).decode(): json.loads(d).get("at") for k, d in _server_sql(pg.server, f"SELECT key, data FROM {table}")
    }
    assert len(stored) == 12
    assert stored["h"] == odd["h"]

    def instant(key: str) -> Any:
        return None if stored[key] is None else parse_datetime(stored[key])

    def ordered(keys: list[str], descending: bool) -> list[str]:
        # Ties by key, ascending either way (a stable sort: reverse keeps equal items in order).
        nulls = sorted(k for k in keys if instant(k) is None)
        rest = sorted(sorted(k for k in keys if instant(k) is not None), key=instant, reverse=descending)
        return rest + nulls if descending else nulls + rest

    seen = _decoded(monkeypatch, store)
    bounds = [
        "2024-05-17T12:00:00+00:00",
        "2024-05-17T14:00:00.000001+02:00",
        "0001-01-01T00:00:00Z",
        "2024-05-17t12:00:00Z",
    ]
    for op in ("gt", "ge", "lt", "le"):
        for bound in bounds:
            seen.clear()
            b = parse_datetime(bound)
            got = sorted(s.id for s in store[SHIFTS].find(at=getattr(ss, op)(b)))
            want = sorted(k for k in stored if instant(k) is not None and _DT_OPS[op](instant(k), b))
            assert got == want, (op, bound)
            assert len(seen) <= len(set(want) | set(odd)), (op, bound)  # the rest stayed on the server
    for descending in (False, True):
        order = "-at" if descending else "at"
        every = ordered(list(stored), descending)
        for limit in (1, 2, 3, 5, 8, 12):
            assert [s.id for s in store[SHIFTS].find(order_by=order, limit=limit)] == every[:limit], (order, limit)
        assert [s.id for s in store[SHIFTS].iter(order_by=order, batch_size=2)] == every
        got = [
            s.id for s in store[SHIFTS].find(at=ss.ge(parse_datetime("2024-01-01T00:00:00Z")), order_by=order, limit=4)
        ]
        assert (
            got
            == [k for k in every if instant(k) is not None and instant(k) >= parse_datetime("2024-01-01T00:00:00Z")][:4]
        )


_DT_OPS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def test_order_by_a_field_without_an_index_is_served_by_the_server(pg: PostgresFactory, monkeypatch: Any) -> None:
    # The record's JSON read on the server: only the rows needed leave it, and the answer is the
    # memory backend's (the plain model), records PostgreSQL cannot parse (a \u escape) included.
    from statestore.testing.models import SCHEMA, TASKS, Priority, Task

    utc, east = timezone.utc, timezone(timedelta(hours=3))
    titles = ["b", "a", 'q"uote', "back\\slash", "\x01ctl", "é", "", "\U0001f600", "a", "Z"]
    tasks = [
        Task(
            f"t{i:02}",
            title=titles[i % len(titles)],
            due=None if i % 7 == 0 else datetime(2024, 5, 17, i % 5, i % 3, tzinfo=utc if i % 2 else east),
            ratio=[0.5, 2**53 + 1, float(2**53), -1.5, 3, 0.0, -0.0][i % 7],
            done=i % 3 == 0,
            priority=list(Priority)[i % len(Priority)],
        )
        for i in range(40)
    ]
    tasks.append(Task("top", title="\U0010ffff", due=datetime(2030, 1, 1, tzinfo=utc), ratio=1e300))
    store: Any = pg(SCHEMA)
    store[TASKS].replace_all(tasks)
    model = ss.open_store("memory:", SCHEMA)
    model[TASKS].replace_all(tasks)
    seen = _decoded(monkeypatch, store)
    for field in ("title", "due", "ratio", "done"):
        for order in (field, f"-{field}"):
            for limit in (1, 3, 10):
                got = [t.id for t in store[TASKS].find(order_by=[order, "id"], limit=limit)]
                assert got == [t.id for t in model[TASKS].find(order_by=[order, "id"], limit=limit)], (order, limit)
            got = [t.id for t in store[TASKS].iter(order_by=order, batch_size=4)]
            assert got == [t.id for t in model[TASKS].iter(order_by=order, batch_size=4)], order
        if field != "done":
            seen.clear()
            assert [t.id for t in store[TASKS].find(order_by=f"-{field}", limit=1)] == ["top"]
            assert len(seen) < len(tasks)  # not every record left the server (before: every one)
    # Ranges on the datetime field without an index: instants compared on the server.
    for op in ("gt", "ge", "lt", "le"):
        for bound in (datetime(2024, 5, 17, 2, 1, tzinfo=utc), datetime(2024, 5, 17, 4, 2, tzinfo=east)):
            seen.clear()
            got = sorted(t.id for t in store[TASKS].find(due=getattr(ss, op)(bound)))
            assert got == sorted(t.id for t in model[TASKS].find(due=getattr(ss, op)(bound))), (op, bound)
            assert len(seen) <= len(got) + 4, (op, bound)  # the matches, and the 4 records it cannot parse
    model.close()


def test_rows_whose_number_lookup_text_the_server_cannot_order_are_still_found_in_order(pg: PostgresFactory) -> None:
    # A lookup column edited by hand to another spelling of its number ("05", " 7"): the number
    # index has no value for it, so such a row is read by the query for odd rows and placed here.
    from statestore.testing.models import SCHEMA, TASKS, Task

    store: Any = pg(SCHEMA)
    store[TASKS].replace_all([Task(f"t{i:02}", points=i) for i in range(20)])
    _server_sql(pg.server, f"UPDATE \"{pg.pg_schema}\".tasks SET points = '05' WHERE key = 't05'::bytea")
    _server_sql(pg.server, f"UPDATE \"{pg.pg_schema}\".tasks SET points = ' 12' WHERE key = 't12'::bytea")
    for descending in (False, True):
        order = "-points" if descending else "points"
        for low in (0, 4, 6, 12, 13):
            got = [t.points for t in store[TASKS].find(points=ss.ge(low), order_by=order, limit=4)]
            want = sorted(range(low, 20), reverse=descending)[:4]
            assert got == want, (order, low)
        every = sorted(range(20), reverse=descending)
        assert [t.points for t in store[TASKS].find(order_by=order, limit=3)] == every[:3]
        assert [t.points for t in store[TASKS].iter(order_by=order, batch_size=3)] == every


def test_ranges_and_order_on_a_number_index_field_use_its_number_index(pg: PostgresFactory, monkeypatch: Any) -> None:
    from statestore.testing.models import SCHEMA, TASKS, Task

    store: Any = pg(SCHEMA)
    store[TASKS].replace_all([Task(f"t{i:05}", points=i) for i in range(5000)])
    store._execute(f"ANALYZE {store._t('tasks')}")
    sent: list[tuple[str, Any]] = []
    run, run_group = store._all, store._all_of

    def capture(sql: str, *args: Any) -> Any:
        sent.append((sql, args[0] if args else None))
        return run(sql, *args)

    def capture_group(group: Any) -> Any:  # statements sent together, in one round trip
        sent.extend((sql, params) for sql, params, _prepare in group)
        return run_group(group)

    monkeypatch.setattr(store, "_all", capture)
    monkeypatch.setattr(store, "_all_of", capture_group)
    got = store[TASKS].find(points=ss.ge(4000), order_by="-points", limit=3)
    assert [t.points for t in got] == [4999, 4998, 4997]
    assert store[TASKS].count(points=ss.lt(10)) == 10
    monkeypatch.setattr(store, "_all", run)
    plans = []
    for sql, params in sent:
        with store.transaction():
            plans.append("\n".join(r[0] for r in store._all(f"EXPLAIN {sql}", params)))
    assert any("_statestore_nx_tasks__points" in p and "Limit" in p for p in plans), plans
    assert all("Seq Scan" not in p for p in plans), plans
