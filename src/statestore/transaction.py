"""The object ``store.transaction()`` returns: one block of a store's transaction.

It holds no state of the transaction itself: ``Store._open_block`` begins
the transaction (or a savepoint inside one) and ``Store._close_block``
commits, releases or rolls it back. ``Store._open_write`` and
``_close_write`` (what ``update`` and ``append`` use) call the two without
this object.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statestore.store import Store

__all__ = ["Transaction"]


class Transaction:
    """One ``with store.transaction():`` block (a class, not a generator: every
    single write runs inside one, and the generator machinery cost ~2 µs)."""

    __slots__ = ("depth", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.depth = -1  # set on entry: an object serves one block, like a generator context

    def __enter__(self) -> None:
        if self.depth >= 0:
            raise RuntimeError("a store.transaction() object is used once; call store.transaction() again")
        store = self.store
        self.depth = store._open_block(store.mode == "write")

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.store._close_block(self.depth, exc is not None)  # an exception propagates
