"""The SQLite backend's per-operation shortcuts (issue 14) answer exactly as the long way did.

Timings live in tools/bench.py; these tests pin the behaviour each shortcut
must keep: the strict JSON decoder's fast path, the one-statement insert,
the UPDATE that replaces a stored record, and the checks on what is read.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.backends import rawjson
from statestore.codec import dumps
from statestore.testing.models import ACCOUNTS, SCHEMA, SETTINGS, TASKS, TICKETS, Account, Setting, Task, Ticket


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1}',
        ' {"a":1}',
        '{"a":1} ',
        '\n{"a": [1, 2.5, "x\\u0000y", null, true]}\n',
        "[]",
        '"text"',
        "0",
        "-1.5e300",
    ],
)
def test_rawjson_reads_what_json_reads(text: str) -> None:
    assert rawjson.load(text) == json.loads(text)
    assert type(rawjson.load(text)) is type(json.loads(text))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"a":1}x', "Extra data"),
        ('{"a":1} {"b":2}', "Extra data"),
        ('{"a":1', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"a":NaN}', "NaN"),
        ("-Infinity", "Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"n":' + "7" * 5000 + "}", "a number Python will not read"),  # past int's 4,300-digit limit
    ],
)
def test_rawjson_refuses_what_it_refused(text: str, words: str) -> None:
    with pytest.raises(rawjson.StoredJSONError, match=words):
        rawjson.load(text)


def _raw(store: ss.Store) -> sqlite3.Connection:
    return store._con()  # type: ignore[attr-defined,no-any-return]


def test_a_write_at_a_later_revision_of_an_absent_key_is_stored(tmp_path: Path) -> None:
    """A copy or a migration keeps revisions: revision 5 of a key not stored yet is an insert, not a lost UPDATE."""
    with ss.open_store(f"sqlite:{tmp_path}/s.db", SCHEMA) as store:
        data, text = store.codec.encode("tasks", Task, Task("t9", title="kept"))
        with store.transaction():
            store._write(TASKS, "t9", 5, data, text)
        assert store[TASKS].get_versioned("t9") == ss.Versioned(Task("t9", title="kept"), 5)
        data, text = store.codec.encode("settings", Setting, Setting("u", "/p", "n", "v"))
        with store.transaction():
            store._write(SETTINGS, ("u", "/p", "n"), 3, data, text)
        got = store[SETTINGS].get_versioned(("u", "/p", "n"))
        assert got is not None
        assert got.revision == 3
        assert store[TASKS].put(Task("t9", title="again")) == 6
        assert store[TASKS].update("t9", lambda t: Task("t9", title="third")) == Task("t9", title="third")
        assert store[TASKS].get_versioned("t9") == ss.Versioned(Task("t9", title="third"), 7)


def test_insert_of_a_stored_key_reports_its_revision_and_writes_nothing(tmp_path: Path) -> None:
    with ss.open_store(f"sqlite:{tmp_path}/s.db", SCHEMA) as store:
        tasks = store[TASKS]
        tasks.put(Task("t1", title="one"))
        tasks.put(Task("t1", title="two"))
        with pytest.raises(ss.AlreadyExistsError) as info:
            tasks.insert(Task("t1", title="three"))
        assert info.value.actual == 2
        assert tasks.get_versioned("t1") == ss.Versioned(Task("t1", title="two"), 2)
        with store.transaction():
            assert tasks.insert(Task("t2")) == 1
            with pytest.raises(ss.AlreadyExistsError):
                tasks.insert(Task("t2"))
            assert tasks.insert(Task("t3")) == 1
        assert tasks.keys() == ["t1", "t2", "t3"]
        assert store[TICKETS].insert(Ticket(7, "seven")) == 1
        with pytest.raises(ss.AlreadyExistsError):
            store[TICKETS].insert(Ticket(7, "again"))


def test_insert_into_a_collection_with_unique_fields_still_reports_the_key_first(tmp_path: Path) -> None:
    """The key's clash is reported before a unique field's, as before the one-statement insert."""
    with ss.open_store(f"sqlite:{tmp_path}/s.db", SCHEMA) as store:
        accounts = store[ACCOUNTS]
        accounts.insert(Account("a", "a@e", "o", "ha"))
        accounts.insert(Account("b", "b@e", "o", "hb"))
        with pytest.raises(ss.AlreadyExistsError):
            accounts.insert(Account("a", "b@e", "o", "hc"))  # its email is b's too
        with pytest.raises(ss.UniqueViolationError):
            accounts.insert(Account("c", "b@e", "o", "hc"))


@pytest.mark.parametrize("revision", ["'x'", "0", "-3", "2.5", "x'01'"])
def test_writes_over_a_damaged_revision_are_corrupt_store_errors(tmp_path: Path, revision: str) -> None:
    loc = f"sqlite:{tmp_path}/s.db"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    con = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        con.execute(f"UPDATE tasks SET revision={revision} WHERE key='t1'")
    finally:
        con.close()
    with ss.open_store(loc, SCHEMA) as store:
        tasks = store[TASKS]
        for write in (
            lambda: tasks.insert(Task("t1")),
            lambda: tasks.put(Task("t1")),
            lambda: tasks.update("t1", lambda t: t),
            lambda: tasks.get("t1"),
        ):
            with pytest.raises(ss.CorruptStoreError, match="revision"):
                write()


def test_a_stored_value_that_is_not_an_object_is_a_corrupt_store_error(tmp_path: Path) -> None:
    """The inline decoding of a get checks the value is a JSON object, as the long way does."""
    loc = f"sqlite:{tmp_path}/s.db"
    with ss.open_store(loc, SCHEMA) as store:
        store[TASKS].put(Task("t1"))
        store[TASKS].put(Task("t2"))
    con = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        con.execute("UPDATE tasks SET data='[1,2]' WHERE key='t1'")
        con.execute("UPDATE tasks SET data=' {}' WHERE key='t2'")  # whitespace: the long way reads it
    finally:
        con.close()
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        with pytest.raises(ss.CorruptStoreError, match="not a JSON object"):
            store[TASKS].get("t1")
        with pytest.raises(ss.ValidationError):  # decoded ({}), then refused by the codec: no field id
            store[TASKS].get("t2")


def test_text_written_is_canonical_and_read_back_identically(tmp_path: Path) -> None:
    record: dict[str, Any] = {"a": "x\u0000y\u2028", "b": [1.5, -0.0, 10**18], "c": {"d": None}}
    with ss.open_store(f"sqlite:{tmp_path}/s.db", SCHEMA) as store:
        assert rawjson.load(dumps(record)) == record
        _data, text = store.codec.encode("tasks", Task, Task("t1", title="x\u0000y"))
        store[TASKS].put(Task("t1", title="x\u0000y"))
        stored = _raw(store).execute("SELECT data FROM tasks WHERE key='t1'").fetchone()[0]
        assert stored == text
        assert store[TASKS].get("t1") == Task("t1", title="x\u0000y")


@attrs.define
class _Base:
    a: int
    b: str = "b"


@attrs.define
class _Mixed(_Base):
    c: int = attrs.field(kw_only=True)
    d: list[str] = attrs.Factory(list)
    e: int = attrs.field(kw_only=True, default=5)


@attrs.define(kw_only=True)
class _KwOnly:
    x: int
    y: str = "y"


@pytest.mark.parametrize(
    ("tp", "data", "expected"),
    [
        (_Mixed, {"a": 1, "b": "B", "c": 3, "d": ["x"], "e": 6}, _Mixed(1, "B", ["x"], c=3, e=6)),
        (_Mixed, {"a": 1, "c": 3}, _Mixed(1, c=3)),
        (_Mixed, {"a": 1, "c": 3, "e": 7}, _Mixed(1, c=3, e=7)),
        (_Mixed, {"a": 1, "d": [], "c": 3}, _Mixed(1, "b", [], c=3)),
        (_KwOnly, {"x": 1, "y": "z"}, _KwOnly(x=1, y="z")),
        (_KwOnly, {"x": 1}, _KwOnly(x=1)),
    ],
)
def test_structuring_by_position_gives_each_field_its_value(tp: type[Any], data: dict[str, Any], expected: Any) -> None:
    """The generated structure functions pass fields by position: keyword-only fields and defaults still land right."""
    codec = ss.Codec()
    got = codec.decode("t", tp, data)
    assert got == expected
    assert codec.decode_rows("t", tp, [("k", 1, data), ("k2", 1, data)]) == [expected, expected]
    assert codec.encode("t", tp, got)[0] == attrs.asdict(expected)


def test_decode_rows_names_the_key_of_the_row_that_does_not_fit() -> None:
    codec = ss.Codec()
    with pytest.raises(ss.ValidationError) as info:
        codec.decode_rows("t", _KwOnly, [("k1", 1, {"x": 1}), ("k2", 1, {"x": "no"})])
    assert info.value.key == "k2"
    assert "$.x" in str(info.value)


@pytest.mark.parametrize(
    ("tp", "data"),
    [
        (_Mixed, {"a": 1, "b": "B", "c": 3, "d": ["x"], "e": 6, "extra": 1}),  # every field and one more
        (_Mixed, {"a": 1, "c": 3, "extra": None}),  # defaults missing, one undeclared
        (_Mixed, {"a": 1, "c": 3, "e": 7, "d": [], "b": "b", "f": 0, "g": 0}),
        (_KwOnly, {"x": 1, "z": 2}),
        (Ticket, {"number": 1, "title": "t", "other": "o"}),
        (Ticket, {"number": 1, "other": "o"}),
    ],
)
def test_a_stored_field_the_class_does_not_declare_is_still_refused(tp: type[Any], data: dict[str, Any]) -> None:
    """Extra fields are found by counting the fields found, not by comparing names: the same refusal."""
    with pytest.raises(ss.ValidationError, match="not declared"):
        ss.Codec().decode("t", tp, data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"b": 1, "a": [1, 2.5, -0.0, 10**18, {"z": None, "y": "é\u2028\u0000"}], "c": {"d": {}, "e": []}},
        {"lone": "\ud800x", "ok": "ü"},  # a lone surrogate: written with \\u escapes
        {"k": [[[[]]]], "t": True, "f": False},
    ],
)
def test_the_codec_writes_exactly_the_canonical_text(data: dict[str, Any]) -> None:
    """Codec.encode's one shared encoder writes what dumps() writes, byte for byte."""
    from statestore import codec as codec_module

    assert codec_module._dumps_tree(data) == dumps(data)
    assert rawjson.load(dumps(data)) == data


@pytest.mark.parametrize("bad", [{"a": float("nan")}, {"a": float("inf")}, {"a": object()}])
def test_the_codec_refuses_what_dumps_refuses(bad: dict[str, Any]) -> None:
    from statestore import codec as codec_module

    with pytest.raises((TypeError, ValueError)) as want:
        dumps(bad)
    with pytest.raises(type(want.value), match=str(want.value)):
        codec_module._dumps_tree(bad)
