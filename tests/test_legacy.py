"""The one-time legacy bootstrap import, on both persistent backends."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.examples.tracker import APPROVALS, EPICS, EVENTS, LAYOUT, SCHEMA, STATES, TASKS
from statestore.legacy import store_exists

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
TRACKER = FIXTURES / "tracker"
DAMAGED = FIXTURES / "tracker-damaged"


@pytest.fixture(params=["sqlite", "files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    return f"sqlite:{tmp_path}/new/state.db" if request.param == "sqlite" else f"files:{tmp_path}/new/state"


@pytest.fixture(params=["sqlite", "files"])
def file_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location on disk: for tests about files beside the store (PostgreSQL's are in test_postgres.py)."""
    return f"sqlite:{tmp_path}/new/state.db" if request.param == "sqlite" else f"files:{tmp_path}/new/state"


@pytest.fixture
def tracker(tmp_path: Path) -> Path:
    """A private copy of the bundled install (tests may rename or change its files)."""
    return Path(shutil.copytree(TRACKER, tmp_path / "old"))


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DAMAGED, tmp_path / "damaged"))


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


# ------------------------------------------------------------------ the happy path


def test_import_equals_the_legacy_data_record_for_record(location: str, tracker: Path) -> None:
    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        epics = json.loads((tracker / "epics.json").read_text())["epics"]
        assert {e.id: (e.title, e.owner, e.created) for e in store[EPICS].all()} == {
            k: (v["title"], v["owner"], _utc(v["created"])) for k, v in epics.items()
        }
        task_files = sorted((tracker / "tasks").glob("fn-*.json"))
        assert len(task_files) == 300
        for path in task_files:
            doc = json.loads(path.read_text(encoding="utf-8"))
            task = store[TASKS][path.name.removesuffix(".json")]
            assert attrs.asdict(task) == {"id": path.stem, **doc}
        state_files = sorted((tracker / "state").glob("*.state.json"))
        assert len(store[STATES]) == len(state_files) == 200
        for path in state_files:
            doc = json.loads(path.read_text())
            state = store[STATES][path.name.removesuffix(".state.json")]
            assert state.assignee == doc["assignee"]
            assert state.attempts == doc["attempts"]
            assert state.started_at == (doc["started_at"] and _utc(doc["started_at"]))
        approvals = json.loads((tracker / "approvals.json").read_text())
        assert len(store[APPROVALS]) == len(approvals) == 150
        for i, a in enumerate(approvals):
            got = store[APPROVALS][f"{a['task']}#{i}"]
            assert (got.task, got.by, got.at, got.verdict, got.note) == (
                a["task"],
                a["by"],
                _utc(a["at"]),
                a["verdict"],
                a["note"],
            )
        lines = [json.loads(line) for line in (tracker / "events.jsonl").read_text().splitlines()]
        entries = store[EVENTS].read()
        assert [(e.seq, e.stream, e.at, e.record.type, e.record.actor, e.record.data) for e in entries] == [
            (n, raw["stream_id"], _utc(raw["ts"]), raw["type"], raw["actor"], raw["data"])
            for n, raw in enumerate(lines, 1)
        ]
        # Stream versions count 1, 2, 3... per stream, in file order.
        versions: dict[str, int] = {}
        for e in entries:
            versions[e.stream] = versions.get(e.stream, 0) + 1
            assert e.version == versions[e.stream]
        assert store.rejects() == []


def test_import_records_provenance(location: str, tracker: Path) -> None:
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(tracker, LAYOUT))
    assert report.imported_store
    assert report.imported == 20 + 300 + 200 + 150 + 1500
    assert [(s.path, s.read, s.imported, s.rejected) for s in report.sources] == [
        ("epics.json", 20, 20, 0),
        ("tasks/*.json", 300, 300, 0),
        ("state/*.state.json", 200, 200, 0),
        ("approvals.json", 150, 150, 0),
        ("events.jsonl", 1500, 1500, 0),
    ]
    with ss.open_store(location, SCHEMA, mode="read") as store:
        rows = {r.path: r for r in store.imports()}
    assert len(rows) == 1 + 300 + 200 + 1 + 1  # one row per file read; stray *.lock, .tmp, README ignored
    row = rows["epics.json"]
    data = (tracker / "epics.json").read_bytes()
    assert (row.size, row.sha256, row.imported, row.rejected) == (len(data), hashlib.sha256(data).hexdigest(), 20, 0)
    assert row.mtime == (tracker / "epics.json").stat().st_mtime
    assert (row.into, row.version, row.root) == ("epics", 1, str(tracker))
    assert not any("lock" in p or p.endswith(".tmp") or "README" in p for p in rows)


def test_a_second_start_does_not_import_again(location: str, tracker: Path) -> None:
    legacy = ss.Legacy(tracker, LAYOUT)
    with ss.open_store(location, SCHEMA, legacy=legacy) as store:
        store[TASKS].delete("fn-1.1")
    (tracker / "tasks" / "fn-99.1.json").write_text('{"title": "new"}\n')
    with ss.open_store(location, SCHEMA, legacy=legacy) as store:
        assert "fn-1.1" not in store[TASKS]
        assert "fn-99.1" not in store[TASKS]
        assert len(store.imports()) == 503
    report = ss.import_legacy(location, SCHEMA, legacy)
    assert not report.imported_store


def test_replace_imports_anew_and_keeps_the_old_store(file_location: str, tracker: Path, tmp_path: Path) -> None:
    location = file_location
    legacy = ss.Legacy(tracker, LAYOUT)
    with ss.open_store(location, SCHEMA, legacy=legacy) as store:
        store[TASKS].delete("fn-1.1")
    report = ss.import_legacy(location, SCHEMA, legacy, replace=True)
    assert report.imported_store
    with ss.open_store(location, SCHEMA, mode="read") as store:
        assert "fn-1.1" in store[TASKS]
    kept = [p for p in (tmp_path / "new").iterdir() if ".replaced-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1


def test_no_legacy_state_means_a_plain_new_store(location: str, tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(empty, LAYOUT)) as store:
        assert len(store[TASKS]) == 0
        assert store.imports() == []


def test_read_mode_never_imports_and_names_the_legacy_state(location: str, tracker: Path) -> None:
    with pytest.raises(ss.StoreNotFoundError) as info:
        ss.open_store(location, SCHEMA, mode="read", legacy=ss.Legacy(tracker, LAYOUT))
    assert info.value.legacy == str(tracker)
    assert "import-legacy" in str(info.value)
    assert not store_exists(location)


def test_dry_run_reports_and_writes_nothing(location: str, damaged: Path, tmp_path: Path) -> None:
    before = _digest(damaged)
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(damaged, LAYOUT), dry_run=True, on_error="abort")
    assert report.dry_run
    assert report.rejected == 12
    assert not (tmp_path / "new").exists()
    assert _digest(damaged) == before


def test_progress_reaches_the_total(location: str, tracker: Path) -> None:
    calls: list[tuple[int, int]] = []
    ss.import_legacy(location, SCHEMA, ss.Legacy(tracker, LAYOUT), progress=lambda d, t: calls.append((d, t)))
    assert calls
    assert calls[-1][0] == calls[-1][1] > 0
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_after_rename_marks_the_legacy_files_imported(location: str, tracker: Path) -> None:
    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT, after="rename")):
        pass
    assert (tracker / "epics.json.imported").is_file()
    assert not (tracker / "epics.json").exists()
    assert (tracker / "tasks" / "fn-1.1.json.imported").is_file()
    assert (tracker / "tasks" / "README.txt").is_file()  # not a source file: untouched


def test_after_rename_never_replaces_a_file(location: str, tracker: Path) -> None:
    """Found by review: an ``epics.json.imported`` left by an earlier import was overwritten (its bytes lost)."""
    (tracker / "epics.json.imported").write_text("the first install's epics")
    (tracker / "epics.json.imported-2").write_text("and the second's")
    (tracker / "tasks" / "fn-1.1.json").rename(tracker / "elsewhere.json")  # where no glob reads
    (tracker / "tasks" / "fn-1.1.json").symlink_to("../elsewhere.json")
    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT, after="rename")):
        pass
    assert (tracker / "epics.json.imported").read_text() == "the first install's epics"
    assert (tracker / "epics.json.imported-2").read_text() == "and the second's"
    assert (tracker / "epics.json.imported-3").is_file()
    assert not (tracker / "epics.json").exists()
    link = tracker / "tasks" / "fn-1.1.json.imported"
    assert link.is_symlink()  # the link renamed, its target left where it is
    assert os.readlink(link) == "../elsewhere.json"
    assert (tracker / "elsewhere.json").is_file()


def test_an_import_from_a_folder_with_none_of_the_files_creates_no_store(location: str, tmp_path: Path) -> None:
    """Found by review: it created an empty store, which the app then took for the imported one."""
    wrong = tmp_path / "not-the-install"
    wrong.mkdir()
    for kwargs in ({}, {"dry_run": True}):
        with pytest.raises(ss.LegacyNotFoundError) as info:
            ss.import_legacy(location, SCHEMA, ss.Legacy(wrong, LAYOUT), **kwargs)
        assert isinstance(info.value, FileNotFoundError)
        assert str(wrong) in str(info.value)
        assert "epics.json" in str(info.value)
        assert not store_exists(location)
    with ss.open_store(location, SCHEMA) as store:  # a store made otherwise: an import finding nothing leaves it
        store[EPICS].put(store[EPICS].decl.type("E-1", "made by hand"))
    assert ss.import_legacy(location, SCHEMA, ss.Legacy(wrong, LAYOUT)).imported_store is False
    with pytest.raises(ss.LegacyNotFoundError):  # but it would not replace it with an empty one
        ss.import_legacy(location, SCHEMA, ss.Legacy(wrong, LAYOUT), replace=True)
    with ss.open_store(location, SCHEMA, mode="read") as store:
        assert store[EPICS].keys() == ["E-1"]


# ------------------------------------------------------------------ damage


EXPECTED = json.loads((DAMAGED / "EXPECTED.json").read_text())


def _located(rejects: list[ss.Reject]) -> set[tuple[str, int | None]]:
    return {(r.path, r.line) for r in rejects}


def test_abort_lists_every_problem_and_creates_no_store(location: str, damaged: Path, tmp_path: Path) -> None:
    before = _digest(damaged)
    with pytest.raises(ss.LegacyImportError) as info:
        ss.open_store(location, SCHEMA, legacy=ss.Legacy(damaged, LAYOUT))
    problems = list(info.value.problems)
    paths = {p.path for p in problems}
    for expected in EXPECTED:
        assert expected["path"] in paths, expected
    # Every problem the fixture plants, where it is: path:line for lines and unparsable files.
    lines = {(p.path, p.line) for p in problems if p.line is not None}
    for expected in EXPECTED:
        if expected["kind"] in ("invalid-json", "invalid-utf8", "truncated", "invalid-json-line", "missing-field-line"):
            assert (expected["path"], expected["line"]) in lines, expected
        if expected["pointer"]:
            assert any(p.path == expected["path"] and p.pointer == expected["pointer"] for p in problems), expected
    assert ("events.jsonl", 40) in lines  # the truncated last line
    assert not store_exists(location)
    assert (
        not [p for p in (tmp_path / "new").iterdir() if ".import-" in p.name] if (tmp_path / "new").exists() else True
    )
    assert _digest(damaged) == before
    assert f"rejected {len(problems)} record(s)" in str(info.value)


def test_reasons_say_what_is_wrong(location: str, damaged: Path) -> None:
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(damaged, LAYOUT), on_error="quarantine")
    by_path: dict[str, list[str]] = {}
    for r in report.rejects:
        by_path.setdefault(r.path, []).append(r.reason)
    assert "UTF-8" in by_path["tasks/fn-1.4.json"][0]
    assert "truncated" in by_path["tasks/fn-2.1.json"][0]
    assert "int" in by_path["tasks/fn-2.2.json"][0]
    assert "missing" in by_path["tasks/fn-2.3.json"][0]
    assert all("duplicate" in r for r in by_path["epics.json"])
    assert "an array" in by_path["state/fn-1.1.state.json"][0]
    assert "a string" in by_path["approvals.json"][0]
    assert any("truncated last line" in r for r in by_path["events.jsonl"])


def test_quarantine_imports_the_rest_and_keeps_every_reject_verbatim(location: str, damaged: Path) -> None:
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(damaged, LAYOUT), on_error="quarantine")
    assert report.rejected == 12
    with ss.open_store(location, SCHEMA, mode="read") as store:
        kept = store.rejects()
        assert kept == list(report.rejects)
        assert len(store[TASKS]) == 15
        assert "fn-2.2" not in store[TASKS]
        assert "E-2" not in store[EPICS]
        assert len(store[EPICS]) == 4
        assert store[EVENTS].last_seq() == 37
        assert sum(r.rejected for r in store.imports()) == 12
    by_path = {r.path: r for r in kept}
    assert by_path["tasks/fn-1.3.json"].raw == (damaged / "tasks" / "fn-1.3.json").read_text()
    assert (
        base64.b64decode(by_path["tasks/fn-1.4.json"].raw_base64 or "")
        == (damaged / "tasks" / "fn-1.4.json").read_bytes()
    )
    lines = (damaged / "events.jsonl").read_text().split("\n")
    events = {r.line: r.raw for r in kept if r.path == "events.jsonl"}
    assert events == {7: lines[6], 12: lines[11], 40: lines[39]}


def test_duplicate_keys_across_records_reject_every_copy(location: str, tmp_path: Path) -> None:
    root = tmp_path / "dups"
    (root / "tasks").mkdir(parents=True)
    (root / "epics.json").write_text(json.dumps([{"id": "E-1", "title": "a"}, {"id": "E-1", "title": "b"}]))
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("epics.json", into=EPICS)])
    with pytest.raises(ss.LegacyImportError) as info:
        ss.import_legacy(location, SCHEMA, ss.Legacy(root, layout))
    assert [(p.pointer, "duplicate key 'E-1'" in p.reason) for p in info.value.problems] == [("/0", True), ("/1", True)]


def test_function_source_and_an_older_layout_version_migrate_after_import(location: str, tmp_path: Path) -> None:
    root = tmp_path / "fn"
    root.mkdir()
    (root / "list.txt").write_text("a Alpha\nb Beta\n")

    def read(r: Path) -> list[dict[str, Any]]:
        return [
            {"id": i, "name": n} for i, n in (line.split(" ", 1) for line in (r / "list.txt").read_text().splitlines())
        ]

    @attrs.define
    class Thing:
        id: str
        title: str

    things = ss.Collection("things", Thing, key="id")
    v2 = ss.Schema(
        "things",
        version=2,
        collections=[things],
        migrations=[
            ss.Migration(
                2, "name is title", lambda m: m.map_records("things", lambda d: {"id": d["id"], "title": d.pop("name")})
            )
        ],
    )
    layout = ss.LegacyLayout(version=1, sources=[ss.Function("list.txt", into=things, read=read, paths=["list.txt"])])
    with ss.open_store(location, v2, legacy=ss.Legacy(root, layout)) as store:
        assert store[things].all() == [Thing("a", "Alpha"), Thing("b", "Beta")]
        assert [(h.version, h.direction) for h in store.history()] == [(1, "create"), (2, "up")]


def test_memory_cannot_be_imported_into(tracker: Path) -> None:
    with pytest.raises(ValueError, match="needs a store that lasts"):
        ss.import_legacy("memory:", SCHEMA, ss.Legacy(tracker, LAYOUT))


def test_reject_and_error_pickle() -> None:
    import pickle

    r = ss.Reject("a.json", 3, 4, "/x", "bad", "{")
    err = ss.LegacyImportError("sqlite:x.db", "/old", (r,))
    copy = pickle.loads(pickle.dumps(err))
    assert copy.problems == (r,)
    assert str(copy) == str(err)
    assert r.where() == "a.json:3:4 at /x"


def test_aside_leftovers_of_a_crashed_import_are_swept(file_location: str, tracker: Path, tmp_path: Path) -> None:
    location = file_location
    (tmp_path / "new").mkdir()
    name = Path(location.split(":", 1)[1]).name
    leftover = tmp_path / "new" / f".{name}.import-deadbeef"
    leftover.write_text("half")
    ss.import_legacy(location, SCHEMA, ss.Legacy(tracker, LAYOUT))
    assert not leftover.exists()
    assert os.path.exists(location.split(":", 1)[1])


def test_app_functions_that_fail_become_rejects(location: str, tmp_path: Path) -> None:
    root = tmp_path / "odd"
    (root / "tasks").mkdir(parents=True)
    (root / "epics.json").write_text('{"epics": 3}\n')
    (root / "tasks" / "a.json").write_text('{"title": "A"}\n')
    (root / "events.jsonl").write_text('{"ts": "2025-01-01T10:00:00", "type": "x"}\n[1]\n')

    def boom(doc: Any, path: Path) -> Any:
        raise RuntimeError("cannot")

    def fails(r: Path) -> list[Any]:
        raise OSError("gone")

    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("epics.json", into=EPICS, records=lambda doc: doc["epics"]),
            ss.JsonFiles("tasks/*.json", into=TASKS, record=boom),
            ss.JsonLines(
                "events.jsonl",
                into=EVENTS,
                stream=lambda r: "s",
                at=lambda r: r["ts"],
                record=lambda r: {"type": r["type"]},
            ),
            ss.Function("approvals", into=APPROVALS, read=fails),
        ],
    )
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(root, layout), on_error="quarantine")
    reasons = {(r.path, r.reason) for r in report.rejects}
    assert ("epics.json", "expected a list or an object of records, got a number") in reasons
    assert ("tasks/a.json", "record(): RuntimeError: cannot") in reasons
    assert ("events.jsonl", "expected an object, got an array") in reasons
    assert any(path == "approvals" and reason.startswith("read(): OSError: gone") for path, reason in reasons)
    with ss.open_store(location, SCHEMA, mode="read") as store:
        (entry,) = store[EVENTS].read()
        # A timestamp without a zone is taken as UTC.
        assert entry.at == datetime(2025, 1, 1, 10, 0, tzinfo=timezone.utc)
        assert entry.record.type == "x"


def test_a_target_that_is_not_a_store_is_never_imported_over(file_location: str, tracker: Path, tmp_path: Path) -> None:
    location = file_location
    target = Path(location.split(":", 1)[1])
    target.parent.mkdir(parents=True)
    if location.startswith("files:"):
        target.mkdir()
        (target / "notes.txt").write_text("mine\n")
    else:
        target.write_text("not a database\n")
    before = _digest(target.parent)
    with pytest.raises(ss.CorruptStoreError):  # files: not a statestore store; sqlite: not a database
        ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT))
    assert {k: v for k, v in _digest(target.parent).items() if not k.endswith(".lock")} == before
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == [target.name]
    with pytest.raises(ValueError, match="inside one another"):
        ss.import_legacy(f"files:{tracker}/store", SCHEMA, ss.Legacy(tracker, LAYOUT))
    with pytest.raises(ValueError, match="one of the legacy install's source files"):
        ss.import_legacy(f"sqlite:{tracker}/epics.json", SCHEMA, ss.Legacy(tracker, LAYOUT))


def test_an_sqlite_store_may_live_in_the_old_install_folder(tracker: Path) -> None:
    # ~/.tracker/state.db beside the old JSON files: the usual upgrade in place.
    with ss.open_store(f"sqlite:{tracker}/state.db", SCHEMA, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        assert len(store[TASKS]) == 300
    with ss.open_store(f"sqlite:{tracker}/state.db", SCHEMA, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        assert len(store.imports()) == 503  # found, not imported again


def test_an_older_layout_is_migrated_before_the_store_appears(file_location: str, tmp_path: Path) -> None:
    location = file_location

    @attrs.define
    class Person:
        id: str
        name: str

    @attrs.define
    class User:
        id: str
        first: str
        last: str = ""

    people = ss.Collection("people", Person, key="id")  # as version 1 declared it
    users = ss.Collection("users", User, key="id")

    def split(m: ss.MigrationContext) -> None:
        m.map_records("people", lambda d: {"id": d["id"], **dict(zip(("first", "last"), d["name"].split(" ", 1)))})

    steps = [
        ss.Migration(2, "split names", up=split),
        ss.Migration(3, "people are users", up=lambda m: m.rename_collection("people", "users")),
    ]
    v3 = ss.Schema("app", version=3, collections=[users], migrations=steps)
    root = tmp_path / "old-app"
    root.mkdir()
    (root / "people.json").write_text(json.dumps([{"id": "ada", "name": "Ada Lovelace"}, {"id": "x"}]))
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("people.json", into=people)])
    with pytest.raises(ss.LegacyImportError) as info:  # checked against version 1's types
        ss.open_store(location, v3, legacy=ss.Legacy(root, layout))
    assert [p.pointer for p in info.value.problems] == ["/1/name"]
    (root / "people.json").write_text(json.dumps([{"id": "ada", "name": "Ada Lovelace"}]))
    with ss.open_store(location, v3, legacy=ss.Legacy(root, layout)) as store:
        assert store[users].all() == [User("ada", "Ada", "Lovelace")]
        assert [(h.version, h.direction) for h in store.history()] == [(1, "create"), (2, "up"), (3, "up")]
    # A migration that fails leaves no store behind: the next start imports again.
    broken = ss.Schema("app", version=3, collections=[users], migrations=[steps[0], ss.Migration(3, "x", up=split)])
    elsewhere = location.replace("/new/", "/other/")
    with pytest.raises(ss.MigrationError):
        ss.open_store(elsewhere, broken, legacy=ss.Legacy(root, layout))
    assert not store_exists(elsewhere)
    assert not Path(elsewhere.split(":", 1)[1]).parent.exists()  # nor the folder made for it


def test_counts_per_source_even_when_sources_share_a_file(location: str, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    (root / "doc.json").write_text(
        json.dumps({"epics": [{"id": "E-1", "title": "a"}], "tasks": [{"id": "t", "title": "b"}, 5]})
    )
    (root / "kv.txt").write_text("a=1\nb=2\n")

    def kv(r: Path) -> list[Any]:
        return [{"id": k, "title": v} for k, v in (line.split("=") for line in (r / "kv.txt").read_text().split())] + [
            7
        ]

    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("doc.json", into=EPICS, records=lambda d: d["epics"]),
            ss.JsonFile("doc.json", into=TASKS, records=lambda d: d["tasks"]),
            ss.Function("kv", into=TASKS, read=kv, paths=["kv.txt"]),
        ],
    )
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(root, layout), on_error="quarantine")
    assert [(s.path, s.into, s.read, s.imported, s.rejected) for s in report.sources] == [
        ("doc.json", "epics", 1, 1, 0),
        ("doc.json", "tasks", 2, 1, 1),
        ("kv", "tasks", 3, 2, 1),
    ]
    with ss.open_store(location, SCHEMA, mode="read") as store:
        rows = sorted((r.path, r.into, r.imported, r.rejected) for r in store.imports())
        assert rows == [("doc.json", "epics", 1, 0), ("doc.json", "tasks", 1, 1), ("kv", "tasks", 2, 1)]
        kv_row = next(r for r in store.imports() if r.path == "kv")
        assert kv_row.size == len((root / "kv.txt").read_bytes())


def test_a_full_durability_import(tmp_path: Path, tracker: Path) -> None:
    location = f"files:{tmp_path}/full/state"
    with ss.open_store(location, SCHEMA, durability="full", legacy=ss.Legacy(tracker, LAYOUT)) as store:
        assert len(store[TASKS]) == 300


def test_the_finished_store_never_replaces_one_that_appeared(tmp_path: Path) -> None:
    from statestore.legacy.placing import move_into_place

    for kind in ("sqlite", "files"):
        aside, path = tmp_path / f".{kind}.import-1", tmp_path / kind
        if kind == "sqlite":
            ss.open_store(f"sqlite:{aside}", SCHEMA).close()
            ss.open_store(f"sqlite:{path}", SCHEMA).close()
        else:
            ss.open_store(f"files:{aside}", SCHEMA).close()
            ss.open_store(f"files:{path}", SCHEMA).close()
        with pytest.raises(ss.CorruptStoreError, match="another store was created here"):
            move_into_place(aside, path, replace=False)
        assert store_exists(f"{kind}:{path}")


def test_an_older_layout_may_bring_its_whole_schema(location: str, tmp_path: Path) -> None:
    @attrs.define
    class Item:
        id: str
        text: str = ""

    items, notes_old, notes = (ss.Collection(n, Item, key="id") for n in ("items", "notes_old", "notes"))
    rename = ss.Migration(2, "notes_old is notes", up=lambda m: m.rename_collection("notes_old", "notes"))
    v2 = ss.Schema("app", version=2, collections=[items, notes], migrations=[rename])
    root = tmp_path / "old"
    root.mkdir()
    (root / "items.json").write_text('[{"id": "a", "text": "x"}]')
    bare = ss.LegacyLayout(version=1, sources=[ss.JsonFile("items.json", into=items)])
    with pytest.raises(ss.MigrationError, match="no collection 'notes_old'") as info:
        ss.import_legacy(location, v2, ss.Legacy(root, bare))
    assert info.value.location == location  # the store's name, not the hidden one it was built under
    assert not store_exists(location)
    whole = ss.LegacyLayout(
        version=1,
        sources=[ss.JsonFile("items.json", into=items)],
        schema=ss.Schema("app", version=1, collections=[items, notes_old]),
    )
    with ss.open_store(location, v2, legacy=ss.Legacy(root, whole)) as store:
        assert store[items].all() == [Item("a", "x")]
        assert store[notes].all() == []


def test_replace_puts_the_old_store_back_if_the_new_one_cannot_be_placed(
    file_location: str, tracker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = file_location
    from statestore.legacy import placing as _legacy_placing

    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        store[TASKS].delete("fn-1.1")

    def fails(aside: Path, path: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_legacy_placing, "_place_without_replacing", fails)
    with pytest.raises(OSError, match="disk full"):
        ss.import_legacy(location, SCHEMA, ss.Legacy(tracker, LAYOUT), replace=True)
    with ss.open_store(location, SCHEMA, mode="read") as store:
        assert "fn-1.1" not in store[TASKS]  # the old store, back in place
    parent = Path(location.split(":", 1)[1]).parent
    assert not [p for p in parent.iterdir() if ".replaced-" in p.name or ".import-" in p.name]


def test_without_hard_links_the_store_still_arrives(
    tmp_path: Path, tracker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    location = f"sqlite:{tmp_path}/vfat/state.db"
    with ss.open_store(location, SCHEMA, legacy=ss.Legacy(tracker, LAYOUT)) as store:
        assert len(store[TASKS]) == 300


def test_an_unreadable_file_is_a_reject_with_its_provenance(
    location: str, tracker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_file = tracker / "tasks" / "fn-1.1.json"
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == bad_file:  # chmod 0 does not stop root, who may run these tests
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(tracker, LAYOUT), on_error="quarantine")
    (bad,) = [r for r in report.rejects if r.path == "tasks/fn-1.1.json"]
    assert bad.reason.startswith("cannot read: ")
    with ss.open_store(location, SCHEMA, mode="read") as store:
        (row,) = [r for r in store.imports() if r.path == "tasks/fn-1.1.json"]
        assert (row.imported, row.rejected, row.sha256) == (0, 1, "")
