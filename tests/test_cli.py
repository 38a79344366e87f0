"""The statestore command, through click's CliRunner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import statestore as ss
from statestore.cli import main
from statestore.examples.tracker import SCHEMA, TASKS


def test_every_command_has_help() -> None:
    runner = CliRunner()
    assert main.help
    for name, command in main.commands.items():
        assert command.help, f"{name} has no help text"
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_demo_creates_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "fn-1.3" in result.output
    for location in (f"sqlite:{tmp_path}/demo/tracker.db", f"files:{tmp_path}/demo/tracker-files"):
        with ss.open_store(location, SCHEMA, mode="read") as store:
            assert [t.id for t in store[TASKS].find(status="doing")] == ["fn-1.2", "fn-1.3"]
    assert '"status": "doing"' in (tmp_path / "demo" / "tracker-files" / "tasks" / "fn-1.3.json").read_text()


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "tracker.db").write_text("not a database\n" * 50)
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: sqlite:")
    assert "corrupt store" in result.output
    assert isinstance(result.exception, SystemExit)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("statestore, version ")


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_python_dash_m(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "statestore", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "statestore" in done.stdout


def test_main_is_a_click_group() -> None:
    assert isinstance(main, click.Group)


def test_os_errors_are_one_line_too(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    assert "afile" in result.output
