"""Errors say what to do next, and conversion works where the file backend cannot (no fcntl)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import statestore as ss
from statestore.testing.models import SCHEMA, TICKETS, Ticket


def test_a_refused_legacy_import_says_how_to_go_on(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "tickets.json").write_text('[{"number": 1}, {"number": "two"}]\n')
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("tickets.json", into=TICKETS)])
    with pytest.raises(ss.LegacyImportError) as info:
        ss.import_legacy(f"sqlite:{tmp_path}/new.db", SCHEMA, ss.Legacy(root, layout))
    assert 'on_error="quarantine"' in str(info.value)
    assert "Fix those files" in str(info.value)


def test_a_copy_onto_a_store_names_how_to_replace_it(tmp_path: Path) -> None:
    for name in ("a.db", "b.db"):
        with ss.open_store(tmp_path / name, SCHEMA) as store:
            store[TICKETS].put(Ticket(1))
    with pytest.raises(ss.StoreExistsError, match=r"overwrite=True"):
        ss.copy_store(tmp_path / "a.db", tmp_path / "b.db")


def test_copy_between_sqlite_stores_needs_no_fcntl(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "a.db", SCHEMA) as store:
        store[TICKETS].put(Ticket(7, "seven"))
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["fcntl"] = None  # as on Windows
        import statestore as ss
        ss.copy_store({str(tmp_path / "a.db")!r}, {str(tmp_path / "b.db")!r})
        assert ss.diff_stores({str(tmp_path / "a.db")!r}, {str(tmp_path / "b.db")!r}).equal
        print("copied")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "copied"


def test_a_version_without_a_migration_says_so_when_its_records_do_not_fit(tmp_path: Path) -> None:
    """Found by review: it read "migration 2 (, up) ... failed", naming a migration that does not exist."""
    import attrs

    @attrs.define
    class Loose:
        id: str
        value: Any = None

    @attrs.define
    class Typed:
        id: str
        value: str = ""

    location = f"sqlite:{tmp_path}/s.db"
    with ss.open_store(
        location, ss.Schema("loose", version=1, collections=[ss.Collection("loose", Loose, key="id")])
    ) as s:
        s[s.schema.collections[0]].put(Loose("k", 5))
    v2 = ss.Schema("loose", version=2, collections=[ss.Collection("loose", Typed, key="id")])
    with pytest.raises(ss.MigrationError) as info:
        ss.open_store(location, v2).close()
    message = str(info.value)
    assert "version 2 (up; no migration declared, so no record was changed) of schema 'loose' failed" in message
    assert "(, up)" not in message
