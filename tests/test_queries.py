"""Queries: every backend answers exactly as a plain Python model, on random records and random queries.

Plus what only SQLite can show: its query plan uses the declared index for a
range and for order_by + limit, and a limited query reads only a few rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import ALL_BACKENDS, make_factory, postgres_factory

import statestore as ss
from statestore.testing.models import SCHEMA, TASKS, Priority, Task

# Characters where naive orders disagree: NUL (SQLite's json_extract stops there),
# accents, a character above the BMP (UTF-16 order differs), and a prefix chain.
_text = st.text(st.sampled_from(["a", "\x00", "é", "\uffff", "\U0001f600"]), max_size=3)
_zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
_base = datetime(2024, 5, 17, 12, 0, 0)
# Instants close together (microseconds apart, the same millisecond) written with different offsets.
_due = st.one_of(
    st.none(),
    st.builds(
        lambda us, tz: (_base.replace(tzinfo=timezone.utc) + timedelta(microseconds=us)).astimezone(tz),
        st.sampled_from([0, 1, 999, 1000, 1500, 3_600_000_000, 7_200_000_001]),
        _zones,
    ),
)
_points = st.integers(-3, 3)
# Near 2**53 a float's shortest decimal is not its value, and ints and floats interleave.
_ratio = st.one_of(
    st.integers(-2, 2),
    st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.25, 2**53 + 1, float(2**53), float(2**53 + 2), 1.2345678901234567e19]),
)

_records = st.lists(
    st.builds(
        Task,
        id=st.text(st.sampled_from(["a", "b", "\x00", "1"]), min_size=1, max_size=3),
        title=_text,
        status=st.sampled_from(["todo", "doing", "done"]),
        points=_points,
        due=_due,
        ratio=_ratio,
        done=st.booleans(),
        priority=st.sampled_from(Priority),
    ),
    max_size=12,
    unique_by=lambda t: t.id,
)

_OPERANDS: dict[str, st.SearchStrategy[Any]] = {
    "title": _text,
    "status": st.sampled_from(["todo", "doing", "done", "do"]),
    "points": _points,
    "due": _due.filter(lambda d: d is not None),
    "ratio": _ratio,
    "done": st.booleans(),
    "priority": st.sampled_from(Priority),
}


@st.composite
def _conditions(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in draw(st.lists(st.sampled_from(sorted(_OPERANDS)), unique=True, max_size=3)):
        operand = _OPERANDS[field]
        op = draw(
            st.sampled_from(
                ["eq", "ne", "gt", "ge", "lt", "le", "in", "prefix"]
                if field == "title"
                else ["eq", "ne", "gt", "ge", "lt", "le", "in"]
            )
        )
        if op == "eq":
            out[field] = draw(operand if field != "due" else _due)
        elif op == "in":
            out[field] = ss.one_of(*draw(st.lists(operand, max_size=3)))
        else:
            out[field] = getattr(ss, op)(draw(operand))
    return out


_orders = st.lists(
    st.tuples(st.sampled_from(["title", "status", "points", "due", "ratio", "done", "priority"]), st.booleans()),
    max_size=3,
    unique_by=lambda o: o[0],
)


def _value(task: Task, field: str) -> Any:
    v = getattr(task, field)
    return v.value if isinstance(v, Priority) else v


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.isoformat() == b.isoformat()  # equality is of the stored text
    return a == b and (a is None) == (b is None)


def _meets(task: Task, field: str, cond: Any) -> bool:
    v = _value(task, field)
    if not isinstance(cond, ss.Condition):
        return _equal(v, _value(Task("x", **{field: cond}), field) if cond is not None else None)
    w = cond.value
    if cond.op == "in":
        return any(_equal(v, x.value if isinstance(x, Priority) else x) for x in w)
    w = w.value if isinstance(w, Priority) else w
    if cond.op == "ne":
        return not _equal(v, w)
    if cond.op == "prefix":
        return v.startswith(w)
    if v is None:
        return False
    return {"gt": v > w, "ge": v >= w, "lt": v < w, "le": v <= w}[cond.op]


def _model(
    records: list[Task], where: dict[str, Any], order: list[tuple[str, bool]], limit: Any, offset: int
) -> list[str]:
    kept = sorted((t for t in records if all(_meets(t, f, c) for f, c in where.items())), key=lambda t: t.id)
    for field, desc in reversed(order):
        kept.sort(key=lambda t: (0,) if _value(t, field) is None else (1, _value(t, field)), reverse=desc)
    end = None if limit is None else offset + limit
    return [t.id for t in kept[offset:end]]


# Every queried field indexed: backends answer from their lookup columns and indexes.
INDEXED = ss.Collection(
    "tasks", Task, key="id", indexes=["title", "status", "points", "due", "ratio", "done", "priority"]
)
INDEXED_SCHEMA = ss.Schema("indexed", version=1, collections=[INDEXED])


@pytest.fixture(scope="module", params=["declared", "every field indexed"])
def stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, ss.Store], Any]]:
    factories = {
        b: postgres_factory(request.getfixturevalue("postgres_server"))
        if b == "postgres"
        else make_factory(b, tmp_path_factory.mktemp(b))
        for b in ALL_BACKENDS
    }
    schema, coll = (SCHEMA, TASKS) if request.param == "declared" else (INDEXED_SCHEMA, INDEXED)
    opened = {b: f(schema) for b, f in factories.items()}
    # First batches of just the rows needed: a limited query on PostgreSQL reads several, and decides when to stop.
    opened["postgres"]._query_slack = 0  # type: ignore[attr-defined]
    yield opened, coll
    for f in factories.values():
        f.close_all()


@given(
    records=_records,
    where=_conditions(),
    order=_orders,
    limit=st.one_of(st.none(), st.integers(0, 5)),
    offset=st.integers(0, 4),
)
def test_every_backend_answers_as_the_model(
    stores: tuple[dict[str, ss.Store], Any],
    records: list[Task],
    where: dict[str, Any],
    order: list[tuple[str, bool]],
    limit: int | None,
    offset: int,
) -> None:
    expected = _model(records, where, order, limit, offset)
    count = len(_model(records, where, [], None, 0))
    order_by = [("-" if desc else "") + f for f, desc in order]
    opened, coll = stores
    for backend, store in opened.items():
        tasks = store[coll]
        tasks.replace_all(records)
        got = [t.id for t in tasks.find(order_by=order_by, limit=limit, offset=offset, **where)]
        assert got == expected, backend
        assert tasks.count(**where) == count, backend
        streamed = [t.id for t in tasks.iter(order_by=order_by, batch_size=2, **where)]
        assert streamed == _model(records, where, order, None, 0), backend


# ---------------------------------------------------------------- SQLite: pushed down


@pytest.fixture
def sqlite_tasks(tmp_path: Path) -> Iterator[tuple[ss.Store, Any]]:
    store = ss.open_store(f"sqlite:{tmp_path / 'state.db'}", SCHEMA)
    tasks = store[TASKS]
    with store.transaction():
        for i in range(300):
            tasks.put(Task(f"t{i:03}", points=i % 50, status=["todo", "doing", "done"][i % 3]))
    store._con().execute("ANALYZE")  # type: ignore[attr-defined]
    yield store, tasks
    store.close()


def _plan(store: Any, query: Any) -> str:
    sql, params, _ = store._query_sql(TASKS, query)
    rows = store._con().execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " / ".join(r[-1] for r in rows)


def test_sqlite_range_on_an_index_field_uses_its_index(sqlite_tasks: tuple[ss.Store, Any]) -> None:
    store, tasks = sqlite_tasks
    query = tasks._query({"points": ss.ge(48)}, None, None, 0)
    plan = _plan(store, query)
    assert "USING INDEX _statestore_ix__tasks__points (points>?)" in plan, plan
    assert "SCAN" not in plan.replace("SCAN TABLE", "SCAN"), plan


def test_sqlite_order_by_an_index_field_with_limit_walks_its_index(sqlite_tasks: tuple[ss.Store, Any]) -> None:
    store, tasks = sqlite_tasks
    query = tasks._query({"points": ss.gt(10)}, "-points", 5, 0)
    plan = _plan(store, query)
    assert "USING INDEX _statestore_ix__tasks__points" in plan, plan
    # At most the ties of one points value are sorted by key, never the whole result.
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_sqlite_limit_reads_only_the_rows_it_needs(
    sqlite_tasks: tuple[ss.Store, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, tasks = sqlite_tasks
    parsed = []
    record = type(store)._record

    def counting(self: Any, coll: Any, key: Any, text: Any) -> Any:
        parsed.append(key)
        return record(self, coll, key, text)

    monkeypatch.setattr(type(store), "_record", counting)
    got = tasks.find(points=ss.ge(40), order_by="-points", limit=3)
    assert [t.points for t in got] == [49, 49, 49]
    assert len(parsed) <= 7, parsed  # the 6 records with points 49, and the first of 48
    parsed.clear()
    assert tasks.count(points=ss.ge(40)) == 60
    assert tasks.count(status="todo", points=ss.lt(10)) == 20
    assert parsed == []  # counted by SQL, nothing decoded


@pytest.mark.parametrize("order_by", [None, "points", "-points", "status", "-status"])
def test_sqlite_iter_reads_each_record_about_once(
    sqlite_tasks: tuple[ss.Store, Any], monkeypatch: pytest.MonkeyPatch, order_by: str | None
) -> None:
    store, tasks = sqlite_tasks
    expected = [t.id for t in tasks.find(order_by=order_by)]
    parsed = []
    record = type(store)._record

    def counting(self: Any, coll: Any, key: Any, text: Any) -> Any:
        parsed.append(key)
        return record(self, coll, key, text)

    monkeypatch.setattr(type(store), "_record", counting)
    assert [t.id for t in tasks.iter(order_by=order_by, batch_size=50)] == expected
    # Each batch starts after the last record of the one before (by value, then key): nothing is read twice.
    assert len(parsed) <= 300 + 6, len(parsed)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5])
    | st.sampled_from("ab"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xy"), inner, max_size=2),
    max_leaves=6,
)


@given(_JSON, _JSON)
def test_same_value_is_json_equality_and_value_key_agrees(a: Any, b: Any) -> None:
    """true is not 1 and false not 0 (Python's True == 1), at any depth; 1 and 1.0 are one number."""
    from statestore.query import same_value, value_key

    def model(x: Any, y: Any) -> bool:
        if isinstance(x, bool) or isinstance(y, bool) or x is None or y is None:
            return type(x) is type(y) and x == y
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return x == y
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(model(p, q) for p, q in zip(x, y))
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(model(x[k], y[k]) for k in x)
        return type(x) is type(y) and x == y

    assert same_value(a, b) == model(a, b)
    assert (value_key(a) == value_key(b)) == model(a, b)
