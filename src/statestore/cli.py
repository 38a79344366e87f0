"""The ``statestore`` command.

Every statestore error becomes one clear line on stderr and exit status 1;
no traceback reaches a command user.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
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

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="statestore")
def main() -> None:
    """Inspect, convert and migrate statestore stores."""


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the demo store (default: a new temporary directory).",
)
@_friendly
def demo(directory: Path | None) -> None:
    """Create a small tracker store on both backends and show what the library does with it."""
    console = Console()
    directory = directory or Path(tempfile.mkdtemp(prefix="statestore-demo-"))
    db, folder = directory / "tracker.db", directory / "tracker-files"
    for location in (f"sqlite:{db}", f"files:{folder}"):
        _demo_store(console, location)
    console.print("\nThe same state, two backends. Try:")
    console.print(f"  sqlite3 {db} \"select key, status from tasks where status='todo'\"")
    console.print(f'  grep -rl \'"status": "doing"\' {folder}/tasks/')
    console.print(f"  jq -c 'select(.stream == \"task:fn-1.3\")' {folder}/events.jsonl")
    console.print(
        "[dim]Importing the bundled legacy install is not built yet; it arrives with the legacy importer.[/dim]"
    )


def _demo_store(console: Console, location: str) -> None:
    from statestore.examples.tracker import EPICS, EVENTS, SCHEMA, TASKS, Epic, Task, TaskEvent

    now = datetime.now(timezone.utc)
    with open_store(location, SCHEMA) as store:
        epics, tasks, events = store[EPICS], store[TASKS], store[EVENTS]
        with store.transaction():
            epics.put(Epic("fn-1", "File backend"))
            for n, (title, status) in enumerate(
                [("Key encoding", "done"), ("Journal", "doing"), ("Crash tests", "todo"), ("Bench", "todo")], 1
            ):
                tasks.put(Task(f"fn-1.{n}", title, epic="fn-1", status=status, created=now))
                events.append(TaskEvent("created", "demo"), stream=f"task:fn-1.{n}")
        tasks.update("fn-1.3", lambda t: setattr(t, "status", "doing"))
        events.append(TaskEvent("started", "demo"), stream="task:fn-1.3")
        table = Table(title=f"tasks in {location}")
        for column in ("key", "title", "status", "revision"):
            table.add_column(column)
        for key in tasks:
            got = tasks.get_versioned(key)
            assert got is not None
            table.add_row(str(key), got.record.title, got.record.status, str(got.revision))
        console.print(table)
        doing = [t.id for t in tasks.find(status="doing")]
        console.print(f"find(status='doing') -> {doing}  (indexed)")
        stream = events.read(stream="task:fn-1.3")
        console.print(f"events in stream task:fn-1.3: {[e.record.type for e in stream]}")
        console.print(f"events under prefix task: -> {len(events.read(stream_prefix='task:'))}")
