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


def test_demo_imports_the_bundled_legacy_install(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "events.jsonl" in result.output
    assert "tasks/fn-1.3.json:3:10" in result.output  # the damaged install's rejects, located
    with ss.open_store(f"sqlite:{tmp_path}/demo/tracker.db", SCHEMA, mode="read") as store:
        assert len(store[TASKS]) == 300
        assert len(store.imports()) == 503
    with ss.open_store(f"sqlite:{tmp_path}/demo/tracker-damaged.db", SCHEMA, mode="read") as store:
        assert len(store.rejects()) == 12
    # A second run finds the stores and does not import again.
    again = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert again.exit_code == 0, again.output
    assert "never imported twice" in again.output


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "tracker.db").write_text("not a database\n" * 50)
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: sqlite:")
    assert "corrupt store" in last
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
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    assert "afile" in last
