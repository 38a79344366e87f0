"""``statestore backups``: list a store's backups, prune the older ones; nothing else beside the store is touched."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import statestore as ss
from statestore.cli import main

APP = """
import attrs
import statestore as ss

@attrs.define
class Note:
    id: str
    tag: str = ""

NOTES = ss.Collection("notes", Note, key="id")

def tag(m):
    m.map_records("notes", lambda d: {**d, "tag": "x"})

def untag(m):
    m.map_records("notes", lambda d: {**d, "tag": ""})

V1 = ss.Schema("bk", version=1, collections=[NOTES])
V2 = ss.Schema("bk", version=2, collections=[NOTES], migrations=[ss.Migration(2, "tag", up=tag, down=untag)])
"""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(params=["sqlite", "files", "postgres"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store migrated up, down and up again: three backups, before v1, v2 and v1."""
    (tmp_path / "cli_backups_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    import cli_backups_app as app  # type: ignore[import-not-found]

    if request.param == "postgres":
        loc = str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    else:
        loc = f"sqlite:{tmp_path}/s.db" if request.param == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(loc, app.V1):
        pass
    with ss.open_store(loc, app.V2) as store:
        store.migrate(1)
    with ss.open_store(loc, app.V2):
        pass
    (tmp_path / "s.backup-notes.txt").write_text("mine")  # not a backup: never listed nor deleted
    (tmp_path / "other.backup-bk-v1-20250101T000000Z-abcd.db").write_text("another store's")
    return loc


def test_backups_lists_them_oldest_first(migrated: str) -> None:
    result = run("backups", migrated, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [b["before"] for b in data["backups"]] == ["bk-v1", "bk-v2", "bk-v1"]
    assert all(b["bytes"] > 0 for b in data["backups"])
    out = run("backups", migrated).output
    assert len(out.splitlines()) == 4  # piped: the column names and one line per backup
    assert all(b["path"] in out for b in data["backups"])


def test_prune_keeps_the_newest(migrated: str, tmp_path: Path) -> None:
    before = json.loads(run("backups", migrated, "--json").output)["backups"]
    result = run("backups", migrated, "--prune", "--keep", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [b["path"] for b in data["removed"]] == [before[0]["path"]]
    assert [b["path"] for b in data["backups"]] == [b["path"] for b in before[1:]]
    if migrated.startswith("postgresql:"):  # a backup is a schema on the server
        from statestore.backends.postgres import find_backups as schemas

        assert [b[0] for b in schemas(migrated)] == [b["path"] for b in before[1:]]
    else:
        assert not Path(before[0]["path"]).exists()
        assert Path(before[2]["path"]).exists()
    assert (tmp_path / "s.backup-notes.txt").read_text() == "mine"
    assert (tmp_path / "other.backup-bk-v1-20250101T000000Z-abcd.db").exists()
    out = run("backups", migrated, "--prune", "--keep", "0").output
    assert out.count("removed ") == 2
    assert "no backups" in out
    with ss.open_store(migrated, mode="read") as store:  # the store itself is untouched
        assert store.schemas[0].version == 2


def test_prune_needs_keep(migrated: str) -> None:
    assert run("backups", migrated, "--prune").exit_code == 2
    assert run("backups", migrated, "--keep", "1").exit_code == 2
    result = run("backups", "memory:")
    assert result.exit_code == 1
    assert "no backups" in result.output
