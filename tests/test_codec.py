"""The codec: canonical JSON, custom converters, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import attrs
import cattrs
import pytest
from cattrs.preconf.json import make_converter
from hypothesis import given, settings
from hypothesis import strategies as st

import statestore as ss
from statestore.codec import Codec, dumps, pretty
from statestore.testing import strategies as sst
from statestore.testing.models import Task


@attrs.define
class Doc:
    id: str
    where: PurePosixPath
    n: int = 0


DOCS = ss.Collection("docs", Doc, key="id")
SCHEMA = ss.Schema("docs", version=1, collections=[DOCS])


def path_converter() -> cattrs.Converter:
    conv = make_converter()
    conv.register_unstructure_hook(PurePosixPath, str)
    conv.register_structure_hook(PurePosixPath, lambda v, _: PurePosixPath(v))
    return conv


def test_dumps_is_canonical() -> None:
    assert dumps({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_dumps_escapes_only_when_it_must() -> None:
    text = dumps({"a": "ok\ud800"})
    assert text == '{"a":"ok\\ud800"}'
    assert json.loads(text) == {"a": "ok\ud800"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_dumps_refuses_what_json_cannot_hold(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        dumps({"x": value})


def test_application_converter_is_used() -> None:
    with ss.open_store("memory:", SCHEMA, converter=path_converter()) as store:
        store[DOCS].put(Doc("a", PurePosixPath("/etc/x")))
        assert store[DOCS]["a"].where == PurePosixPath("/etc/x")
        assert [d.id for d in store[DOCS].find(where=PurePosixPath("/etc/x"))] == ["a"]


def test_a_type_without_json_form_is_refused_at_open() -> None:
    # Without a converter that knows PurePosixPath, nothing written could be read back.
    with pytest.raises(ss.SchemaError, match="field 'where' cannot be stored: PurePosixPath"):
        ss.open_store("memory:", SCHEMA)


def test_unconvertible_record_names_collection_and_key() -> None:
    with ss.open_store("memory:", SCHEMA, converter=path_converter()) as store:
        with pytest.raises(ss.ValidationError) as info:
            store[DOCS].put(Doc("a", PurePosixPath("/x"), n=float("nan")))  # type: ignore[arg-type]
        assert len(store[DOCS]) == 0
    assert info.value.what == "docs"
    assert info.value.key == "a"


def test_decode_error_names_the_field_path() -> None:
    codec = Codec(path_converter())
    with pytest.raises(ss.ValidationError) as info:
        codec.decode("docs", Doc, {"id": "a", "where": "/x", "n": "many"}, "a")
    assert (info.value.what, info.value.key, info.value.path) == ("docs", "a", "$.n")
    assert "docs key 'a' at $.n" in str(info.value)


def test_decode_error_lists_every_bad_field() -> None:
    with pytest.raises(ss.ValidationError) as info:
        Codec(path_converter()).decode("docs", Doc, {"id": 5, "n": "x"}, "k")
    message = str(info.value)
    assert "$.n" in message
    assert "$.where" in message


def test_decode_of_non_dict() -> None:
    with pytest.raises(ss.ValidationError):
        Codec().decode("docs", Doc, ["not", "a", "dict"], "k")


def test_find_value_that_cannot_convert() -> None:
    with (
        ss.open_store("memory:", SCHEMA, converter=path_converter()) as store,
        pytest.raises(ss.ValidationError) as info,
    ):
        store[DOCS].find(n=object())
    assert info.value.path == "$.n"


def _mutables(obj: object) -> list[object]:
    """Every dict, list and attrs instance reachable from ``obj``."""
    out: list[object] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            out.append(o)
            stack.extend(o.values())
        elif isinstance(o, list):
            out.append(o)
            stack.extend(o)
        elif attrs.has(type(o)):
            out.append(o)
            stack.extend(getattr(o, f.name) for f in attrs.fields(type(o)))
    return out


@given(task=sst.tasks())
def test_fresh_types_share_nothing_with_their_json(task: Task) -> None:
    codec = Codec()
    assert codec.fresh(Task)
    data, _ = codec.encode("tasks", Task, task)
    record = codec.decode("tasks", Task, data)
    inputs = {id(o) for o in _mutables(data)}
    assert not any(id(o) in inputs for o in _mutables(record))


@attrs.define
class Tree:
    id: str
    children: list[Tree] = attrs.Factory(list)
    pair: tuple[int, ...] = ()
    labels: dict[str, list[str]] = attrs.Factory(dict)


def test_what_is_fresh() -> None:
    @attrs.define
    class Loose:
        id: str
        blob: Any = None

    @attrs.define
    class Bare:
        id: str
        items: list = attrs.Factory(list)  # type: ignore[type-arg]

    codec = Codec()
    assert not codec.fresh(Loose)
    assert not codec.fresh(Bare)
    assert codec.fresh(Tree)
    assert not Codec(path_converter()).fresh(Tree)  # an application's hooks may return what they are given

    @attrs.define
    class Unresolvable:
        id: str
        other: list[Unresolvable] = attrs.Factory(list)  # a local name attrs cannot resolve later

    assert not codec.fresh(Unresolvable)


# ---------------------------------------------------------------- pretty()

_ODD_TEXT = st.sampled_from(
    ["", "\ud800", "\udfff", "a\udc00b", "\x00", "nul\x00x", '"\\', "%s", "%%", "%(x)s", "\u2028", "é"]
)
_ODD_FLOATS = st.sampled_from([1e16, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e-7, 123456789012345678.0, -1e22])
_TEXT = st.text(st.characters(exclude_categories=()), max_size=6) | _ODD_TEXT  # surrogates included
_PRETTY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _ODD_FLOATS
    | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=30,
)


def _indented(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


@settings(max_examples=300)
@given(_PRETTY_JSON)
def test_pretty_writes_what_json_dumps_writes_with_indent(data: Any) -> None:
    # pretty() writes dicts through cached per-depth layouts: the bytes must be json's, whatever the data.
    assert pretty(data) == _indented(data)
    assert pretty({"record": data, "same": data}) == _indented({"record": data, "same": data})


@settings(max_examples=40)
@given(st.lists(st.dictionaries(_TEXT, _PRETTY_JSON, max_size=4), min_size=2, max_size=6))
def test_pretty_of_dicts_sharing_and_reordering_keys(docs: list[dict[str, Any]]) -> None:
    # Same keys in another order, and the same keys with other values, reuse a layout.
    for doc in docs + [dict(reversed(list(d.items()))) for d in docs]:
        assert pretty(doc) == _indented(doc)


def test_pretty_of_deep_nesting_and_of_many_key_sets() -> None:
    for depth in (1, 46, 47, 48, 49, 60, 200):
        nested: Any = {"leaf": [1, "x", None]}
        for i in range(depth):
            nested = {"d": nested, "n": i} if i % 2 else [nested, {}, []]
        assert pretty(nested) == _indented(nested)
    for i in range(1500):  # past the layouts kept per depth: evicted ones are made again
        doc = {f"k{i}": i, "a": {f"k{i % 7}": [i]}, "z": None}
        assert pretty(doc) == _indented(doc)


class _Text(str):
    pass


class _Number(int):
    pass


def test_pretty_of_tuples_and_subclasses_is_json_dumps() -> None:
    from collections import OrderedDict

    for data in (
        (1, "a", (2, [])),
        {"a": (1, 2), "b": OrderedDict([("y", 1), ("x", _Text("t"))])},
        [_Number(5), 2.5, True, {_Text("k"): _Number(1)}],
    ):
        assert pretty(data) == _indented(data)


def test_pretty_refuses_what_json_cannot_hold() -> None:
    for bad in ({1: "int key"}, {"a": [{(1, 2): 1}]}, {"s": {1, 2}}, [object()]):
        with pytest.raises(TypeError):
            pretty(bad)
    for bad in ({"f": float("nan")}, [1, [float("inf")]], {"a": {"b": -float("inf")}}):
        with pytest.raises(ValueError, match="not JSON"):
            pretty(bad)


@attrs.define
class _Holder:
    id: str
    value: Any = None


def test_encode_without_text_gives_no_text_only_for_plain_private_json() -> None:
    """``text=False`` (Store._canonical_text): "" only where the dict may be kept as it is; same data either way."""
    codec = Codec()
    task = Task("a", tags=["x"])
    data, text = codec.encode("tasks", Task, task, "a", text=False)
    assert text == ""
    assert data == codec.encode("tasks", Task, task, "a")[0]
    # An Any field may share the caller's containers: the text comes, and the backend copies.
    holder = _Holder("a", {"k": [1]})
    assert codec.encode("h", _Holder, holder, "a", text=False) == codec.encode("h", _Holder, holder, "a")
    # An application's own converter: its hooks may return what they are given.
    own = Codec(make_converter())
    assert own.encode("tasks", Task, task, "a", text=False)[1] == dumps(data)


@settings(max_examples=100, deadline=None)
@given(sst.tasks())
def test_encode_without_text_accepts_and_refuses_the_same_records(task: Task) -> None:
    codec = Codec()
    data, text = codec.encode("tasks", Task, task, task.id, text=False)
    assert text == ""
    assert (data, dumps(data)) == codec.encode("tasks", Task, task, task.id)


class _Str(str):
    pass


_ODD = st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**63, -(2**63) - 1, (1,), _Str("s"), b"x", {1}])
_ANY_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text() | _ODD,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 3) | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=3), _ANY_JSONISH, max_size=5))
def test_plain_json_check_accepts_what_check_json_accepts(value: dict[str, Any]) -> None:
    """The loop the codec runs for ``encode(text=False)`` agrees with strict.check_json on every value."""
    from statestore.codec import _plain_dict
    from statestore.strict import Mismatch, check_json

    try:
        check_json(value)
        expected = True
    except Mismatch:
        expected = False
    assert _plain_dict(value) is expected
