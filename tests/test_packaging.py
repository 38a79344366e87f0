"""The sdist and the wheel as people get them: the sdist carries its whole test suite, both carry the licence."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The sdist, and the wheel built from it (as pip would), with what the build printed."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return sdist, wheel, done.stdout + done.stderr


def _source_files(folder: str) -> set[str]:
    return {
        str(p.relative_to(ROOT))
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
    }


def test_the_sdist_holds_what_its_tests_need(built: tuple[Path, Path, str]) -> None:
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = {name.partition("/")[2] for name in tar.getnames()}
    for folder in ("tests", "fixtures", "tools", "docs"):
        missing = _source_files(folder) - names
        assert not missing, f"not in the sdist: {sorted(missing)[:5]}"
    assert {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py"} <= names


def test_licence_metadata_is_the_current_form(built: tuple[Path, Path, str]) -> None:
    _, wheel, log = built
    assert "Deprecat" not in log  # setuptools warns about the old table form, project.license = {text = ...}
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = whl.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "License-File: LICENSE" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_wheel_can_run_the_demo_without_the_source_tree(built: tuple[Path, Path, str]) -> None:
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    assert "statestore/examples/legacy_tracker.py" in names
    assert not [n for n in names if n.startswith(("fixtures/", "tests/"))]
