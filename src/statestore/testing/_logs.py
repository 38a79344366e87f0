"""The log contract: append, read by stream and prefix, after, limit, expect_version."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

import statestore as ss
from statestore.testing._common import StoreFixture
from statestore.testing.models import (
    EVENTS,
    Event,
    Task,
)

__all__ = ["LogContract"]


class LogContract(StoreFixture):
    """append, read by stream and prefix, after, limit, expect_version, last_seq, follow."""

    def test_append_returns_entry(self, store: ss.Store) -> None:
        before = datetime.now(timezone.utc)
        entry = store[EVENTS].append(Event("started", "ann"), stream="task:t1")
        after = datetime.now(timezone.utc)
        assert (entry.seq, entry.stream, entry.version, entry.record) == (1, "task:t1", 1, Event("started", "ann"))
        assert entry.at.tzinfo is not None
        assert entry.at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= entry.at <= after + timedelta(seconds=1)

    def test_len_counts_entries_staged_ones_included(self, store: ss.Store) -> None:
        events = store[EVENTS]
        assert len(events) == 0
        for i in range(5):
            events.append(Event("e", n=i), stream=f"s{i % 2}")
        assert len(events) == 5
        with store.transaction():
            events.append(Event("staged"), stream="s0")
            assert len(events) == 6
        assert len(events) == 6
        with pytest.raises(RuntimeError), store.transaction():
            events.append(Event("gone"), stream="s0")
            raise RuntimeError("roll back")
        assert len(events) == 6

    def test_versions_per_stream_and_seq_across_log(self, store: ss.Store) -> None:
        events = store[EVENTS]
        a1 = events.append(Event("a"), stream="a")
        b1 = events.append(Event("b"), stream="b")
        a2 = events.append(Event("a"), stream="a")
        assert [(e.seq, e.version) for e in (a1, b1, a2)] == [(1, 1), (2, 1), (3, 2)]
        assert events.last_seq() == 3

    def test_read_returns_what_was_appended(self, store: ss.Store) -> None:
        events = store[EVENTS]
        written = [events.append(Event("e", n=i), stream=f"s{i % 2}") for i in range(5)]
        assert events.read() == written
        assert events.read(stream="s1") == [written[1], written[3]]

    def test_appends_alone_and_in_transactions_are_one_sequence(self, store: ss.Store) -> None:
        """An append on its own (a backend may do it in one step) and in a transaction give the same entries."""
        events = store[EVENTS]
        written = [events.append(Event("alone", n=0), stream="s")]
        with store.transaction():
            written.append(events.append(Event("in", n=1), stream="s"))
        written.append(events.append(Event("alone", n=2), stream="s", expect_version=2))
        with pytest.raises(ss.StreamConflictError):
            events.append(Event("stale", n=3), stream="s", expect_version=2)
        written.append(events.append(Event("new stream", n=4), stream="t", expect_version=0))
        with pytest.raises(RuntimeError), store.transaction():
            events.append(Event("rolled back"), stream="s")
            raise RuntimeError("roll back")
        written.append(events.append(Event("alone", n=5), stream="s"))
        assert [(e.seq, e.stream, e.version) for e in written] == [
            (1, "s", 1),
            (2, "s", 2),
            (3, "s", 3),
            (4, "t", 1),
            (5, "s", 4),
        ]
        assert events.read() == written
        assert [e.at for e in written] == sorted(e.at for e in written)  # stamped in seq order
        assert events.last_seq() == 5
        assert len(events) == 5

    def test_an_expected_version_no_stream_can_have_is_a_conflict(self, store: ss.Store) -> None:
        """Past 64 bits, negative, or not a number: StreamConflictError, alone or in a transaction, nothing written."""
        events = store[EVENTS]
        events.append(Event("a"), stream="s")
        for expected in (2**63, 2**64, -1, "1"):
            with pytest.raises(ss.StreamConflictError):
                events.append(Event("b"), stream="s", expect_version=expected)  # type: ignore[arg-type]
            with pytest.raises(ss.StreamConflictError), store.transaction():
                events.append(Event("b"), stream="s", expect_version=expected)  # type: ignore[arg-type]
        assert [e.record.type for e in events.read()] == ["a"]
        assert events.append(Event("c"), stream="s", expect_version=1).version == 2

    def test_streams_that_differ_after_a_nul_are_different_streams(self, store: ss.Store) -> None:
        """A NUL inside a stream name is kept: "a\\0b", "a\\0c" and "a" each count their own versions.

        A backend that cannot store a NUL in a stream name (PostgreSQL's text) refuses it with an
        error and writes nothing: never a stream cut at the NUL.
        """
        events = store[EVENTS]
        refused: list[ss.StateStoreError] = []
        try:
            first = events.append(Event("1"), stream="a\0b")
        except ss.StateStoreError as exc:
            refused.append(exc)
        if refused:
            assert "NUL" in str(refused[0])
            assert events.read() == []
            return
        written = [
            first,
            events.append(Event("2"), stream="a\0c"),
            events.append(Event("3"), stream="a"),
            events.append(Event("4"), stream="a\0b", expect_version=1),
        ]
        assert [(e.stream, e.version) for e in written] == [("a\0b", 1), ("a\0c", 1), ("a", 1), ("a\0b", 2)]
        assert events.read(stream="a\0b") == [written[0], written[3]]
        assert events.read(stream="a") == [written[2]]
        with pytest.raises(ss.StreamConflictError):
            events.append(Event("5"), stream="a\0c", expect_version=2)

    def test_default_stream(self, store: ss.Store) -> None:
        events = store[EVENTS]
        entry = events.append(Event("x"))
        assert entry.stream == ""
        assert events.read(stream="") == [entry]

    def test_exact_stream_match_never_substring(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["fn-1", "fn-10", "fn-1.2", "xfn-1", "fn-"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream="fn-1")] == ["fn-1"]

    def test_prefix_match(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["task:1", "task:10", "tasks", "task;", "task", "other:1", "task:\U0010ffff"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="task:")] == ["task:1", "task:10", "task:\U0010ffff"]
        assert [e.stream for e in events.read(stream_prefix="task:1")] == ["task:1", "task:10"]
        assert len(events.read(stream_prefix="")) == 7

    def test_prefix_has_no_wildcards(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["a%b", "axb", "a_b", "ayb"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="a%")] == ["a%b"]
        assert [e.stream for e in events.read(stream_prefix="a_")] == ["a_b"]

    def test_after_and_limit(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for i in range(10):
            events.append(Event("e", n=i), stream="s" if i % 3 else "t")
        assert [e.seq for e in events.read(after=7)] == [8, 9, 10]
        assert [e.seq for e in events.read(after=2, limit=3)] == [3, 4, 5]
        assert [e.seq for e in events.read(stream="s", after=3, limit=2)] == [5, 6]
        assert [e.seq for e in events.read(stream_prefix="t", after=1)] == [4, 7, 10]
        assert events.read(limit=0) == []
        assert events.read(after=10) == []
        assert events.read(after=99) == []

    def test_expect_version(self, store: ss.Store) -> None:
        events = store[EVENTS]
        assert events.append(Event("a"), stream="s", expect_version=0).version == 1
        assert events.append(Event("b"), stream="s", expect_version=1).version == 2
        with pytest.raises(ss.StreamConflictError) as info:
            events.append(Event("stale"), stream="s", expect_version=1)
        assert (info.value.key, info.value.expected, info.value.actual) == ("s", 1, 2)
        assert isinstance(info.value, ss.ConflictError)
        assert [e.record.type for e in events.read(stream="s")] == ["a", "b"]
        assert events.last_seq() == 2

    def test_expect_version_on_new_stream(self, store: ss.Store) -> None:
        with pytest.raises(ss.StreamConflictError) as info:
            store[EVENTS].append(Event("a"), stream="new", expect_version=2)
        assert info.value.actual == 0
        assert store[EVENTS].last_seq() == 0

    def test_empty_log(self, store: ss.Store) -> None:
        events = store[EVENTS]
        assert events.last_seq() == 0
        assert events.read() == []
        assert events.read(stream="x") == []
        assert events.read(stream_prefix="x") == []

    def test_bad_read_arguments(self, store: ss.Store) -> None:
        events = store[EVENTS]
        with pytest.raises(ss.ValidationError):
            events.read(stream="a", stream_prefix="a")
        with pytest.raises(ss.ValidationError):
            events.read(after=-1)
        with pytest.raises(ss.ValidationError):
            events.read(limit=-1)
        with pytest.raises(ss.ValidationError):
            events.append(Event("x"), stream=5)  # type: ignore[arg-type]
        with pytest.raises(ss.ValidationError):
            events.append(Event("x"), stream="bad\udfff")
        with pytest.raises(ss.ValidationError):
            events.append(Task("t"), stream="s")  # type: ignore[arg-type]
        assert events.last_seq() == 0

    def test_unicode_streams(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for stream in ["日本:1", "日本:2", "ü", "a b/c\\d"]:
            events.append(Event(stream), stream=stream)
        assert [e.stream for e in events.read(stream_prefix="日本:")] == ["日本:1", "日本:2"]
        assert [e.stream for e in events.read(stream="a b/c\\d")] == ["a b/c\\d"]

    def test_follow_yields_existing_then_new_entries(self, store: ss.Store) -> None:
        events = store[EVENTS]
        first = events.append(Event("a"), stream="s")
        followed = events.follow(timeout=5, poll=0.01)
        assert next(followed) == first
        second = events.append(Event("b"), stream="s")
        assert next(followed) == second
        followed.close()

    def test_follow_after_and_filters(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for i, stream in enumerate(["task:1", "other", "task:2", "task:1", "tasks"]):
            events.append(Event("e", n=i), stream=stream)
        assert [e.seq for e in events.follow(after=1, timeout=0)] == [2, 3, 4, 5]
        assert [e.seq for e in events.follow(stream="task:1", timeout=0)] == [1, 4]
        assert [e.seq for e in events.follow(stream_prefix="task:", after=1, timeout=0)] == [3, 4]
        assert list(events.follow(after=5, timeout=0)) == []

    def test_follow_sees_appends_from_another_thread(self, store: ss.Store) -> None:
        events = store[EVENTS]
        stop = threading.Event()

        def writer() -> None:
            for i in range(3):
                if stop.wait(0.02):
                    return
                events.append(Event("w", n=i), stream="w" if i != 1 else "x")

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            got: list[int] = []
            # (timeout: how long follow() waits for a next entry; generous for a loaded machine.)
            for entry in events.follow(stream="w", timeout=30, poll=0.005):
                got.append(entry.record.n)
                if len(got) == 2:
                    break
        finally:
            stop.set()
            thread.join()
        assert got == [0, 2]

    def test_follow_never_yields_a_rolled_back_entry(self, store: ss.Store) -> None:
        events = store[EVENTS]
        with pytest.raises(RuntimeError), store.transaction():
            events.append(Event("gone"))
            raise RuntimeError
        kept = events.append(Event("kept"))
        assert list(events.follow(timeout=0)) == [kept]

    def test_follow_timeout_counts_from_the_last_entry(self, store: ss.Store) -> None:
        events = store[EVENTS]
        started = time.monotonic()
        assert list(events.follow(timeout=0.05, poll=0.01)) == []
        assert 0.04 <= time.monotonic() - started < 5

    def test_follow_checks_arguments_at_the_call(self, store: ss.Store) -> None:
        events = store[EVENTS]
        for kwargs in ({"after": -1}, {"timeout": -1}, {"poll": "x"}, {"stream": "a", "stream_prefix": "a"}):
            with pytest.raises(ss.ValidationError):
                events.follow(**kwargs)

    def test_follow_stops_when_the_store_closes(self, store: ss.Store) -> None:
        followed = store[EVENTS].follow(poll=0.01)
        store.close()
        with pytest.raises(ss.StoreClosedError):
            next(followed)

    def test_an_append_past_the_last_64_bit_version_is_refused_and_writes_nothing(self, store: ss.Store) -> None:
        """Stream versions are 64-bit, as revisions are (the planted entry goes in through the backend)."""
        last = 2**63 - 1
        events = store[EVENTS]
        data, text = store.codec.encode("events", Event, Event("e"), "s")
        with store.transaction():
            store._add_entry(EVENTS, "s", last, "2024-01-01T00:00:00.000000+00:00", data, text)
        for expect in (None, last):
            with pytest.raises(ss.StreamVersionLimitError) as info:
                events.append(Event("lost"), stream="s", expect_version=expect)
            assert (info.value.collection, info.value.key, info.value.revision) == ("events", "s", last)
            assert str(info.value) == f"events: stream 's' is at version {last}, the last a 64-bit version can be"
            assert isinstance(info.value, ss.RevisionLimitError)
        assert [(e.seq, e.stream, e.version) for e in events.read()] == [(1, "s", last)]
        assert events.append(Event("kept"), stream="t").version == 1  # other streams go on
