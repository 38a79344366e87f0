"""The file backend's one-pass get (backends/files/decoding.py): as strict as reading strictly, and faster.

A point read of a record file (``get``, and the read ``update`` makes) reads
it with the plain JSON scanner and the codec's counting structurer, and
trusts the result only when the quotes in the file are twice the strings
the decoded document holds (its ``_statestore`` member included). These
tests check that it answers exactly as ``_get`` followed by ``codec.decode``
does (records and errors), on hand-made damage and on Hypothesis-made files
(duplicate members, escaped quotes, whitespace, nested objects, a damaged
``_statestore`` member), outside and inside a write transaction, and that
clean records skip the strict decoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import statestore as ss
from statestore.backends import rawjson
from statestore.backends.files import FileStore
from test_sqlite_decoded import DAMAGE, RECS, SCHEMA, _as_pairs, _mutated, _spelled, outcome, rec


def open_files(root: Path, **kw: Any) -> FileStore:
    store = ss.open_store(f"files:{root}", SCHEMA, **kw)
    assert isinstance(store, FileStore)
    return store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "s"
    with open_files(root) as store:
        for i in range(4):
            store[RECS].put(rec(i, "a" if i % 2 else "b"))
    return root


def record_file(root: Path, key: str) -> Path:
    return root / "recs" / f"{key}.json"


def get_two_steps(store: Any, key: str) -> Any:
    """What a get answered before the one-pass path: ``_get``, then ``codec.decode``."""
    got = store._get(RECS, key)
    return None if got is None else store.codec.decode("recs", type(rec(0)), got[1], key)


def both(store: FileStore, key: str) -> tuple[Any, Any]:
    """(the get's outcome, the two steps' outcome), outside a transaction and inside a write transaction."""
    now = outcome(lambda: store[RECS].get_versioned(key))
    two = outcome(lambda: _versioned(store, key))
    return now, two


def _versioned(store: FileStore, key: str) -> Any:
    got = store._get(RECS, key)
    if got is None:
        return None
    return ss.Versioned(store.codec.decode("recs", type(rec(0)), got[1], key), got[0])


def test_clean_records_skip_the_strict_decoder(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    scan = rawjson.SCAN

    def counting(text: str, at: int) -> Any:
        calls.append(text)
        return scan(text, at)

    monkeypatch.setattr(rawjson, "SCAN", counting)
    with open_files(root) as store:
        store[RECS].put(rec(0, "b"))  # (its index upkeep reads the files the last writer's line did not carry)
        calls.clear()
        assert store[RECS].get("r2") == rec(2, "b")
        assert store[RECS].get_versioned("r2") == ss.Versioned(rec(2, "b"), 1)
        store[RECS].update("r1", lambda r: attrs.evolve(r, n=10))  # its read, inside a write transaction
        with store.transaction():
            assert store[RECS].get("r1") == attrs.evolve(rec(1, "a"), n=10)
        assert calls == []
        # A record whose text holds an escaped quote cannot be proven by counting: the strict way reads it.
        store[RECS].put(rec(3, "a", note='say "hi"'))
        calls.clear()
        assert store[RECS].get("r3") == rec(3, "a", note='say "hi"')
        assert len(calls) == 1
        assert '\\"hi\\"' in calls[0]


def damaged(root: Path, key: str, members: str) -> str:
    """The record file of ``key`` with ``members`` put first (a later duplicate of them is dropped by JSON)."""
    value = json.loads(record_file(root, key).read_text())
    for name in json.loads("{" + members.replace("1e400", "0").replace("-1E+309", "0") + "}"):
        value.pop(name, None)
    return "{" + members + ", " + json.dumps(value)[1:]


META_DAMAGE = {
    "duplicate-meta": '"_statestore": {"key": "K", "revision": 1}',
    "duplicate-revision": '"_statestore": {"key": "K", "revision": 1, "revision": 1}',
    "duplicate-key": '"_statestore": {"key": "K", "key": "K", "revision": 1}',
    "revision-out-of-range": '"_statestore": {"key": "K", "revision": 1e400}',
    "revision-float": '"_statestore": {"key": "K", "revision": 1.0}',
    "revision-zero": '"_statestore": {"key": "K", "revision": 0}',
    "revision-past-the-last": '"_statestore": {"key": "K", "revision": 9223372036854775808}',
    "revision-bool": '"_statestore": {"key": "K", "revision": true}',
    "key-int": '"_statestore": {"key": 3, "revision": 1}',
    "key-other": '"_statestore": {"key": "r9", "revision": 1}',
    "extra-member": '"_statestore": {"key": "K", "revision": 1, "x": "y"}',
    "missing-key": '"_statestore": {"revision": 1, "x": "K"}',
    "not-an-object": '"_statestore": ["K", 1]',
}


@pytest.mark.parametrize("damage", sorted(DAMAGE) + sorted(META_DAMAGE))
@pytest.mark.parametrize("key", ["r3", "r0"])  # r0's optional fields are null, r3's are not
def test_damage_is_reported_as_the_strict_way_reports_it(root: Path, damage: str, key: str) -> None:
    if damage in DAMAGE:
        text = damaged(root, key, DAMAGE[damage][0])
    else:
        value = json.loads(record_file(root, key).read_text())
        if damage != "duplicate-meta":
            del value["_statestore"]
        text = "{" + META_DAMAGE[damage].replace('"K"', json.dumps(key)) + ", " + json.dumps(value, indent=2)[1:]
    record_file(root, key).write_text(text)
    with open_files(root) as store:
        now, two = both(store, key)
        assert now == two
        # (A member the strict way does not look at is no damage to it: read as before.)
        assert now[0] == ("ok" if damage == "extra-member" else "CorruptStoreError"), now
        with store.transaction():
            assert both(store, key) == (now, now)


# ---------------------------------------------------------------- Hypothesis: files made to fool the count


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_one_pass_get_answers_as_the_two_steps_do(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("h") / "s"
    with open_files(root) as store:
        for i in range(3):
            store[RECS].put(rec(i, "a"))
    texts = []
    for i in range(3):
        value = json.loads(record_file(root, f"r{i}").read_text())
        # Mostly without a quote: a text with an escaped quote always goes the strict way.
        value["note"] = data.draw(st.sampled_from(["", "ab", "a/b\u2028", 'say "hi"', "back\\slash"]))
        value["who"]["tags"] = data.draw(st.lists(st.sampled_from(["c", "", 'c"']), max_size=2))
        value["_statestore"]["key"] = data.draw(st.sampled_from([f"r{i}", f"r{i}", "r9", i, 'r"']))
        value["_statestore"]["revision"] = data.draw(st.sampled_from([1, 1, 7, 0, -1, 2**63, 1.5, "1", None]))
        base = _as_pairs(value)
        mutated = data.draw(_mutated(base)) if data.draw(st.booleans()) else base
        texts.append(data.draw(_spelled(mutated)) + data.draw(st.sampled_from(["\n", "", " \n", "\n\n", "x"])))
    for i, text in enumerate(texts):
        record_file(root, f"r{i}").write_bytes(text.encode("utf-8", "surrogatepass"))
    with open_files(root, mode="read") as store:
        for i in range(3):
            now, two = both(store, f"r{i}")
            assert now == two
    with open_files(root) as store, store.transaction():
        for i in range(3):
            now, two = both(store, f"r{i}")
            assert now == two
