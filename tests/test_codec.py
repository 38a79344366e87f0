"""The codec: canonical JSON, custom converters, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import attrs
import cattrs
import pytest
from cattrs.preconf.json import make_converter
from hypothesis import given

import statestore as ss
from statestore.codec import Codec, dumps
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
