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


# ---------------------------------------------------------------- opening without the app's code


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_open_without_schema_reads_described_records(tmp_path: Path, backend: str) -> None:
    from statestore.testing.models import EVENTS, TASKS, TICKETS, Event, Task, Ticket

    location = f"sqlite:{tmp_path}/s.db" if backend == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(location, SCHEMA) as store:
        store[TASKS].put(Task("t1", "one", status="doing"))
        store[TICKETS].put(Ticket(10, "ten"))
        store[EVENTS].append(Event("created", "ann"), stream="task:t1")
    with ss.open_store(location, mode="read") as store:
        assert [s.name for s in store.schemas] == ["contract"]
        assert store.schema.is_described
        assert [c.name for c in store.collections] == ["tasks", "tickets", "settings", "accounts"]
        tasks = store.schema.collection("tasks")
        assert tasks is not None
        got = store[tasks].get("t1")
        assert isinstance(got, dict)
        assert (got["title"], got["status"]) == ("one", "doing")
        assert [t["id"] for t in store[tasks].find(status="doing")] == ["t1"]
        tickets = store.schema.collection("tickets")
        assert tickets is not None
        assert store[tickets].keys() == [10]
        events = store.schema.log("events")
        assert events is not None
        [entry] = store[events].read(stream="task:t1")
        assert entry.record == {"actor": "ann", "n": 0, "type": "created"}
        with pytest.raises(ss.ReadOnlyError):
            store[tasks].put({"id": "t2"})


def test_open_without_schema_holds_every_schema(tmp_path: Path) -> None:
    other = ss.Schema("other", version=3, collections=[])
    ss.SQLiteStore(tmp_path / "s.db", [SCHEMA, other]).close()
    with ss.open_store(f"{tmp_path}/s.db", mode="read") as store:
        assert sorted((s.name, s.version) for s in store.schemas) == [("contract", 1), ("other", 3)]


def test_open_without_schema_needs_read_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode='read'"):
        ss.open_store(f"{tmp_path}/s.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("location", ["s.db", "files:s", "memory:"])
def test_open_without_schema_missing_store(tmp_path: Path, location: str) -> None:
    if location != "memory:":
        location = f"{tmp_path}/{location}" if ":" not in location else f"files:{tmp_path}/s"
    with pytest.raises(ss.StoreNotFoundError):
        ss.open_store(location, mode="read")
    assert list(tmp_path.iterdir()) == []


def test_open_without_schema_not_a_store(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "text.db").write_text("not a database\n" * 50)
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("create table t (x)")
    con.close()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("hello")
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "statestore.json").write_text("{")
    with pytest.raises(ss.BackendError, match="is a file, not a store"):  # not "corrupt": it is no store at all
        ss.open_store(f"files:{tmp_path}/text.db", mode="read")
    for location in ["text.db", "other.db", "files:dir", "files:manifest", "sqlite:dir"]:
        path = location.partition(":")[2] if ":" in location else location
        prefix = location.partition(":")[0] + ":" if ":" in location else ""
        with pytest.raises(ss.CorruptStoreError):
            ss.open_store(f"{prefix}{tmp_path}/{path}", mode="read")
