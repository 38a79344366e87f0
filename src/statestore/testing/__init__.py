"""The statestore contract suite, shipped so any backend can prove it behaves the same.

Subclass the contract classes in your own test module and provide a
``store_factory`` fixture returning a :class:`StoreFactory`; the pytest plugin
(module ``_statestore_pytestplugin``, registered through the ``pytest11`` entry point when statestore is
installed) supplies the ``store`` fixture from it. See the README.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from statestore.schema import Schema
from statestore.store import Mode, Store
from statestore.testing.contract import (
    CollectionContract,
    DriftContract,
    LogContract,
    MigrationContract,
    PersistenceContract,
    StoreContract,
    TransactionContract,
    TypesContract,
)
from statestore.testing.models import SCHEMA

__all__ = [
    "SCHEMA",
    "CollectionContract",
    "DriftContract",
    "LogContract",
    "MigrationContract",
    "PersistenceContract",
    "StoreContract",
    "StoreFactory",
    "TransactionContract",
    "TypesContract",
]


class StoreFactory:
    """Opens stores at one location and closes them all at the end of a test.

    ``opener(schema, mode)`` opens the store; every call must open the *same*
    location, so a test can close a store and reopen it. ``path`` is where the
    store lives (needed by :class:`PersistenceContract`; it must not exist
    before the first open).
    """

    def __init__(self, opener: Callable[..., Store], path: Path | None = None) -> None:
        self._opener = opener
        self._path = path
        self.opened: list[Store] = []

    @property
    def path(self) -> Path:
        """The store's file or folder; ValueError if the factory has none (in-memory stores)."""
        if self._path is None:
            raise ValueError("this store factory has no path (in-memory backend)")
        return self._path

    def __call__(self, schema: Schema | Sequence[Schema] = SCHEMA, *, mode: Mode = "write", **options: Any) -> Store:
        """Open the store; ``options`` (``backup``, ``check_history``) go to the opener as keywords."""
        store = self._opener(schema, mode, **options) if options else self._opener(schema, mode)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        """Close every store this factory opened (closing twice is harmless)."""
        for store in self.opened:
            store.close()
        self.opened.clear()
