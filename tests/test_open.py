"""Locations, open_store arguments and state_path."""

from __future__ import annotations

from pathlib import Path

import pytest

import statestore as ss
from statestore.testing.models import SCHEMA


@pytest.mark.parametrize(
    ("location", "backend", "path"),
    [
        ("sqlite:state.db", "sqlite", "state.db"),
        ("sqlite:state", "sqlite", "state"),
        ("files:./state", "files", "state"),
        ("files:state.db", "files", "state.db"),
        ("memory:", "memory", None),
        ("state.db", "sqlite", "state.db"),
        ("x/state.SQLITE3", "sqlite", "x/state.SQLITE3"),
        ("state.sqlite", "sqlite", "state.sqlite"),
        ("state", "files", "state"),
        ("state.json", "files", "state.json"),
        (Path("a/b.db"), "sqlite", "a/b.db"),
    ],
)
def test_parse_location(location: str, backend: str, path: str | None) -> None:
    loc = ss.parse_location(location)
    assert loc.backend == backend
    assert loc.path == (None if path is None else Path(path))


def test_parse_location_expands_home() -> None:
    assert ss.parse_location("sqlite:~/x.db").path == Path.home() / "x.db"


@pytest.mark.parametrize("location", ["", "sqlite:", "files:", "memory:x"])
def test_bad_locations(location: str) -> None:
    with pytest.raises(ss.ValidationError):
        ss.parse_location(location)


def test_location_str_round_trips() -> None:
    assert str(ss.parse_location("sqlite:a.db")) == "sqlite:a.db"
    assert str(ss.parse_location("memory:")) == "memory:"


def test_open_store_checks_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        ss.open_store("memory:", SCHEMA, mode="append")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="durability"):
        ss.open_store("memory:", SCHEMA, durability="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Schema"):
        ss.open_store("memory:", "tracker")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_memory_in_read_mode_has_nothing_to_read() -> None:
    with pytest.raises(ss.StoreNotFoundError):
        ss.open_store("memory:", SCHEMA, mode="read")


def test_plain_path_opens_sqlite(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "x.db", SCHEMA) as store:
        assert isinstance(store, ss.SQLiteStore)


def test_state_path_is_per_app() -> None:
    path = ss.state_path("tracker")
    assert path.is_absolute()
    assert "tracker" in path.parts
    assert not path.exists() or path.is_dir()
