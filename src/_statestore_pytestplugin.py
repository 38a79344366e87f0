"""pytest plugin (entry point ``pytest11``): one opt-in fixture, ``statestore_store``.

Installing statestore must not change anyone else's tests, so the plugin
defines no plain names (no ``store``, no ``store_factory``): only
``statestore_store``, a fresh store from the ``store_factory`` fixture that
your test module or conftest provides (a :class:`statestore.testing.StoreFactory`),
closed after the test with every other store the factory opened. The
contract classes of :mod:`statestore.testing` need no plugin: they carry
their own ``store`` fixture.

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
def statestore_store(store_factory: StoreFactory) -> Iterator[Store]:
    """A new, empty store from your ``store_factory`` fixture, opened for writing; closed after the test."""
    opened = store_factory()
    try:
        yield opened
    finally:
        store_factory.close_all()
