"""Start-up: what ``import statestore`` and the command load, and statestore without fcntl (as on Windows).

Timings are in tools/bench_startup.py; these tests check the imports that the timings depend on.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import statestore as ss

HEAVY = [
    "statestore.backends.files",
    "statestore.backends.sqlite",
    "statestore.backends.memory",
    "statestore.legacy",
    "statestore.convert",
    "statestore.codec",
    "cattrs",
    "rich",
    "filelock",
    "platformdirs",
    "importlib.metadata",
]


def _loaded_after(code: str) -> list[str]:
    """The modules of HEAVY that a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_statestore_loads_no_backend_importer_or_library() -> None:
    assert _loaded_after("import statestore") == []


def test_declaring_a_schema_loads_no_backend() -> None:
    code = textwrap.dedent(
        """
        import attrs, statestore as ss
        @attrs.define
        class T:
            id: str
        ss.Schema('a', version=1, collections=[ss.Collection('t', T, key='id')])
        """
    )
    loaded = _loaded_after(code)
    assert not [m for m in loaded if m.startswith(("statestore.backends", "statestore.legacy", "rich"))]


def test_the_command_help_loads_no_backend_and_no_rich() -> None:
    code = "from statestore.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def test_piped_output_does_not_load_rich(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", ss.testing.SCHEMA):
        pass
    store = str(tmp_path / "s.db")
    code = f"from statestore.cli import main\ntry:\n    main(['ls', {store!r}, 'tasks'])\nexcept SystemExit:\n    pass"
    loaded = _loaded_after(code)
    assert "rich" not in loaded
    assert "statestore.backends.sqlite" in loaded


def test_the_version_is_the_installed_one() -> None:
    assert ss.__version__ == importlib.metadata.version("statestore")


def test_every_public_name_resolves() -> None:
    for name in ss.__all__:
        assert getattr(ss, name) is not None
    assert set(ss.__all__) <= set(dir(ss))
    assert ss.__all__ == sorted(ss.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = ss.no_such_name  # type: ignore[attr-defined]
    from statestore.errors import NotFoundError

    assert ss.NotFoundError is NotFoundError
    assert ss.legacy.store_exists is not None


NO_FCNTL = """
import sys
sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
import attrs
import statestore as ss

@attrs.define
class Note:
    id: str
    text: str = ""

NOTES = ss.Collection("notes", Note, key="id")
SCHEMA = ss.Schema("notes", version=1, collections=[NOTES])
root = sys.argv[1]
for location in (f"sqlite:{root}/s.db", "memory:"):
    with ss.open_store(location, SCHEMA) as store:
        store[NOTES].put(Note("a", "hello"))
        assert store[NOTES]["a"].text == "hello"
with ss.open_store(f"sqlite:{root}/s.db", mode="read") as store:  # as the command opens it
    assert store[store.collections[0]].keys() == ["a"]
for location in (f"files:{root}/f", f"{root}/plain"):
    try:
        ss.open_store(location, SCHEMA)
    except ss.BackendError as exc:
        print(exc)
    else:
        raise AssertionError("a files store opened without fcntl")
import os
assert not os.path.exists(f"{root}/f") and not os.path.exists(f"{root}/plain")
"""


def test_sqlite_and_memory_work_without_fcntl_and_files_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "nofcntl.py").write_text(textwrap.dedent(NO_FCNTL))
    done = subprocess.run(
        [sys.executable, str(tmp_path / "nofcntl.py"), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all("files backend needs POSIX file locks (fcntl)" in line for line in lines)
    assert all("sqlite:PATH" in line for line in lines)


def test_the_command_without_fcntl(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", ss.testing.SCHEMA):
        pass
    code = (
        "import sys\nsys.modules['fcntl'] = None\nfrom statestore.cli import main\n"
        f"main(['info', {str(tmp_path / 's.db')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "contract" in done.stdout
    code = code.replace("'info', ", "'info', 'files:' + ")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ")
    assert "fcntl" in done.stderr
    assert done.stderr.count("\n") == 1
