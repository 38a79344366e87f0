"""Records are exactly what was declared: nothing converted, nothing dropped, on every backend."""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.codec import dumps
from statestore.testing._common import task as _task
from statestore.testing.models import (
    ACCOUNTS,
    EVENTS,
    SETTINGS,
    TASKS,
    Account,
    Event,
    Meta,
    Priority,
    Setting,
    Task,
)

# (field, value of the wrong type, what the error says is expected)
WRONG_WRITES: list[tuple[str, Any, str]] = [
    ("title", 123, "expected str"),
    ("tags", "notalist", "expected list[str]"),
    ("tags", ["a", 1], "expected str"),
    ("tags", ("a", "b"), "expected list[str]"),
    ("points", True, "expected int"),
    ("points", 3.9, "expected int"),
    ("points", "42", "expected int"),
    ("points", 2**63, "from -2**63 to 2**63-1"),
    ("points", -(2**63) - 1, "from -2**63 to 2**63-1"),
    ("ratio", float("nan"), "finite"),
    ("ratio", float("inf"), "finite"),
    ("ratio", "1.5", "expected float"),
    ("done", "false", "expected bool"),
    ("done", 1, "expected bool"),
    ("due", datetime(2024, 5, 17, 12, 0), "timezone"),
    ("due", "2024-05-17T12:00:00Z", "expected a datetime"),
    ("priority", "low", "Priority member"),
    ("meta", {"owner": "x"}, "a Meta"),
]

# A stored document (hand-edited, or written by another tool) and what reading it says.
WRONG_STORED: list[tuple[dict[str, Any], str, str]] = [
    ({"done": "false"}, "$.done", "expected bool"),
    ({"done": "true"}, "$.done", "expected bool"),
    ({"points": 3.9}, "$.points", "expected int"),
    ({"points": True}, "$.points", "expected int"),
    ({"points": "42"}, "$.points", "expected int"),
    ({"title": ["a", "b"]}, "$.title", "expected str"),
    ({"tags": "abc"}, "$.tags", "expected list[str]"),
    ({"tags": ["a", None]}, "$.tags[1]", "expected str"),
    ({"priority": "medium"}, "$.priority", "expected Priority"),
    ({"meta": {"owner": 3}}, "$.meta.owner", "expected str"),
    ({"meta": {"labels": {"a": 1}}}, "$.meta.labels.a", "expected str"),
    ({"due": "2024-05-17T12:34:56"}, "$.due", "ISO 8601 timestamp with Z or an offset"),
    ({"due": "2024-05-17"}, "$.due", "ISO 8601 timestamp with Z or an offset"),
    ({"due": "2024-05-17T12:34:56.123456789Z"}, "$.due", "at most microseconds"),
    ({"colour": "red"}, "$", "colour"),
    ({"meta": {"owner": "", "extra": 1}}, "$.meta", "extra"),
]

# Timestamps other tools write, and the instant each one is.
TIMESTAMPS: list[tuple[str, datetime]] = [
    ("2024-05-17T12:34:56Z", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone.utc)),
    ("2024-05-17T12:34:56.1Z", datetime(2024, 5, 17, 12, 34, 56, 100000, tzinfo=timezone.utc)),
    ("2024-05-17T12:34:56.123Z", datetime(2024, 5, 17, 12, 34, 56, 123000, tzinfo=timezone.utc)),
    ("2024-05-17T12:34:56.12345+00:00", datetime(2024, 5, 17, 12, 34, 56, 123450, tzinfo=timezone.utc)),
    (
        "2024-05-17T12:34:56.123456000+02:00",
        datetime(2024, 5, 17, 12, 34, 56, 123456, tzinfo=timezone(timedelta(hours=2))),
    ),
    ("2024-05-17T12:34:56-07:30", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone(-timedelta(hours=7, minutes=30)))),
    ("2024-05-17 12:34:56+0100", datetime(2024, 5, 17, 12, 34, 56, tzinfo=timezone(timedelta(hours=1)))),
]


@attrs.define
class Loose:
    id: str
    extra: dict[str, object] = attrs.Factory(dict)


@attrs.define
class Deep:
    id: str
    value: Any = None


DEEP = ss.Collection("deep", Deep, key="id")


@attrs.define
class Loosely:
    id: str
    plain: Any = None
    indexed: Any = None
    unique: Any = None


LOOSELY = ss.Collection("loosely", Loosely, key="id", indexes=["indexed"], unique=["unique"])


@attrs.define
class Measure:
    id: str
    plain: float = 0.0
    indexed: float = 0.0


MEASURES = ss.Collection("measures", Measure, key="id", indexes=["indexed"])


@attrs.define
class IntKeys:
    id: str
    counts: dict[int, str] = attrs.Factory(dict)


@attrs.define
class BigTask(Task):
    extra: str = ""


class Odd(enum.Enum):
    A = (1, 2)


@attrs.define
class WithOdd:
    id: str
    odd: Odd = Odd.A


def _plant(store: ss.Store, key: str, fields: dict[str, Any]) -> None:
    """Store a document as another tool (or a hand edit) would: through the backend, past the codec."""
    data = {"id": key, **fields}
    with store.transaction():
        store._write(TASKS, key, 1, data, dumps(data))


class TypesContract:
    """Every rule of the strict codec, on every backend."""

    @pytest.mark.parametrize(("field", "value", "expected"), WRONG_WRITES)
    def test_writes_refuse_values_of_another_type(self, store: ss.Store, field: str, value: Any, expected: str) -> None:
        tasks = store[TASKS]
        with pytest.raises(ss.ValidationError, match=re.escape(expected)) as info:
            tasks.put(_task("a", **{field: value}))
        assert (info.value.what, info.value.key) == ("tasks", "a")
        assert info.value.path.startswith(f"$.{field}")
        assert "a" not in tasks

    @pytest.mark.parametrize("value", ["3", 3.0, True, 2**64, None])
    def test_log_entries_follow_the_same_rules(self, store: ss.Store, value: Any) -> None:
        events = store[EVENTS]
        with pytest.raises(ss.ValidationError, match="int") as info:
            events.append(Event("x", n=value), stream="s")
        assert (info.value.what, info.value.key, info.value.path) == ("events", "s", "$.n")
        assert events.read() == []

    @pytest.mark.parametrize(("fields", "path", "expected"), WRONG_STORED)
    def test_stored_data_of_another_type_is_refused_on_read(
        self, store: ss.Store, fields: dict[str, Any], path: str, expected: str
    ) -> None:
        _plant(store, "a", fields)
        tasks = store[TASKS]
        with pytest.raises(ss.ValidationError, match=re.escape(expected)) as info:
            tasks.get("a")
        assert (info.value.what, info.value.key, info.value.path) == ("tasks", "a", path)
        with pytest.raises(ss.ValidationError):
            tasks.all()
        assert tasks.keys() == ["a"]  # refused, not lost: still there to migrate or repair

    def test_an_undeclared_field_is_never_dropped_by_an_update(self, store: ss.Store) -> None:
        _plant(store, "a", {"colour": "red"})
        with pytest.raises(ss.ValidationError, match="colour"):
            store[TASKS].update("a", lambda t: t)
        assert store._get(TASKS, "a") == (1, {"id": "a", "colour": "red"})

    def test_get_and_find_agree(self, store: ss.Store) -> None:
        _plant(store, "a", {"done": "true", "status": "x"})
        tasks = store[TASKS]
        assert tasks.find(done=True) == []
        with pytest.raises(ss.ValidationError):
            tasks.get("a")
        with pytest.raises(ss.ValidationError):
            tasks.find(status="x")  # found, and refused like get, never read as done=True

    @pytest.mark.parametrize(("text", "instant"), TIMESTAMPS)
    def test_timestamps_other_tools_write(self, store: ss.Store, text: str, instant: datetime) -> None:
        _plant(store, "a", {"due": text})
        due = store[TASKS]["a"].due
        assert due == instant
        assert due is not None
        assert due.utcoffset() == instant.utcoffset()

    def test_values_keep_their_exact_type_and_precision(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        due = datetime(2024, 5, 17, 12, 34, 56, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        tasks.put(_task("a", ratio=3, points=2**63 - 1, due=due, priority=Priority.HIGH))
        tasks.put(_task("b", ratio=0.1, points=-(2**63)))
        got = tasks["a"]
        assert type(got.ratio) is int
        assert got.ratio == 3
        assert got.points == 2**63 - 1
        assert got.due == due
        assert got.due is not None
        assert got.due.utcoffset() == timedelta(hours=5, minutes=30)
        assert tasks["b"].points == -(2**63)
        assert tasks["b"].ratio == 0.1
        assert [t.id for t in tasks.find(points=2**63 - 1)] == ["a"]

    def test_nul_and_unicode_in_text_round_trip(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", title="x\0y", tags=["\0", "é", "\U0001f600"]))
        assert tasks["a"].title == "x\0y"
        assert tasks["a"].tags == ["\0", "é", "\U0001f600"]

    def test_a_subclass_is_refused_rather_than_cut_down(self, store: ss.Store) -> None:
        with pytest.raises(ss.ValidationError, match="expected a Task, got BigTask"):
            store[TASKS].put(BigTask("a", extra="would be lost"))
        assert "a" not in store[TASKS]

    def test_nul_in_indexed_and_unique_fields_compares_exactly(self, store: ss.Store) -> None:
        tasks = store[TASKS]  # status is indexed
        for key, status in (("a", "a\0zzz"), ("b", "a"), ("c", "a\0"), ("d", "a\0zzz")):
            tasks.put(_task(key, status=status))
        assert [t.id for t in tasks.find(status="a")] == ["b"]
        assert [t.id for t in tasks.find(status="a\0zzz")] == ["a", "d"]
        assert [t.id for t in tasks.find(status="a\0")] == ["c"]
        accounts = store[ACCOUNTS]  # email is unique
        accounts.put(Account("1", email="x\0a"))
        accounts.put(Account("2", email="x\0b"))  # another value, however SQL cuts text
        accounts.put(Account("3", email="x"))
        with pytest.raises(ss.UniqueViolationError):
            accounts.put(Account("4", email="x\0a"))
        assert [a.id for a in accounts.find(email="x\0b")] == ["2"]

    def test_nul_in_keys_orders_as_python_does(self, store: ss.Store) -> None:
        settings = store[SETTINGS]  # a composite key
        keys = [("a\0b", "p", "n"), ("a", "p", "n"), ("a\0a", "p", "n"), ("a\0", "z", "n"), ("a\x01", "p", "n")]
        for key in keys:
            settings.put(Setting(*key))
        assert settings.keys() == sorted(keys)
        assert [(s.scope, s.project, s.name) for s in settings.all()] == sorted(keys)
        tasks = store[TASKS]
        for name in ("k\0b", "k", "k\0a", "k\x01"):
            tasks.put(_task(name))
        assert tasks.keys() == sorted(["k\0b", "k", "k\0a", "k\x01"])

    def test_find_arguments_follow_the_same_rules(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", status="1", points=1, priority=Priority.HIGH))
        for kwargs in ({"status": 1}, {"points": "1"}, {"points": 1.5}, {"points": True}, {"priority": "high"}):
            with pytest.raises(ss.ValidationError) as info:
                tasks.find(**kwargs)
            assert info.value.path == f"$.{next(iter(kwargs))}"
        assert [t.id for t in tasks.find(priority=Priority.HIGH)] == ["a"]

    def test_values_nested_deeper_than_python_walks_are_refused_not_crashed(self, store_factory: Any) -> None:
        """Found by review: find() let a bare RecursionError out (while showing the value in its message)."""
        deep: list[Any] = []
        inner = deep
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]
        with store_factory(ss.Schema("deep", version=1, collections=[DEEP])) as store:
            with pytest.raises(ss.ValidationError):
                store[DEEP].put(Deep("k", deep))
            with pytest.raises(ss.ValidationError) as info:
                store[DEEP].find(value=deep)
            assert info.value.path == "$.value"
            assert "nested too deeply to show" in str(info.value)
            assert store[DEEP].all() == []

    def test_true_is_not_one_in_queries_and_unique_fields(self, store_factory: Any) -> None:
        """Found by review: find(x=1) also found true, find(x=True) 1 and 1.0, a unique field refused 1 beside true."""
        values: dict[str, Any] = {"t": True, "one": 1, "onef": 1.0, "f": False, "zero": 0, "lt": [True], "l1": [1]}
        with store_factory(ss.Schema("loosely", version=1, collections=[LOOSELY])) as store:
            view = store[LOOSELY]
            for key, value in values.items():
                view.put(Loosely(key, value, value, None if key == "onef" else value))  # true, 1, false, 0: no clash
            with pytest.raises(ss.UniqueViolationError):
                view.put(Loosely("again", unique=1.0))  # 1.0 is the number 1
            for field in ("plain", "indexed"):

                def keys(**where: Any) -> list[str]:
                    return sorted(r.id for r in view.find(**where))

                assert keys(**{field: True}) == ["t"]
                assert keys(**{field: 1}) == keys(**{field: 1.0}) == ["one", "onef"]
                assert keys(**{field: False}) == ["f"]
                assert keys(**{field: 0}) == ["zero"]
                assert keys(**{field: [True]}) == ["lt"]
                assert keys(**{field: [1]}) == ["l1"]
                assert keys(**{field: ss.ne(True)}) == sorted(set(values) - {"t"})
                assert keys(**{field: ss.one_of(True, 0)}) == ["t", "zero"]
                assert view.count(**{field: True}) == 1
                assert view.count(**{field: 1}) == 2

    def test_a_float_past_2_53_equals_the_int_of_its_value(self, store_factory: Any) -> None:
        """Found by review: PostgreSQL compared 2.0**60 as its shortest decimal 1.152921504606847e+18."""
        with store_factory(ss.Schema("measures", version=1, collections=[MEASURES])) as store:
            view = store[MEASURES]
            view.put(Measure("a", float(2**60), float(2**60)))
            view.put(Measure("b", 2**60, 2**60))  # a float field keeps an integer exact
            view.put(Measure("c", 2**60 + 1, 2**60 + 1))  # not 2.0**60 (Python compares exactly)
            for field in ("plain", "indexed"):
                assert sorted(r.id for r in view.find(**{field: 2**60})) == ["a", "b"]
                assert sorted(r.id for r in view.find(**{field: float(2**60)})) == ["a", "b"]
                assert [r.id for r in view.find(**{field: ss.ne(2**60)})] == ["c"]
                assert sorted(r.id for r in view.find(**{field: ss.one_of(2**60, 7.5)})) == ["a", "b"]
                assert view.count(**{field: 2**60}) == 2

    def test_declarations_that_cannot_round_trip_are_refused(self) -> None:
        for cls, field in ((Loose, "extra"), (IntKeys, "counts"), (WithOdd, "odd")):
            with pytest.raises(ss.SchemaError, match=f"field {field!r} cannot be stored"):
                ss.Collection("things", cls, key="id")
            with pytest.raises(ss.SchemaError, match=f"field {field!r} cannot be stored"):
                ss.Log("things", cls)

    def test_meta_round_trips_unchanged(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", meta=Meta("me", {"k": "v"})))
        assert tasks["a"].meta == Meta("me", {"k": "v"})
        assert store._get(TASKS, "a") is not None
        assert isinstance(tasks["a"], Task)

    # A backend may keep the codec's dict as it is (Store._canonical_text = False): what the caller
    # holds afterwards must not be shared with what the store keeps, and what is not JSON is still refused.

    @pytest.mark.parametrize("in_transaction", [False, True])
    def test_a_record_changed_after_it_was_written_does_not_change_the_store(
        self, store_factory: Any, in_transaction: bool
    ) -> None:
        with store_factory(ss.Schema("aliasing", version=1, collections=[TASKS, DEEP])) as store:
            tasks, deep = store[TASKS], store[DEEP]
            tasks.all()
            deep.all()  # caches current, where a backend keeps them: they take the written data
            with store.transaction() if in_transaction else contextlib.nullcontext():
                t = _task("a", tags=["x"])
                t.meta.labels["k"] = "v"
                tasks.insert(t)
                d = Deep("a", {"list": [1, {"n": 2}]})
                deep.put(d)
                u = tasks.update("a", lambda r: r)
                v = deep.update("a", lambda r: r)
                for record in (t, u):
                    record.tags.append("changed")
                    record.meta.labels["k"] = "changed"
                for held in (d, v):
                    held.value["list"][1]["n"] = 3
                    held.value["list"].append("changed")
                    held.value["new"] = True
                assert tasks["a"].tags == ["x"]
                assert tasks["a"].meta.labels == {"k": "v"}
                assert deep["a"].value == {"list": [1, {"n": 2}]}
            assert tasks["a"].tags == ["x"]
            assert tasks["a"].meta.labels == {"k": "v"}
            assert deep["a"].value == {"list": [1, {"n": 2}]}
            assert [r.value for r in deep.find()] == [{"list": [1, {"n": 2}]}]

    @pytest.mark.parametrize(
        "value",
        [float("nan"), [float("-inf")], {"a": {1: "x"}}, {"a": ("t",)}, {"a": {"b"}}, 2**64, [b"x"]],
        ids=["nan", "inf-in-list", "int-key", "tuple", "set", "int65", "bytes"],
    )
    def test_values_that_are_not_json_are_refused_by_every_write(self, store_factory: Any, value: Any) -> None:
        with store_factory(ss.Schema("deep", version=1, collections=[DEEP])) as store:
            view = store[DEEP]
            view.put(Deep("held", 1))
            writes: list[Callable[[], object]] = [
                lambda: view.insert(Deep("k", value)),
                lambda: view.put(Deep("k", value)),
                lambda: view.update("held", lambda r: Deep("held", value)),
                lambda: view.replace_all([Deep("k", value)]),
            ]
            for write in writes:
                with pytest.raises(ss.ValidationError) as info:
                    write()
                assert info.value.path.startswith("$.value")
                with store.transaction():
                    with pytest.raises(ss.ValidationError):
                        write()
                    view.put(Deep("other", [1]))  # the transaction goes on, and commits without the refused write
            assert [(r.id, r.value) for r in view.all()] == [("held", 1), ("other", [1])]
