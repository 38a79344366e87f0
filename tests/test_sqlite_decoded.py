"""SQLite's one-pass find (backends/sqlite/reading.py: _scan_decoded): as strict as decoding strictly, and faster.

A plain-equality find reads stored text with the plain JSON scanner and the
codec's counting structurer, and trusts the result only when the quotes in
the text are twice the strings the decoded record holds. These tests check
that it answers exactly as ``_scan`` followed by ``codec.decode_rows`` does
(records and errors), on hand-made damage and on Hypothesis-made texts
(duplicate members, escaped quotes, whitespace, nested objects, lists of
objects), and that clean records skip the strict decoder.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import statestore as ss
from statestore.backends import rawjson
from statestore.strict.counted import counted_structurer


@attrs.define
class Who:
    name: str
    email: str
    tags: list[str]


@attrs.define
class Rec:
    id: str
    kind: str
    n: int
    score: float
    ok: bool
    tags: list[str]
    nums: list[float]
    who: Who
    at: dt.datetime
    maybe: str | None
    count: float | None
    note: str = ""


@attrs.define
class Loose:
    id: str
    extra: Any


RECS = ss.Collection("recs", Rec, key="id", indexes=["kind"])
SCHEMA = ss.Schema("decoded", version=1, collections=[RECS])
AT = dt.datetime(2024, 5, 17, 12, 34, 56, 123456, tzinfo=dt.timezone.utc)


def rec(i: int, kind: str = "a", note: str = "") -> Rec:
    maybe, count = (f"m{i}" if i % 2 else None), (i / 2 if i % 3 else None)
    who = Who(f"n{i}", "e@x", [])
    return Rec(f"r{i}", kind, i, i / 4, i % 2 == 0, [f"t{i}", "u"], [1.5, -2.0], who, AT, maybe, count, note)


@pytest.fixture
def loc(tmp_path: Path) -> str:
    location = f"sqlite:{tmp_path}/s.db"
    with ss.open_store(location, SCHEMA) as store:
        for i in range(4):
            store[RECS].put(rec(i, "a" if i % 2 else "b"))
    return location


def set_text(loc: str, key: str, text: str) -> None:
    con = sqlite3.connect(loc.split(":", 1)[1], isolation_level=None)
    con.execute("UPDATE recs SET data=? WHERE key=?", (text, key))
    con.close()


def stored_text(loc: str, key: str) -> str:
    con = sqlite3.connect(loc.split(":", 1)[1], isolation_level=None)
    (text,) = con.execute("SELECT data FROM recs WHERE key=?", (key,)).fetchone()
    con.close()
    return str(text)


def two_steps(store: Any, where: dict[str, Any]) -> Any:
    """What a find answered before the one-pass path: ``_scan``, then ``codec.decode_rows``."""
    return store.codec.decode_rows("recs", Rec, store._scan(RECS, where))


def get_two_steps(store: Any, key: str) -> Any:
    """What a get answered before the one-pass path: ``_get``, then ``codec.decode``."""
    got = store._get(RECS, key)
    return None if got is None else store.codec.decode("recs", Rec, got[1], key)


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ss.StateStoreError as exc:
        return type(exc).__name__, str(exc)


def test_the_bench_record_and_this_one_have_a_counting_structurer() -> None:
    assert counted_structurer(Rec) is not None
    assert ss.Codec().counted(Rec) is not None
    # Not for a field it cannot count without walking it (Any), nor with an application's own converter.
    assert counted_structurer(Loose) is None
    assert ss.Codec(ss.Codec().converter).counted(Rec) is None


def test_clean_records_skip_the_strict_decoder(loc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    scan = rawjson.SCAN

    def counting(text: str, at: int) -> Any:
        calls.append(text)
        return scan(text, at)

    monkeypatch.setattr(rawjson, "SCAN", counting)
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        calls.clear()  # the stored schema descriptions, read while opening
        assert [r.id for r in store[RECS].find(kind="a")] == ["r1", "r3"]
        assert [r.id for r in store[RECS].find()] == ["r0", "r1", "r2", "r3"]
        assert store[RECS].get("r2") == rec(2, "b")
        assert store[RECS].get_versioned("r2") == ss.Versioned(rec(2, "b"), 1)
        assert calls == []
        # A record whose text holds an escaped quote cannot be proven by counting: the strict way reads it.
        with ss.open_store(loc, SCHEMA) as writer:
            writer[RECS].put(rec(3, "a", note='say "hi"'))
        calls.clear()
        assert [r.note for r in store[RECS].find(kind="a")] == ["", 'say "hi"']
        assert len(calls) == 1
        assert '\\"hi\\"' in calls[0]


DAMAGE = {
    "duplicate": ('"kind": "a", "kind": "a"', "duplicate member 'kind'"),
    "duplicate-other-value": ('"kind": "a", "n": 3, "n": 4', "duplicate member 'n'"),
    "duplicate-number": ('"kind": "a", "n": 3, "n": 3', "duplicate member 'n'"),
    "duplicate-null": ('"kind": "a", "count": null, "count": null', "duplicate member 'count'"),
    "nested-duplicate": ('"kind": "a", "who": {"name": "x", "name": "y", "email": "e", "tags": []}', "'name'"),
    "duplicate-list": ('"kind": "a", "who": {"name": "x", "email": "e", "tags": [], "tags": ["q"]}', "'tags'"),
    "out-of-range": ('"kind": "a", "score": 1e400', "1e400"),
    "out-of-range-in-list": ('"kind": "a", "nums": [1.0, -1E+309]', "-1E+309"),
    "out-of-range-optional": ('"kind": "a", "count": 1e400', "1e400"),
    "duplicate-optional": ('"kind": "a", "maybe": null, "maybe": "x"', "duplicate member 'maybe'"),
}


def damaged(loc: str, key: str, members: str) -> str:
    """The stored text of ``key`` with ``members`` put first (a later duplicate of them is dropped by JSON)."""
    text = stored_text(loc, key)
    value = json.loads(text)
    for name in json.loads("{" + members.replace("NaN", "0").replace("1e400", "0").replace("-1E+309", "0") + "}"):
        value.pop(name, None)
    return "{" + members + ", " + json.dumps(value)[1:]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("key", ["r3", "r0"])  # r0's optional fields are null, r3's are not
def test_damage_is_a_corrupt_store_error_naming_table_and_key(loc: str, damage: str, key: str) -> None:
    members, words = DAMAGE[damage]
    set_text(loc, key, damaged(loc, key, members))
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        for where in ({"kind": "a"}, {}):
            with pytest.raises(ss.CorruptStoreError) as info:
                store[RECS].find(**where)
            assert words in str(info.value)
            assert "'recs'" in str(info.value)
            assert f"'{key}'" in str(info.value)
            assert outcome(lambda w=where: store[RECS].find(**w)) == outcome(lambda w=where: two_steps(store, w))
        for read in (store[RECS].get, store[RECS].get_versioned):
            with pytest.raises(ss.CorruptStoreError) as info:
                read(key)
            assert words in str(info.value)
            assert f"'{key}'" in str(info.value)
        assert outcome(lambda: store[RECS].get(key)) == outcome(lambda: get_two_steps(store, key))


def test_damage_in_a_later_row_wins_over_a_record_that_does_not_fit(loc: str) -> None:
    # Two steps: _scan reports stored damage in any row before decode_rows sees the record that does not fit.
    set_text(loc, "r1", stored_text(loc, "r1").replace('"n":1,', '"n":"1",'))
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        with pytest.raises(ss.ValidationError) as unfit:
            store[RECS].find(kind="a")
        assert "r1" in str(unfit.value)
        assert outcome(lambda: store[RECS].find(kind="a")) == outcome(lambda: two_steps(store, {"kind": "a"}))
    set_text(loc, "r3", damaged(loc, "r3", DAMAGE["duplicate"][0]))
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        with pytest.raises(ss.CorruptStoreError, match="duplicate member"):
            store[RECS].find(kind="a")
        assert outcome(lambda: store[RECS].find(kind="a")) == outcome(lambda: two_steps(store, {"kind": "a"}))


# ---------------------------------------------------------------- Hypothesis: texts made to fool the count

_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e400", "-1E+309", "1.5e308", "0.0"]).map(lambda s: ("raw", s)),
    st.text(alphabet='ab"\\/é\u2028\x00', max_size=4),
)
_WS = st.sampled_from(["", " ", "\n", "\t ", "  "])


@st.composite
def _spelled(draw: st.DrawFn, value: Any) -> str:
    """``value`` (pairs lists for objects) as JSON text, with random whitespace and string escapes."""
    if isinstance(value, tuple) and value[0] == "raw":
        return str(value[1])
    if isinstance(value, tuple) and value[0] == "obj":
        parts = []
        for name, member in value[1]:
            parts.append(draw(_WS) + draw(_spelled(name)) + draw(_WS) + ":" + draw(_WS) + draw(_spelled(member)))
        return "{" + ",".join(parts) + draw(_WS) + "}"
    if isinstance(value, list):
        return "[" + ",".join(draw(_WS) + draw(_spelled(v)) for v in value) + draw(_WS) + "]"
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch == '"':
                out.append(draw(st.sampled_from(['\\"', "\\u0022"])))
            elif ch == "\\":
                out.append("\\\\")
            elif ch == "/" and draw(st.booleans()):
                out.append("\\/")
            else:
                out.append(json.dumps(ch)[1:-1] if draw(st.booleans()) else json.dumps(ch, ensure_ascii=False)[1:-1])
        return '"' + "".join(out) + '"'
    return json.dumps(value)


def _as_pairs(value: Any) -> Any:
    if isinstance(value, dict):
        return ("obj", [(k, _as_pairs(v)) for k, v in value.items()])
    if isinstance(value, list):
        return [_as_pairs(v) for v in value]
    return value


_ANY = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(st.sampled_from(["a", "name", "kind", 'q"']), inner), max_size=3).map(lambda p: ("obj", p)),
    ),
    max_leaves=6,
)


@st.composite
def _mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` (pairs form) with a few members duplicated, replaced, dropped or added, at any depth."""
    if isinstance(base, tuple) and base[0] == "obj":
        pairs = [(name, draw(_mutated(member))) for name, member in base[1]]
        for _ in range(draw(st.integers(0, 2))):
            op = draw(st.sampled_from(["dup", "dup-same", "replace", "drop", "add"]))
            if not pairs and op != "add":
                continue
            at = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
            if op == "dup":
                pairs.insert(draw(st.integers(0, len(pairs))), (pairs[at][0], draw(_ANY)))
            elif op == "dup-same":
                pairs.insert(draw(st.integers(0, len(pairs))), pairs[at])
            elif op == "replace":
                pairs[at] = (pairs[at][0], draw(_ANY))
            elif op == "drop":
                del pairs[at]
            else:
                pairs.insert(at, (draw(st.sampled_from(["extra", "kind", "who"])), draw(_ANY)))
        return ("obj", pairs)
    if isinstance(base, list) and base and draw(st.integers(0, 3)) == 0:
        return [*base, draw(_ANY)]
    return base


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_one_pass_find_answers_as_the_two_steps_do(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    loc = f"sqlite:{tmp_path_factory.mktemp('h')}/s.db"
    codec = ss.Codec()
    with ss.open_store(loc, SCHEMA) as store:
        for i in range(3):
            store[RECS].put(rec(i, "a", note=data.draw(st.text(alphabet='x"\\ ', max_size=3))))
    texts = []
    for i in range(3):
        value = codec.encode("recs", Rec, rec(i, "a"))[0]
        # Mostly without a quote: a text with an escaped quote always goes the strict way.
        value["note"] = data.draw(st.sampled_from(["", "ab", "a/b\u2028", 'say "hi"', "back\\slash"]))
        value["who"]["tags"] = data.draw(st.lists(st.sampled_from(["c", "", 'c"']), max_size=2))
        base = _as_pairs(value)
        mutated = data.draw(_mutated(base)) if data.draw(st.booleans()) else base
        texts.append(data.draw(_spelled(mutated)))
    for i, text in enumerate(texts):
        set_text(loc, f"r{i}", text)
    with ss.open_store(loc, SCHEMA, mode="read") as store:
        assert outcome(lambda: store[RECS].find(kind="a")) == outcome(lambda: two_steps(store, {"kind": "a"}))
        assert outcome(lambda: store[RECS].find()) == outcome(lambda: two_steps(store, {}))
        for i in range(3):
            assert outcome(lambda k=f"r{i}": store[RECS].get(k)) == outcome(lambda k=f"r{i}": get_two_steps(store, k))


@attrs.define
class Keyword:
    a: str
    b: int = attrs.field(kw_only=True)
    c: list[str] = attrs.Factory(list)


def test_the_counting_structurer_builds_what_the_strict_converter_builds_or_declines() -> None:
    codec = ss.Codec()
    data = codec.encode("recs", Rec, rec(5, note="n"))[0]
    text = json.dumps(data)
    counted = counted_structurer(Rec)
    assert counted is not None
    assert counted(json.loads(text), text.count('"')) == codec.decode("recs", Rec, json.loads(text)) == rec(5, note="n")
    assert counted(json.loads(text), text.count('"') + 2) is None  # a string more in the text than in the dict
    changes = [{"score": float("inf")}, {"nums": [float("-inf")]}, {"n": 2**63}, {"extra": 1}, {"ok": 1}]
    changes += [{"count": float("inf")}, {"maybe": 1}, {"count": "1"}]
    for change in changes:
        assert counted({**json.loads(text), **change}, text.count('"')) is None, change
    missing = json.loads(text)
    del missing["note"]  # a field with a default, left out: the strict way fills it
    assert counted(missing, text.count('"') - 4) is None
    keyword = counted_structurer(Keyword)
    assert keyword is not None
    assert keyword({"a": "x", "b": 1, "c": ["y", "z"]}, 2 * (3 + 3)) == Keyword("x", b=1, c=["y", "z"])
