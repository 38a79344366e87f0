"""Hypothesis strategies for the contract models: keys, records, streams.

Small alphabets on purpose: collisions (same key, same unique value, the same
stream or a stream that is a prefix of another) are where backends disagree.
"""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import strategies as st

from statestore.testing.contract import AWKWARD_KEYS
from statestore.testing.models import Account, Event, Meta, Priority, Task

__all__ = ["accounts", "emails", "events", "keys", "statuses", "stream_prefixes", "streams", "tasks", "texts"]

#: Printable text plus the characters that break naive mappings; no lone surrogates.
texts = st.text(st.characters(codec="utf-8"), max_size=12)

keys = st.one_of(st.sampled_from(["a", "b", "B", "t1", "t10", "ä"]), st.sampled_from(AWKWARD_KEYS), texts)
statuses = st.sampled_from(["todo", "doing", "done"])
emails = st.one_of(st.none(), st.sampled_from(["a@x", "b@x", "c@x"]))
streams = st.sampled_from(["fn-1", "fn-10", "fn-1.2", "task:1", "task:10", "", "日本"])
stream_prefixes = st.sampled_from(["fn-1", "fn-", "task:", "t", "", "日", "%"])

_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)


def tasks(key: st.SearchStrategy[str] = keys) -> st.SearchStrategy[Task]:
    """Tasks with every field type the contract model has."""
    return st.builds(
        Task,
        id=key,
        title=texts,
        status=statuses,
        points=st.integers(-3, 3),
        tags=st.lists(texts, max_size=3),
        due=st.one_of(st.none(), _datetimes),
        priority=st.sampled_from(Priority),
        meta=st.builds(Meta, owner=texts, labels=st.dictionaries(texts, texts, max_size=2)),
        ratio=st.floats(allow_nan=False, allow_infinity=False, width=64),
        done=st.booleans(),
    )


def accounts() -> st.SearchStrategy[Account]:
    """Accounts whose unique fields often clash."""
    return st.builds(
        Account,
        id=st.sampled_from(["a", "b", "c", "d"]),
        email=emails,
        org=st.one_of(st.none(), st.sampled_from(["o1", "o2"])),
        handle=st.one_of(st.none(), st.sampled_from(["h1", "h2"])),
    )


def events() -> st.SearchStrategy[Event]:
    """Log records."""
    return st.builds(Event, type=st.sampled_from(["created", "started", "done"]), actor=texts, n=st.integers(0, 9))
