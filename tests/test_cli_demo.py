"""``statestore demo``: needs no source tree, cleans up after itself, prints follow-up commands that run as printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from statestore.cli import main
from statestore.examples.legacy_tracker import generate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_generated_installs_are_the_bundled_fixtures(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in ("tracker", "tracker-damaged"):
        assert _tree(tmp_path / name) == _tree(FIXTURES / name)


def test_the_demo_without_dir_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "The store holds" in result.output
    assert "tasks/fn-1.3.json:3:10" in result.output  # the damaged install, quarantined
    assert list(tmp_path.iterdir()) == []
    assert "--dir" in result.output


def test_the_demo_does_not_look_for_a_source_tree(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "d")]).output
    assert str(FIXTURES) not in out
    assert str(tmp_path / "d" / "legacy" / "tracker") in out


def _follow_ups(out: str) -> list[str]:
    return [line.strip() for line in out.split("Try next:")[1].strip().splitlines()]


def _run_each(lines: list[str], env: dict[str, str]) -> None:
    for line in lines:
        if line.startswith("sqlite3 ") and shutil.which("sqlite3") is None:
            continue
        done = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, (line, done.stdout, done.stderr)


@pytest.mark.parametrize("how", ["python -m", "script off PATH"])
def test_the_follow_up_commands_run_as_printed(tmp_path: Path, how: str) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the virtual environment's bin is not on PATH
    demo = tmp_path / "a dir with spaces"
    if how == "python -m":
        argv = [sys.executable, "-m", "statestore", "demo", "--dir", str(demo)]
    else:
        script = Path(sys.executable).parent / "statestore"
        if not script.is_file():
            pytest.skip("statestore is not installed as a script beside this interpreter")
        argv = [str(script), "demo", "--dir", str(demo)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    lines = _follow_ups(done.stdout)
    assert len(lines) >= 6
    assert not any(line.startswith("statestore ") for line in lines)
    _run_each(lines, env)
