"""What the ``statestore`` command shows of legacy imports: progress, reports, rejects, and the demo."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from statestore.open import open_store

__all__ = ["bundled_legacy", "import_with_progress", "print_rejects", "print_report", "run_demo"]


def bundled_legacy(name: str) -> Path | None:
    """A legacy install bundled in the source tree (``fixtures/legacy/<name>``), if this is one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "fixtures" / "legacy" / name
        if candidate.is_dir():
            return candidate
    return None


def import_with_progress(console: Console, location: str, schema: Any, legacy: Any, **options: Any) -> Any:
    """``import_legacy`` with a rich progress bar (bytes of legacy files read)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from statestore.legacy import import_legacy

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("reading legacy files", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return import_legacy(location, schema, legacy, progress=progress, **options)


def print_report(console: Console, report: Any) -> None:
    """What each source gave, then every reject with where it is and why."""
    table = Table(title=f"legacy import from {report.root}" + (" (dry run)" if report.dry_run else ""))
    for column in ("source", "into", "read", "imported", "rejected"):
        table.add_column(column, justify="right" if column in ("read", "imported", "rejected") else "left")
    for src in report.sources:
        table.add_row(src.path, src.into, str(src.read), str(src.imported), str(src.rejected))
    console.print(table)
    if report.rejects:
        print_rejects(console, report.rejects)


def print_rejects(console: Console, rejects: Any) -> None:
    """A table of rejects: ``path:line:column`` (or JSON pointer) and the reason."""
    table = Table(title="rejected records (nothing is dropped silently)")
    table.add_column("where")
    table.add_column("reason")
    for r in rejects:
        table.add_row(r.where(), r.reason)
    console.print(table)


def run_demo(console: Console, directory: Path | None, legacy_root: Path | None) -> None:
    """``statestore demo``: import the bundled install into SQLite (and the damaged one, quarantined)."""
    from statestore.examples.tracker import APPROVALS, EPICS, EVENTS, LAYOUT, SCHEMA, STATES, TASKS
    from statestore.legacy import Legacy

    legacy_root = legacy_root or bundled_legacy("tracker")
    if legacy_root is None:
        raise click.ClickException("the bundled legacy install (fixtures/legacy/tracker) is not here; pass --legacy")
    directory = directory or Path(tempfile.mkdtemp(prefix="statestore-demo-"))
    db = directory / "tracker.db"
    location = f"sqlite:{db}"
    console.print(f"Importing the old tracker install at [bold]{legacy_root}[/bold] into [bold]{location}[/bold]")
    report = import_with_progress(console, location, SCHEMA, Legacy(legacy_root, LAYOUT))
    if report.imported_store:
        print_report(console, report)
    else:
        console.print("[dim]The store exists already: it is never imported twice.[/dim]")
    with open_store(location, SCHEMA, mode="read") as store:
        counts = ", ".join(f"{len(store[c])} {c.name}" for c in (EPICS, TASKS, STATES, APPROVALS))
        console.print(f"\nThe store holds {counts} and {store[EVENTS].last_seq()} events.")
        blocked = [t.id for t in store[TASKS].find(status="blocked")]
        console.print(f"tasks.find(status='blocked') -> {len(blocked)} tasks, e.g. {blocked[:5]}  (indexed)")
        stream = store[EVENTS].read(stream="task:fn-1.1")
        console.print(
            f"events in stream 'task:fn-1.1' (exact, never 'task:fn-1.10'): {[e.record.type for e in stream]}"
        )
        console.print(f"provenance: {len(store.imports())} legacy files recorded with size, mtime and sha256")
    damaged = bundled_legacy("tracker-damaged") if legacy_root == bundled_legacy("tracker") else None
    if damaged is not None:
        quarantine = f"sqlite:{directory / 'tracker-damaged.db'}"
        console.print(f"\nThe damaged install at [bold]{damaged}[/bold], with on_error='quarantine':")
        report = import_with_progress(console, quarantine, SCHEMA, Legacy(damaged, LAYOUT), on_error="quarantine")
        if report.imported_store:
            print_report(console, report)
    console.print("\nTry next:")
    console.print(f"  statestore info {location}")
    console.print(f"  statestore ls {location} tasks --where status=blocked")
    console.print(f"  statestore log {location} events --stream task:fn-1.1")
    console.print(f"  statestore copy {location} files:{directory / 'tracker-files'}")
    console.print(f'  grep -rl \'"status": "blocked"\' {directory / "tracker-files"}/tasks/')
    console.print(f"  statestore diff {location} files:{directory / 'tracker-files'}")
    console.print(f"  sqlite3 {db} \"select key, status from tasks where status='todo' limit 5\"")
