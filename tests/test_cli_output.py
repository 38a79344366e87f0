"""What the command prints: data verbatim, one record a line when piped, cut cells in a terminal, and its messages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import statestore as ss
from statestore.cli import main, output
from statestore.testing.models import EVENTS, SCHEMA, TASKS, Event, Task

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
TRACKER_APP = "statestore.examples.tracker:SCHEMA"
MARKUP = ["see [/] here", "Markup [red]two", "[bold]x[/bold] and [link=http://e]y[/link]"]
LONG = "word " * 60 + "END"


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(main, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return re.sub(r"\x1b\[[0-9;]*m", "", result.output)  # a terminal's styles


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: "), result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the command believe stdout is an 80-column terminal."""
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def wide_terminal(terminal: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal wide enough for every cell of the markup tests."""
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture(params=["sqlite", "files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        loc = str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    else:
        loc = f"sqlite:{tmp_path}/s.db" if request.param == "sqlite" else f"files:{tmp_path}/s"
    with ss.open_store(loc, SCHEMA) as store:
        for i, title in enumerate(MARKUP):
            store[TASKS].put(Task(f"[red]k{i}[/]", title, tags=[title]))
        store[TASKS].put(Task("long", LONG, tags=["a"] * 40))
        for i, title in enumerate(MARKUP):
            store[EVENTS].append(Event(title, actor="x" * 200, n=i), stream="task:[red]")
    return loc


# ---------------------------------------------------------------- data verbatim


def test_markup_in_values_is_printed_verbatim_when_piped(location: str) -> None:
    out = ok("ls", location, "tasks")
    for title in MARKUP:
        assert title in out
    out = ok("log", location, "events")
    for title in MARKUP:
        assert title in out
    assert "task:[red]" in out
    assert MARKUP[1] in ok("get", location, "tasks", "[red]k1[/]")


def test_markup_in_values_is_printed_verbatim_in_a_terminal(location: str, wide_terminal: None) -> None:
    out = ok("ls", location, "tasks")
    for i in range(len(MARKUP)):
        assert f"[red]k{i}[/]" in out
    out = ok("log", location, "events")
    assert "task:[red]" in out
    out = ok("get", location, "tasks", "[red]k0[/]")
    assert MARKUP[0] in out


def test_a_legacy_folder_named_with_markup_imports_and_reports(tmp_path: Path) -> None:
    root = tmp_path / "old[/]y[red]"
    shutil.copytree(LEGACY / "tracker-damaged", root)
    loc = f"sqlite:{tmp_path}/new.db"
    out = ok("import-legacy", loc, "--app", TRACKER_APP, "--legacy", root, "--on-error", "quarantine")
    assert str(root) in out
    assert "tasks/fn-1.3.json:3:10" in out
    assert str(root) in ok("info", loc)


# ---------------------------------------------------------------- piped: one record, one line


def test_piped_ls_prints_one_line_per_record_whole(location: str) -> None:
    lines = ok("ls", location, "tasks").splitlines()
    assert len(lines) == 1 + len(MARKUP) + 1  # the column names, then one line per record
    assert lines[0].split("\t")[:2] == ["key", "rev"]
    [long] = [line for line in lines if line.startswith("long\t")]
    assert LONG in long
    assert "…" not in "".join(lines)


def test_piped_log_prints_one_line_per_entry_whole(location: str) -> None:
    lines = ok("log", location, "events").splitlines()
    assert len([line for line in lines if "x" * 200 in line]) == len(MARKUP)
    assert len(lines) == 1 + len(MARKUP)


def test_piped_values_with_newlines_and_tabs_stay_on_one_line(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", SCHEMA) as store:
        store[TASKS].put(Task("a\tb", "line one\nline two"))
    lines = ok("ls", tmp_path / "s.db", "tasks").splitlines()
    assert len(lines) == 2
    assert json.dumps("line one\nline two") in lines[1]
    assert lines[1].startswith(json.dumps("a\tb") + "\t")


def test_piped_info_and_check_are_not_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90) / "s.db"
    with ss.open_store(deep, SCHEMA) as store:
        store[TASKS].put(Task("t1"))
    out = ok("info", deep)
    assert str(deep) in out
    assert any(line.split("\t")[:2] == ["collection", "tasks"] for line in out.splitlines())


def test_the_demo_follow_up_commands_are_one_line_each(tmp_path: Path) -> None:
    demo = tmp_path / ("a-long-folder-name-" * 4) / "demo"
    out = ok("demo", "--dir", demo)
    tries = out.split("Try next:")[1].strip().splitlines()
    assert len(tries) >= 5
    assert all(str(demo) in line for line in tries)


# ---------------------------------------------------------------- terminal: cut, never wrapped


def test_terminal_cells_are_cut_with_an_ellipsis_not_wrapped(location: str, terminal: None) -> None:
    out = ok("ls", location, "tasks")
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    [long] = [line for line in lines if line.strip().startswith("long")]
    assert "…" in long
    assert "END" not in out  # cut, not wrapped onto another line
    assert "--json" in out  # how to see the cells whole
    out = ok("log", location, "events")
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert len([line for line in out.splitlines() if "task:[red]" in line]) == len(MARKUP)


# ---------------------------------------------------------------- import-legacy --dry-run


def test_import_legacy_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    loc = f"sqlite:{tmp_path}/new.db"
    out = ok("import-legacy", loc, "--app", TRACKER_APP, "--legacy", LEGACY / "tracker-damaged", "--dry-run")
    assert "never imported twice" not in out
    assert "dry run" in out
    assert "tasks/fn-1.3.json:3:10" in out
    assert "events.jsonl" in out
    assert not (tmp_path / "new.db").exists()


# ---------------------------------------------------------------- unknown schemes


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("file:/tmp/x", "files:"),
        ("pg://localhost/x", "a PostgreSQL location is a URL: postgresql://"),
        ("postgresql:x", "a PostgreSQL location is a URL: postgresql://"),
        ("sqlit:x.db", "sqlite:"),
        ("mem:", "memory:"),
        ("s3://bucket/x", "sqlite:PATH, files:PATH, memory:"),
    ],
)
def test_an_unknown_scheme_is_an_error_naming_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ss.ValidationError, match=f"unknown scheme.*{says.split()[0]}") as info:
        ss.parse_location(location)
    assert says in str(info.value)
    with pytest.raises(ss.ValidationError):
        ss.open_store(location, SCHEMA)
    assert says in one_line_error(run("info", location))
    assert says in one_line_error(run("copy", "memory:", location))
    assert list(tmp_path.iterdir()) == []  # no folder named after the scheme


def test_a_suggestion_for_file_colon(tmp_path: Path) -> None:
    with pytest.raises(ss.ValidationError, match="did you mean files:"):
        ss.parse_location(f"file:{tmp_path}/x")


@pytest.mark.parametrize("location", ["./a:b", "C:\\state\\x.db", "notes", "x.db"])
def test_paths_that_are_not_schemes_still_parse(location: str) -> None:
    assert ss.parse_location(location).backend in ("sqlite", "files")


# ---------------------------------------------------------------- messages


def test_ls_on_a_log_and_log_on_a_collection_point_at_the_right_command(location: str) -> None:
    assert "statestore log" in one_line_error(run("ls", location, "events"))
    assert "statestore ls" in one_line_error(run("log", location, "tasks"))


def test_where_on_a_missing_field_names_the_fields(location: str) -> None:
    msg = one_line_error(run("ls", location, "tasks", "--where", "nofield=1"))
    assert "dict" not in msg
    assert "tasks has no field 'nofield'" in msg
    assert "title" in msg


def test_copy_to_memory_is_a_clear_error(location: str) -> None:
    msg = one_line_error(run("copy", location, "memory:"))
    assert "internal error" not in msg
    assert "sqlite:PATH or files:PATH" in msg


def test_copy_onto_a_store_names_the_overwrite_option(location: str, tmp_path: Path) -> None:
    ok("copy", location, tmp_path / "c.db")
    msg = one_line_error(run("copy", location, tmp_path / "c.db"))
    assert "--overwrite" in msg


@pytest.mark.parametrize("name", ["state.json", "notes.txt"])
def test_a_plain_file_given_as_a_store_is_not_called_corrupt(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text('{"a": 1}\n')
    msg = one_line_error(run("info", tmp_path / name))
    assert "corrupt" not in msg
    assert "is a file, not a store" in msg
    with pytest.raises(ss.StateStoreError, match="is a file, not a store"):
        ss.open_store(tmp_path / name, SCHEMA)
    assert (tmp_path / name).read_text() == '{"a": 1}\n'


def test_an_sqlite_file_with_another_suffix_is_recognised(tmp_path: Path) -> None:
    with ss.open_store(tmp_path / "s.db", SCHEMA):
        pass
    (tmp_path / "s.db").rename(tmp_path / "state.bin")
    msg = one_line_error(run("info", tmp_path / "state.bin"))
    assert f"sqlite:{tmp_path / 'state.bin'}" in msg


def test_a_failed_legacy_import_says_what_to_do(tmp_path: Path) -> None:
    result = run(
        "import-legacy", f"sqlite:{tmp_path}/n.db", "--app", TRACKER_APP, "--legacy", LEGACY / "tracker-damaged"
    )
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    assert "--on-error quarantine" in last


def _cli(*args: str, stdout: object = subprocess.PIPE, shell_redirect: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STATESTORE_DEBUG": ""}
    if shell_redirect:
        script = f'"$0" -m statestore "$@" {shell_redirect}'
        return subprocess.run(
            ["/bin/sh", "-c", script, sys.executable, *args], capture_output=True, text=True, env=env, check=False
        )
    return subprocess.run(
        [sys.executable, "-m", "statestore", *args],
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")


@needs_dev_full
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["diff", "{loc}", "{loc}"], 2),
        (["diff", "{loc}", "{loc}", "--json"], 2),
        (["ls", "{loc}", "tasks"], 1),
        (["log", "{loc}", "events", "--json"], 1),
        (["dump", "{loc}"], 1),
        (["info", "{loc}"], 1),
    ],
)
def test_a_full_disk_on_stdout_is_one_line_and_the_error_code(location: str, args: list[str], code: int) -> None:
    with open("/dev/full", "w") as full:
        done = _cli(*[a.format(loc=location) for a in args], stdout=full)
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("Error: ")
    assert "No space left on device" in done.stderr


@pytest.mark.parametrize(
    ("args", "code"), [(["dump", "{loc}"], 1), (["diff", "{loc}", "{loc}"], 2), (["ls", "{loc}", "tasks"], 1)]
)
def test_a_closed_stdout_is_one_line_and_the_error_code(location: str, args: list[str], code: int) -> None:
    done = _cli(*[a.format(loc=location) for a in args], shell_redirect=">&-")
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("Error: ")
    assert "output is closed" in done.stderr


def test_a_closed_pipe_ends_quietly(location: str) -> None:
    done = _cli("log", location, "events", shell_redirect="| head -c 1 >/dev/null")
    assert "Traceback" not in done.stderr
    assert "Exception" not in done.stderr


# ---------------------------------------------------------------- migrate --to the current version

APP = """
import attrs
import statestore as ss

@attrs.define
class Note:
    id: str
    text: str = ""
    tag: str = ""

NOTES1 = ss.Collection("notes", Note, key="id")
V1 = ss.Schema("notesapp", version=1, collections=[NOTES1])
def tag(m):
    m.map_records("notes", lambda d: {**d, "tag": "x"})

V2 = ss.Schema("notesapp", version=2, collections=[NOTES1],
               migrations=[ss.Migration(2, "tag notes", up=tag, down=lambda m: None)])
"""


def test_migrate_to_the_current_version_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli_notes_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cli_notes_app  # type: ignore[import-not-found]

    with ss.open_store(tmp_path / "n.db", cli_notes_app.V1):
        pass
    out = ok("migrate", tmp_path / "n.db", "--app", "cli_notes_app:V2", "--to", "1")
    assert "already at version 1" in out
    assert [p.name for p in tmp_path.iterdir() if "backup" in p.name] == []
    data = json.loads(ok("info", tmp_path / "n.db", "--json"))
    assert [h["direction"] for h in data["schemas"][0]["history"]] == ["create"]
    assert data["schemas"][0]["version"] == 1


def test_get_prints_the_record_on_one_line_when_piped(location: str) -> None:
    piped = ok("get", location, "tasks", "long").splitlines()
    assert len(piped) == 2  # the comment, then the whole record on one line
    assert json.loads(piped[1])["title"] == LONG


def test_get_indents_the_record_in_a_terminal(location: str, terminal: None) -> None:
    shown = ok("get", location, "tasks", "long")
    assert len(shown.splitlines()) > 3
    assert '  "title": ' in shown
