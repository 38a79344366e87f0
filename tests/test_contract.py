"""The shipped contract suite, run on every backend of this package."""

from __future__ import annotations

import pytest

from statestore.testing import MigrationContract, PersistenceContract, StoreContract, StoreFactory


class TestStore(StoreContract):
    """Every protocol behaviour, on every backend (store_factory is parametrized)."""


class TestPersistence(PersistenceContract):
    """Reopen, read mode and schema versions, on the backends that persist."""

    @pytest.fixture
    def store_factory(self, persistent_factory: StoreFactory) -> StoreFactory:
        return persistent_factory


class TestMigrations(MigrationContract):
    """Migrations, history, backups and several schemas, on the backends that persist."""

    @pytest.fixture
    def store_factory(self, persistent_factory: StoreFactory) -> StoreFactory:
        return persistent_factory
