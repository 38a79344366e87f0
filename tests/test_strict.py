"""The strict codec against an independent model of the type table, on every backend.

A Hypothesis property generates declared types (nested attrs classes,
Optional, unions, enums, literals, datetimes, lists, tuples, dicts, Any) and
JSON documents, some made to fit and some not. A document must be accepted
exactly when the model says it fits; what is accepted must be written back
to the same canonical bytes by every backend and be found by ``find``.
"""

from __future__ import annotations

import enum
import itertools
import math
import typing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statestore as ss
from statestore.codec import Codec, dumps
from statestore.strict import INT64_MAX, INT64_MIN, Mismatch, keep_truncated_times, parse_datetime, type_problem


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


Shade = Literal["light", "dark"]

# Timestamps with the one canonical text each is written back as.
VALID_TIMES = {
    "2024-05-17T12:34:56Z": "2024-05-17T12:34:56+00:00",
    "2024-05-17T12:34:56.5+02:00": "2024-05-17T12:34:56.500000+02:00",
    "2024-05-17T12:34:56.123456000-07:00": "2024-05-17T12:34:56.123456-07:00",
    "2024-05-17T12:34:56+05:30": "2024-05-17T12:34:56+05:30",
}
INVALID_TIMES = ["2024-05-17T12:34:56", "2024-05-17", "2024-13-01T00:00:00Z", "2024-05-17T12:34:56.123456789Z", "soon"]

_names = (f"Gen{i}" for i in itertools.count())

SCALARS: list[Any] = [str, int, float, bool, datetime, Color, Level, Shade, Any]


def types(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.sampled_from(SCALARS)
    if depth == 0:
        return leaf
    inner = types(depth - 1)
    return st.one_of(
        leaf,
        leaf,
        leaf,
        leaf,
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
        inner.map(lambda t: tuple[t, ...]),  # type: ignore[valid-type]
        inner.map(lambda t: t | None if t is not Any else typing.Optional[t]),  # noqa: UP045
        st.tuples(st.sampled_from([str, int, Color]), st.sampled_from([float, bool, Level]))
        .filter(lambda ab: ab != (int, Level))  # both JSON integers: a union a reader could not tell apart
        .map(lambda ab: typing.Union[ab[0], ab[1]]),  # noqa: UP007
        st.lists(inner, min_size=1, max_size=3).map(_record_class),
    )


def _record_class(field_types: list[Any], *, with_id: bool = False) -> type:
    fields: dict[str, Any] = {}
    if with_id:
        fields["id"] = attrs.field(type=str)
    for i, tp in enumerate(field_types):
        fields[f"f{i}"] = attrs.field(type=tp)
    return attrs.make_class(next(_names), fields)


def fits(tp: Any, v: Any) -> bool:
    """The model: the type table of statestore.strict, written out independently."""
    if tp is Any:
        return _json(v)
    if tp is str:
        return type(v) is str
    if tp is int:
        return type(v) is int and INT64_MIN <= v <= INT64_MAX
    if tp is float:
        return (type(v) is float and math.isfinite(v)) or (type(v) is int and INT64_MIN <= v <= INT64_MAX)
    if tp is bool:
        return type(v) is bool
    if tp is datetime:
        return type(v) is str and v in VALID_TIMES
    if tp in (Color, Level):
        return any(type(m.value) is type(v) and m.value == v for m in tp)
    if tp is Shade:
        return type(v) is str and v in ("light", "dark")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list or origin is tuple:
        return type(v) is list and all(fits(args[0], x) for x in v)
    if origin is dict:
        return type(v) is dict and all(fits(args[1], x) for x in v.values())
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return any(fits(a, v) if a is not type(None) else v is None for a in args)
    if attrs.has(tp):
        names = {f.name: f.type for f in attrs.fields(tp)}
        return type(v) is dict and set(v) == set(names) and all(fits(names[k], x) for k, x in v.items())
    raise AssertionError(tp)


def _json(v: Any) -> bool:
    if type(v) is int:
        return INT64_MIN <= v <= INT64_MAX
    if type(v) is float:
        return math.isfinite(v)
    if type(v) is list:
        return all(_json(x) for x in v)
    if type(v) is dict:
        return all(_json(x) for x in v.values())
    return type(v) in (str, bool, type(None))


def canonical(tp: Any, v: Any) -> Any:
    """The JSON the store writes back for a fitting ``v``: only datetimes change their text."""
    if tp is datetime:
        return VALID_TIMES[v]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list or origin is tuple:
        return [canonical(args[0], x) for x in v]
    if origin is dict:
        return {k: canonical(args[1], x) for k, x in v.items()}
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        member = next(a for a in args if (v is None if a is type(None) else fits(a, v)))
        return canonical(member, v) if member is not type(None) else None
    if attrs.has(tp):
        names = {f.name: f.type for f in attrs.fields(tp)}
        return {k: canonical(names[k], x) for k, x in v.items()}
    return v


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
    | st.sampled_from([*VALID_TIMES, *INVALID_TIMES, "red", "light", 1, 2]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)


# Values one JSON type away from fitting some declared type: what hand edits and other tools write.
TRICKY: list[Any] = [
    True,
    False,
    0,
    1,
    1.5,
    "1",
    "true",
    2**63,
    -(2**63) - 1,
    None,
    [],
    {},
    "red",
    2.0,
    float("nan"),
    float("inf"),
    "2024-05-17T12:34:56",
    ["a"],
    {"f0": 1},
]


NEAR: dict[Any, list[Any]] = {
    int: [True, False, 1.0, 1.5, "1", 2**63, -(2**63) - 1],
    float: [float("inf"), float("-inf"), float("nan"), "1.5", True, 2**63],
    bool: [0, 1, "true", "false", None],
    str: [1, None, ["a"], True],
    datetime: [*INVALID_TIMES, 1],
    Color: ["RED", "green", 1],
    Level: [True, 1.0, "1", 3],
    Shade: ["Light", 1, None],
}


@st.composite
def fitting(draw: st.DrawFn, tp: Any, tricky: bool = False) -> Any:
    """A JSON value that fits ``tp``; with ``tricky``, some leaves are near misses instead."""
    if tricky and draw(st.booleans()):
        return draw(st.sampled_from(NEAR.get(tp, TRICKY)))
    if tp is Any:
        return draw(json_values.filter(_json))
    if tp is str:
        return draw(st.text(max_size=6))
    if tp is int:
        return draw(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
    if tp is float:
        return draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**60), 2**60))
    if tp is bool:
        return draw(st.booleans())
    if tp is datetime:
        return draw(st.sampled_from(sorted(VALID_TIMES)))
    if tp in (Color, Level):
        return draw(st.sampled_from([m.value for m in tp]))
    if tp is Shade:
        return draw(st.sampled_from(["light", "dark"]))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list or origin is tuple:
        return draw(st.lists(fitting(args[0], tricky), max_size=3))
    if origin is dict:
        return draw(st.dictionaries(st.text(max_size=4), fitting(args[1], tricky), max_size=3))
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        member = draw(st.sampled_from(args))
        return None if member is type(None) else draw(fitting(member, tricky))
    if attrs.has(tp):
        return {f.name: draw(fitting(f.type, tricky)) for f in attrs.fields(tp)}
    raise AssertionError(tp)


@st.composite
def documents(draw: st.DrawFn) -> tuple[type, dict[str, Any]]:
    """A record class (``id`` plus generated fields) and a document for it: fitting, or nearly."""
    field_types = draw(st.lists(types(), min_size=1, max_size=3))
    cls = _record_class(field_types, with_id=True)
    doc: dict[str, Any] = {"id": draw(st.text(min_size=1, max_size=5))}
    for f in attrs.fields(cls)[1:]:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # a required field missing
        doc[f.name] = draw(json_values) if choice == 1 else draw(fitting(f.type, tricky=choice < 7))
    if draw(st.integers(0, 9)) == 0:
        doc["undeclared"] = 1
    return cls, doc


CODEC = Codec()


@settings(max_examples=500, deadline=None)
@given(documents())
def test_a_document_is_accepted_exactly_when_it_fits(case: tuple[type, dict[str, Any]]) -> None:
    cls, doc = case
    expected = fits(cls, doc)
    try:
        record = CODEC.decode("things", cls, doc, doc["id"])
    except ss.ValidationError:
        assert not expected, f"refused a fitting document {doc!r} for {cls}"
        return
    assert expected, f"accepted a document that does not fit: {doc!r} for {cls}"
    data, text = CODEC.encode("things", cls, record, doc["id"])
    assert text == dumps(canonical(cls, doc))
    assert CODEC.decode("things", cls, data, doc["id"]) == record


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("strict")
    return [f"sqlite:{root}/db", f"files:{root}/files", "memory:"]


_stores = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents().filter(lambda c: fits(c[0], c[1])))
def test_what_is_accepted_round_trips_on_every_backend(backends: list[str], case: tuple[type, dict[str, Any]]) -> None:
    cls, doc = case
    record = CODEC.decode("things", cls, doc, doc["id"])
    scalar = next((f.name for f in attrs.fields(cls)[1:] if f.type in (str, int, bool, Color, Level, Shade)), None)
    coll = ss.Collection("things", cls, key="id", indexes=[scalar] if scalar else [])
    n = next(_stores)
    for base in backends:
        location = base if base == "memory:" else f"{base}{n}{'.db' if base.startswith('sqlite') else ''}"
        with ss.open_store(location, ss.Schema("strict", version=1, collections=[coll])) as store:
            store[coll].put(record)
            got = store._get(coll, doc["id"])
            assert got is not None
            assert dumps(got[1]) == dumps(canonical(cls, doc))
            assert store[coll][doc["id"]] == record
            if scalar is not None:
                assert store[coll].find(**{scalar: getattr(record, scalar)}) == [record]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T12:34:56Z", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone.utc)),
        ("2024-05-17t12:34:56z", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone.utc)),
        ("2024-05-17T12:34:56.1Z", datetime(2024, 5, 17, 12, 34, 56, 100000, tzinfo=timezone.utc)),
        ("2024-05-17T12:34:56,25Z", datetime(2024, 5, 17, 12, 34, 56, 250000, tzinfo=timezone.utc)),
        ("2024-05-17T12:34:56.123400000Z", datetime(2024, 5, 17, 12, 34, 56, 123400, tzinfo=timezone.utc)),
        ("2024-05-17T12:34:56-0330", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone(-timedelta(hours=3.5)))),
    ],
)
def test_timestamps_parse_the_same_on_every_python(text: str, expected: datetime) -> None:
    got = parse_datetime(text)
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-17T12:34:56",
        "2024-05-17",
        "2024-02-30T00:00:00Z",
        "2024-05-17T12:34:56+24:00",
        "2024-05-17T25:00:00Z",
        "2024-05-17T12:34:56.1234567Z",
        " 2024-05-17T12:34:56Z",
        "2024-05-17T12:34:56Z\n",
    ],
)
def test_timestamps_that_are_refused(text: str) -> None:
    with pytest.raises(Mismatch):
        parse_datetime(text)


def test_nanoseconds_are_cut_only_where_counted() -> None:
    with keep_truncated_times() as cut:
        got = parse_datetime("2024-05-17T12:34:56.123456789Z")
    assert got.microsecond == 123456
    assert cut == ["2024-05-17T12:34:56.123456789Z"]
    with pytest.raises(Mismatch, match="9 fractional digits would be cut"):
        parse_datetime("2024-05-17T12:34:56.123456789Z")


@pytest.mark.parametrize(
    ("tp", "problem"),
    [
        (object, "not a JSON type"),
        (bytes, "no JSON form"),
        (dict[int, str], "only dict[str, ...]"),
        (list[object], "not a JSON type"),
        (Path, "no JSON form statestore knows"),
    ],
)
def test_types_without_a_json_form(tp: Any, problem: str) -> None:
    got = type_problem(tp)
    assert got is not None
    assert problem in got


def test_an_applications_converter_may_serve_its_own_types() -> None:
    assert type_problem(Path, custom_ok=True) is None
    assert type_problem(object, custom_ok=True) is not None


def _wrappers(tp: Any) -> list[tuple[Any, Any]]:
    """``tp`` as a field of its own and nested in each container, with how to nest a value the same way."""
    inner = _record_class([tp])
    return [
        (tp, lambda v: v),
        (list[tp], lambda v: ["ok", v] if tp is str else [v]),  # type: ignore[valid-type]
        (dict[str, tp], lambda v: {"k": v}),  # type: ignore[valid-type]
        (typing.Optional[tp], lambda v: v),  # noqa: UP045
        (inner, lambda v: {"f0": v}),
    ]


@pytest.mark.parametrize("tp", list(NEAR))
def test_every_near_miss_is_refused_wherever_it_is(tp: Any) -> None:
    for declared, nest in _wrappers(tp):
        cls = _record_class([declared], with_id=True)
        for value in NEAR[tp]:
            if value is None and typing.get_origin(declared) is typing.Union:
                continue  # None fits an Optional
            doc = {"id": "a", "f0": nest(value)}
            assert not fits(cls, doc)
            with pytest.raises(ss.ValidationError) as info:
                CODEC.decode("things", cls, doc, "a")
            assert info.value.path.startswith("$.f0"), info.value


@pytest.mark.parametrize("tp", list(NEAR))
def test_every_fitting_value_is_taken_as_it_is(tp: Any) -> None:
    examples = {
        int: [0, -(2**63), 2**63 - 1],
        float: [0.5, 3, -1e300],
        bool: [True, False],
        str: ["", "\0", "é"],
        datetime: list(VALID_TIMES),
        Color: ["red"],
        Level: [1, 2],
        Shade: ["dark"],
    }
    for declared, nest in _wrappers(tp):
        cls = _record_class([declared], with_id=True)
        for value in examples[tp]:
            doc = {"id": "a", "f0": nest(value)}
            record = CODEC.decode("things", cls, doc, "a")
            assert CODEC.encode("things", cls, record, "a")[1] == dumps(canonical(cls, doc))


# ---------------------------------------------------------------- found by review


@attrs.define
class WithHidden:
    id: str
    created_by: str = attrs.field(init=False, default="me")


@attrs.define
class Cat:
    name: str


@attrs.define
class Dog:
    name: str


@attrs.define
class Lizard:
    name: str
    scales: int


@attrs.define
class Snake:
    name: str
    length: float


@attrs.define
class Node:
    name: str
    children: list[Node] = attrs.Factory(list)


@attrs.define
class Inner:
    n: int


@attrs.define
class Bag:
    by_name: dict[str, Inner]
    items: tuple[Inner, ...] = ()


def test_a_field_a_reader_cannot_set_is_refused_when_declared() -> None:
    with pytest.raises(ss.SchemaError, match="field 'created_by' has init=False"):
        ss.Collection("things", WithHidden, key="id")


@pytest.mark.parametrize(
    ("union", "shared"),
    [
        (Cat | Dog, "object"),
        (datetime | str, "string"),
        (tuple[int, int] | list[int], "array"),
        (Level | int, "integer"),
        (Color | str, "string"),
        (typing.Any | str, "Any holds"),
    ],
)
def test_unions_a_reader_could_not_tell_apart_are_refused(union: Any, shared: str) -> None:
    problem = type_problem(union)
    assert problem is not None
    assert shared in problem


@pytest.mark.parametrize(
    "union",
    [Lizard | Snake, int | float, str | int | None, Color | Level, typing.Optional[typing.Any], list[int] | str],  # noqa: UP045,
)
def test_unions_whose_members_store_apart_are_taken(union: Any) -> None:
    assert type_problem(union) is None


@pytest.mark.parametrize(
    ("tp", "doc", "path"),
    [
        (Node, {"name": "r", "children": [{"name": "a"}, {"name": "b"}, {"name": 7}]}, "$.children[2].name"),
        (Bag, {"by_name": {"x": {"n": 1}, "y": {"n": "2"}}}, "$.by_name.y.n"),
        (Bag, {"by_name": {}, "items": [{"n": 1}, {"n": "2"}]}, "$.items[1].n"),
        (Node, {"name": "r", "children": [{"name": "b", "children": [{"name": 3}]}]}, "$.children[0].children[0].name"),
    ],
)
def test_the_path_names_the_element_inside_a_container_of_classes(tp: Any, doc: Any, path: str) -> None:
    with pytest.raises(ss.ValidationError) as info:
        CODEC.decode("things", tp, doc, "k")
    assert info.value.path == path


def test_an_offset_iso_8601_cannot_write_is_refused_on_write() -> None:
    @attrs.define
    class When:
        at: datetime

    lmt = timezone(timedelta(minutes=19, seconds=32))  # Amsterdam's local mean time, before 1909
    with pytest.raises(ss.ValidationError, match="whole minutes"):
        CODEC.encode("things", When, When(datetime(1900, 1, 1, tzinfo=lmt)))


@pytest.mark.parametrize("text", ["2024-01-01T00:00:00+05:99", "2024-01-01T00:00:00+00:60"])
def test_offset_minutes_past_59_are_refused(text: str) -> None:
    with pytest.raises(Mismatch, match="minutes from 00 to 59"):
        parse_datetime(text)


@attrs.define
class _Unsorted:
    zeta: int
    alpha: str
    mid: list[str]
    beta: bool = False


def test_records_are_unstructured_in_key_order_whatever_the_field_order() -> None:
    """The fast unstructure builds its dict with sorted keys (the canonical text then sorts a sorted list)."""
    data, text = Codec().encode("t", _Unsorted, _Unsorted(3, "a", ["x"], True))
    assert list(data) == ["alpha", "beta", "mid", "zeta"]
    assert data == {"zeta": 3, "alpha": "a", "mid": ["x"], "beta": True}
    assert text == dumps(data)
