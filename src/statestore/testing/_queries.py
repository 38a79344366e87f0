"""The query contract: operators, order, nulls, datetimes, limit/offset, count and iter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import statestore as ss
from statestore.codec import dumps
from statestore.testing._common import StoreFixture
from statestore.testing._common import task as _task
from statestore.testing.models import SETTINGS, TASKS, TICKETS, Priority, Setting, Task, Ticket

__all__ = ["QueryContract"]

_UTC = timezone.utc


def _ids(records: Any) -> list[str]:
    return [r.id for r in records]


def _points(store: ss.Store) -> None:
    tasks = store[TASKS]
    for key, points in [("a", 3), ("b", 1), ("c", 5), ("d", 3), ("e", -2)]:
        tasks.put(_task(key, points=points))


class QueryContract(StoreFixture):
    """find with operators, order_by, limit and offset; count; iter."""

    # ------------------------------------------------------------ operators

    def test_gt_ge_lt_le(self, store: ss.Store) -> None:
        _points(store)
        tasks = store[TASKS]
        assert _ids(tasks.find(points=ss.gt(3))) == ["c"]
        assert _ids(tasks.find(points=ss.ge(3))) == ["a", "c", "d"]
        assert _ids(tasks.find(points=ss.lt(3))) == ["b", "e"]
        assert _ids(tasks.find(points=ss.le(1))) == ["b", "e"]

    def test_range_on_an_unindexed_field_and_floats_mixed_with_ints(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", ratio=2))
        tasks.put(_task("b", ratio=1.5))
        tasks.put(_task("c", ratio=2.5))
        assert _ids(tasks.find(ratio=ss.gt(1.5))) == ["a", "c"]
        assert _ids(tasks.find(ratio=ss.le(2))) == ["a", "b"]
        assert _ids(tasks.find(order_by="-ratio")) == ["c", "a", "b"]

    def test_ne_matches_null_and_one_of(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        due = datetime(2024, 1, 1, tzinfo=_UTC)
        tasks.put(_task("a", status="todo", due=due))
        tasks.put(_task("b", status="doing"))
        tasks.put(_task("c", status="done", due=due))
        assert _ids(tasks.find(status=ss.ne("todo"))) == ["b", "c"]
        assert _ids(tasks.find(due=ss.ne(due))) == ["b"]
        assert _ids(tasks.find(due=ss.ne(None))) == ["a", "c"]
        assert _ids(tasks.find(status=ss.one_of("todo", "done"))) == ["a", "c"]
        assert _ids(tasks.find(due=ss.one_of(None))) == ["b"]
        assert tasks.find(status=ss.one_of()) == []

    def test_prefix_is_by_code_point(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for key, title in [
            ("a", "Fix bug"),
            ("b", "fix typo"),
            ("c", "Fix"),
            ("d", "Fi"),
            ("e", "Fix\x00x"),
            ("f", "Fiy"),
        ]:
            tasks.put(_task(key, title=title))
        assert _ids(tasks.find(title=ss.prefix("Fix"))) == ["a", "c", "e"]
        assert _ids(tasks.find(title=ss.prefix("Fix\x00"))) == ["e"]
        assert len(tasks.find(title=ss.prefix(""))) == 6

    def test_prefix_on_an_indexed_field(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for key, status in [("a", "todo"), ("b", "to"), ("c", "done"), ("d", "toe")]:
            tasks.put(_task(key, status=status))
        assert _ids(tasks.find(status=ss.prefix("to"))) == ["a", "b", "d"]
        assert _ids(tasks.find(status=ss.gt("to"), order_by="status")) == ["a", "d"]

    def test_text_with_nul_compares_past_it(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", status="x"))
        tasks.put(_task("b", status="x\x00y"))
        tasks.put(_task("c", status="x\x00"))
        assert _ids(tasks.find(status="x")) == ["a"]
        assert _ids(tasks.find(status=ss.gt("x"))) == ["b", "c"]
        assert _ids(tasks.find(status=ss.le("x"))) == ["a"]
        assert _ids(tasks.find(status=ss.ne("x"))) == ["b", "c"]
        assert _ids(tasks.find(order_by="-status", limit=2)) == ["b", "c"]
        assert _ids(tasks.find(order_by="status", limit=1, offset=1)) == ["c"]
        assert tasks.count(status=ss.gt("x")) == 2
        assert tasks.count(status=ss.ge("x\x00")) == 2

    def test_conditions_are_anded(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", status="todo", points=3, title="Fix a"))
        tasks.put(_task("b", status="todo", points=1, title="Fix b"))
        tasks.put(_task("c", status="done", points=5, title="Fix c"))
        assert _ids(tasks.find(status="todo", points=ss.gt(2), title=ss.prefix("Fix"))) == ["a"]

    def test_none_matches_null_or_missing(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", due=datetime(2024, 1, 1, tzinfo=_UTC)))
        tasks.put(_task("b"))
        with store.transaction():  # a record written before the field existed
            store._write(TASKS, "c", 1, {"id": "c"}, dumps({"id": "c"}))
        assert _ids(tasks.find(due=None)) == ["b", "c"]
        assert tasks.count(due=None) == 2
        assert _ids(tasks.find(due=ss.lt(datetime(2030, 1, 1, tzinfo=_UTC)))) == ["a"]
        assert _ids(tasks.find(order_by="due")) == ["b", "c", "a"]

    def test_enums_compare_by_stored_value(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", priority=Priority.LOW))
        tasks.put(_task("b", priority=Priority.HIGH))
        assert _ids(tasks.find(priority=ss.gt(Priority.HIGH))) == ["a"]  # "low" > "high"
        assert _ids(tasks.find(order_by="priority")) == ["b", "a"]
        assert _ids(tasks.find(priority=ss.one_of(Priority.HIGH))) == ["b"]

    def test_bools_order_false_first(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", done=True))
        tasks.put(_task("b", done=False))
        assert _ids(tasks.find(order_by="done")) == ["b", "a"]
        assert _ids(tasks.find(done=ss.gt(False))) == ["a"]

    # ------------------------------------------------------------ datetimes

    def test_datetimes_compare_as_instants_whatever_the_offset(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        noon = datetime(2024, 5, 17, 12, 0, tzinfo=_UTC)
        plus2 = timezone(timedelta(hours=2))
        tasks.put(_task("a", due=noon.astimezone(plus2)))  # 14:00+02:00, the same instant as noon
        tasks.put(_task("b", due=noon + timedelta(microseconds=1)))
        tasks.put(_task("c", due=(noon - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-5)))))
        tasks.put(_task("d", due=noon + timedelta(microseconds=500)))
        assert _ids(tasks.find(order_by="due")) == ["c", "a", "b", "d"]
        assert _ids(tasks.find(order_by="-due")) == ["d", "b", "a", "c"]
        assert _ids(tasks.find(due=ss.gt(noon))) == ["b", "d"]
        assert _ids(tasks.find(due=ss.ge(noon))) == ["a", "b", "d"]
        assert _ids(tasks.find(due=ss.lt(noon.astimezone(plus2)))) == ["c"]
        assert _ids(tasks.find(due=ss.le(noon + timedelta(microseconds=1)), order_by="-due")) == ["b", "a", "c"]
        assert tasks.count(due=ss.gt(noon)) == 2
        assert _ids(tasks.find(order_by="due", limit=2)) == ["c", "a"]

    # ------------------------------------------------------------ order, limit, offset

    def test_order_by_ascending_and_descending_ties_by_key(self, store: ss.Store) -> None:
        _points(store)
        tasks = store[TASKS]
        assert _ids(tasks.find(order_by="points")) == ["e", "b", "a", "d", "c"]
        assert _ids(tasks.find(order_by="-points")) == ["c", "a", "d", "b", "e"]

    def test_order_by_several_fields(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", status="todo", points=1))
        tasks.put(_task("b", status="done", points=2))
        tasks.put(_task("c", status="todo", points=3))
        tasks.put(_task("d", status="done", points=2))
        assert _ids(tasks.find(order_by=["status", "-points"])) == ["b", "d", "c", "a"]
        assert _ids(tasks.find(order_by=("-status", "points"))) == ["a", "c", "b", "d"]

    def test_strings_order_by_code_point(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for key, title in [("a", "b"), ("b", "B"), ("c", "é"), ("d", "\U0001f600"), ("e", "\uffff"), ("f", "")]:
            tasks.put(_task(key, title=title))
        assert _ids(tasks.find(order_by="title")) == ["f", "b", "a", "c", "e", "d"]

    def test_nulls_first_ascending_last_descending(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(_task("a", due=datetime(2024, 1, 1, tzinfo=_UTC)))
        tasks.put(_task("b"))
        tasks.put(_task("c", due=datetime(2023, 1, 1, tzinfo=_UTC)))
        assert _ids(tasks.find(order_by="due")) == ["b", "c", "a"]
        assert _ids(tasks.find(order_by="-due")) == ["a", "c", "b"]

    def test_limit_and_offset(self, store: ss.Store) -> None:
        _points(store)
        tasks = store[TASKS]
        assert _ids(tasks.find(order_by="-points", limit=2)) == ["c", "a"]
        assert _ids(tasks.find(order_by="-points", limit=2, offset=1)) == ["a", "d"]
        assert _ids(tasks.find(limit=2, offset=3)) == ["d", "e"]
        assert tasks.find(limit=0) == []
        assert tasks.find(offset=9) == []
        assert _ids(tasks.find(points=ss.ge(3), order_by="points", limit=10)) == ["a", "d", "c"]

    def test_int_and_composite_keys_break_ties(self, store: ss.Store) -> None:
        tickets = store[TICKETS]
        for n in (10, 2, 1):
            tickets.put(Ticket(n, title="same"))
        assert [t.number for t in tickets.find(order_by="-title", limit=2)] == [1, 2]
        settings = store[SETTINGS]
        settings.put(Setting("b", "p", "x", rank=1))
        settings.put(Setting("a", "q", "y", rank=1))
        settings.put(Setting("a", "p", "z", rank=0))
        assert [s.name for s in settings.find(order_by="-rank")] == ["y", "x", "z"]
        assert [s.name for s in settings.find(rank=ss.ge(1), limit=1)] == ["y"]

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            ({"limit": -1}, "limit"),
            ({"offset": -1}, "offset"),
            ({"limit": True}, "limit"),
            ({"limit": 1.5}, "limit"),
            ({"order_by": "nope"}, "$.nope"),
            ({"order_by": "-"}, "order_by"),
            ({"nope": ss.gt(1)}, "$.nope"),
            ({"points": ss.gt("3")}, "$.points"),
            ({"points": ss.one_of(1, "2")}, "$.points"),
            ({"title": ss.prefix(3)}, "$.title"),  # type: ignore[arg-type]
            ({"points": ss.prefix("3")}, "$.points"),
            ({"points": ss.gt(None)}, "$.points"),
            ({"due": ss.gt(datetime(2024, 1, 1))}, "$.due"),  # naive: ambiguous
        ],
    )
    def test_bad_arguments_raise_validation_error(self, store: ss.Store, kwargs: dict[str, Any], where: str) -> None:
        with pytest.raises(ss.ValidationError) as info:
            store[TASKS].find(**kwargs)
        assert info.value.path == where

    # ------------------------------------------------------------ count and iter

    def test_count(self, store: ss.Store) -> None:
        _points(store)
        tasks = store[TASKS]
        tasks.put(_task("f", points=3, title="x"))
        assert tasks.count() == 6
        assert tasks.count(points=3) == 3
        assert tasks.count(points=ss.gt(1)) == 4
        assert tasks.count(points=ss.gt(1), title="x") == 1
        assert tasks.count(title=ss.prefix("nothing")) == 0
        with pytest.raises(ss.ValidationError):
            tasks.count(points=ss.gt("1"))

    def test_count_sees_the_transaction_s_own_writes(self, store: ss.Store) -> None:
        _points(store)
        tasks = store[TASKS]
        with store.transaction():
            tasks.put(_task("z", points=9))
            tasks.delete("c")
            assert tasks.count(points=ss.gt(3)) == 1
            assert _ids(tasks.find(points=ss.gt(1), order_by="-points", limit=1)) == ["z"]
        assert tasks.count(points=ss.gt(3)) == 1

    def test_iter_streams_in_batches_in_order(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for i in range(23):
            tasks.put(_task(f"t{i:02}", points=i % 5))
        got = list(tasks.iter(order_by="-points", batch_size=4, points=ss.ge(1)))
        assert _ids(got) == _ids(tasks.find(order_by="-points", points=ss.ge(1)))
        assert len(got) == 18
        assert _ids(tasks.iter()) == _ids(tasks.all())
        with pytest.raises(ss.ValidationError):
            tasks.iter(batch_size=0)
        with pytest.raises(ss.ValidationError):
            tasks.iter(nope=1)

    def test_iter_with_int_and_composite_keys(self, store: ss.Store) -> None:
        tickets = store[TICKETS]
        for n in (10, 2, 1, 33, 7):
            tickets.put(Ticket(n, title="b" if n % 2 else "a"))
        for order_by in (None, "title", "-title"):
            want = [t.number for t in tickets.find(order_by=order_by)]
            assert [t.number for t in tickets.iter(order_by=order_by, batch_size=2)] == want
        settings = store[SETTINGS]
        for i, (scope, project) in enumerate([("b", "p"), ("a", "q"), ("a", "p"), ("b", "a"), ("c", "c")]):
            settings.put(Setting(scope, project, f"n{i}", rank=i % 2))
        for order_by in (None, "rank", "-rank"):
            want_keys = [(s.scope, s.project, s.name) for s in settings.find(order_by=order_by)]
            got = [(s.scope, s.project, s.name) for s in settings.iter(order_by=order_by, batch_size=2)]
            assert got == want_keys
        assert [s.name for s in settings.iter(batch_size=1)] == ["n2", "n1", "n3", "n0", "n4"]

    @pytest.mark.parametrize("order_by", [None, "status", "-status", "points", "-points", ["-status", "points"]])
    def test_iter_returns_every_untouched_record_once_around_writes(self, store: ss.Store, order_by: Any) -> None:
        tasks = store[TASKS]
        for i in range(12):
            tasks.put(_task(f"t{i:02}", status=f"s{i % 3}" if i < 6 else f"u{i}", points=i % 3))
        want = _ids(tasks.find(order_by=order_by))
        seen, deleted = [], set()
        for n, task in enumerate(tasks.iter(order_by=order_by, batch_size=2)):
            seen.append(task.id)
            if n % 2 == 1:  # the last record of each batch goes before the next is read
                tasks.delete(task.id)
                deleted.add(task.id)
        assert seen == want
        assert _ids(tasks.all()) == sorted(set(want) - deleted)

    def test_iter_reads_one_batch_at_a_time(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        for i in range(10):
            tasks.put(_task(f"t{i}", points=i))
        stream = tasks.iter(order_by="points", batch_size=3)
        assert next(stream).id == "t0"
        # A record written after the first batch was read and ordered after it is seen.
        tasks.put(_task("u", points=100))
        assert [t.id for t in stream][-1] == "u"

    def test_find_plain_equality_unchanged(self, store: ss.Store) -> None:
        tasks = store[TASKS]
        tasks.put(Task("a", status="todo"))
        tasks.put(Task("b", status="done"))
        assert _ids(tasks.find(status="todo")) == ["a"]
        assert tasks.count(status="done") == 1
