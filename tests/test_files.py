"""What only the file backend promises: layout, key names, permissions, links, journal, caches."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import statestore as ss
from statestore.backends.files import FileStore
from statestore.backends.files import names as keynames
from statestore.backends.files.fileio import Dir, translate
from statestore.backends.files.journal import Head, Journal
from statestore.testing.models import EVENTS, SCHEMA, SETTINGS, TASKS, TICKETS, Event, Setting, Task, Ticket

WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{n}" for d in ("com", "lpt") for n in range(10)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "deep" / "state"


def open_files(root: Path, **kw: object) -> FileStore:
    store = ss.open_store(f"files:{root}", SCHEMA, **kw)  # type: ignore[arg-type]
    assert isinstance(store, FileStore)
    return store


# ---------------------------------------------------------------- key names

EXAMPLES = {
    "task-1": "task-1.json",
    "Foo": "^foo.json",
    "foo": "foo.json",
    "..": "%2e..json",
    ".hidden": "%2ehidden.json",
    "a/b": "a%2fb.json",
    "a\\b": "a%5cb.json",
    "nul\0": "nul%00.json",
    "con": "%63on.json",
    "nul.txt": "%6eul.txt.json",
    "": "%.json",
    "é": "%c3%a9.json",
    "a~b": "a%7eb.json",
}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), _JSON, max_size=6), st.integers(min_value=1))
def test_record_text_is_pretty_sorted_json(data: dict[str, object], revision: int) -> None:
    # pretty() hands containers of scalars to json's C encoder: the bytes must not change.
    from statestore.backends.files.store import record_text

    doc = {**data, "_statestore": {"key": "k", "revision": revision}}
    assert record_text("k", revision, data) == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=5) | st.sampled_from(["\ud800", "x\udfff", "\x00"])
_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e16, -0.0, 5e-324])
    | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150)
@given(
    st.dictionaries(_ANY_TEXT.filter(lambda k: k != "_statestore"), _ANY_JSON, max_size=6),
    _ANY_TEXT | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=1, max_value=2**63),
)
def test_record_text_is_json_dumps_with_indent_even_with_lone_surrogates(
    data: dict[str, Any], key: Any, revision: int
) -> None:
    # UTF-8 text as json.dumps(indent=2, sort_keys=True, ensure_ascii=False) writes it; a document
    # holding a lone surrogate (not UTF-8) with \u escapes instead, as ensure_ascii=True writes it.
    from statestore.backends.files.store import record_text

    doc = {**data, "_statestore": {"key": key, "revision": revision}}
    want = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    try:
        want.encode("utf-8")
    except UnicodeEncodeError:
        want = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    assert record_text(key, revision, data) == want


@given(st.text(max_size=8), st.text(max_size=12), st.integers(min_value=0, max_value=2**63), st.booleans())
def test_a_direct_journal_is_written_as_the_encoder_writes_it(coll: str, name: str, gen: int, direct: bool) -> None:
    # The journal of a lone record write is written without the encoder: the bytes must not change.
    journal = Journal("0123abcd", gen, ((coll, name, None),), (), direct=direct)
    doc: dict[str, Any] = {"txid": "0123abcd", "gen": gen, "records": [[coll, name, None]], "logs": []}
    if direct:
        doc["direct"] = True
    assert journal.encode().split(b"\n", 1)[1] == json.dumps(doc, separators=(",", ":")).encode("ascii")
    assert Journal.decode(journal.encode()) == journal


def _changed_by_every_line(head: Head, collection: str, since: int) -> set[str] | None:
    """What ``Head.changed`` answered when it read every line of the history (the model)."""
    if since == head.gen:
        return set()
    if not (head.base <= since < head.gen):
        return None
    out: set[str] = set()
    for line in head.history.splitlines():
        gen, coll, *names = line.split(b"\t")
        if coll == collection.encode("ascii") and int(gen) > since:
            if names == [b"*"]:
                return None
            out.update(n.decode("ascii") for n in names)
    return out


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "."]),
            st.lists(st.sampled_from(["x.json", "y.json", "z.json"]), min_size=1, max_size=3)
            | st.just([f"n{i}.json" for i in range(300)]),
            max_size=2,
        ),
        max_size=90,
    ),
    st.data(),
)
def test_the_head_names_the_files_changed_since_a_generation(steps: list[dict[str, list[str]]], data: Any) -> None:
    # changed() reads the history back from its newest line and stops at ``since``: the answer must not change.
    head = Head()
    for gen, changes in enumerate(steps, start=1):
        head = head.bump(gen, changes, None)
    for collection in ("a", "b", "."):
        since = data.draw(st.integers(min_value=head.base - 2, max_value=head.gen + 1))
        assert head.changed(collection, since) == _changed_by_every_line(head, collection, since)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1}\n',
        b'{"a": NaN}\n',
        b'{"a": 1} x',
        b'{"a": 1}\n\n \t',
        b'{\x00"',
        b'{"a": "\xed\xa0\x80"}\n',
        b'{"a": "\xff"}\n',
        b"{" * 5000 + b"}" * 5000,
        b'{"a":1}{"b":2}',
        "{}".encode("utf-16"),
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": [1, 2.5, true, null, "\xc3\xa9"]}\r\n',
        b'{"a": 1}\x0c',
    ],
)
def test_record_files_decode_as_rawjson_decodes_them(raw: bytes) -> None:
    # Record files go through the JSON scanner alone when they look like what statestore writes.
    from statestore.backends import rawjson
    from statestore.backends.files.store import _load_record

    def outcome(load: Any) -> tuple[str, object]:
        try:
            return "value", load(raw)
        except Exception as exc:  # the same error, whatever it is
            return type(exc).__name__, str(exc)

    assert outcome(_load_record) == outcome(rawjson.load)


@given(_JSON)
def test_record_texts_decode_as_rawjson_decodes_them(data: object) -> None:
    from statestore.backends import rawjson
    from statestore.backends.files.store import _load_record, record_text

    raw = record_text("k", 1, {"v": data}).encode("utf-8")
    assert _load_record(raw) == rawjson.load(raw)


@given(st.text(alphabet="abconulz09._-A~%^é/", max_size=12))
def test_plain_key_fast_path_matches_the_general_encoding(key: str) -> None:
    expected = "~".join([keynames._encode_part(key)])
    if expected.split(".", 1)[0] in keynames._RESERVED:
        expected = keynames._escape(expected[0]) + expected[1:]
    assert keynames.encode(key) == expected + ".json"


@pytest.mark.parametrize(("key", "name"), EXAMPLES.items())
def test_key_names_are_readable_and_safe(key: str, name: str) -> None:
    assert keynames.encode(key) == name
    assert keynames.decode(name, (str,)) == key


def test_int_and_composite_key_names() -> None:
    assert keynames.encode(10) == "10.json"
    assert keynames.decode("-3.json", (int,)) == -3
    assert keynames.encode(("a", "", 7)) == "a~%~7.json"
    assert keynames.decode("a~%~7.json", (str, str, int)) == ("a", "", 7)
    with pytest.raises(ValueError, match="canonical"):
        keynames.decode("007.json", (int,))
    with pytest.raises(ValueError, match="record file"):
        keynames.decode(".tmp-123", (str,))


def test_long_keys_get_a_readable_prefix_and_a_digest() -> None:
    name = keynames.encode("x" * 1000)
    assert name.startswith("x" * 100)
    assert "+" in name
    assert len(name.encode()) <= 255
    assert keynames.decode(name, (str,)) is None  # the key is read from inside the file
    assert keynames.encode("x" * 1000) != keynames.encode("x" * 999)


def check_safe(name: str) -> None:
    assert name.endswith(".json")
    assert name.isascii()
    assert name == name.lower()  # so case-insensitive file systems keep every name apart
    assert not name.startswith(".")
    assert not set(name) & {"/", "\\", "\0", ":", "*", "?", '"', "<", ">", "|", " "}
    assert len(name.encode()) <= 255
    assert name.split(".", 1)[0] not in WINDOWS_RESERVED


key_parts = st.one_of(st.text(max_size=300), st.integers())


@given(st.lists(st.text(max_size=300), min_size=2, max_size=6, unique=True))
def test_str_key_names_are_injective_reversible_and_safe(keys: list[str]) -> None:
    names = [keynames.encode(k) for k in keys]
    for key, name in zip(keys, names):
        check_safe(name)
        decoded = keynames.decode(name, (str,))
        assert decoded == key or (decoded is None and "+" in name)  # digest names only for long keys
    assert len({n.casefold() for n in names}) == len(keys)


@given(st.lists(st.tuples(st.text(max_size=80), st.integers(), st.text(max_size=80)), min_size=2, unique=True))
def test_composite_key_names_are_injective_and_reversible(keys: list[tuple[str, int, str]]) -> None:
    names = [keynames.encode(k) for k in keys]
    for key, name in zip(keys, names):
        check_safe(name)
        assert keynames.decode(name, (str, int, str)) in (key, None)
    assert len({n.casefold() for n in names}) == len(keys)


@given(st.text(alphabet=st.sampled_from("aAbB.-_~%^ "), max_size=12))
def test_case_variants_never_share_a_file(key: str) -> None:
    variants = {key, key.upper(), key.lower(), key.swapcase()}
    names = {keynames.encode(v).casefold() for v in variants}
    assert len(names) == len(variants)


# ---------------------------------------------------------------- layout


def test_layout_is_plain_json_that_grep_and_json_read(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1", title="Écrire ☃", status="todo"))
        store[TASKS].put(Task("t2", status="done"))
        store[TASKS].put(Task("t2", status="done"))
        store[TICKETS].put(Ticket(7))
        store[SETTINGS].put(Setting("user", "/p", "Name"))
        store[EVENTS].append(Event("created"), stream="task:t1")
        store[EVENTS].append(Event("done"), stream="task:t2")
    manifest = json.loads((root / "statestore.json").read_text())
    assert manifest["format"] == 1
    assert len(manifest["store_id"]) == 32
    assert manifest["schemas"]["contract"] == {"version": 1, "description": SCHEMA.describe()}
    text = (root / "tasks" / "t1.json").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert '\n  "status": "todo",\n' in text  # so grep -r '"status": "todo"' state/tasks/ works
    assert "Écrire ☃" in text  # UTF-8, not \u escapes
    doc = json.loads(text)
    assert doc["_statestore"] == {"key": "t1", "revision": 1}
    assert list(doc) == sorted(doc)
    assert json.loads((root / "tasks" / "t2.json").read_text())["_statestore"]["revision"] == 2
    assert json.loads((root / "tickets" / "7.json").read_text())["_statestore"]["key"] == 7
    assert json.loads((root / "settings" / "user~%2fp~^name.json").read_text())["_statestore"]["key"] == [
        "user",
        "/p",
        "Name",
    ]
    lines = (root / "events.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["seq"], e["stream"], e["version"], e["record"]["type"]) for e in entries] == [
        (1, "task:t1", 1, "created"),
        (2, "task:t2", 1, "done"),
    ]
    assert set(entries[0]) == {"seq", "stream", "version", "at", "record"}
    assert sorted(os.listdir(root)) == [
        ".statestore",
        "accounts",
        "events.jsonl",
        "settings",
        "statestore.json",
        "tasks",
        "tickets",
    ]


def test_lone_surrogate_is_stored_losslessly(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t", title="bad \udc80 text"))
        store[EVENTS].append(Event("\ud800"), stream="s")
    with open_files(root, mode="read") as store:
        assert store[TASKS]["t"].title == "bad \udc80 text"
        assert store[EVENTS].read()[0].record.type == "\ud800"
    assert "\\udc80" in (root / "tasks" / "t.json").read_text()


def test_reserved_member_name_is_refused(root: Path) -> None:
    @attrs.define
    class Odd:
        id: str
        _statestore: int = 0

    odd = ss.Collection("odd", Odd, key="id")
    schema = ss.Schema("odd", version=1, collections=[odd])
    with ss.open_store(f"files:{root}", schema) as store, pytest.raises(ss.ValidationError, match="reserved"):
        store[odd].put(Odd("a"))


def test_plain_path_opens_the_file_backend(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "state", SCHEMA) as store:
        assert isinstance(store, FileStore)


def test_non_store_directory_is_refused(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ss.CorruptStoreError, match="not a statestore store"):
        open_files(root)


def test_read_mode_creates_nothing(root: Path) -> None:
    with pytest.raises(ss.StoreNotFoundError):
        open_files(root, mode="read")
    assert not root.exists()
    root.mkdir(parents=True)
    with pytest.raises(ss.StoreNotFoundError):
        open_files(root, mode="read")
    assert os.listdir(root) == []


def test_corrupt_files_are_named(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
        store[EVENTS].append(Event("a"))
        store[EVENTS].append(Event("b"))
    (root / "tasks" / "t2.json").write_text('{\n  "title": \n')
    with open_files(root) as store, pytest.raises(ss.CorruptStoreError) as info:
        store[TASKS].all()
    assert str(root / "tasks" / "t2.json") in str(info.value)
    assert info.value.line == 3
    (root / "tasks" / "t2.json").write_text('{"title": "no meta"}\n')
    with open_files(root) as store, pytest.raises(ss.CorruptStoreError, match="_statestore"):
        store[TASKS].get("t2")
    (root / "tasks" / "t2.json").unlink()
    (root / "tasks" / "t3.json").write_text((root / "tasks" / "t1.json").read_text())  # a copied file
    with open_files(root) as store, pytest.raises(ss.CorruptStoreError, match="does not match"):
        store[TASKS].all()
    (root / "tasks" / "t3.json").unlink()
    lines = (root / "events.jsonl").read_text().splitlines(keepends=True)
    (root / "events.jsonl").write_text(lines[0] + "not json\n")
    with open_files(root) as store, pytest.raises(ss.CorruptStoreError) as info:
        store[EVENTS].read()
    assert info.value.line == 2
    assert str(root / "events.jsonl") in str(info.value)


# ---------------------------------------------------------------- permissions and links


def test_owner_only_permissions(tmp_path: Path) -> None:
    root = tmp_path / "state"
    old = os.umask(0o022)
    try:
        with open_files(root, durability="full") as store:
            store[TASKS].put(Task("t1"))
            store[EVENTS].append(Event("a"))
    finally:
        os.umask(old)
    for dirpath, _dirnames, filenames in os.walk(root):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for name in filenames:
            path = os.path.join(dirpath, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_planted_symlinks_are_never_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": 1}\n')
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
    os.symlink(outside, root / "tasks" / "evil.json")
    with open_files(root) as store:
        with pytest.raises(ss.CorruptStoreError, match="symbolic link") as info:
            store[TASKS].get("evil")
        assert "evil.json" in str(info.value)
        with pytest.raises(ss.CorruptStoreError, match="symbolic link"):
            store[TASKS].all()
        with pytest.raises(ss.CorruptStoreError, match="symbolic link"):
            store[TASKS].put(Task("evil"))
    assert outside.read_text() == '{"secret": 1}\n'
    (root / "tasks" / "evil.json").unlink()

    outside_log = tmp_path / "outside.jsonl"
    outside_log.write_text("")
    os.symlink(outside_log, root / "events.jsonl")
    with open_files(root) as store:
        with pytest.raises(ss.CorruptStoreError, match="symbolic link"):
            store[EVENTS].append(Event("x"))
        with pytest.raises(ss.CorruptStoreError, match="symbolic link"):
            store[EVENTS].read()
    assert outside_log.read_text() == ""

    (root / "events.jsonl").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(root / "tickets", tmp_path / "old-tickets")
    os.symlink(elsewhere, root / "tickets")
    with pytest.raises(ss.CorruptStoreError, match="symbolic link"):
        open_files(root)
    assert os.listdir(elsewhere) == []


# ---------------------------------------------------------------- logs


def test_torn_last_line_is_ignored_then_repaired(root: Path) -> None:
    with open_files(root) as store:
        store[EVENTS].append(Event("a"), stream="s")
    with open(root / "events.jsonl", "ab") as f:
        f.write(b'{"at":"2024-01-01T00:00:00+00:00","record":{"ty')  # a writer killed mid-line
    with open_files(root, mode="read") as reader:
        assert [e.record.type for e in reader[EVENTS].read()] == ["a"]
        assert reader[EVENTS].last_seq() == 1
    with open_files(root) as store:
        entry = store[EVENTS].append(Event("b"), stream="s")
        assert (entry.seq, entry.version) == (2, 2)
    lines = (root / "events.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["record"]["type"] for line in lines[:-1]] == ["a", "b"]


def test_a_torn_line_is_cut_by_a_writer_whose_index_is_warm(root: Path) -> None:
    # The writer skips looking at the last byte when its index ends where the
    # file does; a line torn by another (killed) writer makes the file longer.
    with open_files(root) as store:
        store[EVENTS].append(Event("a"), stream="s")
        assert store._logs["events"].end == (root / "events.jsonl").stat().st_size
        with open(root / "events.jsonl", "ab") as f:
            f.write(b'{"at":"2024-01-01T00:00:00+00:00","record":{"ty')  # another writer killed mid-line
        entry = store[EVENTS].append(Event("b"), stream="s")
        assert (entry.seq, entry.version) == (2, 2)
        assert [e.record.type for e in store[EVENTS].read()] == ["a", "b"]
    lines = (root / "events.jsonl").read_bytes().split(b"\n")
    assert [json.loads(line)["record"]["type"] for line in lines[:-1]] == ["a", "b"]
    assert lines[-1] == b""


def test_a_log_file_replaced_between_transactions_is_reopened(root: Path) -> None:
    # A write transaction checks the log's kept descriptor once; the next one checks again.
    with open_files(root) as store:
        store[EVENTS].append(Event("a"), stream="s")
        path = root / "events.jsonl"
        copy = root / "events.copy"
        copy.write_bytes(path.read_bytes())
        os.chmod(copy, 0o600)
        os.replace(copy, path)  # same content, new inode: the kept descriptor is stale
        store[EVENTS].append(Event("b"), stream="s")
        with store.transaction():
            store[EVENTS].append(Event("c"), stream="s")
            store[EVENTS].append(Event("d"), stream="t")
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["record"]["type"] for line in lines] == ["a", "b", "c", "d"]


def test_reading_after_a_seq_reads_only_new_bytes(root: Path) -> None:
    with open_files(root) as store:
        log = store[EVENTS]
        for i in range(5):
            log.append(Event("x", n=i), stream=f"s{i % 2}")
        assert [e.record.n for e in log.read(after=3)] == [3, 4]
        index = store._logs["events"]
        end = index.end
        log.append(Event("x", n=5), stream="s1")
        assert [e.record.n for e in log.read(after=5)] == [5]
        assert store._logs["events"] is index  # extended in place, not rebuilt
        assert index.end > end
        assert [e.seq for e in log.read(stream="s1", after=2)] == [4, 6]


# ---------------------------------------------------------------- journal


def pending_journal(root: Path) -> bool:
    """A committed transaction is waiting to be applied: in the change head, or as its own file."""
    head = Head.decode((root / ".statestore" / "changes").read_bytes())
    assert head is not None
    return head.journal is not None or (root / ".statestore" / "journal.json").exists()


def half_applied(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave a committed transaction whose records are written but whose log append never happened."""
    with open_files(root) as store:
        store[TASKS].put(Task("t1", points=10))
        store[TASKS].put(Task("t2", points=0))

        def killed(*args: object) -> None:
            raise KeyboardInterrupt("killed mid-apply")

        monkeypatch.setattr(FileStore, "_append", killed)
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store[TASKS].update("t1", lambda t: attrs.evolve(t, points=9))
            store[TASKS].update("t2", lambda t: attrs.evolve(t, points=1))
            store[EVENTS].append(Event("moved"), stream="m")
        monkeypatch.undo()
    assert pending_journal(root)


def test_readers_see_a_half_applied_transaction_whole(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    half_applied(root, monkeypatch)
    assert not (root / "events.jsonl").exists() or (root / "events.jsonl").read_text() == ""
    with open_files(root, mode="read") as reader:
        assert [t.points for t in reader[TASKS].all()] == [9, 1]
        assert [e.record.type for e in reader[EVENTS].read()] == ["moved"]
        assert reader[TASKS]["t1"].points == 9
    assert pending_journal(root)  # read mode changed nothing


def test_committed_journal_rolls_forward_on_next_open(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    half_applied(root, monkeypatch)
    with open_files(root) as store:
        assert not pending_journal(root)
        assert [t.points for t in store[TASKS].all()] == [9, 1]
        assert [(e.seq, e.record.type) for e in store[EVENTS].read()] == [(1, "moved")]
        store[EVENTS].append(Event("next"), stream="m")
    assert len((root / "events.jsonl").read_text().splitlines()) == 2


def test_roll_forward_is_idempotent_over_a_partial_apply(root: Path) -> None:
    with open_files(root) as store:
        store[EVENTS].append(Event("a"))
        store[TASKS].put(Task("t1"))
    size = (root / "events.jsonl").stat().st_size
    line = '{"at":"2024-01-01T00:00:00+00:00","record":{"actor":"","n":0,"type":"b"},"seq":2,"stream":"","version":2}\n'
    text = json.dumps({"id": "t9", "title": "", "_statestore": {"key": "t9", "revision": 1}})
    journal = Journal("tx", 5, (("tasks", "t9.json", text), ("tasks", "t1.json", None)), (("events", size, line),))
    (root / ".statestore" / "journal.json").write_bytes(journal.encode())
    head = Head.decode((root / ".statestore" / "changes").read_bytes())
    assert head is not None
    # The head announcing it is the commit point: the killed writer got past it.
    announced = head.bump(5, journal.changes(), None, journal_file=True).encode()
    (root / ".statestore" / "changes").write_bytes(announced)
    with open(root / "events.jsonl", "a") as f:
        f.write(line[:30])  # the killed writer got this far with the append
    with open_files(root) as store:
        assert store[TASKS].keys() == ["t9"]
        assert [e.record.type for e in store[EVENTS].read()] == ["a", "b"]
    assert (root / "events.jsonl").read_text().count("\n") == 2


def test_uncommitted_journal_is_discarded(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
    journal = Journal("tx", 5, (("tasks", "t1.json", None),), ()).encode()
    (root / ".statestore" / "journal.json").write_bytes(journal[:-5])  # torn: checksum fails
    with open_files(root, mode="read") as reader:
        assert reader[TASKS].keys() == ["t1"]
    with open_files(root) as store:
        store[TASKS].put(Task("t2"))
        assert store[TASKS].keys() == ["t1", "t2"]
    assert not (root / ".statestore" / "journal.json").exists()


def test_failed_commit_before_the_journal_changes_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))

        def full_disk(self: Dir, name: str, data: bytes, *, sync: bool) -> str:
            with translate(self.path / name):
                raise OSError(28, "No space left on device")

        monkeypatch.setattr("statestore.backends.files.fileio.Dir.write_temp", full_disk)
        with pytest.raises(ss.BackendError, match="No space"):
            store[TASKS].put(Task("t2"))
        monkeypatch.undo()
        assert store[TASKS].keys() == ["t1"]
        store[TASKS].put(Task("t3"))
        assert store[TASKS].keys() == ["t1", "t3"]


def _translated(path: Path, name: str | None, exc: OSError) -> tuple[str, str]:
    """The error ``with translate(path, name)`` makes of ``exc``: (its type, its text)."""
    try:
        with translate(path, name):
            raise exc
    except ss.StateStoreError as got:
        return type(got).__name__, str(got)
    raise AssertionError("translate let it through")


@pytest.mark.parametrize(
    ("call", "where", "action"),
    [
        ("replace", ("tasks", "t2.json"), "put"),
        ("write", ("tasks", "t2.json"), "put"),
        ("pwrite", (".statestore", "changes"), "put"),
        ("pread", (".statestore", "changes"), "put"),
        ("read", ("tasks", "t1.json"), "get"),
        ("fstat", ("tasks", "t1.json"), "get"),
    ],
)
def test_file_errors_on_the_commit_path_read_as_before(
    root: Path, monkeypatch: pytest.MonkeyPatch, call: str, where: tuple[str, str], action: str
) -> None:
    """The commit path's file operations catch OSError themselves (``fileio.fail``), without a ``translate``
    object each: the same error, naming the same file, as ``translate`` makes of it."""
    import errno

    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
        store[TASKS].update("t1", lambda t: attrs.evolve(t, points=2))  # (caches and memos warm)
        exc = OSError(errno.EIO, "Input/output error")
        real = getattr(os, call)

        def failing(*args: Any, **kw: Any) -> Any:
            raise exc

        monkeypatch.setattr(os, call, failing)
        try:
            if action == "put":
                store[TASKS].put(Task("t2"))
            else:
                store[TASKS].get("t1")
        except ss.StateStoreError as got:
            outcome = (type(got).__name__, str(got))
        else:
            outcome = ("ok", "")
        finally:
            monkeypatch.setattr(os, call, real)
        folder, name = where
        assert outcome in (_translated(root / folder, name, exc), _translated(root / folder / name, None, exc))
        assert store[TASKS].get("t1") == Task("t1", points=2)


# ---------------------------------------------------------------- caches and threads


def test_cache_follows_another_store_object(root: Path) -> None:
    with open_files(root) as a, open_files(root) as b:
        a[TASKS].put(Task("t1", status="todo"))
        assert [t.id for t in b[TASKS].find(status="todo")] == ["t1"]  # b caches the collection
        a[TASKS].put(Task("t2", status="todo"))
        a[TASKS].put(Task("t1", status="done"))
        assert [t.id for t in b[TASKS].find(status="todo")] == ["t2"]
        assert [t.id for t in b[TASKS].find(status="done")] == ["t1"]
        a[TASKS].delete("t2")
        assert b[TASKS].keys() == ["t1"]
        assert len(b[TASKS]) == 1
        for i in range(100):  # more changes than the change head remembers
            a[TASKS].put(Task(f"n{i:03}"))
        assert len(b[TASKS].all()) == 101
        a[EVENTS].append(Event("e"))
        assert b[EVENTS].last_seq() == 1


def test_cache_reloads_after_a_crash_between_apply_and_cleanup(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1", points=10))
        store[TASKS].put(Task("t2", points=0))
    with open_files(root, mode="read") as reader:
        assert [t.points for t in reader[TASKS].all()] == [10, 0]
        half_applied(root, monkeypatch)
        assert [t.points for t in reader[TASKS].all()] == [9, 1]  # through the journal
        with open_files(root) as store:  # rolls forward and deletes the journal
            assert store[TASKS]["t1"].points == 9
        assert [t.points for t in reader[TASKS].all()] == [9, 1]
        assert reader[EVENTS].last_seq() == 1


def test_uncommitted_writes_are_invisible_to_other_threads(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1", status="todo"))
        seen: list[object] = []
        inside, done = threading.Event(), threading.Event()

        def reader() -> None:
            inside.wait()
            seen.append(store[TASKS].get("t2"))
            seen.append([t.id for t in store[TASKS].find(status="todo")])
            done.set()

        thread = threading.Thread(target=reader)
        thread.start()
        with store.transaction():
            store[TASKS].put(Task("t2", status="todo"))
            inside.set()
            assert done.wait(10)
        thread.join()
        assert seen == [None, ["t1"]]
        assert [t.id for t in store[TASKS].find(status="todo")] == ["t1", "t2"]


def test_read_transaction_is_a_snapshot(root: Path) -> None:
    with open_files(root) as writer:
        writer[TASKS].put(Task("t1"))
        with open_files(root, mode="read") as reader, reader.transaction():
            writer[TASKS].put(Task("t2"))
            writer[EVENTS].append(Event("e"))
            assert reader[TASKS].keys() == ["t1"]
            assert reader[TASKS].get("t2") is None
            assert reader[EVENTS].read() == []
        with open_files(root, mode="read") as reader:
            assert reader[TASKS].keys() == ["t1", "t2"]


def test_second_store_object_in_the_same_thread_is_busy(root: Path) -> None:
    with open_files(root) as a, open_files(root, busy_timeout=0.1) as b, a.transaction():
        a[TASKS].put(Task("t1"))
        with pytest.raises(ss.StoreBusyError):
            b[TASKS].put(Task("t2"))


def test_full_durability_round_trips(root: Path) -> None:
    with open_files(root, durability="full") as store:
        with store.transaction():
            store[TASKS].put(Task("t1"))
            store[EVENTS].append(Event("a"))
        store[TASKS].delete("t1")
    with open_files(root, mode="read") as store:
        assert store[TASKS].keys() == []
        assert len(store[EVENTS].read()) == 1


def test_long_keys_round_trip(root: Path) -> None:
    long = "K" * 400
    with open_files(root) as store:
        store[TASKS].put(Task(long, title="long"))
        store[TASKS].put(Task(long + "x", title="longer"))
    with open_files(root) as store:
        assert store[TASKS][long].title == "long"
        assert store[TASKS].keys() == [long, long + "x"]
    assert all(len(n.encode()) <= 255 for n in os.listdir(root / "tasks"))


def test_crash_after_a_lone_rename_leaves_no_stale_cache(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-record write announces its file in the head, renames it, then settles the head.

    A writer killed between the rename and the settle must not leave another
    process's cache holding the old record.
    """
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        writer[TASKS].put(Task("t1", status="todo"))
        assert [t.id for t in reader[TASKS].find(status="todo")] == ["t1"]  # reader caches it
        original = FileStore._write_head
        calls: list[Head] = []

        def die_before_settling(self: FileStore, head: Head, *, sync: bool) -> None:
            calls.append(head)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed after the rename")
            original(self, head, sync=sync)
            # The reader looks after the announcement, before the rename: it sees the old file.
            assert [t.id for t in reader[TASKS].find(status="todo")] == ["t1"]

        monkeypatch.setattr(FileStore, "_write_head", die_before_settling)
        with pytest.raises(KeyboardInterrupt):
            writer[TASKS].put(Task("t1", status="done"))
        monkeypatch.undo()
        assert calls[0].journal is not None
        assert calls[0].journal.direct
        assert reader[TASKS]["t1"].status == "done"
        assert reader[TASKS].find(status="todo") == []
        assert [t.id for t in reader[TASKS].find(status="done")] == ["t1"]
    with open_files(root) as store:  # the next writer settles the head
        assert store[TASKS]["t1"].status == "done"
    head = Head.decode((root / ".statestore" / "changes").read_bytes())
    assert head is not None
    assert head.journal is None


# ---------------------------------------------------------------- review findings


def test_reader_in_the_window_before_a_large_journal_lands_is_not_left_stale(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large journal is announced in the head, then renamed into place: a reader between the two
    must not mark its cache current for that generation."""
    with open_files(root) as writer, open_files(root, mode="read") as reader:
        writer[TASKS].put(Task("a", title="old"))
        writer[TASKS].put(Task("b", title="old"))
        assert [t.title for t in reader[TASKS].all()] == ["old", "old"]
        original = Dir.write

        def look_in_the_window(self: Dir, name: str, data: bytes, *, sync: bool) -> None:
            if name == "journal.json":
                assert [t.title for t in reader[TASKS].all()] == ["old", "old"]  # not committed yet
            original(self, name, data, sync=sync)

        monkeypatch.setattr(Dir, "write", look_in_the_window)
        with writer.transaction():  # over the embedding limit: journal.json
            writer[TASKS].put(Task("a", title="new" + "x" * 20_000))
            writer[TASKS].put(Task("b", title="new"))
        monkeypatch.undo()
        assert [t.title[:3] for t in reader[TASKS].all()] == ["new", "new"]
        assert reader[TASKS].get_versioned("b") == ss.Versioned(Task("b", title="new"), 2)


def test_power_cut_that_loses_the_settle_does_not_undo_later_writes(root: Path) -> None:
    """Simulated: after a power cut the head holds an applied journal again (its settle was lost);
    re-applying it must not cut off the log lines committed after it."""
    with open_files(root) as store:
        store[EVENTS].append(Event("t1"))
        with store.transaction():
            store[EVENTS].append(Event("t2-a"))
            store[EVENTS].append(Event("t2-b"))
        store[EVENTS].append(Event("t3 alone"))
    lines = (root / "events.jsonl").read_bytes().splitlines(keepends=True)
    t2 = Journal("tx", 99, (), (("events", len(lines[0]), (lines[1] + lines[2]).decode()),))
    (root / ".statestore" / "changes").write_bytes(Head(99, 99, b"", t2).encode())
    with open_files(root) as store:  # recovery re-applies T2's journal
        assert [e.record.type for e in store[EVENTS].read()] == ["t1", "t2-a", "t2-b", "t3 alone"]


def test_an_apply_error_after_the_commit_point_does_not_fail_the_transaction(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_files(root) as store, open_files(root, mode="read") as reader:

        def disk_full(self: FileStore, log_name: str, offset: int, data: bytes) -> int:
            raise ss.BackendError(str(root / f"{log_name}.jsonl"), "No space left on device")

        monkeypatch.setattr(FileStore, "_append", disk_full)
        with store.transaction():  # committed by the head write; applying the log line then fails
            store[TASKS].put(Task("t1", title="paid"))
            store[EVENTS].append(Event("charged"), stream="t1")
        monkeypatch.undo()
        assert reader[TASKS]["t1"].title == "paid"
        assert [e.record.type for e in reader[EVENTS].read()] == ["charged"]
        store[EVENTS].append(Event("receipt"), stream="t1")  # the next writer finishes the apply first
        assert [(e.record.type, e.version) for e in reader[EVENTS].read()] == [("charged", 1), ("receipt", 2)]


def test_a_lone_write_that_fails_is_reported(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1", title="a"))

        def no_rename(self: Dir, tmp: str, name: str) -> None:
            with translate(self.path, name):
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(Dir, "rename", no_rename)
        with pytest.raises(ss.BackendError):
            store[TASKS].put(Task("t1", title="b"))  # its own rename is its commit
        monkeypatch.undo()
        assert store[TASKS]["t1"].title == "a"


def test_line_separators_inside_log_text_survive_the_journal(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a\u2028b\u2029c\x85d\x1ce"
    with open_files(root) as store, open_files(root, mode="read") as reader:

        def killed(*args: object) -> int:
            raise KeyboardInterrupt("killed mid-apply")

        monkeypatch.setattr(FileStore, "_append", killed)
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store[TASKS].put(Task("t1"))
            store[EVENTS].append(Event(text), stream="s")
        monkeypatch.undo()
        assert [e.record.type for e in reader[EVENTS].read()] == [text]  # read through the journal
    with open_files(root) as store:
        assert [e.record.type for e in store[EVENTS].read()] == [text]


def test_parent_folders_are_created_private(tmp_path: Path) -> None:
    with ss.open_store(f"files:{tmp_path}/a/b/state", SCHEMA):
        pass
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "state"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_temporary_files_of_a_killed_writer_are_swept(root: Path) -> None:
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
    (root / "tasks" / ".tmp-deadbeef").write_text("half")
    newer = ss.Schema(
        "contract", version=1, collections=[*SCHEMA.collections], logs=[*SCHEMA.logs, ss.Log("more", Event)]
    )
    with ss.open_store(f"files:{root}", newer):  # an open that takes the lock sweeps
        pass
    assert not (root / "tasks" / ".tmp-deadbeef").exists()


def test_a_resurrected_old_journal_file_is_not_applied_again(root: Path) -> None:
    """A power cut can undo the unlink of journal.json after the head settled: it is stale, not pending."""
    with open_files(root) as store:
        with store.transaction():  # large: committed through journal.json
            store[TASKS].put(Task("a", title="old" + "x" * 20_000))
        store[TASKS].put(Task("a", title="newer"))
    stale = Journal(
        "tx", 1, (("tasks", "a.json", (root / "tasks" / "a.json").read_text().replace("newer", "old")),), ()
    )
    (root / ".statestore" / "journal.json").write_bytes(stale.encode())
    with open_files(root) as store:  # the probe at open finds it: older than the head, not announced
        assert store[TASKS]["a"].title == "newer"
    assert not (root / ".statestore" / "journal.json").exists()


def test_a_stale_journal_file_is_ignored_even_while_a_newer_one_is_announced(root: Path) -> None:
    """A power cut brings back an applied journal.json while the head still announces a newer large
    transaction (applied, its journal unlinked, but its settle lost): the old file must be neither
    read nor applied, and the announced one, gone, was applied whole."""
    with open_files(root, durability="full") as store:
        with store.transaction():  # T1: large, through journal.json
            store[TASKS].put(Task("a", title="old" + "x" * 20_000))
            store[TASKS].put(Task("c", title="t1"))
        t1 = Journal("t1", 1, (("tasks", "a.json", (root / "tasks" / "a.json").read_text()),), ())
        store[TASKS].put(Task("a", title="newer"))  # acknowledged
        with store.transaction():  # T2: large, applied
            store[TASKS].put(Task("b", title="y" * 20_000))
            store[TASKS].put(Task("d", title="t2"))
    head = Head.decode((root / ".statestore" / "changes").read_bytes())
    assert head is not None
    assert not head.journal_file
    unsettled = Head(head.gen, head.base, head.history, None, journal_file=True)
    (root / ".statestore" / "changes").write_bytes(unsettled.encode())  # the settle did not survive
    assert t1.gen < head.gen
    (root / ".statestore" / "journal.json").write_bytes(t1.encode())  # the unlink did not survive
    with open_files(root, mode="read") as reader:
        assert reader[TASKS]["a"].title == "newer"
        assert reader[TASKS]["d"].title == "t2"
    with open_files(root) as store:
        assert store[TASKS].get_versioned("a") == ss.Versioned(Task("a", title="newer"), 2)
        assert store[TASKS]["b"].title == "y" * 20_000
        assert store[TASKS]["d"].title == "t2"
    assert not (root / ".statestore" / "journal.json").exists()
    head = Head.decode((root / ".statestore" / "changes").read_bytes())
    assert head is not None
    assert not head.journal_file


def test_a_journal_file_no_head_announces_was_never_committed(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer killed between renaming journal.json into place and writing the head that announces
    it: the transaction never committed; readers ignore the file and the next writer deletes it."""
    with open_files(root) as store, open_files(root, mode="read") as reader:
        store[TASKS].put(Task("a", title="old"))

        def killed(self: FileStore, head: Head, *, sync: bool) -> None:
            raise KeyboardInterrupt("killed before the announcing head write")

        monkeypatch.setattr(FileStore, "_write_head", killed)
        monkeypatch.setattr(Dir, "remove", lambda self, name: False)  # killed: nothing cleans up
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store[TASKS].put(Task("a", title="new" + "x" * 20_000))
            store[TASKS].put(Task("b", title="new"))
        monkeypatch.undo()
        assert (root / ".statestore" / "journal.json").exists()
        assert reader[TASKS]["a"].title == "old"
        assert reader[TASKS].get("b") is None
    with open_files(root) as store:  # a write-mode open probes for it
        assert store[TASKS]["a"].title == "old"
        assert store[TASKS].get("b") is None
    assert not (root / ".statestore" / "journal.json").exists()


def test_reapplying_log_lines_found_in_place_still_makes_them_durable(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed after writing a committed transaction's lines but before fsyncing them."""
    with open_files(root, durability="full") as store:
        store[EVENTS].append(Event("first"))

        def killed_before_fsync(self: FileStore, log_name: str, offset: int, data: bytes) -> int:
            handle = self._log_fd(log_name, create=True)
            assert handle is not None
            os.ftruncate(handle.fd, offset)
            os.pwrite(handle.fd, data, offset)
            raise KeyboardInterrupt("killed before fsync")

        monkeypatch.setattr(FileStore, "_append", killed_before_fsync)
        with pytest.raises(KeyboardInterrupt), store.transaction():
            store[TASKS].put(Task("t1", title="paid"))
            store[EVENTS].append(Event("charged"), stream="t1")
        monkeypatch.undo()
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with open_files(root, durability="full") as store:  # recovery re-applies the journal
        assert [e.record.type for e in store[EVENTS].read()] == ["first", "charged"]
    assert str(root / "events.jsonl") in synced


@pytest.mark.parametrize(
    "data",
    [
        {"a": [1, 2.5, None, True, {"b": "c"}]},
        {"t": (1, 2)},  # a tuple: JSON makes it a list
        {"m": {1: "x"}},  # an int key: JSON makes it text
        {"n": {"deep": [[{"k": ["v"]}]]}},
    ],
)
def test_owned_json_equals_reading_the_canonical_text(data: dict[str, Any]) -> None:
    from statestore.backends.files.cache import owned_json
    from statestore.codec import dumps

    text = dumps(data)
    got = owned_json(data, text)
    assert got == json.loads(text)
    assert json.dumps(got, sort_keys=True) == json.dumps(json.loads(text), sort_keys=True)
    if isinstance(data.get("a"), list):
        assert got["a"] is not data["a"]  # a copy: the caller's record cannot change the cache


def test_a_migration_committed_but_not_applied_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from statestore.testing import _migration_app as m

    location = f"files:{tmp_path}/state"
    with ss.open_store(location, m.V1) as store:
        m.seed(store)
    real_apply = FileStore._apply

    class Killed(BaseException):
        """The process dies between the commit and the apply (nothing after it runs)."""

    def cut_short(self: FileStore, records: Any, logs: Any, prepared: Any = None) -> list[int]:
        if any(c == "." and t and '"version": 4' in t for c, _n, t in records):
            raise Killed
        return real_apply(self, records, logs, prepared)

    monkeypatch.setattr(FileStore, "_apply", cut_short)
    v4 = ss.Schema("app", version=4, collections=[m.USERS], logs=[m.NOTES4], migrations=[m.M2, m.M3, m.M4])
    with pytest.raises(Killed):
        ss.open_store(location, v4, backup=False)
    monkeypatch.setattr(FileStore, "_apply", real_apply)
    assert json.loads((tmp_path / "state" / "statestore.json").read_text())["schemas"]["app"]["version"] == 3
    # Readers take the manifest and the rewritten log from the committed journal.
    with ss.open_store(location, v4, mode="read") as store:
        m.check_v4(store)
    with ss.open_store(location, mode="read") as described:
        assert described.schemas[0].version == 4
    with ss.open_store(location, v4) as store:  # a writer finishes applying it
        m.check_v4(store)
    assert json.loads((tmp_path / "state" / "statestore.json").read_text())["schemas"]["app"]["version"] == 4


@pytest.mark.parametrize("revision", [2**63, 10**30, 0, -1])
def test_a_stored_revision_outside_64_bit_positive_is_corrupt(root: Path, revision: int) -> None:
    """A hand-edited record file whose revision no backend could hold (or below 1) is damage, by file name."""
    with open_files(root) as store:
        store[TASKS].put(Task("t1"))
        store[TASKS].put(Task("t2"))
    file = root / "tasks" / "t2.json"
    doc = json.loads(file.read_text())
    doc["_statestore"]["revision"] = revision
    file.write_text(json.dumps(doc) + "\n")
    words = re.escape(f"revision {revision} is not from 1 to 2**63 - 1")
    with open_files(root) as store:
        for read in (lambda: store[TASKS].get("t2"), store[TASKS].all, lambda: store[TASKS].put(Task("t2"))):
            with pytest.raises(ss.CorruptStoreError, match=words) as info:
                read()
            assert str(file) in str(info.value)
        assert store[TASKS].get("t1") == Task("t1")


def test_a_log_entry_that_no_longer_fits_names_its_seq_and_stream(tmp_path: Path) -> None:
    """A stored entry edited by hand to another type: the error names the entry (seq), not only its stream."""
    root = tmp_path / "s"
    with open_files(root) as store:
        for n in range(3):
            store[EVENTS].append(Event("e", n=n), stream="s")
    path = root / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["record"]["n"] = "1"
    lines[1] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))
    for read in (
        lambda s: s[EVENTS].read(),
        lambda s: list(s[EVENTS].follow(timeout=0)),
    ):
        with open_files(root, mode="read") as store, pytest.raises(ss.ValidationError) as info:
            read(store)
        assert (info.value.key, info.value.seq, info.value.path) == ("s", 2, "$.n")
        assert str(info.value).startswith("events seq 2 (stream 's') at $.n: ")


def test_an_eager_read_transaction_that_outlives_a_log_rewrite_says_the_store_moved(tmp_path: Path) -> None:
    """Without readers.lock (a read-mode store never creates it) the snapshot is eager and keeps no descriptor."""
    from statestore.testing import _migration_app as m

    location = f"files:{tmp_path}/state"
    with ss.open_store(location, m.V1) as store:
        m.seed(store)
    (tmp_path / "state" / ".statestore" / "readers.lock").unlink()
    with ss.open_store(location, m.V1, mode="read") as reader:
        with reader.transaction():
            assert len(reader[m.NOTES1]) == 2
            ss.open_store(location, m.V4, backup=False).close()
            with pytest.raises(ss.SchemaTooNewError):
                reader[m.NOTES1].read()
        with pytest.raises(ss.SchemaTooNewError):
            reader[m.NOTES1].read()
