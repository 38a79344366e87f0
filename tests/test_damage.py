"""Damaged and hostile stores, on both persistent backends: every defect is a StateStoreError.

Whatever a store's files hold (a record nested 100,000 deep, a row that is
not JSON, NaN, flipped bytes, a garbage or hostile description, a planted
symbolic link), the library raises a StateStoreError naming the place
(``CorruptStoreError`` for damage), the command prints one line and exits
non-zero, and ``statestore check`` reports every record and entry a reader
would fail on.
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import statestore as ss
from statestore.backends.files import names as keynames
from statestore.cli import main
from statestore.cli.check import check_store
from statestore.testing.models import EVENTS, SCHEMA, TASKS, TICKETS, Event, Task, Ticket

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(params=["sqlite", "files"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(backend: str, tmp_path: Path) -> str:
    """A store with three tickets, two tasks and three events; returns its location."""
    loc = f"sqlite:{tmp_path}/s.db" if backend == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(loc, SCHEMA) as store:
        for n in (1, 2, 3):
            store[TICKETS].put(Ticket(n, f"ticket {n}"))
        store[TASKS].put(Task("t1", "one"))
        store[TASKS].put(Task("t2", "two"))
        for i in range(3):
            store[EVENTS].append(Event("e", n=i), stream="s")
    return loc


def _path(loc: str) -> Path:
    return Path(loc.split(":", 1)[1])


def set_record_text(loc: str, coll: str, key: Any, text: str) -> None:
    """Replace the stored JSON text of one record (the file backend keeps its "_statestore" member)."""
    path = _path(loc)
    if loc.startswith("sqlite:"):
        con = sqlite3.connect(path, isolation_level=None)
        con.execute(f"UPDATE {coll} SET data=? WHERE key=?", (text, key))
        con.close()
        return
    file = path / coll / keynames.encode(key)
    meta = json.loads(file.read_text())["_statestore"]
    if text.startswith("{") and text != "{":
        text = '{"_statestore": ' + json.dumps(meta) + ", " + text[1:]
    file.write_text(text)


def set_entry_text(loc: str, seq: int, text: str) -> None:
    """Replace the stored record JSON of the events entry ``seq``."""
    path = _path(loc)
    if loc.startswith("sqlite:"):
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("UPDATE events SET data=? WHERE seq=?", (text, seq))
        con.close()
        return
    file = path / "events.jsonl"
    lines = file.read_text().splitlines(keepends=True)
    doc = json.loads(lines[seq - 1])
    head = json.dumps({k: v for k, v in doc.items() if k != "record"})
    lines[seq - 1] = head[:-1] + ', "record": ' + text + "}\n"
    file.write_text("".join(lines))


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "internal error" not in result.output, result.output
    assert result.output.startswith("Error: "), result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


def check_problems(loc: str) -> list[str]:
    """``statestore check`` through the command: exit 1, no traceback; the problem lines."""
    result = run("check", loc)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("problem: ")]


def coll(store: ss.Store, name: str) -> Any:
    """The view of the collection (or log) ``name`` as the store declares it."""
    return store[next(d for d in (*store.collections, *store.logs) if d.name == name)]


def read_everything(store: ss.Store) -> None:
    for coll in store.collections:
        view = store[coll]
        view.all()
        for key in view:
            view.get(key)
    for log in store.logs:
        store[log].read()


# ---------------------------------------------------------------- records and entries that do not decode

DAMAGE = {
    "deep": (DEEP, "nested"),
    "not-json": ("{not json", "JSON"),
    "nan": ('{"number": 2, "title": NaN}', "NaN"),
    "infinity": ('{"number": 2, "title": -Infinity}', "Infinity"),
    # A member written twice (a hand edit): json keeps the last one and drops the other in silence.
    "duplicate": ('{"number": 2, "title": "kept?", "title": "or this?"}', "duplicate member 'title'"),
    "nested-duplicate": ('{"number": 2, "title": "x", "extra": [{"a": 1, "a": 2}]}', "duplicate member 'a'"),
    # Past a 64-bit float: json reads it as infinity, which no record can hold.
    "out-of-range": ('{"number": 2, "title": "x", "extra": 1e400}', "1e400"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_record_that_does_not_decode_is_a_corrupt_store_error(backend: str, tmp_path: Path, damage: str) -> None:
    loc = make(backend, tmp_path)
    text, words = DAMAGE[damage]
    set_record_text(loc, "tickets", 2, text)
    for schema in (SCHEMA, None):
        with ss.open_store(loc, schema, mode="read") as store:
            tickets = coll(store, "tickets")
            for read, args in ((tickets.get, (2,)), (tickets.all, ()), (tickets.find, ())):
                with pytest.raises(ss.CorruptStoreError) as info:
                    read(*args)
                assert words in str(info.value)
                assert "tickets" in str(info.value)
                assert "2" in str(info.value)
            assert tickets.get(1) is not None
    for args in (("ls", loc, "tickets"), ("get", loc, "tickets", "2"), ("dump", loc, "-o", tmp_path / "dump.jsonl")):
        assert words in one_line_error(run(*args))
    problems = check_problems(loc)
    assert len(problems) == 1, problems
    assert words in problems[0]
    assert "tickets" in problems[0]


def test_a_deep_record_that_python_can_read_reads_back(backend: str, tmp_path: Path) -> None:
    """700 levels: within what the JSON decoder reads, beyond what a copy with two frames per level survives."""
    loc = make(backend, tmp_path)
    deep: Any = []
    for _ in range(700):
        deep = [deep]
    record = {"number": 2, "title": "x", "extra": deep}
    set_record_text(loc, "tickets", 2, json.dumps(record))
    with ss.open_store(loc, mode="read") as store:
        tickets = coll(store, "tickets")
        assert tickets.get(2) == record
        assert tickets.all()[1] == record
    assert run("ls", loc, "tickets").exit_code == 0
    assert run("dump", loc, "-o", tmp_path / "dump.jsonl").exit_code == 0
    checked = run("check", loc)  # readable, but Ticket declares no "extra": an app's reader refuses it
    assert checked.exit_code == 1, checked.output
    assert "problem: collection tickets: 2 has field(s) its declaration does not have: extra" in checked.output
    assert run("copy", loc, f"sqlite:{tmp_path}/copy.db").exit_code == 0


ENTRY_DAMAGE = {
    "deep": (DEEP, "nested"),
    "not-json": ("{not json", "JSON"),
    "nan": ('{"type": NaN}', "NaN"),
    "infinity": ('{"type": "e", "n": Infinity}', "Infinity"),
    "duplicate": ('{"type": "e", "type": "f"}', "duplicate member 'type'"),
    "out-of-range": ('{"type": "e", "n": -2e308}', "-2e308"),
}


@pytest.mark.parametrize("damage", sorted(ENTRY_DAMAGE))
def test_an_entry_that_does_not_decode_is_a_corrupt_store_error(backend: str, tmp_path: Path, damage: str) -> None:
    loc = make(backend, tmp_path)
    text, words = ENTRY_DAMAGE[damage]
    set_entry_text(loc, 2, text)
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        with pytest.raises(ss.CorruptStoreError) as info:
            store[EVENTS].read()
        assert words in str(info.value)
        assert "events" in str(info.value)
    for args in (("log", loc, "events"), ("dump", loc, "-o", tmp_path / "dump.jsonl")):
        assert words in one_line_error(run(*args))
    problems = check_problems(loc)
    assert len(problems) == 1, problems
    assert words in problems[0]
    assert "events" in problems[0]


COLUMN_DAMAGE = {
    "at": ("UPDATE events SET at='garbage' WHERE seq=2", "events", "garbage"),
    "version": ("UPDATE events SET version='abc' WHERE seq=2", "events", "abc"),
    "stream": ("UPDATE events SET stream=x'00ff' WHERE seq=2", "events", "stream"),  # a BLOB
    "revision": ("UPDATE tickets SET revision='x' WHERE key=2", "tickets", "revision"),
}


@pytest.mark.parametrize("damage", sorted(COLUMN_DAMAGE))
def test_an_sqlite_column_of_the_wrong_type_is_a_corrupt_store_error(tmp_path: Path, damage: str) -> None:
    loc = make("sqlite", tmp_path)
    sql, name, words = COLUMN_DAMAGE[damage]
    con = sqlite3.connect(_path(loc), isolation_level=None)
    con.execute(sql)
    con.close()
    for schema in (SCHEMA, None):
        with ss.open_store(loc, schema, mode="read") as store:
            view = coll(store, name)
            with pytest.raises(ss.CorruptStoreError, match=words):
                view.read() if name == "events" else view.all()
            if name == "tickets":
                with pytest.raises(ss.CorruptStoreError, match=words):
                    view.get(2)
    args = ("log", loc, "events") if name == "events" else ("ls", loc, "tickets")
    assert words in one_line_error(run(*args))
    assert words in one_line_error(run("dump", loc, "-o", tmp_path / "dump.jsonl"))
    problems = check_problems(loc)
    assert len(problems) == 1, problems
    assert words in problems[0]
    if damage == "version":
        with ss.open_store(loc, SCHEMA) as store, pytest.raises(ss.CorruptStoreError):
            store[EVENTS].append(Event("more"), stream="s")  # the stream's version is unreadable


def test_a_log_line_with_a_bad_timestamp_is_a_corrupt_store_error(tmp_path: Path) -> None:
    loc = make("files", tmp_path)
    file = _path(loc) / "events.jsonl"
    lines = file.read_text().splitlines(keepends=True)
    doc = json.loads(lines[1])
    doc["at"] = "garbage"
    lines[1] = json.dumps(doc) + "\n"
    file.write_text("".join(lines))
    with ss.open_store(loc, SCHEMA, mode="read") as store, pytest.raises(ss.CorruptStoreError, match="garbage"):
        store[EVENTS].read()
    assert "garbage" in one_line_error(run("log", loc, "events"))
    problems = check_problems(loc)
    assert len(problems) == 1, problems
    assert "garbage" in problems[0]


def test_check_reports_every_damaged_record_and_entry(backend: str, tmp_path: Path) -> None:
    loc = make(backend, tmp_path)
    set_record_text(loc, "tickets", 1, DEEP)
    set_record_text(loc, "tickets", 3, '{"number": 3, "title": NaN}')
    set_record_text(loc, "tickets", 2, "{not json")
    set_entry_text(loc, 1, '{"type": NaN}')
    set_entry_text(loc, 3, DEEP)
    problems = check_problems(loc)
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    for where in ("tickets", "events", "1", "2", "3"):
        assert where in text
    with ss.open_store(loc, mode="read") as store:
        report = check_store(store)
    assert len(report.problems) == 5
    assert report.records == 5
    assert report.entries == 4


def _set_versions(loc: str, rows: list[tuple[int, int]]) -> None:
    """Rewrite the events log so its (seq, version) pairs are ``rows`` (all in stream "s")."""
    path = _path(loc)
    if loc.startswith("sqlite:"):
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("DELETE FROM events")
        for seq, version in rows:
            con.execute(
                "INSERT INTO events(seq, stream, version, at, data) VALUES (?, 's', ?, ?, ?)",
                (seq, version, "2024-01-01T00:00:00.000000+00:00", json.dumps({"type": "e", "actor": "", "n": seq})),
            )
        con.close()
        return
    file = path / "events.jsonl"
    at = json.loads(file.read_text().splitlines()[0])["at"]
    lines = [
        json.dumps({"at": at, "record": {"type": "e", "actor": "", "n": s}, "seq": s, "stream": "s", "version": v})
        for s, v in rows
    ]
    file.write_text("\n".join(lines) + "\n")


def test_check_reports_version_gaps(backend: str, tmp_path: Path) -> None:
    loc = make(backend, tmp_path)
    _set_versions(loc, [(1, 1), (2, 3), (3, 4), (4, 6)])
    problems = check_problems(loc)
    assert len(problems) == 2, problems
    assert "seq 2 is version 3" in problems[0]
    assert "seq 4 is version 6" in problems[1]


def test_check_reports_a_repeated_seq_in_a_log_file(tmp_path: Path) -> None:
    loc = make("files", tmp_path)
    _set_versions(loc, [(1, 1), (2, 2), (3, 3), (2, 2)])
    with ss.open_store(loc, mode="read") as store, pytest.raises(ss.CorruptStoreError):
        coll(store, "events").read()
    problems = check_problems(loc)
    assert problems
    assert all("events" in p for p in problems), problems
    assert any("seq 2" in p for p in problems), problems


# ---------------------------------------------------------------- flipped bytes in an SQLite file


def test_single_byte_flips_in_the_first_8_kib_of_an_sqlite_file(tmp_path: Path) -> None:
    """256 positions of the first 8 KiB, each flipped alone: a StateStoreError or the right data, nothing else.

    Each damaged copy is read whole (dump, every view, check) in read mode,
    then opened in write mode and written to.
    """
    loc = make("sqlite", tmp_path)
    want = io.StringIO()
    ss.dump_store(loc, want)
    original = _path(loc).read_bytes()
    outcomes: dict[str, int] = {}
    for n, pos in enumerate(random.Random(11).sample(range(8192), 256)):
        damaged = bytearray(original)
        damaged[pos] ^= 0xFF
        path = tmp_path / "flips" / f"{n}.db"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes(damaged))
        try:
            got = io.StringIO()
            ss.dump_store(f"sqlite:{path}", got)
            with ss.open_store(f"sqlite:{path}", SCHEMA, mode="read") as store:
                read_everything(store)
                check_store(store)
            outcome = "same" if got.getvalue() == want.getvalue() else "other"
        except ss.StateStoreError as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        result = run("check", f"sqlite:{path}")  # the command: a report or one line, never a traceback
        # Damage a reader fails on is always reported; an index page check alone finds is reported too.
        assert result.exit_code in ((0, 1) if outcome == "same" else (1,)), result.output
        assert "Traceback" not in result.output, result.output
        assert "internal error" not in result.output, result.output
        writable = path.with_name(f"w{n}.db")
        writable.write_bytes(bytes(damaged))
        try:  # a write-mode open (which syncs tables and indexes) and writes: the same promise
            with ss.open_store(f"sqlite:{writable}", SCHEMA, busy_timeout=1) as store:
                store[TICKETS].put(Ticket(9, "nine"))
                store[EVENTS].append(Event("x"), stream="s")
                store[TASKS].find(status="todo")
        except ss.StateStoreError:
            pass
    # Text flips break UTF-8 or the JSON, structure flips a page: none of this sample reads as other data.
    assert set(outcomes) == {"same", "CorruptStoreError"}, outcomes
    assert outcomes.get("same", 0) > 0
    assert outcomes.get("CorruptStoreError", 0) > 0


# ---------------------------------------------------------------- garbage descriptions

GARBAGE: list[Any] = [
    [],
    5,
    "text",
    {"collections": 5},
    {"collections": None},
    {"collections": ["x"]},
    {"collections": [5]},
    {"logs": [5]},
    {"collections": [{"name": "tasks"}]},
    {"collections": [{"name": "tasks", "fields": {"id": "str"}, "key": ["id"], "indexes": 5}]},
    {"collections": [{"name": "tasks", "fields": 5, "key": ["id"]}]},
    {"collections": [{"name": "tasks", "fields": {"id": "str"}, "key": ["id"], "unique": [5]}]},
    {"collections": [{"name": "tasks", "fields": {"id": 5}, "key": ["id"]}]},
    {"collections": [], "logs": [{"name": "events", "fields": [1, 2]}]},
]


def set_description(loc: str, description: Any) -> None:
    path = _path(loc)
    if loc.startswith("sqlite:"):
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("UPDATE _statestore_schemas SET description=?", (json.dumps(description),))
        con.close()
        return
    manifest = json.loads((path / "statestore.json").read_text())
    for entry in manifest["schemas"].values():
        entry["description"] = description
    (path / "statestore.json").write_text(json.dumps(manifest))


def described(loc: str) -> Any:
    path = _path(loc)
    if loc.startswith("sqlite:"):
        con = sqlite3.connect(path, isolation_level=None)
        text = con.execute("SELECT description FROM _statestore_schemas").fetchone()[0]
        con.close()
        return json.loads(text)
    manifest = json.loads((path / "statestore.json").read_text())
    return next(iter(manifest["schemas"].values()))["description"]


@pytest.mark.parametrize("garbage", range(len(GARBAGE)))
def test_a_garbage_description_is_a_corrupt_store_error(backend: str, tmp_path: Path, garbage: int) -> None:
    loc = make(backend, tmp_path)
    set_description(loc, GARBAGE[garbage])
    for schema, mode in ((SCHEMA, "write"), (SCHEMA, "read"), (None, "read")):
        with pytest.raises(ss.CorruptStoreError) as info:
            ss.open_store(loc, schema, mode=mode).close()  # type: ignore[arg-type]
        assert "contract" in str(info.value)
    for args in (("info", loc), ("dump", loc), ("check", loc), ("copy", loc, f"{tmp_path}/copy.db")):
        assert "corrupt store" in one_line_error(run(*args))


def test_two_stored_schemas_describing_one_collection_is_a_corrupt_store_error(backend: str, tmp_path: Path) -> None:
    loc = make(backend, tmp_path)
    desc = described(loc)
    other = {"name": "other", "version": 1, "collections": [c for c in desc["collections"] if c["name"] == "tasks"]}
    path = _path(loc)
    if backend == "sqlite":
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("INSERT INTO _statestore_schemas VALUES ('other', 1, ?)", (json.dumps(other),))
        con.close()
    else:
        manifest = json.loads((path / "statestore.json").read_text())
        manifest["schemas"]["other"] = {"version": 1, "description": other}
        (path / "statestore.json").write_text(json.dumps(manifest))
    with pytest.raises(ss.CorruptStoreError, match="both describe 'tasks'"):
        ss.open_store(loc, mode="read").close()
    for args in (("info", loc), ("ls", loc, "tasks"), ("check", loc), ("copy", loc, f"{tmp_path}/copy.db")):
        assert "both describe 'tasks'" in one_line_error(run(*args))


# ---------------------------------------------------------------- hostile names in a description

HOSTILE = "x\"') IS NULL OR ('a"


def _hostile(description: dict[str, Any], where: str) -> dict[str, Any]:
    tasks = next(c for c in description["collections"] if c["name"] == "tasks")
    if where == "index":
        tasks["fields"][HOSTILE] = "str"
        tasks["indexes"].append(HOSTILE)
    elif where == "unique":
        tasks["fields"][HOSTILE] = "str"
        tasks["unique"].append([HOSTILE])
    elif where == "key":
        tasks["fields"][HOSTILE] = "str"
        tasks["key"] = [HOSTILE]
    elif where == "field":
        tasks["fields"][HOSTILE] = "str"
    elif where == "log field":
        description["logs"][0]["fields"][HOSTILE] = "str"
    return description


@pytest.mark.parametrize("where", ["index", "unique", "key", "field", "log field"])
def test_a_hostile_name_in_a_description_is_refused(backend: str, tmp_path: Path, where: str) -> None:
    loc = make(backend, tmp_path)
    set_description(loc, _hostile(described(loc), where))
    for schema, mode in ((SCHEMA, "write"), (SCHEMA, "read"), (None, "read")):
        with pytest.raises(ss.CorruptStoreError) as info:
            ss.open_store(loc, schema, mode=mode).close()  # type: ignore[arg-type]
        assert "invalid" in str(info.value)
        assert "field" in str(info.value)
    assert "corrupt store" in one_line_error(run("ls", loc, "tasks", "--where", f"{HOSTILE}=nope"))
    for dst in (f"sqlite:{tmp_path}/copy.db", f"files:{tmp_path}/copy"):
        assert "corrupt store" in one_line_error(run("copy", loc, dst))
        assert not _path(dst).exists()


def test_a_hostile_index_no_longer_matches_every_record(tmp_path: Path) -> None:
    """The reported exploit: an indexed field whose name closes the JSON path and ORs in a true clause."""
    loc = make("sqlite", tmp_path)
    set_description(loc, _hostile(described(loc), "index"))
    with pytest.raises(ss.CorruptStoreError, match="invalid field name"), ss.open_store(loc, mode="read") as store:
        coll(store, "tasks").find(**{HOSTILE: "nope"})  # returned every record before names were checked


def test_field_paths_in_sql_are_quoted(tmp_path: Path) -> None:
    """A field name with a quote (declared, so valid for attrs) would still not break out of the path."""
    from statestore.backends.sqlite import json_path

    assert json_path("status") == "'$.\"status\"'"
    with pytest.raises(ss.SchemaError):
        json_path(HOSTILE)


# ---------------------------------------------------------------- planted links


@pytest.mark.parametrize("lock", ["state.db.lock", ".statestore/migrate.lock"])
def test_a_symlinked_migration_lock_is_refused_by_name(tmp_path: Path, lock: str) -> None:
    backend = "sqlite" if lock.endswith("db.lock") else "files"
    loc = f"sqlite:{tmp_path}/state.db" if backend == "sqlite" else f"files:{tmp_path}/state"
    ss.open_store(loc, ss.Schema("contract", version=1, collections=[TICKETS])).close()
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = (tmp_path / lock) if backend == "sqlite" else (tmp_path / "state" / lock)
    if link.exists():
        link.unlink()
    link.symlink_to(target)
    with pytest.raises(ss.StateStoreError) as info:
        ss.open_store(loc, SCHEMA).close()  # a new collection and version: the lock is taken
    assert str(link) in str(info.value)
    assert "link" in str(info.value)
    assert link.is_symlink()
    assert target.read_text() == ""
    out = one_line_error(run("migrate", loc, "--app", "statestore.testing.models:SCHEMA"))
    assert str(link) in out
    assert "symbolic link" in out
    assert link.is_symlink()


# ---------------------------------------------------------------- strict decoding, and the fast paths agree with it

REFUSED = {
    '{"a": 1, "a": 1}': "duplicate member 'a'",
    '{"a": {"b": [], "c": 0, "b": []}}': "duplicate member 'b'",
    '[{"x": 1}, {"y": 2, "y": 3}]': "duplicate member 'y'",
    '{"_statestore": {"revision": 1}, "_statestore": {"revision": 2}}': "duplicate member '_statestore'",
    '{"a": 1e400}': "1e400",
    '{"a": [-1E+309]}': "-1E+309",
    '{"a": 123456789012345678901234567890e300}': "e300",
    '{"a": NaN}': "NaN",
}


@pytest.mark.parametrize("text", sorted(REFUSED))
def test_rawjson_refuses_duplicate_members_and_numbers_past_a_float(text: str) -> None:
    from statestore.backends import rawjson
    from statestore.backends.files.store import _load_record

    for form in (text, text.encode("utf-8"), text + "\n"):
        with pytest.raises(rawjson.StoredJSONError, match=REFUSED[text].replace("+", r"\+")):
            rawjson.load(form)
    # The backends' fast paths (the scanner alone) never accept what load refuses.
    with pytest.raises(rawjson.StoredJSONError):
        _load_record((text + "\n").encode("utf-8"))
    with pytest.raises(rawjson.StoredJSONError):
        rawjson.SCAN(text, 0)


def test_rawjson_still_reads_what_statestore_writes() -> None:
    from statestore.backends import rawjson

    value = {"a": [1.5, -0.0, 1e308, -1.7976931348623157e308, 5e-324, 0, 2**63 - 1], "b": {"a": {"a": None}}, "": ""}
    assert rawjson.load(json.dumps(value)) == value
    assert rawjson.load(json.dumps([{"k": 1}, {"k": 2}])) == [{"k": 1}, {"k": 2}]
