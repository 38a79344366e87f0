"""Every backend and a plain in-memory model, driven by the same random operations, must agree.

Each step applies one operation (or a transaction of several that commits or
rolls back, or a close-and-reopen) to every backend and to the model, and
asserts that every result and every error is the same. Run the thorough
profile locally with ``HYPOTHESIS_PROFILE=thorough pytest tests/test_stateful.py``.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import statestore as ss
from statestore.testing import strategies as sst
from statestore.testing.models import ACCOUNTS, EVENTS, SCHEMA, TASKS, Account, Event, Task


def _files_available() -> bool:
    probe = Path(tempfile.mkdtemp())
    try:
        ss.open_store(f"files:{probe / 's'}", SCHEMA).close()
    except NotImplementedError:
        return False
    finally:
        shutil.rmtree(probe)
    return True


BACKENDS = ["sqlite", "memory"] + (["files"] if _files_available() else [])

Outcome = tuple[str, Any]
Op = tuple[Any, ...]


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


class Model:
    """The specification: plain dicts and a list."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[int, Task]] = {}
        self.accounts: dict[str, tuple[int, Account]] = {}
        self.log: list[tuple[int, str, int, Event]] = []
        self.seq = 0

    def apply(self, op: Op) -> Outcome:
        name, *args = op
        return getattr(self, "op_" + name)(*args)  # type: ignore[no-any-return]

    def _put(self, table: dict[str, Any], key: str, record: Any) -> int:
        rev = table[key][0] + 1 if key in table else 1
        table[key] = (rev, copy.deepcopy(record))
        return rev

    def op_put(self, task: Task, expect: int | None) -> Outcome:
        current = self.tasks[task.id][0] if task.id in self.tasks else 0
        if expect is not None and expect != current:
            return ("err", "ConflictError")
        return ("ok", self._put(self.tasks, task.id, task))

    def op_insert(self, task: Task) -> Outcome:
        if task.id in self.tasks:
            return ("err", "AlreadyExistsError")
        return ("ok", self._put(self.tasks, task.id, task))

    def op_update(self, key: str, delta: int) -> Outcome:
        if key not in self.tasks:
            return ("err", "NotFoundError")
        task = copy.deepcopy(self.tasks[key][1])
        task.points += delta
        self._put(self.tasks, key, task)
        return ("ok", task)

    def op_delete(self, key: str) -> Outcome:
        return ("ok", self.tasks.pop(key, None) is not None)

    def op_get(self, key: str) -> Outcome:
        got = self.tasks.get(key)
        return ("ok", None if got is None else (got[1], got[0]))

    def op_find_status(self, status: str) -> Outcome:
        return ("ok", [k for k in sorted(self.tasks) if self.tasks[k][1].status == status])

    def op_find_done(self, done: bool) -> Outcome:
        return ("ok", [k for k in sorted(self.tasks) if self.tasks[k][1].done == done])

    def op_keys(self) -> Outcome:
        return ("ok", (sorted(self.tasks), len(self.tasks)))

    def op_replace_all(self, tasks: list[Task]) -> Outcome:
        if len({t.id for t in tasks}) != len(tasks):
            return ("err", "ValidationError")
        old = self.tasks
        self.tasks = {t.id: ((old[t.id][0] + 1) if t.id in old else 1, copy.deepcopy(t)) for t in tasks}
        return ("ok", None)

    def op_put_account(self, account: Account) -> Outcome:
        for other, (_rev, acc) in self.accounts.items():
            if other == account.id:
                continue
            if account.email is not None and acc.email == account.email:
                return ("err", "UniqueViolationError")
            pair = (account.org, account.handle)
            if None not in pair and (acc.org, acc.handle) == pair:
                return ("err", "UniqueViolationError")
        return ("ok", self._put(self.accounts, account.id, account))

    def op_delete_account(self, key: str) -> Outcome:
        return ("ok", self.accounts.pop(key, None) is not None)

    def op_append(self, event: Event, stream: str, expect: int | None) -> Outcome:
        current = max((v for _, s, v, _ in self.log if s == stream), default=0)
        if expect is not None and expect != current:
            return ("err", "StreamConflictError")
        self.seq += 1
        self.log.append((self.seq, stream, current + 1, copy.deepcopy(event)))
        return ("ok", (self.seq, current + 1))

    def op_read(self, stream: str | None, prefix: str | None, after: int, limit: int | None) -> Outcome:
        rows = [
            e
            for e in self.log
            if e[0] > after and (stream is None or e[1] == stream) and (prefix is None or e[1].startswith(prefix))
        ]
        return ("ok", rows if limit is None else rows[:limit])

    def op_last_seq(self) -> Outcome:
        return ("ok", self.seq)


def run(store: ss.Store, op: Op) -> Outcome:
    """Apply ``op`` to a real store, in the model's terms."""
    name, *args = op
    tasks, accounts, events = store[TASKS], store[ACCOUNTS], store[EVENTS]
    actions: dict[str, Callable[..., Any]] = {
        "put": lambda t, e: tasks.put(t, expect_revision=e),
        "insert": tasks.insert,
        "update": lambda k, d: tasks.update(k, lambda t: attrs.evolve(t, points=t.points + d)),
        "delete": tasks.delete,
        "get": lambda k: (lambda v: None if v is None else (v.record, v.revision))(tasks.get_versioned(k)),
        "find_status": lambda s: [t.id for t in tasks.find(status=s)],
        "find_done": lambda d: [t.id for t in tasks.find(done=d)],
        "keys": lambda: (tasks.keys(), len(tasks)),
        "replace_all": tasks.replace_all,
        "put_account": accounts.put,
        "delete_account": accounts.delete,
        "append": lambda ev, s, e: (lambda en: (en.seq, en.version))(events.append(ev, stream=s, expect_version=e)),
        "read": lambda s, p, a, lim: [
            (e.seq, e.stream, e.version, e.record) for e in events.read(stream=s, stream_prefix=p, after=a, limit=lim)
        ],
        "last_seq": events.last_seq,
    }
    try:
        return ("ok", actions[name](*args))
    except ss.StateStoreError as exc:
        return ("err", type(exc).__name__)


task_keys = st.sampled_from(["a", "b", "B", "t1", "t10", "ä", "../x", "CON", "a b"])
expects = st.one_of(st.none(), st.integers(0, 3))
ops = st.one_of(
    st.tuples(st.just("put"), sst.tasks(task_keys), expects),
    st.tuples(st.just("insert"), sst.tasks(task_keys)),
    st.tuples(st.just("update"), task_keys, st.integers(-2, 2)),
    st.tuples(st.just("delete"), task_keys),
    st.tuples(st.just("get"), task_keys),
    st.tuples(st.just("find_status"), sst.statuses),
    st.tuples(st.just("find_done"), st.booleans()),
    st.tuples(st.just("keys")),
    st.tuples(st.just("replace_all"), st.lists(sst.tasks(task_keys), max_size=4)),
    st.tuples(st.just("put_account"), sst.accounts()),
    st.tuples(st.just("delete_account"), st.sampled_from(["a", "b", "c", "d"])),
    st.tuples(st.just("append"), sst.events(), sst.streams, st.one_of(st.none(), st.integers(0, 2))),
    st.tuples(
        st.just("read"),
        st.one_of(st.none(), sst.streams),
        st.none(),
        st.integers(0, 6),
        st.one_of(st.none(), st.integers(0, 3)),
    ),
    st.tuples(st.just("read"), st.none(), sst.stream_prefixes, st.integers(0, 6), st.none()),
    st.tuples(st.just("last_seq")),
)


class BackendsAgree(RuleBasedStateMachine):
    backends: ClassVar[list[str]] = BACKENDS
    #: Makes a fresh PostgreSQL location (set while test_postgres_agrees runs).
    postgres_url: ClassVar[Callable[[], str] | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="statestore-stateful-"))
        self.locations = {
            "sqlite": f"sqlite:{self.dir / 'state.db'}",
            "memory": "memory:",
            "files": f"files:{self.dir / 'files'}",
        }
        if self.postgres_url is not None:
            self.locations["postgres"] = type(self).postgres_url()  # type: ignore[misc]
        self.stores = {b: ss.open_store(self.locations[b], SCHEMA) for b in self.backends}
        self.model = Model()

    def _all(self, fn: Callable[[ss.Store], Outcome]) -> dict[str, Outcome]:
        return {b: fn(s) for b, s in self.stores.items()}

    def _check(self, expected: Any, got: dict[str, Any]) -> None:
        for backend, outcome in got.items():
            assert outcome == expected, f"{backend}: {outcome!r} != model {expected!r}"

    @rule(op=ops)
    def operation(self, op: Op) -> None:
        expected = self.model.apply(op)
        self._check(expected, self._all(lambda s: run(s, op)))

    @rule(batch=st.lists(ops, min_size=1, max_size=5), fail=st.booleans())
    def transaction(self, batch: list[Op], fail: bool) -> None:
        snapshot = copy.deepcopy(self.model)
        expected = [self.model.apply(op) for op in batch]
        if fail:
            self.model = snapshot

        def in_transaction(store: ss.Store) -> Any:
            outcomes: list[Outcome] = []
            try:
                with store.transaction():
                    outcomes.extend(run(store, op) for op in batch)
                    if fail:
                        raise Rollback
            except Rollback:
                pass
            return outcomes

        self._check(expected, self._all(in_transaction))

    @precondition(lambda self: any(b != "memory" for b in self.stores))
    @rule()
    def close_and_reopen(self) -> None:
        for backend in self.stores:
            if backend != "memory":
                self.stores[backend].close()
                self.stores[backend] = ss.open_store(self.locations[backend], SCHEMA)

    @invariant()
    def same_contents(self) -> None:
        expected_tasks = [(k, r, t) for k, (r, t) in sorted(self.model.tasks.items())]
        expected_accounts = [(k, r, a) for k, (r, a) in sorted(self.model.accounts.items())]
        for backend, store in self.stores.items():
            tasks = [(k, v.revision, v.record) for k in store[TASKS] if (v := store[TASKS].get_versioned(k))]
            assert tasks == expected_tasks, backend
            accounts = [(k, v.revision, v.record) for k in store[ACCOUNTS] if (v := store[ACCOUNTS].get_versioned(k))]
            assert accounts == expected_accounts, backend

    def teardown(self) -> None:
        for store in self.stores.values():
            store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestBackendsAgree = BackendsAgree.TestCase


class BackendsAgreeWithPostgres(BackendsAgree):
    backends: ClassVar[list[str]] = ["postgres", "sqlite"]


def test_postgres_agrees_with_sqlite_and_the_model(postgres_server: Any) -> None:
    """The same random operations on PostgreSQL (a fresh schema per example), SQLite and the model."""
    BackendsAgreeWithPostgres.postgres_url = postgres_server.url
    try:
        run_state_machine_as_test(BackendsAgreeWithPostgres, settings=settings(max_examples=10, deadline=None))
    finally:
        BackendsAgreeWithPostgres.postgres_url = None
