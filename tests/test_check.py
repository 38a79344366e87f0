"""`statestore check` reports every record and entry a reader with the app's classes would refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import statestore as ss
from statestore.cli import main
from statestore.codec import dumps


@attrs.define
class Thing:
    id: str
    n: int = 0
    ok: bool = False


@attrs.define
class Said:
    text: str


THINGS = ss.Collection("things", Thing, key="id")
SAID = ss.Log("said", Said)
SCHEMA = ss.Schema("checked", version=1, collections=[THINGS], logs=[SAID])


@pytest.fixture(params=["sqlite", "files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    return f"sqlite:{tmp_path}/s.db" if request.param == "sqlite" else f"files:{tmp_path}/s"


def _plant(store: ss.Store, key: str, data: dict[str, Any]) -> None:
    with store.transaction():
        store._write(THINGS, key, 1, data, dumps(data))


def test_check_lists_every_record_a_reader_would_refuse(location: str) -> None:
    with ss.open_store(location, SCHEMA) as store:
        store[THINGS].put(Thing("fine"))
        _plant(store, "extra", {"id": "extra", "colour": "red", "shade": 2**64})
        _plant(store, "typed", {"id": "typed", "n": "3", "ok": 1})
        _plant(store, "big", {"id": "big", "n": 2**70})
        with store.transaction():
            data = {"text": 5}
            store._add_entry(SAID, "s", 1, "2024-05-17T12:00:00+00:00", data, dumps(data))
    result = CliRunner().invoke(main, ["check", location])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert problems == [
        "problem: collection things: 'big' at $.n: expected an int from -2**63 to 2**63-1, got 1180591620717411303424",
        "problem: collection things: 'extra' has field(s) its declaration does not have: colour, shade",
        "problem: collection things: 'extra' at $.shade: expected an integer from -2**63 to 2**63-1, "
        "got 18446744073709551616",
        "problem: collection things: 'typed' at $.n: expected int, got \"3\"",
        "problem: collection things: 'typed' at $.ok: expected bool (true or false), got 1",
        "problem: log said: seq 1 at $.text: expected str, got 5",
    ]
    with ss.open_store(location, SCHEMA, mode="read") as store:  # and a reader does refuse each of them
        for key in ("extra", "typed", "big"):
            with pytest.raises(ss.ValidationError):
                store[THINGS].get(key)
        with pytest.raises(ss.ValidationError):
            store[SAID].read()


def test_check_passes_a_store_the_codec_wrote(location: str) -> None:
    with ss.open_store(location, SCHEMA) as store:
        store[THINGS].put(Thing("a", n=-(2**63), ok=True))
        store[SAID].append(Said("hi"), stream="s")
    result = CliRunner().invoke(main, ["check", location])
    assert result.exit_code == 0, result.output


@attrs.define
class Server:
    name: str
    port: int | None = None


SERVERS = ss.Collection("servers", Server, key="name", unique=["port"])
REGISTRY = ss.Schema("registry", version=1, collections=[SERVERS])


def test_check_finds_records_that_share_a_unique_value(location: str) -> None:
    with ss.open_store(location, REGISTRY) as store:
        store[SERVERS].put(Server("api", 8080))
        store[SERVERS].put(Server("none"))
        store[SERVERS].put(Server("none2"))  # no port twice: never a clash
        if location.startswith("sqlite:"):
            store._execute("DROP INDEX _statestore_uj__servers__port")  # as a store made by hand could be
        elif location.startswith("postgresql:"):
            from statestore.backends.postgres.columns import index_name

            store._execute(f"DROP INDEX {store._t(index_name('uq', 'servers', ('port',)))}")
        data = {"name": "admin", "port": 8080}
        with store.transaction():
            store._write(SERVERS, "admin", 1, data, dumps(data))  # past the shared layer's check
    result = CliRunner().invoke(main, ["check", location])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert problems == ["problem: collection servers: 'admin' and 'api' share unique port=8080"]
