"""The ``statestore`` command.

Every statestore error becomes one clear line on stderr and exit status 1;
no traceback reaches a command user.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from statestore import __version__
from statestore._open import open_store
from statestore.errors import StateStoreError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn statestore errors into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StateStoreError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a path the user gave that the OS refuses
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            # A bug of ours: still one line for the user; STATESTORE_DEBUG=1 shows the traceback.
            if os.environ.get("STATESTORE_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (rerun with STATESTORE_DEBUG=1 and report it)"
            ) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="statestore")
def main() -> None:
    """Inspect, convert and migrate statestore stores."""


def _bundled_legacy(name: str) -> Path | None:
    """A legacy install bundled in the source tree (``fixtures/legacy/<name>``), if this is one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "fixtures" / "legacy" / name
        if candidate.is_dir():
            return candidate
    return None


def _import_with_progress(console: Console, location: str, schema: Any, legacy: Any, **options: Any) -> Any:
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


def _print_report(console: Console, report: Any) -> None:
    table = Table(title=f"legacy import from {report.root}" + (" (dry run)" if report.dry_run else ""))
    for column in ("source", "into", "read", "imported", "rejected"):
        table.add_column(column, justify="right" if column in ("read", "imported", "rejected") else "left")
    for src in report.sources:
        table.add_row(src.path, src.into, str(src.read), str(src.imported), str(src.rejected))
    console.print(table)
    if report.rejects:
        rejects = Table(title="rejected records (nothing is dropped silently)")
        rejects.add_column("where")
        rejects.add_column("reason")
        for r in report.rejects:
            rejects.add_row(r.where(), r.reason)
        console.print(rejects)


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the demo stores (default: a new temporary directory).",
)
@click.option(
    "--legacy",
    "legacy_root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The old tracker install to import (default: the one bundled in fixtures/legacy/tracker).",
)
@_friendly
def demo(directory: Path | None, legacy_root: Path | None) -> None:
    """Import the bundled legacy tracker install into a new SQLite store and show what is in it."""
    from statestore.examples.tracker import APPROVALS, EPICS, EVENTS, LAYOUT, SCHEMA, STATES, TASKS
    from statestore.legacy import Legacy

    console = Console()
    legacy_root = legacy_root or _bundled_legacy("tracker")
    if legacy_root is None:
        raise click.ClickException("the bundled legacy install (fixtures/legacy/tracker) is not here; pass --legacy")
    directory = directory or Path(tempfile.mkdtemp(prefix="statestore-demo-"))
    db = directory / "tracker.db"
    location = f"sqlite:{db}"
    console.print(f"Importing the old tracker install at [bold]{legacy_root}[/bold] into [bold]{location}[/bold]")
    report = _import_with_progress(console, location, SCHEMA, Legacy(legacy_root, LAYOUT))
    if report.imported_store:
        _print_report(console, report)
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
    damaged = _bundled_legacy("tracker-damaged") if legacy_root == _bundled_legacy("tracker") else None
    if damaged is not None:
        quarantine = f"sqlite:{directory / 'tracker-damaged.db'}"
        console.print(f"\nThe damaged install at [bold]{damaged}[/bold], with on_error='quarantine':")
        report = _import_with_progress(console, quarantine, SCHEMA, Legacy(damaged, LAYOUT), on_error="quarantine")
        if report.imported_store:
            _print_report(console, report)
    console.print("\nTry next:")
    console.print(f"  statestore info {location}")
    console.print(f"  statestore ls {location} tasks --where status=blocked")
    console.print(f"  statestore log {location} events --stream task:fn-1.1")
    console.print(f"  statestore copy {location} files:{directory / 'tracker-files'}")
    console.print(f'  grep -rl \'"status": "blocked"\' {directory / "tracker-files"}/tasks/')
    console.print(f"  statestore diff {location} files:{directory / 'tracker-files'}")
    console.print(f"  sqlite3 {db} \"select key, status from tasks where status='todo' limit 5\"")
