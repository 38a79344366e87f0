"""The store commands (info, ls, get, log, check, copy, diff, dump, migrate) through click's CliRunner."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

import statestore as ss
from statestore.cli import main
from statestore.testing.models import EVENTS, SCHEMA, SETTINGS, TASKS, TICKETS, Event, Setting, Task, Ticket


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1, result.output
    return result.output


@pytest.fixture(params=["sqlite", "files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        loc = str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    else:
        loc = f"sqlite:{tmp_path}/s.db" if request.param == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1", "one", status="doing", points=3))
        store[TASKS].put(Task("t2", "two"))
        store[TASKS].update("t1", lambda t: setattr(t, "title", "first"))
        store[TICKETS].put(Ticket(2, "two"))
        store[TICKETS].put(Ticket(10, "ten"))
        store[SETTINGS].put(Setting("user", "/p", "theme", "dark"))
        for i in range(4):
            store[EVENTS].append(Event("e", n=i), stream=f"task:t{i % 2}")
    return loc


# ---------------------------------------------------------------- info


def test_info_sizes_a_big_files_store_by_its_first_files_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statestore.cli import reading

    monkeypatch.setattr(reading, "SIZE_WALK_LIMIT", 5)  # so the test store counts as big
    loc = f"files:{tmp_path}/s"
    with ss.open_store(loc, SCHEMA) as store:
        for i in range(20):
            store[TASKS].put(Task(f"t{i}", "x" * 100))
    quick = json.loads(ok("info", loc, "--json"))
    whole = json.loads(ok("info", loc, "--json", "--size"))
    assert quick["size_complete"] is False
    assert whole["size_complete"] is True
    assert 0 < quick["size"] < whole["size"]
    assert "more than 5 files; --size counts them all" in ok("info", loc)
    assert f"(files, {whole['size']:,} bytes)" in ok("info", loc, "--size")
    sqlite = f"sqlite:{tmp_path}/s.db"
    with ss.open_store(sqlite, SCHEMA):
        pass
    assert json.loads(ok("info", sqlite, "--json"))["size_complete"] is True


def test_info(location: str) -> None:
    out = ok("info", location)
    assert "schema contract version 1" in out
    assert "tasks" in out
    assert "events" in out
    assert "create" in out


def test_info_json(location: str) -> None:
    data = json.loads(ok("info", location, "--json"))
    assert data["location"] == location
    [schema] = data["schemas"]
    counts = {c["name"]: c["records"] for c in schema["collections"]}
    assert counts == {"tasks": 2, "tickets": 2, "settings": 1, "accounts": 0}
    assert schema["logs"] == [{"name": "events", "entries": 4, "last_seq": 4}]
    assert [h["direction"] for h in schema["history"]] == ["create"]


def test_info_counts_log_entries_without_reading_them(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding every entry to count them cost 1.55 s for 200k entries (issue 14)."""
    from statestore.store import Store

    with ss.open_store(location, mode="read") as store:
        cls = type(store)
    entries = cls._entries

    def refuse(self: Store, log: ss.Log[object], **kw: object) -> object:
        assert log.name != "events", "info read the entries of a log to count them"
        return entries(self, log, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "_entries", refuse)
    data = json.loads(ok("info", location, "--json"))
    assert data["schemas"][0]["logs"] == [{"name": "events", "entries": 4, "last_seq": 4}]


# ---------------------------------------------------------------- ls and get


def test_ls(location: str) -> None:
    out = ok("ls", location, "tasks")
    assert "t1" in out
    assert "first" in out
    assert len(out.splitlines()) == 3  # piped: the column names, then one line per record


def test_ls_where_and_limit_json(location: str) -> None:
    rows = [json.loads(line) for line in ok("ls", location, "tasks", "--json").splitlines()]
    assert [(r["key"], r["revision"]) for r in rows] == [("t1", 2), ("t2", 1)]
    rows = [json.loads(line) for line in ok("ls", location, "tasks", "--where", "status=doing", "--json").splitlines()]
    assert [r["key"] for r in rows] == ["t1"]
    rows = [json.loads(line) for line in ok("ls", location, "tasks", "--where", "points=0", "--json").splitlines()]
    assert [r["key"] for r in rows] == ["t2"]
    assert ok("ls", location, "tasks", "--where", "status=doing", "--where", "points=0", "--json") == ""
    assert len(ok("ls", location, "tickets", "--limit", "1", "--json").splitlines()) == 1
    rows = [json.loads(line) for line in ok("ls", location, "settings", "--json").splitlines()]
    assert rows[0]["key"] == ["user", "/p", "theme"]


def test_ls_errors(location: str) -> None:
    assert "'nope' is not declared" in one_line_error(run("ls", location, "nope"))
    assert "no field 'colour'" in one_line_error(run("ls", location, "tasks", "--where", "colour=red"))
    assert "'status': not a condition" in one_line_error(run("ls", location, "tasks", "--where", "status"))


def _keys(*args: str) -> list[object]:
    return [json.loads(line)["key"] for line in ok(*args, "--json").splitlines()]


@pytest.fixture
def queried(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    loc = f"sqlite:{tmp_path}/q.db"
    with ss.open_store(loc, SCHEMA) as store:
        for i in range(60):
            store[TASKS].put(
                Task(
                    f"t{i:02}",
                    f"Fix {i}" if i % 4 == 0 else f"Do {i}",
                    status=["todo", "doing", "done"][i % 3],
                    points=i % 7,
                    ratio=i / 4,
                    done=i % 2 == 0,
                )
            )
    return loc


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--where", "points>5"], [f"t{i:02}" for i in range(60) if i % 7 > 5]),
        (
            ["--where", "points>=6", "--where", "status=todo"],
            [f"t{i:02}" for i in range(60) if i % 7 == 6 and i % 3 == 0],
        ),
        (
            ["--where", "title^=Fix", "--where", "points<=1"],
            [f"t{i:02}" for i in range(60) if i % 4 == 0 and i % 7 <= 1],
        ),
        (
            ["--where", "status in todo,doing", "--where", "points<1"],
            [f"t{i:02}" for i in range(60) if i % 3 < 2 and i % 7 == 0],
        ),
        (["--where", "status!=todo", "--where", "ratio > 13.5"], [f"t{i:02}" for i in range(55, 60) if i % 3]),
        (["--where", "done=true", "--where", "points=3"], [f"t{i:02}" for i in range(60) if i % 2 == 0 and i % 7 == 3]),
        (["--order", "-points", "--limit", "3"], ["t06", "t13", "t20"]),
        (["--order", "-points,status", "--limit", "2", "--offset", "1"], ["t34", "t55"]),
        (["--order", "-points", "--order", "-ratio", "--limit", "2"], ["t55", "t48"]),
        (["--where", "due=null", "--limit", "1"], ["t00"]),
    ],
)
def test_ls_conditions_order_limit_offset(queried: str, args: list[str], expected: list[str]) -> None:
    assert _keys("ls", queried, "tasks", *args) == expected


@attrs.define
class Owned:
    id: str
    owner: str | None = None
    note: str = ""
    extra: Any = None


OWNED = ss.Collection("owned", Owned, key="id")


def test_ls_tells_text_from_null_in_where_and_in_piped_cells(tmp_path: Path) -> None:
    """Found by review: --where owner=null found the text "null", never a missing owner, and piped
    cells printed the text "null" and None alike (and the text "42" and the number 42 in an Any field)."""
    location = f"sqlite:{tmp_path}/o.db"
    with ss.open_store(location, ss.Schema("o", version=1, collections=[OWNED])) as store:
        store[OWNED].put(Owned("free", None, "null", None))
        store[OWNED].put(Owned("n", "null", "42", "42"))
        store[OWNED].put(Owned("x", "ann", "[1]", 42))

    def keys(*conditions: str) -> list[str]:
        args = [a for c in conditions for a in ("--where", c)]
        return [json.loads(line)["key"] for line in ok("ls", location, "owned", *args, "--json").splitlines()]

    assert keys("owner is null") == ["free"]
    assert keys("owner is not null") == ["n", "x"]
    assert keys("owner=null") == ["n"]  # a text field: the text as typed
    assert keys("extra is null") == keys("extra=null") == ["free"]  # not a text field: null is "null or missing"
    assert keys("extra is null", "owner  is  not  null") == []
    lines = [line.split("\t") for line in ok("ls", location, "owned").splitlines()]
    rows = {row[0]: dict(zip(lines[0], row)) for row in lines[1:]}
    assert sorted(lines[0]) == ["extra", "key", "note", "owner", "rev"]
    # owner (str | None) and extra (Any) may hold text and other values; note (str) only text: as it is.
    assert [(r["owner"], r["note"], r["extra"]) for r in rows.values()] == [
        ("null", "null", "null"),
        ('"null"', "42", '"42"'),
        ("ann", "[1]", "42"),
    ]


def test_ls_count(queried: str) -> None:
    assert ok("ls", queried, "tasks", "--count").strip() == "60"
    assert ok("ls", queried, "tasks", "--where", "status=todo", "--where", "points>3", "--count").strip() == str(
        sum(1 for i in range(60) if i % 3 == 0 and i % 7 > 3)
    )


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("points>three", "'three' is not a number"),
        ("points", "not a condition"),
        ("=3", "not a condition"),
        ("colour=red", "no field 'colour'"),
        ("done=yes", "'yes' is not true or false"),
        ("due<2024-01-01", "ISO 8601"),
        ("points>1.5e999", "not a finite number"),
    ],
)
def test_ls_bad_condition_is_one_line_naming_it(queried: str, condition: str, says: str) -> None:
    out = one_line_error(run("ls", queried, "tasks", "--where", condition))
    assert repr(condition) in out
    assert says in out


def test_ls_bad_order_or_type_is_one_line(queried: str) -> None:
    assert "no field 'nope'" in one_line_error(run("ls", queried, "tasks", "--order", "nope"))
    assert "$.points" in one_line_error(run("ls", queried, "tasks", "--where", "points>1.5"))


def test_get(location: str) -> None:
    out = ok("get", location, "tasks", "t1")
    assert "revision 2" in out
    # Piped: a comment line, then the record as one line of JSON.
    header, record = out.splitlines()
    assert header.startswith("# tasks 't1'")
    assert json.loads(record)["title"] == "first"
    data = json.loads(ok("get", location, "tickets", "10", "--json"))
    assert data == {"key": 10, "revision": 1, "record": {"number": 10, "title": "ten"}}
    data = json.loads(ok("get", location, "settings", '["user", "/p", "theme"]', "--json"))
    assert data["record"]["value"] == "dark"


def test_get_errors(location: str) -> None:
    assert "no record with key 'nope'" in one_line_error(run("get", location, "tasks", "nope"))
    assert "no record with key 3" in one_line_error(run("get", location, "tickets", "3"))
    assert run("get", location, "tickets", "ten").exit_code == 2
    result = run("get", location, "settings", "user")
    assert result.exit_code == 2
    assert "JSON array" in result.output


@attrs.define
class Pair:
    name: str
    n: int
    note: str = ""


PAIRS = ss.Collection("pairs", Pair, key=("name", "n"))


def test_get_takes_keys_as_typed_never_converted(tmp_path: Path) -> None:
    """Found by review: ``["a", 1.9]`` and ``["a", true]`` found the record ("a", 1), ``1_0`` the ticket 10."""
    location = f"sqlite:{tmp_path}/k.db"
    with ss.open_store(location, ss.Schema("k", version=1, collections=[PAIRS, TICKETS])) as store:
        store[PAIRS].put(Pair("a", 1, "one"))
        store[PAIRS].put(Pair("1", 2, "text one"))
        store[TICKETS].put(Ticket(10, "ten"))
        store[TICKETS].put(Ticket(-7, "minus seven"))
    assert json.loads(ok("get", location, "pairs", '["a", 1]', "--json"))["record"]["note"] == "one"
    assert json.loads(ok("get", location, "pairs", '["1", 2]', "--json"))["record"]["note"] == "text one"
    assert json.loads(ok("get", location, "tickets", "--json", "--", "-7"))["key"] == -7  # -- : not an option
    for wrong in ('["a", 1.9]', '["a", true]', '["a", "1"]', "[1, 2]", '["a", 1.0]'):
        result = run("get", location, "pairs", wrong)
        assert result.exit_code == 2, (wrong, result.output)
        assert "key part" in result.output
    for wrong in ("1_0", " 10", "+10", "010", "10.0", "\u0661\u0660"):
        result = run("get", location, "tickets", wrong)
        assert result.exit_code == 2, (wrong, result.output)
        assert "is not an int key" in result.output


# ---------------------------------------------------------------- log


def test_log(location: str) -> None:
    out = ok("log", location, "events")
    assert "task:t0" in out
    assert len(out.splitlines()) == 5  # piped: the column names, then one line per entry


def test_log_filters_json(location: str) -> None:
    def seqs(*args: str) -> list[int]:
        return [json.loads(line)["seq"] for line in ok("log", location, "events", "--json", *args).splitlines()]

    assert seqs() == [1, 2, 3, 4]
    assert seqs("--stream", "task:t1") == [2, 4]
    assert seqs("--prefix", "task:", "--after", "1", "--limit", "2") == [2, 3]
    entry = json.loads(ok("log", location, "events", "--json", "--limit", "1"))
    assert entry["record"] == {"actor": "", "n": 0, "type": "e"}
    assert {"seq", "stream", "version", "at", "record"} == entry.keys()
    history = json.loads(ok("log", location, "_statestore_history", "--json"))
    assert history["record"]["direction"] == "create"


def test_log_follow_prints_then_stops_after_the_timeout(location: str) -> None:
    out = ok("log", location, "events", "--follow", "--timeout", "0.1", "--stream", "task:t0")
    assert [line.split("\t")[0] for line in out.splitlines()] == ["1", "3"]
    out = ok("log", location, "events", "-f", "--limit", "2", "--json")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2]


def test_log_errors(location: str) -> None:
    assert "'nope' is not declared" in one_line_error(run("log", location, "nope"))
    assert run("log", location, "events", "--stream", "a", "--prefix", "b").exit_code == 2


# ---------------------------------------------------------------- check


def test_check_a_sound_store(location: str) -> None:
    out = ok("check", location)
    assert out.endswith(f"{location}: ok (5 records, 5 log entries)\n")
    data = json.loads(ok("check", location, "--json"))
    assert (data["ok"], data["problems"], data["records"]) == (True, [], 5)


def test_check_finds_damaged_records(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", SCHEMA) as store:
        store[TASKS].put(Task("t1"))
        store[TASKS].put(Task("t2"))
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("""update tasks set data = json_set(data, '$.id', 'other') where key = 't2'""")
    con.commit()
    con.close()
    result = run("check", tmp_path / "s.db")
    assert result.exit_code == 1
    assert "problem: collection tasks: record filed under 't2' holds key 'other'" in result.output
    with ss.open_store(tmp_path / "s.db", SCHEMA) as store:
        store[TICKETS].put(Ticket(1))
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("update tickets set data = '{not json' where key = 1")  # no index: SQLite lets it in
    con.commit()
    con.close()
    data = json.loads(run("check", tmp_path / "s.db", "--json").output)
    assert data["ok"] is False
    assert [p.split(":")[0] for p in data["problems"]] == ["collection tasks", "collection tickets"]


def test_check_warns_about_leftovers_in_a_file_store(tmp_path: Path) -> None:
    with ss.open_store(f"files:{tmp_path}/s", SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    (tmp_path / "s" / "tasks" / ".tmp-0123").write_text("half")
    (tmp_path / "s" / "notes.txt").write_text("mine")
    out = ok("check", f"files:{tmp_path}/s")
    assert "warning: " in out
    assert ".tmp-0123: temporary file of a killed writer" in out
    assert "notes.txt: not part of the store" in out


# ---------------------------------------------------------------- copy, diff, dump


def test_copy_diff_dump(location: str, tmp_path: Path) -> None:
    other = f"files:{tmp_path}/copy" if location.startswith("sqlite") else f"sqlite:{tmp_path}/copy.db"
    assert ok("copy", location, other) == f"copied {location} -> {other}\n"
    assert "hold the same state" in ok("diff", location, other)
    assert json.loads(ok("diff", location, other, "--json"))["equal"] is True
    assert ok("dump", location) == ok("dump", other)
    out = io.StringIO()
    ss.dump_store(location, out)
    assert ok("dump", location) == out.getvalue()
    ok("dump", location, "-o", tmp_path / "dump.jsonl")
    assert (tmp_path / "dump.jsonl").read_text() == out.getvalue()

    assert "overwrite" in one_line_error(run("copy", location, other))
    with ss.open_store(other, SCHEMA) as store:
        store[TASKS].delete("t2")
    result = run("diff", location, other)
    assert result.exit_code == 1, result.output
    assert "collection tasks: +0 -1 ~0" in result.output
    data = json.loads(run("diff", location, other, "--json").output)
    assert data["equal"] is False
    assert data["collections"][0]["removed"] == ["t2"]
    ok("copy", location, other, "--overwrite")
    assert run("diff", location, other).exit_code == 0


@pytest.mark.parametrize(
    ("location", "inside"),
    [
        ("sqlite:{}/s.db", "s.db"),
        ("sqlite:{}/s.db", "s.db-wal"),
        ("sqlite:{}/s.db", "s.db-journal"),
        ("sqlite:{}/s.db", "link-to-store"),
        ("files:{}/s", "s/tasks/t1.json"),
        ("files:{}/s", "s/.statestore/changes"),
        ("files:{}/s", "s/dump.jsonl"),
        ("files:{}/s", "link-to-store/tasks/t1.json"),
    ],
)
def test_dump_never_writes_over_the_store_it_reads(tmp_path: Path, location: str, inside: str) -> None:
    """A slip of the keyboard (``-o state.db``) used to truncate the store before reading it: every record gone."""
    location = location.format(tmp_path)
    with ss.open_store(location, SCHEMA) as store:
        store[TASKS].put(Task("t1", "one"))
    (tmp_path / "link-to-store").symlink_to(location.split(":", 1)[1])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    message = one_line_error(run("dump", location, "-o", tmp_path / inside))
    assert "the store being dumped" in message, message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()} == before
    with ss.open_store(location, SCHEMA, mode="read") as store:
        assert store[TASKS]["t1"] == Task("t1", "one")


def test_a_dump_that_fails_leaves_the_output_file_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "yesterday.jsonl"
    out.write_text("yesterday's dump\n")
    out.chmod(0o600)
    assert "no store here" in one_line_error(run("dump", f"sqlite:{tmp_path}/typo.db", "-o", out))
    assert out.read_text() == "yesterday's dump\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yesterday.jsonl"]  # no temporary file left


def test_dump_replaces_the_output_whole_keeping_its_mode_and_symlink(location: str, tmp_path: Path) -> None:
    real = tmp_path / "dumps" / "real.jsonl"
    real.parent.mkdir()
    real.write_text("old\n" * 10_000)
    real.chmod(0o640)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(real)
    ok("dump", location, "-o", link)
    assert link.is_symlink()
    assert real.read_text() == ok("dump", location)
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.jsonl"]


def test_diff_trouble_exits_2(location: str, tmp_path: Path) -> None:
    result = run("diff", location, tmp_path / "missing.db")
    one_line_error(result, code=2)
    assert "no store here" in result.output


# ---------------------------------------------------------------- migrate

APP = """
import attrs
import statestore as ss
from statestore.schema import Migration

@attrs.define
class Task:
    id: str
    title: str = ""
    owner: str = ""

def add_owner(m):
    m.map_records("tasks", lambda d: {**d, "owner": "nobody"})

def drop_owner(m):
    m.map_records("tasks", lambda d: {k: v for k, v in d.items() if k != "owner"})

TASKS = ss.Collection("tasks", Task, key="id")
V1 = ss.Schema("app", version=1, collections=[ss.Collection("tasks", Task, key="id")])
V2 = ss.Schema("app", version=2, collections=[TASKS],
               migrations=[Migration(2, "add owner", up=add_owner, down=drop_owner)])
NOT_A_SCHEMA = 3
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_app_mod.py").write_text(textwrap.dedent(APP))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_app_mod"


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_migrate_up_and_down(tmp_path: Path, app: str, backend: str) -> None:
    import importlib

    mod = importlib.import_module(app)
    loc = f"sqlite:{tmp_path}/a.db" if backend == "sqlite" else f"files:{tmp_path}/a"
    with ss.open_store(loc, mod.V1) as store:
        store[mod.V1.collections[0]].put(mod.Task("t1", "one"))
    data = json.loads(ok("migrate", loc, "--app", f"{app}:V2", "--json"))
    assert (data["from"], data["to"]) == (1, 2)
    assert [(s["direction"], s["version"], s["name"]) for s in data["steps"]] == [("up", 2, "add owner")]
    assert json.loads(ok("get", loc, "tasks", "t1", "--json"))["record"]["owner"] == "nobody"
    assert "already at version 2" in ok("migrate", loc, "--app", f"{app}:V2")
    out = ok("migrate", loc, "--app", f"{app}:V2", "--to", "1", "--no-backup")
    assert "down 2 add owner" in out
    assert "app: version 2 -> 1" in out
    assert "owner" not in json.loads(ok("get", loc, "tasks", "t1", "--json"))["record"]


def test_migrate_errors(tmp_path: Path, app: str) -> None:
    import importlib

    mod = importlib.import_module(app)
    with ss.open_store(tmp_path / "a.db", mod.V1):
        pass
    assert run("migrate", tmp_path / "a.db", "--app", "no_such_module_here:V2").exit_code == 2
    assert run("migrate", tmp_path / "a.db", "--app", f"{app}:NOT_A_SCHEMA").exit_code == 2
    assert run("migrate", tmp_path / "a.db", "--app", app).exit_code == 2
    assert run("migrate", tmp_path / "a.db", "--app", f"{app}:V2", "--to", "3").exit_code == 2
    assert "no store here" in one_line_error(run("migrate", tmp_path / "b.db", "--app", f"{app}:V2"))
    assert "no schema 'contract'" in one_line_error(
        run("migrate", tmp_path / "a.db", "--app", "statestore.testing:SCHEMA")
    )
    assert "--app" in ok("migrate", "--help")


# ---------------------------------------------------------------- errors common to every command


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["ls", "tasks"],
        ["get", "tasks", "t1"],
        ["log", "events"],
        ["check"],
        ["dump"],
        ["copy", "{tmp}/elsewhere.db"],
    ],
)
def test_missing_wrong_and_damaged_stores(tmp_path: Path, args: list[str]) -> None:
    command, rest = args[0], [a.format(tmp=tmp_path) for a in args[1:]]
    assert "no store here" in one_line_error(run(command, tmp_path / "missing.db", *rest))
    assert "no store here" in one_line_error(run(command, f"files:{tmp_path}/missing", *rest))
    one_line_error(run(command, "memory:x", *rest))
    (tmp_path / "text.db").write_text("not a database\n" * 50)
    assert "corrupt store" in one_line_error(run(command, tmp_path / "text.db", *rest))
    (tmp_path / "dir").mkdir(exist_ok=True)
    (tmp_path / "dir" / "statestore.json").write_text("{")
    assert "corrupt store" in one_line_error(run(command, f"files:{tmp_path}/dir", *rest))
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "missing").exists()
    assert not (tmp_path / "elsewhere.db").exists()


def test_python_dash_m_runs_the_store_commands(location: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "statestore", "info", location, "--json"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["location"] == location


# ------------------------------------------------------------------ import-legacy

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
TRACKER_APP = "statestore.examples.tracker:SCHEMA"


@pytest.fixture(params=["sqlite", "files", "postgres"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location where no store exists yet."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    return f"sqlite:{tmp_path}/new.db" if request.param == "sqlite" else f"files:{tmp_path}/new"


def test_import_legacy_imports_once_and_reports(fresh: str) -> None:
    out = ok("import-legacy", fresh, "--app", TRACKER_APP, "--legacy", LEGACY / "tracker")
    assert "events.jsonl" in out
    assert "1500" in out
    again = ok("import-legacy", fresh, "--app", TRACKER_APP, "--legacy", LEGACY / "tracker")
    assert "never imported twice" in again
    info = json.loads(ok("info", fresh, "--json"))
    assert info["imports"][0]["files"] == 503
    assert info["imports"][0]["imported"] == 2170


def test_import_legacy_abort_lists_rejects_and_creates_nothing(fresh: str) -> None:
    result = run("import-legacy", fresh, "--app", TRACKER_APP, "--legacy", LEGACY / "tracker-damaged")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "tasks/fn-1.3.json:3:10" in result.output  # the rejects table, before the one-line error
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert ss.legacy.store_exists(fresh) is False


def test_import_legacy_dry_run_json_and_quarantine(fresh: str) -> None:
    dry = json.loads(
        ok("import-legacy", fresh, "--app", TRACKER_APP, "--legacy", LEGACY / "tracker-damaged", "--dry-run", "--json")
    )
    assert dry["dry_run"] is True
    assert dry["imported_store"] is False
    assert len(dry["rejects"]) == 12
    assert {"path", "line", "column", "pointer", "reason"} <= set(dry["rejects"][0])
    assert not ss.legacy.store_exists(fresh)
    done = json.loads(
        ok(
            "import-legacy",
            fresh,
            "--app",
            TRACKER_APP,
            "--legacy",
            LEGACY / "tracker-damaged",
            "--on-error",
            "quarantine",
            "--json",
        )
    )
    assert done["imported_store"] is True
    assert json.loads(ok("info", fresh, "--json"))["quarantined"] == 12


def test_import_legacy_bad_app_or_layout_is_one_line() -> None:
    for args in (
        ["--app", "nope.module:SCHEMA"],
        ["--app", TRACKER_APP, "--layout", "statestore.examples.tracker:SCHEMA"],
    ):
        result = run("import-legacy", "sqlite:/tmp/never-made.db", *args, "--legacy", LEGACY / "tracker")
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("body", ['raise RuntimeError("boom")\n', "def broken(:\n", "import sys\nsys.exit(3)\n"])
def test_an_app_module_that_fails_while_imported_is_named_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """Found by review: it was "internal error: RuntimeError: boom (... report it)", blaming statestore."""
    (tmp_path / "broken_app_mod.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with ss.open_store(f"sqlite:{tmp_path}/s.db", SCHEMA):
        pass
    for args in (["migrate", tmp_path / "s.db"], ["import-legacy", tmp_path / "s2.db", "--legacy", tmp_path]):
        message = one_line_error(run(*args, "--app", "broken_app_mod:SCHEMA"))
        assert "importing broken_app_mod raised" in message, message
        assert "internal error" not in message


def test_import_legacy_into_memory_is_a_usage_error(tmp_path: Path) -> None:
    """Found by review: it was "internal error: ValueError: ... (report it)", naming sqlite and files only."""
    result = run("import-legacy", "memory:", "--app", "nowhere:SCHEMA", "--legacy", tmp_path)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output
    assert "sqlite:, files: or postgresql://" in result.output


def test_dump_to_a_device_or_pipe_writes_it_directly_and_errors_name_the_output(location: str, tmp_path: Path) -> None:
    """-o /dev/full must not be renamed over (it is a device), and its error names it."""
    message = one_line_error(run("dump", location, "-o", "/dev/full"))
    assert message.startswith("Error: /dev/full: ")
    assert "No space left" in message
    assert Path("/dev/full").is_char_device()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    import threading

    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    ok("dump", location, "-o", fifo)
    reader.join(10)
    assert got == [ok("dump", location)]
    assert "no such" in one_line_error(run("dump", location, "-o", tmp_path / "no" / "dir" / "x")).lower()


def test_ls_in_lists_ignore_spaces_after_commas_and_an_empty_order_is_an_error(queried: str) -> None:
    """Found by review: 'status in todo, doing' dropped " doing" in silence; --order '' was ignored."""

    def keys(*args: str) -> list[str]:
        return [json.loads(line)["key"] for line in ok("ls", queried, "tasks", *args, "--json").splitlines()]

    assert keys("--where", "status in todo, doing") == keys("--where", "status in todo,doing")
    assert keys("--where", "status in todo, doing") == keys("--where", "status in doing,todo")
    assert len(keys("--where", "status in todo , doing ")) > len(keys("--where", "status=todo"))
    for order in ("", " ", "-", "status,", ",status"):
        assert "names no field" in one_line_error(run("ls", queried, "tasks", "--order", order))
