"""Fixtures shared by the project's tests: the backend-parametrized store factory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import statestore as ss
from statestore.testing import StoreFactory

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, stateful_step_count=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _location(backend: str, tmp_path: Path) -> tuple[str, Path | None]:
    if backend == "sqlite":
        path = tmp_path / "store" / "state.db"
        return f"sqlite:{path}", path
    if backend == "files":
        path = tmp_path / "store" / "state"
        return f"files:{path}", path
    return "memory:", None


def make_factory(backend: str, tmp_path: Path) -> StoreFactory:
    """A factory opening one store location of ``backend`` under ``tmp_path``."""
    location, path = _location(backend, tmp_path)
    if backend == "memory":
        return StoreFactory(lambda schema, mode, **options: ss.open_store(location, schema, mode=mode, **options))
    return StoreFactory(
        lambda schema, mode, **options: ss.open_store(location, schema, mode=mode, busy_timeout=10, **options), path
    )


ALL_BACKENDS = ["sqlite", "files", "memory"]
PERSISTENT_BACKENDS = ["sqlite", "files"]


@pytest.fixture(params=ALL_BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores of each backend in turn; closes them after the test."""
    factory = make_factory(request.param, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture(params=PERSISTENT_BACKENDS)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Like store_factory, for backends that keep data across close and reopen."""
    factory = make_factory(request.param, tmp_path)
    yield factory
    factory.close_all()
