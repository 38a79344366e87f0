"""Fixtures shared by the project's tests: the backend-parametrized store factory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import _postgres
import _sqlite_raw
import statestore as ss
from statestore.testing import StoreFactory

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, stateful_step_count=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _close_raw_sqlite_connections() -> Iterator[None]:
    """Close the plain sqlite3 connections a test opened through ``_sqlite_raw`` (3.13 warns of one left open)."""
    yield
    _sqlite_raw.close_raw()


def postgres_unavailable(reason: str) -> None:
    """Skip the calling test, saying why; fail it instead when STATESTORE_REQUIRE_POSTGRES=1 (CI)."""
    if _postgres.required():
        pytest.fail(f"{_postgres.REQUIRE_VARIABLE}=1 but the PostgreSQL tests cannot run: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[_postgres.PostgresServer]:
    """A real PostgreSQL server for the whole run, in a temporary folder (tests/_postgres.py).

    Skips, saying why, where the machine has no PostgreSQL binaries or no
    psycopg; with STATESTORE_REQUIRE_POSTGRES=1 (CI) that fails instead.
    """
    reason = _postgres.why_unavailable()
    if reason is not None:
        postgres_unavailable(reason)
    bindir = _postgres.find_bindir()
    assert bindir is not None
    server = _postgres.PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class PostgresFactory(StoreFactory):
    """A factory opening one fresh PostgreSQL schema (``pg_schema``) of ``server``.

    A backup's "path" is its schema's name, so ``open_at`` opens that schema.
    """

    def __init__(self, server: _postgres.PostgresServer) -> None:
        self.server = server
        self.pg_schema = _postgres.new_schema_name()
        self.location = server.url(self.pg_schema)
        location = self.location

        def open_at(path: Path, schema: ss.Schema | list[ss.Schema], mode: str) -> ss.Store:
            return ss.open_store(server.url(path.name), schema, mode=mode)  # type: ignore[arg-type]

        super().__init__(
            lambda schema, mode, **options: ss.open_store(location, schema, mode=mode, busy_timeout=10, **options),
            open_at=open_at,
        )

    def schemas(self) -> list[str]:
        """The PostgreSQL schemas whose name starts with this factory's (the store's and its backups)."""
        import psycopg

        with psycopg.connect(self.server.conninfo()) as con:
            rows = con.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY nspname", (self.pg_schema,)
            ).fetchall()
        return [r[0] for r in rows]


def postgres_factory(server: _postgres.PostgresServer) -> PostgresFactory:
    """A factory opening one fresh PostgreSQL schema of ``server``; backups open by their schema name."""
    return PostgresFactory(server)


def _location(backend: str, tmp_path: Path) -> tuple[str, Path | None]:
    if backend not in ("sqlite", "files", "memory"):
        raise ValueError(f"make_factory opens sqlite, files and memory stores, not {backend!r} (see postgres_factory)")
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


ALL_BACKENDS = ["sqlite", "files", "memory", "postgres"]
PERSISTENT_BACKENDS = ["sqlite", "files"]


@pytest.fixture(params=ALL_BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores of each backend in turn; closes them after the test (PostgreSQL: a fresh schema)."""
    if request.param == "postgres":
        factory = postgres_factory(request.getfixturevalue("postgres_server"))
    else:
        factory = make_factory(request.param, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture(params=PERSISTENT_BACKENDS)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Like store_factory, for backends that keep data across close and reopen."""
    factory = make_factory(request.param, tmp_path)
    yield factory
    factory.close_all()
