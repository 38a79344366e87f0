"""The pytest plugin and the shipped contract suite, as another project uses them."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import statestore as ss
from statestore.testing import MigrationContract, StoreFactory


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in another project's folder (no conftest of ours, statestore installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_installing_statestore_adds_no_plain_store_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_theirs.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def store_factory():
                return "their own factory"

            def test_uses_a_store_of_their_own(store):
                pass
            """
        )
    )
    done = _pytest(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "fixture 'store' not found" in done.stdout
    assert "statestore_store" in done.stdout  # listed among the available fixtures: opt-in, prefixed


def test_the_prefixed_fixture_and_the_contract_classes_work_in_another_project(tmp_path: Path) -> None:
    (tmp_path / "test_backend.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import statestore as ss
            from statestore.testing import SCHEMA, MigrationContract, StoreFactory

            @pytest.fixture
            def store_factory(tmp_path):
                path = tmp_path / "state"   # no .db suffix: the backend is not guessed from it
                factory = StoreFactory(lambda schema, mode, **kw: ss.SQLiteStore(path, schema, mode=mode, **kw), path)
                yield factory
                factory.close_all()

            def test_prefixed(statestore_store):
                assert statestore_store.schemas[0].name == SCHEMA.name

            class TestMine(MigrationContract):
                pass
            """
        )
    )
    done = _pytest(tmp_path, "-k", "prefixed or test_backup_is_taken")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


def test_the_contract_classes_need_no_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_backend.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import statestore as ss
            from statestore.testing import StoreContract, StoreFactory

            @pytest.fixture
            def store_factory():
                factory = StoreFactory(lambda schema, mode, **kw: ss.open_store("memory:", schema, mode=mode, **kw))
                yield factory
                factory.close_all()

            class TestMemory(StoreContract):
                pass
            """
        )
    )
    done = _pytest(tmp_path, "-p", "no:statestore", "-k", "close_is_idempotent or insert")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout


@pytest.mark.parametrize("name", ["state", "state.sqlite", "state.bin"])
def test_the_backup_test_asks_the_factory(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    factory = StoreFactory(lambda schema, mode, **kw: ss.SQLiteStore(path, schema, mode=mode, **kw), path)
    try:
        MigrationContract().test_backup_is_taken_before_the_first_pending_migration(factory)
    finally:
        factory.close_all()


def test_open_at_without_a_store_or_a_known_backend(tmp_path: Path) -> None:
    factory = StoreFactory(lambda schema, mode, **kw: ss.open_store("memory:", schema, mode=mode, **kw))
    with pytest.raises(ValueError, match="open a store with this factory first"):
        factory.open_at(tmp_path / "x")
    custom = StoreFactory(
        lambda schema, mode, **kw: ss.open_store(f"files:{tmp_path}/a", schema, mode=mode, **kw),
        tmp_path / "a",
        open_at=lambda path, schema, mode: ss.open_store(f"files:{path}", schema, mode=mode),
    )
    with custom.open_at(tmp_path / "b", mode="write") as store:
        assert store.location == f"files:{tmp_path / 'b'}"
    custom.close_all()


def test_the_testing_extra_brings_pytest_and_hypothesis() -> None:
    requires = importlib.metadata.requires("statestore") or []
    testing = [r.split(";")[0].strip() for r in requires if 'extra == "testing"' in r]
    assert any(r.startswith("pytest") for r in testing), requires
    assert any(r.startswith("hypothesis") for r in testing), requires
