"""Timestamps with more digits than a datetime holds: cut only by the legacy import, and counted there."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import attrs
import pytest

import statestore as ss
from statestore.cli.legacy import print_report
from statestore.codec import dumps


@attrs.define
class Status:
    name: str
    phase: str
    updated: datetime


STATUSES = ss.Collection("statuses", Status, key="name")
SCHEMA = ss.Schema("workloads", version=1, collections=[STATUSES])
LAYOUT = ss.LegacyLayout(
    version=1,
    sources=[ss.JsonFiles("status/*.json", into=STATUSES, record=lambda doc, path: {**doc, "name": path.stem})],
)


@pytest.fixture
def install(tmp_path: Path) -> Path:
    root = tmp_path / "old"
    (root / "status").mkdir(parents=True)
    # As a Go tool writes them: RFC 3339 with nanoseconds and offsets, no trailing newline.
    (root / "status" / "a.json").write_text('{"phase":"Running","updated":"2025-01-06T10:00:00.123456789+02:00"}')
    (root / "status" / "b.json").write_text('{"phase":"Failed","updated":"2025-01-06T11:00:00.5Z"}')
    (root / "status" / "c.json").write_text('{"phase":"Pending","updated":"2025-01-06T12:00:00.000001000-07:00"}')
    return root


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_nanoseconds_are_cut_counted_and_shown(
    install: Path, tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    location = f"{backend}:{tmp_path}/new" + (".db" if backend == "sqlite" else "")
    report = ss.import_legacy(location, SCHEMA, ss.Legacy(install, LAYOUT))
    (source,) = report.sources
    assert (source.read, source.imported, source.rejected) == (3, 3, 0)
    assert source.cut_timestamps == 1  # c's extra digits are zeros: nothing was lost there
    assert source.cut_example == "2025-01-06T10:00:00.123456789+02:00"
    with ss.open_store(location, SCHEMA, mode="read") as store:
        assert store[STATUSES]["a"].updated == datetime.fromisoformat("2025-01-06T10:00:00.123456+02:00")
        assert store[STATUSES]["b"].updated == datetime(2025, 1, 6, 11, 0, 0, 500000, tzinfo=timezone.utc)
    print_report(report)
    out = capsys.readouterr().out
    assert "status/*.json: 1 timestamp(s) cut to microseconds, e.g. 2025-01-06T10:00:00.123456789+02:00" in out


def test_outside_the_import_such_a_timestamp_is_refused(tmp_path: Path) -> None:
    with ss.open_store(f"files:{tmp_path}/s", SCHEMA) as store:
        data = {"name": "a", "phase": "x", "updated": "2025-01-06T10:00:00.123456789+02:00"}
        with store.transaction():
            store._write(STATUSES, "a", 1, data, dumps(data))
        with pytest.raises(ss.ValidationError, match="at most microseconds"):
            store[STATUSES].get("a")


def test_the_report_says_what_extra_drop_dropped(
    install: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (install / "status" / "d.json").write_text('{"phase":"Running","updated":"2025-01-06T10:00:00Z","node":"n1"}')
    layout = ss.LegacyLayout(
        version=1,
        sources=[
            ss.JsonFiles(
                "status/*.json", into=STATUSES, record=lambda doc, path: {**doc, "name": path.stem}, extra="drop"
            )
        ],
    )
    report = ss.import_legacy(f"sqlite:{tmp_path}/new.db", SCHEMA, ss.Legacy(install, layout))
    assert report.sources[0].dropped == (("node", 1),)
    print_report(report)
    assert "status/*.json: dropped field 'node' from 1 record(s) (extra=\"drop\")" in capsys.readouterr().out
