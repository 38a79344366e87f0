"""statestore logs on logging.getLogger("statestore"): migration steps, backups, imports with counts, quarantine."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import statestore as ss
from statestore.cli import main
from statestore.examples.tracker import LAYOUT, SCHEMA

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"

APP = """
import attrs
import statestore as ss

@attrs.define
class Item:
    id: str
    n: int = 0

ITEMS = ss.Collection("items", Item, key="id")
V1 = ss.Schema("logapp", version=1, collections=[ITEMS])
V3 = ss.Schema("logapp", version=3, collections=[ITEMS], migrations=[
    ss.Migration(2, "first step", up=lambda m: None, down=lambda m: None),
    ss.Migration(3, "second step", up=lambda m: None, down=lambda m: None),
])
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "cli_log_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import cli_log_app  # type: ignore[import-not-found]

    return cli_log_app


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "statestore" and r.levelno == logging.INFO]


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_each_migration_step_and_the_backup_are_logged(
    app: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    loc = f"sqlite:{tmp_path}/s.db" if backend == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(loc, app.V1):  # type: ignore[attr-defined]
        pass
    caplog.set_level(logging.INFO, logger="statestore")
    with ss.open_store(loc, app.V3) as store:  # type: ignore[attr-defined]
        messages = _messages(caplog)
        assert any("backed up to" in m and ".backup-logapp-v1-" in m for m in messages), messages
        assert any("up through version 2 (first step)" in m for m in messages), messages
        assert any("up through version 3 (second step)" in m for m in messages), messages
        caplog.clear()
        store.migrate(1)
    messages = _messages(caplog)
    assert any("backed up to" in m for m in messages), messages
    assert any("down through version 3 (second step)" in m for m in messages), messages
    assert any("down through version 2 (first step)" in m for m in messages), messages


def test_an_import_is_logged_with_its_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="statestore")
    with ss.open_store(f"sqlite:{tmp_path}/t.db", SCHEMA, legacy=ss.Legacy(LEGACY / "tracker", LAYOUT)):
        pass
    [message] = [m for m in _messages(caplog) if "imported" in m]
    assert "imported 2170 records from" in message
    assert "300 tasks from tasks/*.json" in message
    assert "0 rejected" in message


def test_a_quarantine_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="statestore")
    ss.import_legacy(
        f"sqlite:{tmp_path}/t.db", SCHEMA, ss.Legacy(LEGACY / "tracker-damaged", LAYOUT), on_error="quarantine"
    )
    assert any("12 rejected legacy records quarantined" in m for m in _messages(caplog))


def test_the_command_logs_on_stderr_with_v(app: object, tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", app.V1):  # type: ignore[attr-defined]
        pass
    result = CliRunner().invoke(main, ["-v", "migrate", str(tmp_path / "s.db"), "--app", "cli_log_app:V3", "--json"])
    assert result.exit_code == 0, result.output
    assert "statestore: " in result.stderr
    assert "up through version 3 (second step)" in result.stderr
    assert "statestore: " not in result.stdout
    quiet = CliRunner().invoke(main, ["info", str(tmp_path / "s.db")])
    assert "statestore: " not in quiet.stderr
