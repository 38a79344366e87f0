"""What the ``statestore`` command shows of legacy imports: progress, reports, rejects, and the demo."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from statestore.cli.output import Table, echo
from statestore.open import open_store

__all__ = ["follow_up_prefix", "import_with_progress", "print_rejects", "print_report", "run_demo"]


def import_with_progress(location: str, schema: Any, legacy: Any, **options: Any) -> Any:
    """``import_legacy``, with a progress bar (bytes of legacy files read) on stderr when it is a terminal."""
    from statestore.legacy import import_legacy

    if not (sys.stderr is not None and sys.stderr.isatty()):
        return import_legacy(location, schema, legacy, **options)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from statestore.cli.output import console_for

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console_for(err=True),
        transient=True,
    ) as bar:
        task = bar.add_task("reading legacy files", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return import_legacy(location, schema, legacy, progress=progress, **options)


def print_report(report: Any) -> None:
    """What each source gave, then every reject with where it is and why."""
    title = f"legacy import from {report.root}" + (" (dry run: nothing written)" if report.dry_run else "")
    table = Table(
        ("source", "into", "read", "imported", "rejected"), right=("read", "imported", "rejected"), title=title
    )
    for src in report.sources:
        table.add_row(src.path, src.into, src.read, src.imported, src.rejected)
    table.print()
    # What the import changed on purpose is said, never only done: dropped members, cut timestamps.
    for src in report.sources:
        for member, count in getattr(src, "dropped", ()):
            echo(f'{src.path}: dropped field {member!r} from {count} record(s) (extra="drop")')
        if getattr(src, "cut_timestamps", 0):
            example = getattr(src, "cut_example", "")
            echo(
                f"{src.path}: {src.cut_timestamps} timestamp(s) cut to microseconds"
                + (f", e.g. {example}" if example else "")
            )
    if report.rejects:
        print_rejects(report.rejects)


def print_rejects(rejects: Any, *, err: bool = False) -> None:
    """A table of rejects: ``path:line:column`` (or JSON pointer) and the reason (on stderr if ``err``)."""
    table = Table(("where", "reason"), title="rejected records (nothing is dropped silently)")
    for r in rejects:
        table.add_row(r.where(), r.reason)
    table.print(err=err, cell_width=120)


def follow_up_prefix() -> str:
    """How to run this command again, as the user can type it.

    ``statestore`` if that name on PATH is this very program; else the path
    of the script that is running (a virtual environment's
    ``.venv/bin/statestore``, not on PATH); else ``python -m statestore``
    with this interpreter's path.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name in ("statestore", "statestore.exe") and Path(argv0).is_file():
        on_path = shutil.which("statestore")
        if on_path is not None and os.path.samefile(on_path, argv0):
            return "statestore"
        return shlex.quote(os.path.abspath(argv0))
    return f"{shlex.quote(sys.executable)} -m statestore"


def run_demo(directory: Path | None, legacy_root: Path | None) -> None:
    """``statestore demo``: import an old tracker install into SQLite (and a damaged one, quarantined).

    Without ``directory`` everything happens in a new temporary folder,
    deleted at the end (also on an error or Ctrl-C). Without ``legacy_root``
    the two old installs are generated into the demo folder
    (:mod:`statestore.examples.legacy_tracker`), so no source tree is needed.
    """
    if directory is not None:
        _demo(directory, legacy_root, keep=True)
        return
    temporary = Path(tempfile.mkdtemp(prefix="statestore-demo-"))
    try:
        _demo(temporary, legacy_root, keep=False)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _demo(directory: Path, legacy_root: Path | None, *, keep: bool) -> None:
    from statestore.examples.legacy_tracker import DAMAGED_DIR, HEALTHY_DIR, generate
    from statestore.examples.tracker import APPROVALS, EPICS, EVENTS, LAYOUT, SCHEMA, STATES, TASKS
    from statestore.legacy import Legacy

    damaged: Path | None = None
    if legacy_root is None:
        installs = directory / "legacy"
        if not (installs / HEALTHY_DIR).is_dir():
            generate(installs)
        legacy_root, damaged = installs / HEALTHY_DIR, installs / DAMAGED_DIR
    db = directory / "tracker.db"
    location = f"sqlite:{db}"
    echo(f"Importing the old tracker install at {legacy_root} into {location}")
    report = import_with_progress(location, SCHEMA, Legacy(legacy_root, LAYOUT))
    if report.imported_store:
        print_report(report)
    else:
        echo("The store exists already: it is never imported twice.")
    with open_store(location, SCHEMA, mode="read") as store:
        counts = ", ".join(f"{len(store[c])} {c.name}" for c in (EPICS, TASKS, STATES, APPROVALS))
        echo(f"\nThe store holds {counts} and {store[EVENTS].last_seq()} events.")
        blocked = [t.id for t in store[TASKS].find(status="blocked")]
        echo(f"tasks.find(status='blocked') -> {len(blocked)} tasks, e.g. {blocked[:5]}  (indexed)")
        stream = store[EVENTS].read(stream="task:fn-1.1")
        echo(f"events in stream 'task:fn-1.1' (exact, never 'task:fn-1.10'): {[e.record.type for e in stream]}")
        echo(f"provenance: {len(store.imports())} legacy files recorded with size, mtime and sha256")
    if damaged is not None:
        quarantine = f"sqlite:{directory / 'tracker-damaged.db'}"
        echo(f"\nThe damaged install at {damaged}, with on_error='quarantine':")
        report = import_with_progress(quarantine, SCHEMA, Legacy(damaged, LAYOUT), on_error="quarantine")
        if report.imported_store:
            print_report(report)
    if not keep:
        again = f"{follow_up_prefix()} demo --dir DIR"
        echo(f"\nThe demo ran in {directory}, now deleted; run `{again}` to keep the stores.")
        return
    cmd = follow_up_prefix()
    loc = shlex.quote(location)
    files = directory / "tracker-files"
    echo("\nTry next:")
    for line in (
        f"{cmd} info {loc}",
        f"{cmd} ls {loc} tasks --where status=blocked",
        f"{cmd} log {loc} events --stream task:fn-1.1",
        f"{cmd} copy {loc} {shlex.quote(f'files:{files}')}",
        f'grep -rl \'"status": "blocked"\' {shlex.quote(str(files / "tasks"))}',
        f"{cmd} diff {loc} {shlex.quote(f'files:{files}')}",
        f"{cmd} backups {loc}",
        f"sqlite3 {shlex.quote(str(db))} \"select key, status from tasks where status='todo' limit 5\"",
    ):
        echo(f"  {line}")
