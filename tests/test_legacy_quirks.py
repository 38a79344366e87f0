"""The legacy importer on the shapes and damage real installs have (issue 12), on every persistent backend."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import statestore as ss
from statestore.cli import main
from statestore.examples.tracker import LAYOUT, SCHEMA, TASKS
from statestore.legacy import store_exists


@pytest.fixture(params=["sqlite", "files", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_server").url())  # a fresh schema
    return f"sqlite:{tmp_path}/new/state.db" if request.param == "sqlite" else f"files:{tmp_path}/new/state"


@attrs.define
class Server:
    name: str
    port: int
    host: str = "localhost"


SERVERS = ss.Collection("servers", Server, key="name", unique=["port"])
APP = ss.Schema("app", version=1, collections=[SERVERS])


def _registry(root: Path) -> ss.LegacyLayout:
    """A registry map in one file and one more server per file: a port shared across the two sources."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "registry.json").write_text(
        '{\n  "api": {"port": 8080},\n  "web": {"port": 3000},\n  "docs": {"port": 4000}\n}\n'
    )
    (root / "extra").mkdir(exist_ok=True)
    (root / "extra" / "admin.json").write_text('{"port": 8080}\n')
    (root / "extra" / "metrics.json").write_text('{"port": 9090}\n')
    return ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("registry.json", into=SERVERS),
            ss.JsonFiles("extra/*.json", into=SERVERS, record=lambda d, p: {**d, "name": p.stem}),
        ],
    )


# ------------------------------------------------------------------ 1. unique clashes


@pytest.mark.parametrize("mode", ["dry_run", "abort", "quarantine"])
def test_a_unique_clash_rejects_every_record_of_it_naming_the_other_place(
    location: str, tmp_path: Path, mode: str
) -> None:
    layout = _registry(tmp_path / "old")
    legacy = ss.Legacy(tmp_path / "old", layout)
    if mode == "abort":
        with pytest.raises(ss.LegacyImportError) as info:
            ss.import_legacy(location, APP, legacy)
        rejects = list(info.value.problems)
        assert not store_exists(location)
    else:
        report = ss.import_legacy(location, APP, legacy, dry_run=mode == "dry_run", on_error="quarantine")
        rejects = list(report.rejects)
        assert [(s.read, s.imported, s.rejected) for s in report.sources] == [(3, 2, 1), (2, 1, 1)]
    by_path = {r.path: r for r in rejects}
    assert sorted(by_path) == ["extra/admin.json", "registry.json"]
    assert by_path["registry.json"].pointer == "/api"
    assert (by_path["registry.json"].line, by_path["registry.json"].column) == (2, 10)
    assert "8080" in by_path["registry.json"].reason
    assert "extra/admin.json" in by_path["registry.json"].reason
    assert "registry.json:2:10 at /api" in by_path["extra/admin.json"].reason
    assert by_path["registry.json"].raw == '{"port": 8080}'
    if mode == "quarantine":
        with ss.open_store(location, APP, mode="read") as store:
            assert sorted(store[SERVERS].keys()) == ["docs", "metrics", "web"]
            assert store.rejects() == rejects


def test_a_unique_clash_with_a_migration_in_the_layout_blames_the_records(location: str, tmp_path: Path) -> None:
    layout = _registry(tmp_path / "old")
    v2 = ss.Schema(
        "app",
        version=2,
        collections=[SERVERS],
        migrations=[ss.Migration(2, "hosts", up=lambda m: m.map_records("servers", lambda d: {**d, "host": "h"}))],
    )
    with pytest.raises(ss.LegacyImportError) as info:
        ss.import_legacy(location, v2, ss.Legacy(tmp_path / "old", layout))
    assert sorted(p.path for p in info.value.problems) == ["extra/admin.json", "registry.json"]


# ------------------------------------------------------------------ 2. read back after migrations


@attrs.define
class Note:
    id: str
    title: str
    body: str = ""


NOTES = ss.Collection("notes", Note, key="id")
NOTES_V2 = ss.Schema(
    "notes",
    version=2,
    collections=[NOTES],
    migrations=[ss.Migration(2, "bodies", up=lambda m: m.map_records("notes", lambda d: {**d, "body": "b"}))],
)


def test_records_the_current_declarations_cannot_read_after_migrations_are_rejects(
    location: str, tmp_path: Path
) -> None:
    root = tmp_path / "old"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.json").write_text('{"title": "A"}\n')
    (root / "notes" / "b.json").write_text('{"body": "no title"}\n')  # title is required
    # An older layout that uses the current declaration: its records are read back after migrating.
    layout = ss.LegacyLayout(
        version=1, sources=[ss.JsonFiles("notes/*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem})]
    )
    with pytest.raises(ss.LegacyImportError) as info:
        ss.open_store(location, NOTES_V2, legacy=ss.Legacy(root, layout))
    (bad,) = info.value.problems
    assert bad.path == "notes/b.json"
    assert "title" in bad.reason
    assert not store_exists(location)
    dry = ss.import_legacy(location, NOTES_V2, ss.Legacy(root, layout), dry_run=True)  # the same reject
    assert [(r.path, r.reason) for r in dry.rejects] == [(bad.path, bad.reason)]
    assert not store_exists(location)
    report = ss.import_legacy(location, NOTES_V2, ss.Legacy(root, layout), on_error="quarantine")
    assert [(s.read, s.imported, s.rejected) for s in report.sources] == [(2, 1, 1)]
    with ss.open_store(location, NOTES_V2) as store:
        assert store[NOTES].all() == [Note("a", "A", "b")]
        (kept,) = store.rejects()
        assert kept.raw == '{"body": "no title"}\n'
        assert sum(r.imported for r in store.imports()) == 1


# ------------------------------------------------------------------ 3. undeclared fields


def test_undeclared_fields_are_a_reject_naming_them_unless_dropped_and_counted(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "notes.json").write_text(
        '[{"id": "a", "title": "A", "diffClusters": [1], "boundingBox": {}},\n {"id": "b", "title": "B"}]\n'
    )
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("notes.json", into=NOTES)])
    with pytest.raises(ss.LegacyImportError) as info:
        ss.import_legacy(location, ss.Schema("n", version=1, collections=[NOTES]), ss.Legacy(root, layout))
    (bad,) = info.value.problems
    assert "'diffClusters'" in bad.reason
    assert "'boundingBox'" in bad.reason
    assert (bad.line, bad.pointer) == (1, "/0/diffClusters")
    dropping = ss.LegacyLayout(version=1, sources=[ss.JsonFile("notes.json", into=NOTES, extra="drop")])
    report = ss.import_legacy(location, ss.Schema("n", version=1, collections=[NOTES]), ss.Legacy(root, dropping))
    (source,) = report.sources
    assert (source.read, source.imported, source.rejected) == (2, 2, 0)
    assert source.dropped == (("boundingBox", 1), ("diffClusters", 1))


# ------------------------------------------------------------------ 4. counts add up


def test_a_function_that_fails_part_way_rejects_the_whole_source(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "notes.txt").write_text("".join(f'{{"id": "n{i}", "title": "t"}}\n' for i in range(80)))
    lines = (root / "notes.txt").read_text().splitlines()
    lines[39] = '{"id": "n39", '
    (root / "notes.txt").write_text("\n".join(lines) + "\n")

    def read(r: Path) -> Iterator[dict[str, Any]]:
        for line in (r / "notes.txt").read_text().splitlines():
            yield json.loads(line)

    layout = ss.LegacyLayout(version=1, sources=[ss.Function("notes", into=NOTES, read=read, paths=["notes.txt"])])
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    (source,) = report.sources
    assert (source.read, source.imported, source.rejected) == (40, 0, 40)
    assert source.read == source.imported + source.rejected
    failure = [r for r in report.rejects if r.reason.startswith("read():")]
    assert len(failure) == 1
    assert failure[0].pointer == "/39"
    assert "after 39 record(s)" in failure[0].reason
    with ss.open_store(location, schema, mode="read") as store:
        assert len(store[NOTES]) == 0


def test_every_source_kind_counts_add_up(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "many").mkdir(parents=True)
    (root / "one.json").write_text('[{"id": "a", "title": "A"}, {"id": "b"}, 3]')
    (root / "many" / "c.json").write_text('{"title": "C"}')
    (root / "many" / "d.json").write_text('{"title": ')
    (root / "lines.jsonl").write_text('{"id": "e", "title": "E"}\n{"id": "f"}\nnot json\n')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("one.json", into=NOTES),
            ss.JsonFiles("many/*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem}),
            ss.JsonLines("lines.jsonl", into=NOTES),
            ss.Function("gen", into=NOTES, read=lambda r: [{"id": "g", "title": "G"}, {"id": "h", "title": 1}]),
        ],
    )
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), dry_run=True)
    assert [(s.read, s.imported, s.rejected) for s in report.sources][:3] == [(3, 1, 2), (2, 1, 1), (3, 1, 2)]
    for s in report.sources:
        assert s.read == s.imported + s.rejected
    assert report.rejected == sum(s.rejected for s in report.sources)


# ------------------------------------------------------------------ 5. verbatim rejects


def test_rejects_keep_the_exact_bytes_of_the_record(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    text = '{"notes": {\n  "a": {"title": "A"},\n  "b":   {"body" :  "x\\u00e9",   "tags": null}\n}}'
    (root / "notes.json").write_text(text)
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("notes.json", into=NOTES, records=lambda d: d["notes"], record=lambda r, k: {**r, "id": k})
        ],
    )
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    (bad,) = report.rejects
    assert bad.raw == '{"body" :  "x\\u00e9",   "tags": null}'  # not re-encoded, no id or defaults added
    assert (bad.line, bad.column, bad.pointer) == (3, 42, "/notes/b/tags")  # the undeclared member's value


def test_a_record_that_is_not_utf8_keeps_its_bytes_in_raw_base64(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "lines.jsonl").write_bytes(b'{"id": "a", "title": "A"}\n{"id": "b", "title": "\xff"}\n')
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonLines("lines.jsonl", into=NOTES)])
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(f"sqlite:{tmp_path}/s.db", schema, ss.Legacy(root, layout), on_error="quarantine")
    (bad,) = report.rejects
    assert base64.b64decode(bad.raw_base64 or "") == b'{"id": "b", "title": "\xff"}'
    assert bad.line == 2


# ------------------------------------------------------------------ 6. repeated members, truncation


@attrs.define
class Endpoint:
    name: str
    url: str


ENDPOINTS = ss.Collection("endpoints", Endpoint, key="name")


def test_a_repeated_member_in_a_map_of_strings_is_a_reject_whatever_records_does(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "urls.json").write_text('{\n  "a": "http://a",\n  "b": "http://b1",\n  "b": "http://b2"\n}\n')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("urls.json", into=ENDPOINTS, records=lambda d: [{"name": k, "url": v} for k, v in d.items()])
        ],
    )
    schema = ss.Schema("e", version=1, collections=[ENDPOINTS])
    with pytest.raises(ss.LegacyImportError) as info:
        ss.import_legacy(location, schema, ss.Legacy(root, layout))
    (bad,) = info.value.problems
    assert "'b'" in bad.reason
    assert "twice" in bad.reason
    assert bad.line == 4


def test_a_repeated_member_inside_a_reshaped_line_is_a_reject(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "lines.jsonl").write_text('{"id": "a", "title": "A", "title": "B"}\n')
    layout = ss.LegacyLayout(
        version=1,
        sources=[ss.JsonLines("lines.jsonl", into=NOTES, record=lambda r: {"id": r["id"], "title": r["title"]})],
    )
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(f"sqlite:{tmp_path}/s.db", schema, ss.Legacy(root, layout), dry_run=True)
    (bad,) = report.rejects
    assert "'title'" in bad.reason
    assert (bad.line, bad.column) == (1, 36)


def test_truncated_only_when_the_input_ends_inside_a_value(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "extra-brace.json").write_text('{"title": "A"}\n}')  # no trailing newline, like Go and JS
    (root / "notes" / "cut.json").write_text('{"title": "A", "bo')
    (root / "notes" / "open.json").write_text('{"title": "A",')
    (root / "notes" / "literal.json").write_text('{"title": "A", "done": tr')
    (root / "notes" / "typo.json").write_text('{"title": "A", "done": trve}\n')
    (root / "lines.jsonl").write_text('{"id": "x", "title": "X"}\n{"id": "y"}}')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFiles("notes/*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem}),
            ss.JsonLines("lines.jsonl", into=NOTES),
        ],
    )
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(f"sqlite:{tmp_path}/s.db", schema, ss.Legacy(root, layout), dry_run=True)
    reasons = {r.path: r.reason for r in report.rejects}
    assert reasons["notes/extra-brace.json"].startswith("invalid JSON: Extra data")
    assert reasons["notes/cut.json"].startswith("truncated")
    assert reasons["notes/open.json"].startswith("truncated")
    assert reasons["notes/literal.json"].startswith("truncated")
    assert reasons["notes/typo.json"].startswith("invalid JSON")
    assert reasons["lines.jsonl"].startswith("invalid JSON: Extra data")


# ------------------------------------------------------------------ 7. symlinks


def test_links_that_leave_the_root_are_rejects_and_links_inside_are_followed(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "notes").mkdir(parents=True)
    (root / "keep").mkdir()
    (root / "keep" / "a.json").write_text('{"title": "A"}\n')
    os.symlink(root / "keep" / "a.json", root / "notes" / "a.json")  # inside: followed
    secret = tmp_path / "private.json"
    secret.write_text('{"title": "secret"}\n')
    os.symlink(secret, root / "notes" / "b.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.json").write_text('{"title": "C"}\n')
    os.symlink(elsewhere, root / "notes" / "sub")
    os.symlink("/etc/passwd", root / "passwd.json")
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFiles("notes/*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem}),
            ss.JsonFiles("notes/*/*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem}),
            ss.JsonFile("passwd.json", into=NOTES),
        ],
    )
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    reasons = {r.path: r.reason for r in report.rejects}
    assert set(reasons) == {"notes/b.json", "notes/sub/c.json", "passwd.json"}
    assert all(r.startswith("symlink leaves the legacy root") for r in reasons.values())
    assert all(r.raw is None and r.raw_base64 is None for r in report.rejects)
    with ss.open_store(location, schema, mode="read") as store:
        assert store[NOTES].keys() == ["a"]
        assert all(r.raw is None for r in store.rejects())
    # A root that is itself a link (~/.app -> /data/app): everything under it is inside.
    os.symlink(root / "keep", tmp_path / "linked-root")
    inside = ss.LegacyLayout(
        version=1, sources=[ss.JsonFiles("*.json", into=NOTES, record=lambda d, p: {**d, "id": p.stem})]
    )
    other = location.replace("/new/", "/other/")
    with ss.open_store(other, schema, legacy=ss.Legacy(tmp_path / "linked-root", inside)) as store:
        assert store[NOTES].keys() == ["a"]


# ------------------------------------------------------------------ 8. new declarative sources


@attrs.define
class Memory:
    id: str
    text: str
    at: datetime


MEMORIES = ss.Collection("memories", Memory, key="id")


def test_json_lines_into_a_collection_one_record_per_line(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "index.jsonl").write_text(
        '{"id": "m1", "text": "a", "at": "2025-03-01T10:00:00.123456+02:00"}\n'
        "\n"
        '{"id": "m2", "text": "b", "at": "2025-03-01T10:00:00+00:00"}\n'
        '{"id": "m3", "at": "2025-03-01T10:00:00+00:00"}\n'
    )
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonLines("index.jsonl", into=MEMORIES)])
    schema = ss.Schema("m", version=1, collections=[MEMORIES])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    (bad,) = report.rejects
    assert (bad.path, bad.line, bad.column, bad.pointer) == ("index.jsonl", 4, 1, "/text")
    with ss.open_store(location, schema, mode="read") as store:
        assert [m.id for m in store[MEMORIES].all()] == ["m1", "m2"]


def test_go_timestamps_with_nanoseconds_and_offsets(tmp_path: Path) -> None:
    @attrs.define
    class Ev:
        kind: str

    events = ss.Log("events", Ev)
    root = tmp_path / "old"
    root.mkdir()
    (root / "ev.jsonl").write_text(
        '{"kind": "a", "ts": "2025-03-01T10:00:00.123456789+02:00"}\n'
        '{"kind": "b", "ts": "2025-03-01T10:00:00.5Z"}\n'
        '{"kind": "c", "ts": "2025-03-01T10:00:00-07:00"}\n'
    )
    layout = ss.LegacyLayout(
        version=1,
        sources=[ss.JsonLines("ev.jsonl", into=events, at=lambda r: r["ts"], record=lambda r: {"kind": r["kind"]})],
    )
    schema = ss.Schema("e", version=1, collections=[], logs=[events])
    report = ss.import_legacy(f"sqlite:{tmp_path}/s.db", schema, ss.Legacy(root, layout))
    assert report.sources[0].cut_timestamps == 1  # the nanoseconds, counted where the user sees them
    with ss.open_store(f"sqlite:{tmp_path}/s.db", schema) as store:
        assert [e.at for e in store[events].read()] == [
            datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=timezone.utc),
            datetime(2025, 3, 1, 10, 0, 0, 500000, tzinfo=timezone.utc),
            datetime(2025, 3, 1, 17, 0, 0, tzinfo=timezone.utc),
        ]


@attrs.define
class Gap:
    epic: str
    n: int
    text: str


GAPS = ss.Collection("gaps", Gap, key=("epic", "n"))


def test_json_files_with_many_records_per_file(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "gaps").mkdir(parents=True)
    (root / "gaps" / "E-1.json").write_text('{"gaps": [{"n": 1, "text": "a"}, {"n": 2, "text": "b"}]}\n')
    (root / "gaps" / "E-2.json").write_text('{"gaps": [\n  {"n": 1, "text": "c"},\n  {"n": 2}\n]}\n')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFiles(
                "gaps/*.json",
                into=GAPS,
                records=lambda d, p: d["gaps"],
                record=lambda r, p: {**r, "epic": p.stem},
            )
        ],
    )
    schema = ss.Schema("g", version=1, collections=[GAPS])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    (bad,) = report.rejects
    assert (bad.path, bad.line, bad.pointer, bad.raw) == ("gaps/E-2.json", 3, "/gaps/1/text", '{"n": 2}')
    assert [(s.read, s.imported, s.rejected) for s in report.sources] == [(4, 3, 1)]
    with ss.open_store(location, schema, mode="read") as store:
        assert sorted(store[GAPS].keys()) == [("E-1", 1), ("E-1", 2), ("E-2", 1)]


def test_an_install_under_two_roots(location: str, tmp_path: Path) -> None:
    config, state = tmp_path / "config" / "app", tmp_path / "state" / "app"
    (state / "status").mkdir(parents=True)
    config.mkdir(parents=True)
    (config / "servers.json").write_text('{"api": {"port": 1}}')
    (state / "status" / "web.json").write_text('{"port": 2}')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFile("servers.json", into=SERVERS, root="config"),
            ss.JsonFiles("status/*.json", into=SERVERS, record=lambda d, p: {**d, "name": p.stem}, root="state"),
        ],
    )
    legacy = ss.Legacy(roots={"config": config, "state": state}, layout=layout)
    with ss.open_store(location, APP, legacy=legacy) as store:
        assert sorted(store[SERVERS].keys()) == ["api", "web"]
        rows = {r.path: r.root for r in store.imports()}
    assert rows == {"servers.json": str(config), "status/web.json": str(state)}
    with pytest.raises(ValueError, match="names the root 'cache'"):
        ss.Legacy(roots={"config": config}, layout=ss.LegacyLayout(1, [ss.JsonFile("x", into=SERVERS, root="cache")]))


# ------------------------------------------------------------------ 11. no folders left by an abort


def test_an_aborted_import_leaves_no_folders_it_created(tmp_path: Path) -> None:
    layout = _registry(tmp_path / "old")
    for location in (f"sqlite:{tmp_path}/a/b/state.db", f"files:{tmp_path}/c/d/state"):
        with pytest.raises(ss.LegacyImportError):
            ss.import_legacy(location, APP, ss.Legacy(tmp_path / "old", layout))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


# ------------------------------------------------------------------ wrong types (the strict codec)


class Status(Enum):
    RUNNING = "running"
    DONE = "done"


@attrs.define
class Workload:
    name: str
    status: Status
    restarts: int = 0
    paused: bool = False


WORKLOADS = ss.Collection("workloads", Workload, key="name")


def test_a_wrong_type_is_a_located_reject_showing_the_value(location: str, tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "status").mkdir(parents=True)
    (root / "status" / "a.json").write_text('{\n  "status": "runing"\n}\n')
    (root / "status" / "b.json").write_text('{\n  "status": "done",\n  "restarts": "7"\n}\n')
    (root / "status" / "c.json").write_text('{"status": "done", "paused": "false"}\n')
    (root / "status" / "d.json").write_text('{"status": "done", "restarts": 2}\n')
    layout = ss.LegacyLayout(
        version=1, sources=[ss.JsonFiles("status/*.json", into=WORKLOADS, record=lambda d, p: {**d, "name": p.stem})]
    )
    schema = ss.Schema("w", version=1, collections=[WORKLOADS])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine")
    got = {r.path: r for r in report.rejects}
    assert sorted(got) == ["status/a.json", "status/b.json", "status/c.json"]
    assert (got["status/a.json"].line, got["status/a.json"].column) == (2, 13)
    assert '"runing"' in got["status/a.json"].reason
    assert (got["status/b.json"].line, got["status/b.json"].column, got["status/b.json"].pointer) == (
        3,
        15,
        "/restarts",
    )
    assert '"7"' in got["status/b.json"].reason
    assert '"false"' in got["status/c.json"].reason
    assert got["status/b.json"].raw == (root / "status" / "b.json").read_text()


# ------------------------------------------------------------------ 9. comparing two imports


def test_two_imports_of_one_install_differ_only_in_statestore_s_own_logs(tmp_path: Path) -> None:
    tracker = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "tracker"
    a, b = f"sqlite:{tmp_path}/a.db", f"files:{tmp_path}/b"
    ss.import_legacy(a, SCHEMA, ss.Legacy(tracker, LAYOUT))
    ss.import_legacy(b, SCHEMA, ss.Legacy(tracker, LAYOUT))
    assert not ss.diff_stores(a, b).equal  # import times and the history differ
    assert ss.diff_stores(a, b, internal=False).equal
    result = CliRunner().invoke(main, ["diff", "--data", a, b])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(main, ["diff", a, b]).exit_code == 1
    with ss.open_store(b, SCHEMA) as store:
        store[TASKS].delete("fn-1.1")
    assert not ss.diff_stores(a, b, internal=False).equal
    assert CliRunner().invoke(main, ["diff", "--data", a, b]).exit_code == 1


# ------------------------------------------------------------------ 10. the bundled quirks install

QUIRKS = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "quirks"


@attrs.define
class Workload2:
    name: str
    phase: str
    restarts: int
    updated: datetime


@attrs.define
class Alias:
    name: str
    url: str


@attrs.define
class GoEvent:
    workload: str
    msg: str


Q_SERVERS = ss.Collection("servers", Server, key="name", unique=["port"])
Q_ALIASES = ss.Collection("aliases", Alias, key="name")
Q_WORKLOADS = ss.Collection("workloads", Workload2, key="name")
Q_MEMORIES = ss.Collection("memories", Memory, key="id")
Q_EVENTS = ss.Log("events", GoEvent)
Q_SCHEMA = ss.Schema("quirks", version=1, collections=[Q_SERVERS, Q_ALIASES, Q_WORKLOADS, Q_MEMORIES], logs=[Q_EVENTS])
Q_LAYOUT = ss.LegacyLayout(
    version=1,
    sources=[
        ss.JsonFile("servers.json", into=Q_SERVERS, root="config"),
        ss.JsonFile(
            "aliases.json",
            into=Q_ALIASES,
            root="config",
            records=lambda d: [{"name": k, "url": v} for k, v in d.items()],
        ),
        ss.JsonFiles("status/*.json", into=Q_WORKLOADS, record=lambda d, p: {**d, "name": p.stem}, root="state"),
        ss.JsonLines("memory.jsonl", into=Q_MEMORIES, root="state"),
        ss.JsonLines(
            "events.jsonl",
            into=Q_EVENTS,
            root="state",
            stream=lambda r: r["workload"],
            at=lambda r: r["time"],
            record=lambda r: {"workload": r["workload"], "msg": r["msg"]},
        ),
    ],
)


def test_the_quirks_install_imports_with_every_reject_where_expected(location: str, tmp_path: Path) -> None:
    import shutil

    root = Path(shutil.copytree(QUIRKS, tmp_path / "quirks"))
    config, state = root / "config" / "app", root / "state" / "app"
    secret = tmp_path / "secret.json"
    secret.write_text('{"phase": "Running", "restarts": 0, "updated": "2025-01-06T00:00:00Z"}')
    os.symlink(secret, state / "status" / "stolen.json")  # a link out of the root, as found in the wild
    legacy = ss.Legacy(roots={"config": config, "state": state}, layout=Q_LAYOUT)
    report = ss.import_legacy(location, Q_SCHEMA, legacy, on_error="quarantine")
    expected = json.loads((QUIRKS / "EXPECTED.json").read_text())
    got = {(r.path, r.line) for r in report.rejects}
    for e in expected:
        assert (e["path"], e["line"]) in got, e
        if e["pointer"]:
            assert any(r.path == e["path"] and r.pointer == e["pointer"] for r in report.rejects), e
    leaving = [r for r in report.rejects if r.path == "status/stolen.json"]
    assert [r.reason.startswith("symlink leaves the legacy root") for r in leaving] == [True]
    assert len(report.rejects) == len(expected) + 1
    for s in report.sources:
        assert s.read == s.imported + s.rejected
    by_path = {s.path: s for s in report.sources}
    assert by_path["events.jsonl"].cut_timestamps == 5
    with ss.open_store(location, Q_SCHEMA, mode="read") as store:
        assert sorted(store[Q_SERVERS].keys()) == ["docs", "metrics", "web"]
        assert store[Q_ALIASES].all() == []  # the whole map: which "home" is meant cannot be told
        assert sorted(store[Q_WORKLOADS].keys()) == [f"workload-{i}" for i in range(5)]  # stray files ignored
        assert store[Q_WORKLOADS]["workload-1"].updated == datetime(2025, 1, 5, 23, 0, 0, 1, tzinfo=timezone.utc)
        assert len(store[Q_MEMORIES]) == 5
        first = store[Q_EVENTS].read()[0]
        assert first.at == datetime(2025, 1, 6, 4, 30, 0, 0, tzinfo=timezone.utc)
        assert {r.root for r in store.imports()} == {str(config), str(state)}


def test_every_reject_of_a_document_has_its_own_line_and_column(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    records = [{"id": f"k{i}"} if i % 3 else {"id": f"k{i}", "title": "t"} for i in range(60)]
    text = json.dumps(records, indent=2)  # each record: "{", id line, "}" (or with a title line)
    (root / "n.json").write_text(text)
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("n.json", into=NOTES)])
    schema = ss.Schema("n", version=1, collections=[NOTES])
    report = ss.import_legacy(f"sqlite:{tmp_path}/s.db", schema, ss.Legacy(root, layout), dry_run=True)
    lines = text.split("\n")
    assert len(report.rejects) == 40
    for r in report.rejects:
        assert r.line is not None
        assert r.column is not None
        assert lines[r.line - 1][r.column - 1] == "{"
        assert json.loads(r.raw or "") == records[int((r.pointer or "").split("/")[1])]


def test_an_app_converter_s_validation_errors_become_located_rejects(location: str, tmp_path: Path) -> None:
    """The same path as the strict codec's: whatever ValidationError the codec raises is a located reject."""
    from cattrs.preconf.json import make_converter

    strict = make_converter(forbid_extra_keys=True)

    def exact(tp: type) -> Any:
        def hook(value: Any, _tp: Any) -> Any:
            if type(value) is not tp:
                raise TypeError(f"expected {tp.__name__}, got {json.dumps(value)}")
            return value

        return hook

    for tp in (int, bool, str):
        strict.register_structure_hook(tp, exact(tp))
    root = tmp_path / "old"
    (root / "status").mkdir(parents=True)
    (root / "status" / "a.json").write_text('{\n  "status": "done",\n  "restarts": "7"\n}\n')
    (root / "status" / "b.json").write_text('{"status": "done",  "paused": 0}')
    (root / "status" / "c.json").write_text('{"status": "done", "extra": 1}')
    (root / "status" / "d.json").write_text('{"status": "done"}')
    layout = ss.LegacyLayout(
        version=1, sources=[ss.JsonFiles("status/*.json", into=WORKLOADS, record=lambda d, p: {**d, "name": p.stem})]
    )
    schema = ss.Schema("w", version=1, collections=[WORKLOADS])
    report = ss.import_legacy(location, schema, ss.Legacy(root, layout), on_error="quarantine", converter=strict)
    got = {r.path: r for r in report.rejects}
    assert sorted(got) == ["status/a.json", "status/b.json", "status/c.json"]
    a, b = got["status/a.json"], got["status/b.json"]
    assert (a.line, a.column, a.pointer) == (3, 15, "/restarts")
    assert '"7"' in a.reason
    assert a.raw == (root / "status" / "a.json").read_text()
    assert (b.line, b.column, b.pointer) == (1, 31, "/paused")
    assert "0" in b.reason
    assert "extra" in got["status/c.json"].reason
    with ss.open_store(location, schema, mode="read", converter=strict) as store:
        assert store[WORKLOADS].keys() == ["d"]


# ------------------------------------------------------------------ review 6


@attrs.define
class Reading:
    name: str
    value: Any = None


READINGS = ss.Collection("readings", Reading, key="name")
READINGS_APP = ss.Schema("readings", version=1, collections=[READINGS])


def _dry(root: Path, *sources: Any) -> ss.ImportReport:
    layout = ss.LegacyLayout(version=1, sources=list(sources))
    return ss.import_legacy(f"sqlite:{root.parent}/r.db", READINGS_APP, ss.Legacy(root, layout), dry_run=True)


def test_a_map_key_that_disagrees_with_the_record_s_own_key_is_a_reject(tmp_path: Path) -> None:
    """Found by review: {"E-1": {"name": "E-2"}} was imported as E-2, nothing said it was filed under E-1."""
    root = tmp_path / "old"
    root.mkdir()
    (root / "r.json").write_text('{"a": {"name": "a", "value": 1}, "b": {"name": "c"}, "d": {"value": 4}}')
    report = _dry(root, ss.JsonFile("r.json", into=READINGS))
    assert report.imported == 2  # "a" (agrees) and "d" (the map key written in)
    [reject] = report.rejects
    assert reject.pointer == "/b/name"
    assert "files this record under 'b' but its name is \"c\"" in reject.reason


@pytest.mark.parametrize(
    ("text", "pointer"),
    [("19.999999999999999999", "/value"), ("1e400", "/value"), ("[1.0000000000000001]", "/value/0")],
)
def test_a_number_a_float_cannot_hold_is_a_reject_never_rounded(tmp_path: Path, text: str, pointer: str) -> None:
    """Found by review: 19.999999999999999999 was imported as 20.0 with no word."""
    root = tmp_path / "old"
    (root / "each").mkdir(parents=True)
    (root / "list.json").write_text(f'[{{"name": "bad", "value": {text}}}, {{"name": "ok", "value": 0.1}}]')
    (root / "each" / "bad.json").write_text(f'{{"value": {text}}}')
    (root / "lines.jsonl").write_text(f'{{"name": "ok2", "value": 1.50}}\n{{"name": "bad2", "value": {text}}}\n')
    report = _dry(
        root,
        ss.JsonFile("list.json", into=READINGS),
        ss.JsonFiles("each/*.json", into=READINGS, record=lambda d, p: {**d, "name": p.stem + "-file"}),
        ss.JsonLines("lines.jsonl", into=READINGS),
    )
    assert report.imported == 2
    assert sorted((r.path, r.pointer, r.line) for r in report.rejects) == [
        ("each/bad.json", pointer, None),
        ("lines.jsonl", pointer, 2),
        ("list.json", "/0" + pointer, None),
    ]
    for reject in report.rejects:
        assert f"number {text.strip('[]')} has more digits than a 64-bit float holds" in reject.reason


def test_numbers_spelled_otherwise_but_held_exactly_are_imported(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    spellings = ["1.50", "1e2", "1E+2", "0.1", "5e-324", "-0.0", "123456789012345678", "2.5e-3"]
    (root / "r.jsonl").write_text("".join(f'{{"name": "n{i}", "value": {t}}}\n' for i, t in enumerate(spellings)))
    location = f"sqlite:{tmp_path}/r.db"
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonLines("r.jsonl", into=READINGS)])
    assert ss.import_legacy(location, READINGS_APP, ss.Legacy(root, layout)).rejected == 0
    with ss.open_store(location, READINGS_APP, mode="read") as store:
        assert [store[READINGS][f"n{i}"].value for i in range(len(spellings))] == [json.loads(t) for t in spellings]


def test_deeply_nested_legacy_json_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    """Found by review: a raw RecursionError escaped import_legacy ("internal error" in the command)."""
    root = tmp_path / "old"
    root.mkdir()
    deep = "[" * 100_000 + "]" * 100_000
    (root / "r.json").write_text(deep)
    (root / "r.jsonl").write_text(f'{{"name": "ok"}}\n{{"name": "deep", "value": {deep}}}\n')
    report = _dry(root, ss.JsonFile("r.json", into=READINGS), ss.JsonLines("r.jsonl", into=READINGS))
    assert report.imported == 1
    assert sorted((r.path, r.line) for r in report.rejects) == [("r.json", None), ("r.jsonl", 2)]
    assert all("nested deeper than statestore can read" in r.reason for r in report.rejects)


def test_a_byte_order_mark_is_not_part_of_the_document(tmp_path: Path) -> None:
    """Found by review: a file a Windows editor saved with a BOM was "invalid JSON: Expecting value" at 1:1."""
    root = tmp_path / "old"
    (root / "each").mkdir(parents=True)
    (root / "r.json").write_bytes(b'\xef\xbb\xbf[{"name": "a"}]')
    (root / "each" / "b.json").write_bytes(b'\xef\xbb\xbf{"value": 2}')
    (root / "r.jsonl").write_bytes(b'\xef\xbb\xbf{"name": "c"}\n{"name": "d"}\n')
    report = _dry(
        root,
        ss.JsonFile("r.json", into=READINGS),
        ss.JsonFiles("each/*.json", into=READINGS, record=lambda d, p: {**d, "name": p.stem}),
        ss.JsonLines("r.jsonl", into=READINGS),
    )
    assert (report.imported, report.rejected) == (4, 0)


@attrs.define
class Numbered:
    number: int
    title: str = ""


NUMBERED = ss.Collection("numbered", Numbered, key="number")
NUMBERED_APP = ss.Schema("numbered", version=1, collections=[NUMBERED])


def test_a_map_filed_by_int_keys_fills_an_int_key(tmp_path: Path) -> None:
    """Found by review: {"7": {...}} into an int-keyed collection was a reject for every record.

    JSON object keys are text, so a writer files the int 7 under "7"; only that spelling is read back
    as the int (not "007", "+7", "7.0" or " 7", which stay text and are refused as the wrong type).
    """
    root = tmp_path / "old"
    root.mkdir()
    (root / "n.json").write_text(
        '{"7": {"title": "seven"}, "-2": {"title": "minus two"}, "0": {}, "007": {}, "7.0": {}, "x": {}}'
    )
    layout = ss.LegacyLayout(version=1, sources=[ss.JsonFile("n.json", into=NUMBERED)])
    location = f"sqlite:{tmp_path}/n.db"
    report = ss.import_legacy(location, NUMBERED_APP, ss.Legacy(root, layout), on_error="quarantine")
    assert sorted(r.pointer for r in report.rejects) == ["/007/number", "/7.0/number", "/x/number"]
    with ss.open_store(location, NUMBERED_APP, mode="read") as store:
        assert store[NUMBERED].all() == [Numbered(-2, "minus two"), Numbered(0), Numbered(7, "seven")]
