"""copy_store, diff_stores and dump_store across backends."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statestore as ss
from statestore.testing import strategies as sst
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

OTHER = ss.Schema("other", version=2, collections=[])


def dump(store: str | Path | ss.Store) -> str:
    out = io.StringIO()
    ss.dump_store(store, out)
    return out.getvalue()


def fill(store: ss.Store) -> None:
    tasks = store[TASKS]
    tasks.put(Task("t1", "one", status="doing", tags=["a"]))
    tasks.put(Task("t2", "two"))
    tasks.update("t1", lambda t: setattr(t, "points", 3))
    store[TICKETS].put(Ticket(2, "two"))
    store[TICKETS].put(Ticket(10, "ten"))
    store[SETTINGS].put(Setting("user", "/p", "theme", "dark"))
    store[ACCOUNTS].put(Account("a", email="a@x"))
    for i in range(3):
        store[EVENTS].append(Event("e", n=i), stream=f"task:t{i % 2}")


@pytest.fixture(
    params=[
        ("sqlite", "files"),
        ("files", "sqlite"),
        ("sqlite", "sqlite"),
        ("files", "files"),
        ("sqlite", "postgres"),
        ("postgres", "files"),
        ("postgres", "postgres"),
    ]
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    def location(backend: str, name: str) -> str:
        if backend == "postgres":
            return str(request.getfixturevalue("postgres_server").url())  # a fresh schema
        return f"{backend}:{tmp_path}/{name}{'.db' if backend == 'sqlite' else ''}"

    return location(request.param[0], "a"), location(request.param[1], "b")


def _leftovers(dst: str) -> list[str]:
    """What a copy left beside its destination: hidden siblings, or PostgreSQL schemas ``<schema>_copy_…``."""
    if dst.startswith("postgresql://"):
        import psycopg

        from statestore.backends.postgres import split_url

        url, schema, _shown = split_url(dst)
        with psycopg.connect(url) as con:
            rows = con.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (schema[:30] + "_copy_",)
            ).fetchall()
        return [r[0] for r in rows]
    parent = ss.parse_location(dst).path
    assert parent is not None
    return sorted(p.name for p in parent.parent.iterdir() if p.name.startswith("."))


def test_copy_keeps_everything(pair: tuple[str, str]) -> None:
    src, dst = pair
    with ss.open_store(src, SCHEMA) as store:
        fill(store)
    assert str(ss.copy_store(src, dst)) == dst
    assert ss.diff_stores(src, dst).equal
    assert dump(src) == dump(dst)
    with ss.open_store(dst, SCHEMA, mode="read") as copy:
        got = copy[TASKS].get_versioned("t1")
        assert got is not None
        assert (got.record.points, got.revision) == (3, 2)
        assert copy[TICKETS].keys() == [2, 10]
        assert [(e.seq, e.stream, e.version) for e in copy[EVENTS].read()] == [
            (1, "task:t0", 1),
            (2, "task:t1", 1),
            (3, "task:t0", 2),
        ]
        assert [h.direction for h in copy.history()] == ["create"]
    # The copy is a working store: the app opens it for writing and carries on.
    with ss.open_store(dst, SCHEMA) as copy:
        assert copy[EVENTS].append(Event("more"), stream="task:t0").seq == 4
        assert copy[TASKS].put(Task("t1", "again")) == 3


def test_copy_keeps_several_schemas_and_internal_logs(tmp_path: Path) -> None:
    ss.SQLiteStore(tmp_path / "a.db", [SCHEMA, OTHER]).close()
    ss.copy_store(tmp_path / "a.db", f"files:{tmp_path}/b")
    with ss.open_store(f"files:{tmp_path}/b", mode="read") as copy:
        assert sorted((s.name, s.version) for s in copy.schemas) == [("contract", 1), ("other", 2)]
        assert [h.direction for h in copy.history("other")] == ["create"]
    assert ss.diff_stores(tmp_path / "a.db", f"files:{tmp_path}/b").equal


def test_copy_from_an_open_store(tmp_path: Path) -> None:
    with ss.open_store("memory:", SCHEMA) as store:
        fill(store)
        ss.copy_store(store, tmp_path / "m.db")
        assert ss.diff_stores(store, tmp_path / "m.db").equal
        assert dump(store) == dump(tmp_path / "m.db")
        assert not store.closed


def test_copy_refuses_an_existing_destination(pair: tuple[str, str]) -> None:
    src, dst = pair
    with ss.open_store(src, SCHEMA) as store:
        fill(store)
    with ss.open_store(dst, OTHER):
        pass
    before = dump(dst)
    with pytest.raises(ss.StoreExistsError, match="overwrite"):
        ss.copy_store(src, dst)
    assert dump(dst) == before
    ss.copy_store(src, dst, overwrite=True)
    assert ss.diff_stores(src, dst).equal
    assert _leftovers(dst) == []


def test_copy_into_an_empty_folder(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        fill(store)
    (tmp_path / "empty").mkdir()
    ss.copy_store(tmp_path / "a.db", f"files:{tmp_path}/empty")
    assert ss.diff_stores(tmp_path / "a.db", f"files:{tmp_path}/empty").equal


def test_overwrite_never_replaces_what_is_not_a_store(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        fill(store)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ss.CorruptStoreError):
        ss.copy_store(tmp_path / "a.db", f"files:{tmp_path}/mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_copy_refuses_itself_and_memory(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA):
        pass
    with pytest.raises(ss.StoreExistsError, match="source"), ss.open_store(tmp_path / "a.db", mode="read") as store:
        ss.copy_store(store, tmp_path / "a.db", overwrite=True)
    with pytest.raises(ValueError, match="memory"):
        ss.copy_store(tmp_path / "a.db", "memory:")
    with pytest.raises(ss.StoreNotFoundError):
        ss.copy_store(tmp_path / "missing.db", tmp_path / "b.db")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".", "b"))] == []


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_a_failed_copy_leaves_no_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    from statestore import convert

    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        fill(store)

    def boom(*args: object) -> int:
        raise OSError("disk on fire")

    from statestore.backends.files import FileStore

    cls = convert._NewSQLiteStore if backend == "sqlite" else FileStore  # the copy's store is a FileStore made there
    monkeypatch.setattr(cls, "_add_entry", boom)
    with pytest.raises(OSError, match="disk on fire"):
        ss.copy_store(tmp_path / "a.db", f"{backend}:{tmp_path}/out")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".", "out"))] == []


def test_a_log_with_a_seq_gap_cannot_be_copied(tmp_path: Path) -> None:
    with ss.open_store(f"files:{tmp_path}/a", SCHEMA) as store:
        for i in range(3):
            store[EVENTS].append(Event("e", n=i))
    log = tmp_path / "a" / "events.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])  # seqs 1, 3
    with pytest.raises(ss.CopyError, match="entry 3 would become entry 2"):
        ss.copy_store(f"files:{tmp_path}/a", tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()


# ---------------------------------------------------------------- diff


def test_diff_names_every_difference(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", f"files:{tmp_path}/b"
    with ss.open_store(a, SCHEMA) as store:
        fill(store)
    ss.copy_store(a, b)
    with ss.open_store(b, SCHEMA) as store:
        store[TASKS].put(Task("t3", "new"))
        store[TASKS].delete("t2")
        store[TASKS].update("t1", lambda t: setattr(t, "title", "changed"))
        store[TICKETS].put(Ticket(2, "two"))  # same data, new revision
        store[EVENTS].append(Event("extra"))
    diff = ss.diff_stores(a, b)
    assert not diff.equal
    assert diff.schemas == ()
    by_name = {c.name: c for c in diff.collections}
    assert sorted(by_name) == ["tasks", "tickets"]
    assert by_name["tasks"].added == ("t3",)
    assert by_name["tasks"].removed == ("t2",)
    assert by_name["tasks"].changed == (ss.RecordChange("t1", ("title",), 2, 3),)
    assert by_name["tickets"].changed == (ss.RecordChange(2, (), 1, 2),)
    assert diff.logs == (ss.LogDiff("events", (4,), 3, 4),)
    text = diff.summary()
    assert "collection tasks: +1 -1 ~1" in text
    assert "'t1': title (revision 2 -> 3)" in text
    assert "log events: 3 -> 4 entries, 1 differ" in text


def test_diff_schemas_and_bounded_summary(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        store[TICKETS].replace_all(Ticket(n) for n in range(50))
    with ss.open_store(tmp_path / "b.db", OTHER):
        pass
    diff = ss.diff_stores(tmp_path / "a.db", tmp_path / "b.db")
    assert [(s.name, s.a is None, s.b is None) for s in diff.schemas] == [
        ("contract", False, True),
        ("other", True, False),
    ]
    [tickets] = [c for c in diff.collections if c.name == "tickets"]
    assert len(tickets.removed) == 50
    text = diff.summary(limit=5)
    assert "... and 45 more" in text
    assert len(text.splitlines()) < 30


def test_diff_compares_json_not_python_equality(tmp_path: Path) -> None:
    import sqlite3

    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        store[TASKS].put(Task("t1", ratio=1.0))
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    con = sqlite3.connect(tmp_path / "b.db")
    con.execute("""update tasks set data = json_set(data, '$.ratio', 1)""")
    con.commit()
    con.close()
    diff = ss.diff_stores(tmp_path / "a.db", tmp_path / "b.db")
    assert [(c.name, c.changed) for c in diff.collections] == [("tasks", (ss.RecordChange("t1", ("ratio",), 1, 1),))]


# ---------------------------------------------------------------- dump


def test_dump_lines(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        fill(store)
    out = io.StringIO()
    count = ss.dump_store(tmp_path / "a.db", out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == count
    assert lines[0]["schema"] == "contract"
    setting = next(line for line in lines if line.get("collection") == "settings")
    assert (setting["key"], setting["revision"]) == (["user", "/p", "theme"], 1)
    tickets = [line["key"] for line in lines if line.get("collection") == "tickets"]
    assert tickets == [2, 10]
    entries = [(line["log"], line["seq"]) for line in lines if "log" in line]
    assert entries == [("_statestore_history", 1), ("events", 1), ("events", 2), ("events", 3)]
    for text in out.getvalue().splitlines():
        assert text == ss.codec.dumps(json.loads(text))


# ---------------------------------------------------------------- round trips from generated state


@st.composite
def states(draw: st.DrawFn) -> list[tuple[str, object]]:
    ops: list[tuple[str, object]] = []
    ops += [("task", t) for t in draw(st.lists(sst.tasks(), max_size=8))]
    ops += [("account", a) for a in draw(st.lists(sst.accounts(), max_size=4))]
    ops += [("ticket", n) for n in draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3))]
    ops += [("event", (e, s)) for e, s in draw(st.lists(st.tuples(sst.events(), sst.streams), max_size=8))]
    ops += [("delete", k) for k in draw(st.lists(sst.keys, max_size=2))]
    return draw(st.permutations(ops))


def apply(store: ss.Store, ops: list[tuple[str, object]]) -> None:
    for kind, value in ops:
        if kind == "task":
            assert isinstance(value, Task)
            store[TASKS].put(value)
        elif kind == "account":
            assert isinstance(value, Account)
            with contextlib.suppress(ss.UniqueViolationError):
                store[ACCOUNTS].put(value)
        elif kind == "ticket":
            assert isinstance(value, int)
            store[TICKETS].put(Ticket(value))
        elif kind == "event":
            assert isinstance(value, tuple)
            store[EVENTS].append(value[0], stream=value[1])
        else:
            assert isinstance(value, str)
            store[TASKS].delete(value)


@pytest.mark.parametrize("first", ["sqlite", "files"])
@given(ops=states())
def test_round_trip_through_the_other_backend(
    tmp_path_factory: pytest.TempPathFactory, first: str, ops: list[tuple[str, object]]
) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    other = "files" if first == "sqlite" else "sqlite"
    a, b, c = f"{first}:{tmp}/a", f"{other}:{tmp}/b", f"{first}:{tmp}/c"
    with ss.open_store(a, SCHEMA) as store:
        apply(store, ops)
    ss.copy_store(a, b)
    ss.copy_store(b, c)
    assert ss.diff_stores(a, b).equal
    assert ss.diff_stores(a, c).equal
    assert dump(a) == dump(b) == dump(c)
    with ss.open_store(a, SCHEMA, mode="read") as sa, ss.open_store(c, SCHEMA, mode="read") as sc:
        assert sa[TASKS].all() == sc[TASKS].all()
        assert sa[EVENTS].read() == sc[EVENTS].read()


def test_retired_collections_and_logs_are_kept_copied_and_dumped(pair: tuple[str, str]) -> None:
    import attrs

    @attrs.define
    class Thing:
        id: str
        n: int = 0

    @attrs.define
    class Said:
        text: str

    things, notes, audit = (
        ss.Collection("things", Thing, key="id"),
        ss.Collection("notes", Thing, key="id"),
        ss.Log("audit", Said),
    )
    src, dst = pair
    with ss.open_store(src, ss.Schema("app", version=1, collections=[things, notes], logs=[audit])) as store:
        store[things].put(Thing("a", 1))
        store[notes].put(Thing("n", 2))
        store[audit].append(Said("hi"), stream="s")
    # v2 stops declaring notes and audit: their data stays, listed as retired.
    with ss.open_store(src, ss.Schema("app", version=2, collections=[things])):
        pass
    with ss.open_store(src, mode="read") as described:
        assert sorted(c.name for c in described.collections) == ["notes", "things"]
        assert [lg.name for lg in described.logs] == ["audit"]
    ss.copy_store(src, dst, overwrite=True)
    assert ss.diff_stores(src, dst).equal
    assert dump(src) == dump(dst)
    assert '"text":"hi"' in dump(dst)
    # Another part may not take over a retired name.
    other = ss.Schema("other", version=1, collections=[ss.Collection("notes", Thing, key="id")])
    with pytest.raises(ss.SchemaMismatchError, match="already used by schema 'app'"):
        ss.open_store(dst, [ss.Schema("app", version=2, collections=[things]), other])


# ---------------------------------------------------------------- a copy never lands inside its source (issue 11)


def _store(backend: str, path: Path) -> str:
    loc = f"{backend}:{path}"
    with ss.open_store(loc, SCHEMA) as store:
        fill(store)
    return loc


@pytest.mark.parametrize("src_backend", ["sqlite", "files"])
@pytest.mark.parametrize("dst_backend", ["sqlite", "files"])
def test_copy_refuses_a_destination_inside_the_source(tmp_path: Path, src_backend: str, dst_backend: str) -> None:
    src = _store(src_backend, tmp_path / ("S.db" if src_backend == "sqlite" else "S"))
    before = dump(src)
    inside = [tmp_path / "S" / "tasks" / "x.json", tmp_path / "S" / "recs" / "x.json", tmp_path / "S" / "new"]
    if src_backend == "sqlite":
        inside = [tmp_path / "S.db" / "x.db", tmp_path / "S.db-wal", tmp_path / "S.db-shm", tmp_path / "S.db.lock"]
    for target in inside:
        with pytest.raises(ss.CopyError, match=r"(inside|beside) the source"):
            ss.copy_store(src, f"{dst_backend}:{target}")
        with pytest.raises(ss.CopyError), ss.open_store(src, mode="read") as opened:
            ss.copy_store(opened, f"{dst_backend}:{target}", overwrite=True)
        # Reached through a symbolic link to the source's folder, too.
        link = tmp_path / "link"
        link.symlink_to(tmp_path)
        with pytest.raises(ss.CopyError):
            ss.copy_store(src, f"{dst_backend}:{link / target.relative_to(tmp_path)}")
        link.unlink()
    assert dump(src) == before
    left = {p.name for p in tmp_path.iterdir()} - {"S.db-wal", "S.db-shm", "S.db.lock"}  # SQLite's own
    assert left == {"S.db" if src_backend == "sqlite" else "S"}


@pytest.mark.parametrize("src_backend", ["sqlite", "files"])
def test_copy_refuses_a_source_inside_the_destination(tmp_path: Path, src_backend: str) -> None:
    outer = _store("files", tmp_path / "D")
    src = _store(src_backend, tmp_path / "D" / ("inner.db" if src_backend == "sqlite" else "inner"))
    before = dump(src)
    for dst in (outer, f"sqlite:{tmp_path / 'D'}"):
        with pytest.raises(ss.CopyError, match="inside the destination"):
            ss.copy_store(src, dst, overwrite=True)
    assert dump(src) == before
    assert dump(outer)


def test_copy_command_refuses_a_destination_inside_the_source(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from statestore.cli import main

    src = _store("files", tmp_path / "S")
    before = dump(src)
    result = CliRunner().invoke(main, ["copy", str(tmp_path / "S"), str(tmp_path / "S" / "recs" / "x.json")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1, result.output
    assert "inside the source" in result.output
    assert dump(src) == before
    assert not (tmp_path / "S" / "recs").exists()
