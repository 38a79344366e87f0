"""The contract every statestore backend must meet, written once for all of them.

Each test takes the ``store`` fixture (a fresh, empty store of
:data:`~statestore.testing.models.SCHEMA`) or the ``store_factory`` fixture
(``store_factory(schema=SCHEMA, *, mode="write") -> Store``, every call opening
the *same* location). Subclass the classes in a test module of your own and
provide ``store_factory``; see docs/testing.md.
The contracts live one per module: ``_collections``, ``_logs``,
``_queries``, ``_transactions``, ``_types``, ``_drift``, ``_persistence`` and
``_migrations`` (with ``_migration_steps``, whose tests it inherits, and
``_migration_app``, the app they migrate).
"""

from __future__ import annotations

import pickle

import attrs
import pytest

import statestore as ss
from statestore.testing._collections import CollectionContract
from statestore.testing._common import AWKWARD_KEYS
from statestore.testing._common import task as _task
from statestore.testing._drift import DriftContract
from statestore.testing._logs import LogContract
from statestore.testing._migrations import MigrationContract
from statestore.testing._persistence import PersistenceContract
from statestore.testing._queries import QueryContract
from statestore.testing._transactions import TransactionContract
from statestore.testing._types import TypesContract
from statestore.testing.models import (
    EVENTS,
    TASKS,
    Event,
)

__all__ = [
    "AWKWARD_KEYS",
    "CollectionContract",
    "DriftContract",
    "LogContract",
    "MigrationContract",
    "PersistenceContract",
    "QueryContract",
    "StoreContract",
    "TransactionContract",
    "TypesContract",
]


class StoreContract(CollectionContract, QueryContract, LogContract, TransactionContract, TypesContract):
    """Every behaviour a backend must share, for a store that may be in memory."""

    def test_close_is_idempotent_and_final(self, store: ss.Store) -> None:
        store.close()
        store.close()
        assert store.closed
        with pytest.raises(ss.StoreClosedError):
            store[TASKS].get("t1")
        with pytest.raises(ss.StoreClosedError):
            store[TASKS].put(_task())
        with pytest.raises(ss.StoreClosedError):
            store[TASKS].update("t1", lambda t: t)
        with pytest.raises(ss.StoreClosedError):
            store[EVENTS].append(Event("x"))
        with pytest.raises(ss.StoreClosedError):
            store[EVENTS].read()

    def test_context_manager_closes(self, store: ss.Store) -> None:
        with store as same:
            assert same is store
        assert store.closed

    @pytest.mark.parametrize(
        "error",
        [
            ss.NotFoundError("tasks", "t1"),
            ss.ConflictError("tasks", "t1", 1, 2),
            ss.AlreadyExistsError("tasks", ("a", 1), 0, 1),
            ss.UniqueViolationError("accounts", "b", 0, 0, fields=("email",), value="x", existing_key="a"),
            ss.StreamConflictError("events", "s", 1, 2),
            ss.ReadOnlyError("sqlite:x.db", "put"),
            ss.StoreBusyError("sqlite:x.db", 1.5),
            ss.StoreNotFoundError("files:x", legacy="/old"),
            ss.CorruptStoreError("files:x", "bad", line=3),
            ss.SchemaTooNewError("x", "s", 3, 2),
            ss.MigrationRequiredError("x", "s", 1, 2),
            ss.ValidationError("tasks", "t1", "$.due", "bad"),
            ss.SchemaError("bad name", "collection 'X'"),
            ss.MigrationError("x", "s", 3, "rename", "up", "boom", "users", "k"),
            ss.MigrationHistoryError("x", "s", 3, "renamed"),
        ],
    )
    def test_errors_pickle_and_name_their_subject(self, error: ss.StateStoreError) -> None:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert attrs.asdict(copy) == attrs.asdict(error)
        assert str(copy) == str(error)
        assert isinstance(copy, ss.StateStoreError)
