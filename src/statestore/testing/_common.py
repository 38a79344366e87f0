"""What the contract modules share: awkward keys and a record maker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from statestore.store import Store
from statestore.testing.models import Task

__all__ = ["AWKWARD_KEYS", "StoreFixture", "task"]


class StoreFixture:
    """Gives the contract classes their ``store`` fixture, from the ``store_factory`` the test module provides.

    It is defined on the classes, not by a plugin, so it exists only inside
    them: installing statestore adds no ``store`` fixture to anyone's tests.
    """

    @pytest.fixture
    def store(self, store_factory: Any) -> Iterator[Store]:
        """A new, empty store of the contract schema, opened for writing; closed after the test."""
        opened = store_factory()
        try:
            yield opened
        finally:
            store_factory.close_all()


AWKWARD_KEYS = [
    "plain",
    "with space",
    "a/b",
    "../escape",
    "..",
    ".",
    ".hidden",
    "back\\slash",
    "Foo",
    "foo",
    "FOO",
    "CON",
    "nul.txt",
    "ünïcödé ✓",
    "日本語",
    "emoji 🎉",
    "x" * 300,
    "trailing.",
    "trailing ",
    "pct%_like",
    "quote\"'",
    "nul\x00byte",
    "new\nline",
]


def task(key: str = "t1", **kw: Any) -> Task:
    return Task(key, **kw)
