"""pytest plugin (entry point ``pytest11``) for running the statestore contract suite.

It supplies the ``store`` fixture the contract classes use: a fresh store from
the ``store_factory`` fixture that the test module provides, closed after the
test together with every other store the factory opened.

This is a top-level module that imports statestore only inside the fixture
(as Hypothesis does with its plugin), so that coverage measurement, which
starts after plugins load, still sees statestore's modules being imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from statestore.store import Store
    from statestore.testing import StoreFactory


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    """A new, empty store of the contract schema, opened for writing."""
    opened = store_factory()
    try:
        yield opened
    finally:
        store_factory.close_all()
