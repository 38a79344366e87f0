"""The statestore contract suite, shipped so any backend can prove it behaves the same.

Subclass the contract classes in your own test module and provide a
``store_factory`` fixture returning a :class:`StoreFactory`; the classes make
their ``store`` fixture from it. Install ``statestore[testing]`` for pytest
and Hypothesis. See docs/testing.md.
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
    QueryContract,
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
    "QueryContract",
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
    before the first open). ``open_at(path, schema, mode)`` opens a store of
    the same backend at another path (a backup the backend took beside the
    store); without it, the factory opens that path with the backend named by
    the location of a store it opened (``sqlite:…``, ``files:…``).
    """

    def __init__(
        self,
        opener: Callable[..., Store],
        path: Path | None = None,
        *,
        open_at: Callable[[Path, Schema | Sequence[Schema], Mode], Store] | None = None,
    ) -> None:
        self._opener = opener
        self._path = path
        self._open_at = open_at
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

    def open_at(self, path: Path, schema: Schema | Sequence[Schema] = SCHEMA, *, mode: Mode = "read") -> Store:
        """Open the store at ``path`` (e.g. a backup of this factory's store) with the same backend.

        ValueError if the factory has neither an ``open_at`` callable nor a
        store it opened whose location names its backend.
        """
        if self._open_at is not None:
            store = self._open_at(path, schema, mode)
        else:
            from statestore.backends.locations import Location, connect, parse_location
            from statestore.store import schemas_of

            if not self.opened:
                raise ValueError("open a store with this factory first, or give it open_at=")
            try:
                backend = parse_location(self.opened[0].location).backend
            except ValueError:
                raise ValueError(
                    f"the backend of {self.opened[0].location!r} is not known here: give the factory open_at="
                ) from None
            store = connect(Location(backend, path), schemas_of(schema), mode=mode)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        """Close every store this factory opened (closing twice is harmless)."""
        for store in self.opened:
            store.close()
        self.opened.clear()
