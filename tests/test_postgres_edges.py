"""The PostgreSQL backend at its edges: each test reproduces a bug a review found (they failed before the fixes).

Every test runs against the real server tests/_postgres.py starts; where the
other backends answer differently, the test says what SQLite and memory do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import _postgres
import statestore as ss
from conftest import PostgresFactory, postgres_factory

TRACKER_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "tracker"
SECRET = "pw-review-7731"  # noqa: S105 - the password these tests look for in output


@pytest.fixture
def pg(postgres_server: _postgres.PostgresServer) -> Iterator[PostgresFactory]:
    factory = postgres_factory(postgres_server)
    yield factory
    factory.close_all()


@pytest.fixture
def tracker(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TRACKER_FIXTURE, tmp_path / "old"))


def _sql(server: _postgres.PostgresServer, sql: str, params: Any = None) -> list[Any]:
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as con:
        cur = con.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _with_password(location: str) -> str:
    return location.replace("postgresql://statestore@", f"postgresql://statestore:{SECRET}@")


@attrs.define
class Item:
    id: str
    x: float = 0.0
    u: float | None = None
    n: int | float = 0
    s: str = ""


ITEMS = ss.Collection("items", Item, key="id", indexes=["x", "n", "s"], unique=["u"])


@attrs.define
class Event:
    what: str = ""


EVENTS = ss.Log("events", Event)
SCHEMA = ss.Schema("review", version=1, collections=[ITEMS], logs=[EVENTS])


# --------------------------------------------------------------------------- data lost


def test_copy_overwrite_never_drops_a_schema_that_is_not_a_store(pg: PostgresFactory, tmp_path: Path) -> None:
    # copy_store's contract: with overwrite, "it must be a statestore store (never a stranger's folder)".
    # On PostgreSQL, place_schema(replace=True) DROPs whatever schema has the name, CASCADE.
    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}"; CREATE TABLE "{pg.pg_schema}".precious (x int)')
    _sql(pg.server, f'INSERT INTO "{pg.pg_schema}".precious VALUES (42)')
    src = f"sqlite:{tmp_path / 'src.db'}"
    with ss.open_store(src, SCHEMA) as store:
        store[ITEMS].put(Item("a"))
    with pytest.raises(ss.StateStoreError):
        ss.copy_store(src, pg.location, overwrite=True)
    assert _sql(pg.server, f'SELECT x FROM "{pg.pg_schema}".precious') == [(42,)]


def test_legacy_import_never_drops_another_store_whose_name_extends_the_schema(
    pg: PostgresFactory, tracker: Path
) -> None:
    # import_lock drops every schema starting with "<schema>_import_" as a crashed import's leftover:
    # a store named e.g. "sales_import_2024" goes when "sales" is imported.
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    neighbour = pg.server.url(f"{pg.pg_schema}_import_keep")
    with ss.open_store(neighbour, SCHEMA) as store:
        store[ITEMS].put(Item("precious"))
    ss.import_legacy(pg.location, TRACKER, ss.Legacy(tracker, LAYOUT))
    with ss.open_store(neighbour, SCHEMA, mode="read") as store:
        assert store[ITEMS].keys() == ["precious"]


# --------------------------------------------------------------------------- passwords


def test_a_legacy_import_never_logs_or_reports_the_password(pg: PostgresFactory, tracker: Path) -> None:
    # building.py's _run_postgres_import logs and reports the location as given (password included).
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("statestore")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        report = ss.import_legacy(_with_password(pg.location), TRACKER, ss.Legacy(tracker, LAYOUT))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert report.imported_store
    assert SECRET not in out.getvalue()
    assert SECRET not in str(report.location)
    assert SECRET not in repr(report)


def test_a_refused_legacy_import_error_does_not_hold_the_password(pg: PostgresFactory, tracker: Path) -> None:
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}"; CREATE TABLE "{pg.pg_schema}".notes (t text)')
    with pytest.raises(ss.CorruptStoreError) as caught:
        ss.import_legacy(_with_password(pg.location), TRACKER, ss.Legacy(tracker, LAYOUT))
    assert SECRET not in str(caught.value)


def test_the_copy_command_does_not_print_the_password(pg: PostgresFactory, tmp_path: Path) -> None:
    # cli copy echoes f"copied {src} -> {done}" with SRC as typed.
    from click.testing import CliRunner

    from statestore.cli import main

    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a"))
    result = CliRunner().invoke(main, ["copy", _with_password(pg.location), f"sqlite:{tmp_path / 'out.db'}"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


def test_the_import_legacy_command_does_not_print_the_password(pg: PostgresFactory, tracker: Path) -> None:
    from click.testing import CliRunner

    from statestore.cli import main

    location = _with_password(pg.location)
    args = ["import-legacy", location, "--app", "statestore.examples.tracker:SCHEMA", "--legacy", str(tracker)]
    first = CliRunner().invoke(main, [*args, "--json"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, args)  # "the store exists" line
    assert again.exit_code == 0, again.output
    assert SECRET not in first.output
    assert SECRET not in again.output


# --------------------------------------------------------------------------- guarantees and answers


def test_a_unique_float_field_refuses_negative_zero_beside_zero(pg: PostgresFactory) -> None:
    # equal_clause sends "-0.0"/"0" for -0.0 and "0.0"/"0" for 0.0: neither finds the other, and the
    # unique index compares text. SQLite, files and memory raise UniqueViolationError (0.0 == -0.0).
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a", u=0.0))
        with pytest.raises(ss.UniqueViolationError):
            store[ITEMS].put(Item("b", u=-0.0))


def test_find_and_count_of_zero_find_a_stored_negative_zero(pg: PostgresFactory) -> None:
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a", x=-0.0))
        assert [i.id for i in store[ITEMS].find(x=0.0)] == ["a"]  # memory, SQLite, files: ["a"]
        assert store[ITEMS].count(x=0.0) == 1
        assert [i.id for i in store[ITEMS].find(x=0)] == ["a"]


def test_count_and_one_of_on_an_int_or_float_field_find_a_stored_float(pg: PostgresFactory) -> None:
    # A field declared int | float has kind "other": queries.py's _texts sends only "1" for 1, not
    # "1.0", and count trusts the clause as exact. find(n=1) (the plain-equality path) finds it.
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a", n=1.0))
        assert [i.id for i in store[ITEMS].find(n=1)] == ["a"]
        assert store[ITEMS].count(n=1) == 1  # PostgreSQL: 0
        assert [i.id for i in store[ITEMS].find(n=ss.one_of(1))] == ["a"]  # PostgreSQL: []
        assert [i.id for i in store[ITEMS].find(n=1, limit=5)] == ["a"]  # PostgreSQL: []


def test_prefix_finds_an_indexed_text_holding_a_lone_surrogate(pg: PostgresFactory) -> None:
    # dumps() writes the whole value ASCII-escaped when it holds a lone surrogate ("\\u00e9\\udc80"),
    # so the prefix range on '"é' misses it; the clause is "exact", so count is wrong too.
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a", s="é\udc80"))
        assert [i.id for i in store[ITEMS].find(s=ss.prefix("é"))] == ["a"]
        assert store[ITEMS].count(s=ss.prefix("é")) == 1


def test_a_limit_past_what_bigint_holds_answers_as_memory_does(pg: PostgresFactory) -> None:
    # _query reads batches of LIMIT 2 * (offset + limit): limit=sys.maxsize (a common "no limit")
    # is "bigint out of range" on the server. Memory, SQLite and files return the records.
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a"))
        assert [i.id for i in store[ITEMS].find(limit=sys.maxsize)] == ["a"]
        assert [i.id for i in store[ITEMS].iter(batch_size=sys.maxsize)] == ["a"]


def test_a_url_python_cannot_split_is_a_statestore_error(pg: PostgresFactory) -> None:
    # split_url calls urlsplit, whose ValueError ("Invalid IPv6 URL") escapes raw.
    with pytest.raises(ss.StateStoreError):
        ss.open_store(f"postgresql://statestore:{SECRET}@[::1/db?schema=x", SCHEMA)


# --------------------------------------------------------------------------- backups, import, limits (added)


def test_backups_of_a_store_with_a_long_schema_name_are_its_own(pg: PostgresFactory) -> None:
    # _backup names a backup "<schema[:34]>_backup_<time>_<hex>" when the schema name is longer than
    # 34 characters: find_backups (statestore backups) never lists it for its store, and lists it
    # (so --prune drops it, a restore picks it) for the store whose schema is those 34 characters.
    from statestore.backends.postgres import find_backups
    from statestore.testing._migration_app import V1, V4, seed

    long_name = (pg.pg_schema + "x" * 63)[:45]
    short_name = long_name[:34]
    long_url, short_url = pg.server.url(long_name), pg.server.url(short_name)
    with ss.open_store(short_url, V1) as store:
        seed(store)
    with ss.open_store(long_url, V1) as store:
        seed(store)
    with ss.open_store(long_url, V4):  # migrates: one backup of the long-named store
        pass
    assert find_backups(short_url) == []  # PostgreSQL: the long-named store's backup
    assert [taken_before for _n, taken_before, _t, _s in find_backups(long_url)] == ["app-v1"]


@pytest.mark.parametrize("app", ["backup", "nightly_backup"])
def test_backups_are_listed_whatever_the_app_schema_is_named(pg: PostgresFactory, app: str) -> None:
    # _BACKUP's greedy "(?P<schema>.+)_backup_" takes the label's "_backup_" for the separator.
    from statestore.backends.postgres import find_backups

    @attrs.define
    class Row:
        id: str

    rows = ss.Collection("rows", Row, key="id")
    with ss.open_store(pg.location, ss.Schema(app, version=1, collections=[rows])) as store:
        store[rows].put(Row("a"))
    step = ss.Migration(2, "noop", lambda ctx: None)
    with ss.open_store(pg.location, ss.Schema(app, version=2, collections=[rows], migrations=[step])):
        pass
    assert len([s for s in pg.schemas() if "_backup_" in s]) == 1
    assert len(find_backups(pg.location)) == 1


def test_legacy_import_into_an_empty_schema_made_for_the_store(pg: PostgresFactory, tracker: Path) -> None:
    # A DBA creates the (empty) schema and grants it: open_store creates a store there, but the
    # import (and copy_store) place_schema finds the namespace and raises StoreExistsError, telling
    # the user to copy --overwrite. SQLite and files take an empty file or folder.
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER
    from statestore.examples.tracker import TASKS as TRACKER_TASKS

    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}"')
    with ss.open_store(pg.location, TRACKER, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        assert len(store[TRACKER_TASKS]) > 0


def test_copy_into_an_empty_schema_made_for_the_store(pg: PostgresFactory, tmp_path: Path) -> None:
    src = f"sqlite:{tmp_path / 'src.db'}"
    with ss.open_store(src, SCHEMA) as store:
        store[ITEMS].put(Item("a"))
    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}"')
    ss.copy_store(src, pg.location)
    with ss.open_store(pg.location, SCHEMA, mode="read") as store:
        assert store[ITEMS].keys() == ["a"]


def test_a_server_error_is_not_reported_as_a_lost_connection(pg: PostgresFactory) -> None:
    # _error calls every psycopg.OperationalError "lost the connection": program limits (54xxx),
    # statement timeouts (57014), out of disk (53xxx) are OperationalErrors on a live connection.
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))
    with pg(SCHEMA) as store:
        with pytest.raises(ss.BackendError) as caught:
            store[ITEMS].put(Item("a", s=text))
        assert "lost the connection" not in str(caught.value)
        assert store[ITEMS].get("a") is None


@pytest.mark.parametrize("busy_timeout", [1e7, float("inf")])
def test_a_long_busy_timeout_opens_as_on_sqlite(pg: PostgresFactory, busy_timeout: float) -> None:
    # lock_timeout is f"{int(busy_timeout * 1000)}ms": inf is a raw OverflowError, and past 2**31 ms
    # (24.8 days) the server refuses the setting, reported as "cannot connect to the server".
    with ss.open_store(pg.location, SCHEMA, busy_timeout=busy_timeout) as store:
        store[ITEMS].put(Item("a"))
        assert store[ITEMS].keys() == ["a"]


def test_a_migration_whose_backup_was_busy_leaves_the_store_usable_and_unlocked(pg: PostgresFactory) -> None:
    # _backup at depth 0 sends "BEGIN; SELECT pg_advisory_xact_lock(...)" outside its try: on a lock
    # timeout the connection stays in an aborted transaction. The error is "current transaction is
    # aborted" (not StoreBusyError), every later call on the object fails the same way, and
    # pg_advisory_unlock (suppressed) never runs: the session-level migration lock stays held, so
    # every other client's migration is busy until this object is closed.
    from statestore.testing._migration_app import V1, V4, seed

    with ss.open_store(pg.location, V1) as store:
        seed(store)
    with ss.open_store(pg.location, V4):
        pass
    people = V4.collections[0]
    holder = ss.open_store(pg.location, V4, busy_timeout=10)
    store = ss.open_store(pg.location, V4, busy_timeout=0.3)
    other = ss.open_store(pg.location, V4, busy_timeout=0.5)
    try:
        with holder.transaction():
            holder[people].keys()  # holds the write lock
            with pytest.raises(ss.StateStoreError) as caught:
                store.migrate(to=1)
        assert len(store[people]) == len(holder[people])  # PostgreSQL: "current transaction is aborted"
        other.migrate(to=1)  # PostgreSQL: StoreBusyError, the migration lock is still held
        assert isinstance(caught.value, ss.StoreBusyError)
    finally:
        other.close()
        store.close()
        holder.close()


def test_backups_skip_a_schema_whose_name_only_looks_like_a_backup(pg: PostgresFactory) -> None:
    # find_backups' regex takes any 8 digits "t" 6 digits "z" for a time; strptime then raises a raw
    # ValueError ("internal error" in statestore backups) for an impossible date.
    from statestore.backends.postgres import find_backups

    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a"))
    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}_backup_x_20261399t000000z_abcd"')
    assert find_backups(pg.location) == []


def test_an_index_field_name_past_63_bytes_is_a_clear_schema_error(pg: PostgresFactory) -> None:
    # Lookup columns are named after the field and PostgreSQL cuts names at 63 bytes: two long
    # field names became one column ("already exists"). Now refused, saying why (SQLite opens it).
    @attrs.define
    class Wide:
        id: str
        a_very_long_field_name_that_goes_on_and_on_past_sixty_three_bytes_x: str = ""
        a_very_long_field_name_that_goes_on_and_on_past_sixty_three_bytes_y: str = ""

    wide = ss.Collection(
        "wide",
        Wide,
        key="id",
        indexes=[
            "a_very_long_field_name_that_goes_on_and_on_past_sixty_three_bytes_x",
            "a_very_long_field_name_that_goes_on_and_on_past_sixty_three_bytes_y",
        ],
    )
    with pytest.raises(ss.SchemaError, match="63 bytes"):
        pg(ss.Schema("wide", version=1, collections=[wide]))
    assert pg.schemas() == []


def test_an_indexed_text_past_the_index_row_limit_is_refused_whole(pg: PostgresFactory) -> None:
    # PostgreSQL's btree takes at most 2704 bytes a row: such a write is refused with the server's
    # reason (not "lost the connection"), nothing is half written, and the store goes on.
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))  # ~6 KB of UTF-8
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("b", s="short"))
        with pytest.raises(ss.BackendError, match="index row size"):
            store[ITEMS].put(Item("a", s=text))
        assert store[ITEMS].keys() == ["b"]
        store[ITEMS].put(Item("c"))
        assert store[ITEMS].keys() == ["b", "c"]


def test_a_log_stream_holding_nul_is_refused_saying_why(pg: PostgresFactory) -> None:
    # PostgreSQL text cannot hold NUL: SQLite, files and memory store such a stream; here it is refused.
    with pg(SCHEMA) as store:
        with pytest.raises(ss.BackendError, match="NUL"):
            store[EVENTS].append(Event("x"), stream="a\x00b")
        assert store[EVENTS].last_seq() == 0
        store[EVENTS].append(Event("y"), stream="ab")
        assert [e.stream for e in store[EVENTS].read()] == ["ab"]


def test_a_write_is_not_lost_in_silence_when_a_later_read_fails_in_the_transaction(pg: PostgresFactory) -> None:
    # _run clears the pending (deferred) writes before mogrify(); when mogrify raises (a NUL in a
    # stream: allowed by the views, refused by PostgreSQL text), the put before it is dropped, and
    # the transaction still commits what follows. SQLite and memory keep both records.
    with pg(SCHEMA) as store:
        with contextlib.suppress(ss.StateStoreError), store.transaction():
            store[ITEMS].put(Item("a"))
            with contextlib.suppress(ss.StateStoreError):  # PostgreSQL refuses the NUL; SQLite reads []
                store[EVENTS].read(stream="x\x00y")
            store[ITEMS].put(Item("b"))
        # Either the transaction fails as a whole, or both writes are there: never only "b".
        assert store[ITEMS].keys() in ([], ["a", "b"])


def test_a_transaction_whose_begin_was_busy_never_commits_what_follows(pg: PostgresFactory) -> None:
    # BEGIN and the write lock go with the transaction's first statement. When that statement fails
    # (here StoreBusyError: another client holds the write lock), _run rolls back on the server, but
    # the caller is still inside store.transaction(): later writes run in autocommit, without the
    # write lock, and stay committed when the transaction is then rolled back. On SQLite the busy
    # error is raised by `with store.transaction()` itself.
    with pg(SCHEMA) as first:
        first[ITEMS].put(Item("k"))
    holder = ss.open_store(pg.location, SCHEMA, busy_timeout=10)
    store = ss.open_store(pg.location, SCHEMA, busy_timeout=0.3)
    try:
        with holder.transaction():
            holder[ITEMS].get("k")  # holds the write lock until the block ends
            with contextlib.suppress(RuntimeError, ss.StateStoreError), store.transaction():
                with contextlib.suppress(ss.StoreBusyError):
                    store[ITEMS].get("k")
                store[ITEMS].put(Item("a"))
                store[ITEMS].get("k")  # PostgreSQL: sends the put in autocommit, while holder has the lock
                raise RuntimeError("roll the transaction back")
        assert store[ITEMS].get("a") is None
    finally:
        store.close()
        holder.close()


def test_a_failure_inside_a_nested_block_rolls_back_to_its_savepoint_and_the_rest_goes_on(
    pg: PostgresFactory,
) -> None:
    # What the failed-transaction refusal must not break: a nested block whose statement the
    # server refused is rolled back to its savepoint, and the outer block carries on and commits.
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))  # past the index row limit
    with pg(SCHEMA) as store:
        with store.transaction():
            store[ITEMS].put(Item("a"))
            with pytest.raises(ss.BackendError, match="index row size"), store.transaction():
                store[ITEMS].put(Item("b", s=text))
                store[ITEMS].get("a")  # sends the put: the server refuses it
            store[ITEMS].put(Item("c"))
        assert store[ITEMS].keys() == ["a", "c"]


def test_placing_a_copy_over_a_store_in_use_waits_at_most_the_busy_timeout(pg: PostgresFactory) -> None:
    # place_schema set no lock_timeout: copy --overwrite or an import --replace waited as long as
    # a writer (or a client idle in a transaction) held the store.
    import time

    from statestore.backends.postgres import place_schema

    tmp = pg.server.url(f"{pg.pg_schema}_tmpcopy")
    _sql(pg.server, f'CREATE SCHEMA "{pg.pg_schema}_tmpcopy"')
    with pg(SCHEMA) as store, store.transaction():
        store[ITEMS].put(Item("a"))  # holds the store's write lock
        started = time.monotonic()
        with pytest.raises(ss.StoreBusyError):
            place_schema(tmp, pg.location, replace=True, busy_timeout=0.3)
        assert time.monotonic() - started < 5
    with pg(SCHEMA, mode="read") as store:
        assert store[ITEMS].keys() == ["a"]  # nothing was replaced
    place_schema(tmp, None, replace=False)


def test_an_import_that_replaces_keeps_the_old_store_under_a_name_that_fits(pg: PostgresFactory, tracker: Path) -> None:
    # The kept store was named <schema[:40]>_replaced_<time>: 66 characters, which PostgreSQL cut to 63.
    from statestore.examples.tracker import LAYOUT
    from statestore.examples.tracker import SCHEMA as TRACKER

    long_name = (pg.pg_schema + "x" * 63)[:50]
    long_url = pg.server.url(long_name)
    ss.import_legacy(long_url, TRACKER, ss.Legacy(tracker, LAYOUT))
    ss.import_legacy(long_url, TRACKER, ss.Legacy(tracker, LAYOUT), replace=True)
    rows = _sql(pg.server, "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (long_name[:30],))
    rows = [r for r in rows if "_replaced_" in r[0]]
    kept = [r[0] for r in rows]
    assert len(kept) == 1
    assert len(kept[0]) <= 63
    assert re.fullmatch(r".{30}_replaced_\d{8}t\d{6}z_[0-9a-f]{4}", kept[0])  # the whole time, not cut
    _sql(pg.server, f'DROP SCHEMA "{kept[0]}" CASCADE')


def test_a_connection_lost_during_commit_does_not_claim_nothing_was_committed(pg: PostgresFactory) -> None:
    # Writes travel with the COMMIT: when the connection goes then, the server may have committed
    # before it went. The error said "not committed", and a caller retrying an append would add it twice.
    store = pg(SCHEMA)
    store[ITEMS].put(Item("k"))
    unknown = "whether the transaction was committed is unknown"
    with pytest.raises(ss.BackendError, match=unknown), store.transaction():
        store[ITEMS].put(Item("a"))  # its write waits to go with the COMMIT
        pid = store._con().info.backend_pid  # type: ignore[attr-defined]
        _sql(pg.server, "SELECT pg_terminate_backend(%s)", (pid,))
    assert store[ITEMS].keys() == ["k"]  # here it was not: the server went first


# --------------------------------------------------------------------------- review: single writes, split, order_by


def test_an_old_client_never_writes_into_a_store_copied_over_its_own(pg: PostgresFactory, tmp_path: Path) -> None:
    # The schema mark (what a client checks before writing: "did the schemas move since I looked?")
    # is a counter every store starts at 0, so a store copied over another can carry the very
    # mark an open client cached: here both are 1. The old client's single writes (one statement
    # that compares m.value with the cached mark) and its write transactions (_check_mark) then
    # take the new store for the one they checked, and write v1-shaped records into a v2 store,
    # which no v2 reader can decode. Had the store been migrated in place, they would raise.
    from statestore.testing._migration_app import PEOPLE1, PEOPLE2, V1, V2, Person1, Person2

    old = pg(V1)
    old[PEOPLE1].put(Person1("a", "Ann Old"))
    old[PEOPLE1].put(Person1("a", "Ann Again"))  # the mark is cached: single writes go in one statement
    source = f"sqlite:{tmp_path / 'v2.db'}"
    with ss.open_store(source, V2) as src:
        src[PEOPLE2].put(Person2("b", "Bob", "New"))
    ss.copy_store(source, pg.location, overwrite=True)
    with pytest.raises(ss.SchemaTooNewError):
        old[PEOPLE1].put(Person1("late", "Late Comer"))
    with pytest.raises(ss.SchemaTooNewError):
        old[PEOPLE1].insert(Person1("later", "Later Comer"))
    with pytest.raises(ss.SchemaTooNewError), old.transaction():
        old[PEOPLE1].put(Person1("inside", "In A Transaction"))
    with pg(V2, mode="read") as new:
        assert [p.id for p in new[PEOPLE2].find()] == ["b"]


def test_postgres_locations_without_psycopg_say_which_extra_to_install(tmp_path: Path) -> None:
    # Issue 17: "without it, opening such a location raises one line saying which extra to install".
    # copy_store, import_legacy, `statestore copy` and `statestore backups` import the postgres
    # package without the check open_store makes (locations.require_backend): before the split
    # that was an AttributeError on psycopg=None; since it, the package cannot even be imported
    # (connection.py takes pg_errors and pq from wire.py, which has no such names without psycopg).
    import subprocess

    sqlite_store = tmp_path / "s.db"
    with ss.open_store(f"sqlite:{sqlite_store}", SCHEMA):
        pass
    url = "postgresql://u@h/db"
    child = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import statestore as ss\n"
        "from statestore.examples.tracker import LAYOUT, SCHEMA\n"
        f"calls = [lambda: ss.copy_store({str(sqlite_store)!r}, {url!r}),\n"
        f"         lambda: ss.import_legacy({url!r}, SCHEMA, ss.Legacy({str(TRACKER_FIXTURE)!r}, LAYOUT))]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except ss.BackendError as exc:\n"
        "        print('BackendError:', exc)\n"
        "    except Exception as exc:\n"
        "        print('raw', type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    for line in lines:
        assert line.startswith("BackendError:"), line
        assert line.endswith("pip install 'statestore[postgres]'"), line
    cli = "import sys; sys.modules['psycopg'] = None; from statestore.cli import main; main()"
    for args in (["copy", f"sqlite:{sqlite_store}", url], ["backups", url]):
        done = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, check=False)
        said = (done.stdout + done.stderr).strip()
        assert done.returncode == 1, said
        assert "internal error" not in said, said
        assert said.endswith("pip install 'statestore[postgres]'"), said


def test_a_stored_number_past_pythons_digit_limit_is_a_corrupt_store_error(pg: PostgresFactory) -> None:
    # rawjson.load (behind the C scanner _record now tries first) lets int()'s "Exceeds the limit
    # (4300 digits)" ValueError through: it catches JSONDecodeError, not the ValueError json raises
    # for such a number. A hand-edited row then reaches the caller as a raw ValueError.
    with pg(SCHEMA) as store:
        store[ITEMS].put(Item("a", n=1))
        store[ITEMS].put(Item("b", n=2))
        _sql(
            pg.server,
            f'UPDATE "{pg.pg_schema}".items SET data = %s WHERE key = %s',
            ('{"id":"a","n":' + "7" * 5000 + "}", b"a"),
        )
        with pytest.raises(ss.CorruptStoreError, match="'a'"):
            store[ITEMS].get("a")
        with pytest.raises(ss.CorruptStoreError, match="'a'"):
            store[ITEMS].find()
        with pytest.raises(ss.CorruptStoreError, match="'a'"):
            store[ITEMS].find(order_by="n", limit=1)


def test_a_lookup_column_edited_by_hand_is_reported_by_check(pg: PostgresFactory) -> None:
    # Statestore writes a record's lookup columns with it, and queries on an index field read the
    # column: one edited by hand to another spelling ('7.00' for 7) no longer agrees with its
    # record, so `statestore check` names it (review: find(points=7) missed such a row).
    from click.testing import CliRunner

    from statestore.cli import main
    from statestore.testing.models import SCHEMA as MODELS
    from statestore.testing.models import TASKS, Task

    store: Any = pg(MODELS)
    store[TASKS].replace_all([Task(f"t{i:02}", points=i, status="todo") for i in range(10)])
    for key, column, text in (("t05", "points", "05"), ("t07", "points", "7.00"), ("t08", "status", '"done"')):
        _sql(pg.server, f'UPDATE "{pg.pg_schema}".tasks SET {column} = %s WHERE key = %s', (text, key.encode()))
    assert [(k, f, got, want) for k, f, got, want in store.lookup_mismatches(TASKS)] == [
        ("t05", "points", "05", "5"),
        ("t07", "points", "7.00", "7"),
        ("t08", "status", '"done"', '"todo"'),
    ]
    result = CliRunner().invoke(main, ["check", pg.location])
    assert result.exit_code == 1, result.output
    for key in ("t05", "t07", "t08"):
        assert f"key '{key}': the lookup column of" in result.output
    store[TASKS].put(Task("t05", points=5))  # writing the record again rebuilds its columns
    assert [k for k, *_rest in store.lookup_mismatches(TASKS)] == ["t07", "t08"]


def test_a_transaction_write_pairs_its_statement_with_the_columns_it_was_made_for(pg: PostgresFactory) -> None:
    """Review: ``_upsert``'s cached statement and the row built for it read the lookup columns twice.

    Another thread reloading the columns in between (after another client's
    layout change) paired a statement made for the old column list with a row
    made for the new one. Forced here: the columns are reloaded in the middle
    of the read that makes the statement (as ``_load_columns`` in another
    thread would). The statement, its row and the columns it names come from
    one read; the next write makes the statement again for the new columns.
    """
    from statestore.testing.models import SCHEMA as CONTRACT
    from statestore.testing.models import TASKS, Task

    store = pg(CONTRACT)
    _sql(pg.server, f'ALTER TABLE "{pg.pg_schema}".tasks ADD COLUMN title text')  # another client's new column
    old = dict(store._lookup)
    new = {**old, "tasks": (*old["tasks"], "title")}

    class Reloading(dict[str, tuple[str, ...]]):
        def get(self, name: str, default: Any = None) -> Any:
            got = dict.get(self, name, default)
            if name == "tasks":  # another thread's _load_columns, now: the new columns, the caches cleared
                store._lookup = dict(new)
                store._upserts.clear()
                store._alone.clear()
                store._generation += 1
            return got

    write = store._write

    def racing_write(*args: Any) -> None:
        store._lookup = Reloading(old)  # this thread's view: the columns before the other client's change
        store._upserts.clear()
        write(*args)

    store._write = racing_write  # type: ignore[method-assign]
    with store.transaction():
        store[TASKS].put(Task("a", title="one", status="doing"))
    assert store[TASKS].get_versioned("a") == ss.Versioned(Task("a", title="one", status="doing"), 1)
    store._write = write  # type: ignore[method-assign]
    with store.transaction():  # made again, for the columns now loaded
        store[TASKS].put(Task("b", title="two", status="doing"))
    got = _sql(pg.server, f'SELECT key, title, status FROM "{pg.pg_schema}".tasks ORDER BY key')
    assert [(bytes(k).decode(), t, s) for k, t, s in got][1] == ("b", '"two"', '"doing"')
    assert got[0][2] == '"doing"'
    assert [t.id for t in store[TASKS].find(title="two")] == ["b"]  # through the new column
    assert [t.id for t in store[TASKS].find(status="doing")] == ["a", "b"]


@attrs.define
class _Note:
    body: Any = None


_NOTES = ss.Log("notes", _Note)
_NOTES_SCHEMA = ss.Schema("notes", version=1, collections=[], logs=[_NOTES])


def test_a_legacy_stream_holding_nul_is_a_reject_for_postgresql(pg: PostgresFactory, tmp_path: Path) -> None:
    """Found by review: the dry run saw nothing, and the import (quarantine too) failed whole with BackendError."""
    root = tmp_path / "old"
    root.mkdir()
    (root / "notes.jsonl").write_text('{"s": "ok", "body": 1}\n{"s": "a\\u0000b", "body": 2}\n')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonLines("notes.jsonl", into=_NOTES, stream=lambda r: r["s"], record=lambda r: {"body": r["body"]})
        ],
    )
    legacy = ss.Legacy(root, layout)
    dry = ss.import_legacy(pg.location, _NOTES_SCHEMA, legacy, dry_run=True)
    assert [(r.path, r.line) for r in dry.rejects] == [("notes.jsonl", 2)]
    assert "NUL" in dry.rejects[0].reason
    with pytest.raises(ss.LegacyImportError):
        ss.import_legacy(pg.location, _NOTES_SCHEMA, legacy)
    report = ss.import_legacy(pg.location, _NOTES_SCHEMA, legacy, on_error="quarantine")
    assert [(r.path, r.line) for r in report.rejects] == [("notes.jsonl", 2)]
    with ss.open_store(pg.location, _NOTES_SCHEMA, mode="read") as store:
        assert [(e.stream, e.record) for e in store[_NOTES].read()] == [("ok", _Note(1))]
        assert len(store.rejects()) == 1
