"""The README's tutorial and the docs' complete examples run as written; the README links what exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, env=env, check=False
    )


def test_the_readme_tutorial_runs(tmp_path: Path) -> None:
    blocks = _python_blocks(ROOT / "README.md")
    assert len(blocks) >= 5
    script = "\n".join(blocks)
    script += (
        "\nsys.argv = ['tracker', 't1']\nassert main() == 0\n"
        "sys.argv = ['tracker', 'nope']\nassert main() == 1\n"
        "with ss.open_store(f\"sqlite:{ss.state_path('tracker')}/state.db\", SCHEMA, mode='read') as s:\n"
        "    assert s[TASKS].get_versioned('t1').revision == 4\n"
        "    assert len(s[TASKS]) == 1 and 't1' in s[TASKS]\n"
    )
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Docs"
    assert "tracker: no task 'nope'" in done.stderr


def test_the_migrations_example_is_complete(tmp_path: Path) -> None:
    [example] = _python_blocks(ROOT / "docs" / "migrations.md")
    done = _run(example, tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("state.backup-app-v*.db"))) == 2


def test_the_readme_keeps_the_two_commands_and_links_existing_docs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Two commands" in text
    command = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest --cov=statestore"
    )
    assert command in text
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "## Types" in text
    for link in re.findall(r"\]\((docs/[^)#]+|LICENSE)\)", text):
        if link != "docs/types.md":  # written by the types work
            assert (ROOT / link).is_file(), link
    first_screen = "\n".join(text.splitlines()[:40])
    assert "Windows" in first_screen  # which platforms each backend supports
    assert "pip install statestore" in first_screen


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_as_the_docs_say(shell: str) -> None:
    env = {**os.environ, "_STATESTORE_COMPLETE": f"{shell}_source"}
    done = subprocess.run([sys.executable, "-m", "statestore"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "_STATESTORE_COMPLETE" in done.stdout
