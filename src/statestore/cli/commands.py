"""The ``statestore`` command.

Every statestore error becomes one clear line on stderr and exit status 1
(2 for ``diff``, whose 1 means "different"); no traceback reaches a command
user. Commands that only look open the store read-only and without the
application's code, as the schemas stored in it describe it; ``--json``
gives scripts one JSON document (``info``, ``get``, ``check``, ``diff``,
``migrate``) or JSON lines (``ls``, ``log``).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from rich import box
from rich.console import Console
from rich.table import Table

from statestore import __version__
from statestore.backends.files import FileStore
from statestore.backends.sqlite import SQLiteStore
from statestore.backends.stored import stored_schemas
from statestore.cli.legacy import import_with_progress, print_rejects, print_report, run_demo
from statestore.codec import dumps, pretty
from statestore.convert import copy_store, diff_stores, dump_store
from statestore.errors import NotFoundError, SchemaMismatchError, StateStoreError, UnknownNameError
from statestore.open import open_store, parse_location
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import INTERNAL_LOGS, Store
from statestore.views import Entry, LogView

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn statestore errors into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StateStoreError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            _quiet_stdout()  # `statestore dump STORE | head`: the reader has seen enough
            raise SystemExit(1) from None
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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so exiting does not fail again flushing into a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's buffer)
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="statestore")
def main() -> None:
    """Inspect, convert and migrate statestore stores."""


# ---------------------------------------------------------------- helpers of the store commands

_STORE = click.argument("store", metavar="STORE")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


def _open(location: str) -> Store:
    """Open ``location`` read-only, as the schemas stored in it describe it."""
    return open_store(location, mode="read")


def _names(store: Store) -> str:
    return ", ".join(s.name for s in store.schemas)


def _collection(store: Store, name: str) -> Collection[Any]:
    for coll in store.collections:
        if coll.name == name:
            return coll
    raise UnknownNameError(name, _names(store))


def _log(store: Store, name: str) -> Log[Any]:
    for log in (*store.logs, *INTERNAL_LOGS):
        if log.name == name:
            return log
    raise UnknownNameError(name, _names(store))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


_MAX_COLUMNS = 6


def _cell(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_key(coll: Collection[Any], text: str) -> KeyValue:
    """A key typed on the command line: JSON array for a composite key, int for an int key field."""
    types = [coll.field_types[f] for f in coll.key_fields]
    if coll.composite:
        try:
            parts = json.loads(text)
        except ValueError:
            parts = None
        if not isinstance(parts, list) or len(parts) != len(types):
            fields = ", ".join(coll.key_fields)
            raise click.BadParameter(f"{coll.name} has a composite key ({fields}): give it as a JSON array")
        return tuple(_key_part(p, tp) for p, tp in zip(parts, types))
    return _key_part(text, types[0])


def _key_part(value: Any, tp: Any) -> str | int:
    if tp is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise click.BadParameter(f"{value!r} is not an int key") from None
    return value if isinstance(value, str) else str(value)


def _where_value(coll: Collection[Any], field: str, text: str) -> Any:
    """``--where`` values: text for str fields, JSON (falling back to text) for the others."""
    if coll.field_types.get(field) is str:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- info, ls, get, log


@main.command()
@_STORE
@_JSON
@_friendly
def info(store: str, as_json: bool) -> None:
    """Show a store's schemas, collections (with record counts) and logs (with entry counts)."""
    with _open(store) as opened:
        data = _info(opened)
    if as_json:
        _echo_json(data)
        return
    console = Console()
    console.print(f"[bold]{data['location']}[/bold]  ({data['backend']}, {data['size']:,} bytes)")
    for sch in data["schemas"]:
        console.print(f"schema [bold]{sch['name']}[/bold] version {sch['version']}")
        table = Table(box=box.SIMPLE)
        for column in ("kind", "name", "key", "indexes", "unique", "count"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for c in sch["collections"]:
            unique = "; ".join(",".join(u) for u in c["unique"])
            table.add_row(
                "collection", c["name"], ",".join(c["key"]), ",".join(c["indexes"]), unique, str(c["records"])
            )
        for lg in sch["logs"]:
            table.add_row("log", lg["name"], "", "", "", str(lg["entries"]))
        console.print(table)
        for row in sch["history"]:
            name = f" {row['name']}" if row["name"] else ""
            console.print(f"  {row['applied_at']}  {row['direction']:<6} v{row['version']}{name}")
    for imp in data["imports"]:
        console.print(
            f"imported {imp['imported_at']} from {imp['root']} (layout v{imp['version']}): "
            f"{imp['files']} files, {imp['imported']} records imported, {imp['rejected']} rejected"
        )
    if data["quarantined"]:
        console.print(f"{data['quarantined']} rejected legacy records are quarantined in the store")


def _info(store: Store) -> dict[str, Any]:
    schemas = []
    with store.transaction():
        for sch in store.schemas:
            collections = [
                {
                    "name": c.name,
                    "key": list(c.key_fields),
                    "indexes": list(c.indexes),
                    "unique": [list(u) for u in c.unique],
                    "records": len(store[c]),
                }
                for c in sch.collections
            ]
            logs = [
                {"name": lg.name, "entries": len(store[lg].read()), "last_seq": store[lg].last_seq()} for lg in sch.logs
            ]
            history = [
                {"version": h.version, "name": h.name, "direction": h.direction, "applied_at": h.applied_at.isoformat()}
                for h in store.history(sch.name)
            ]
            schemas.append(
                {"name": sch.name, "version": sch.version, "collections": collections, "logs": logs, "history": history}
            )
        imports: dict[tuple[str, str], dict[str, Any]] = {}
        for row in store.imports():
            got = imports.setdefault(
                (row.root, row.imported_at.isoformat()),
                {"root": row.root, "imported_at": row.imported_at.isoformat(), "version": row.version, "files": 0},
            )
            got["files"] += 1
            got["imported"] = got.get("imported", 0) + row.imported
            got["rejected"] = got.get("rejected", 0) + row.rejected
        quarantined = len(store.rejects())
    loc = parse_location(store.location)
    return {
        "location": store.location,
        "backend": loc.backend,
        "path": str(loc.path),
        "size": _size(loc.path),
        "schemas": schemas,
        "imports": list(imports.values()),
        "quarantined": quarantined,
    }


def _size(path: Path | None) -> int:
    """Bytes the store takes on disk (an SQLite file with its -wal, or every file of a folder)."""
    if path is None:
        return 0
    if path.is_file():
        side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        return path.stat().st_size + sum(p.stat().st_size for p in side if p.is_file())
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@main.command(name="ls")
@_STORE
@click.argument("collection")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Only records whose field equals VALUE (repeatable; values of non-text fields are JSON: 3, true, null).",
)
@click.option("--limit", type=click.IntRange(min=0), help="Show at most this many records.")
@_JSON
@_friendly
def ls_command(store: str, collection: str, where: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """List the records of COLLECTION in key order (--json: one JSON object per line)."""
    with _open(store) as opened:
        coll = _collection(opened, collection)
        conditions: dict[str, Any] = {}
        for item in where:
            field, sep, text = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--where")
            conditions[field] = _where_value(coll, field, text)
        opened[coll].find(**conditions)  # checks the field names and values
        wanted = {f: opened.codec.value(coll.name, f, coll.field_types[f], v) for f, v in conditions.items()}
        rows = opened[coll]._match(wanted)[:limit]
    if as_json:
        for key, revision, data in rows:
            click.echo(dumps({"key": key, "revision": revision, "record": data}))
        return
    fields = [f for f in coll.field_types if f not in coll.key_fields]
    table = Table(box=box.SIMPLE)
    table.add_column("key", no_wrap=True)
    table.add_column("rev", no_wrap=True)
    if len(fields) <= _MAX_COLUMNS:
        for f in fields:
            table.add_column(f, overflow="fold")
    else:  # too many to read as columns: the rest of the record as one compact JSON cell
        table.add_column("record", overflow="fold")
    for key, revision, data in rows:
        if len(fields) <= _MAX_COLUMNS:
            cells = [_cell(data[f]) if f in data else "" for f in fields]
        else:
            cells = [_cell({f: v for f, v in data.items() if f not in coll.key_fields}, 400)]
        table.add_row(_cell(key), str(revision), *cells)
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} record{'s' if len(rows) != 1 else ''}", style="dim")


@main.command()
@_STORE
@click.argument("collection")
@click.argument("key")
@_JSON
@_friendly
def get(store: str, collection: str, key: str, as_json: bool) -> None:
    """Print one record of COLLECTION as JSON (KEY: text, an int for int keys, a JSON array for composite keys)."""
    with _open(store) as opened:
        coll = _collection(opened, collection)
        value = _parse_key(coll, key)
        got = opened[coll].get_versioned(value)
        if got is None:
            raise NotFoundError(coll.name, value)
    if as_json:
        _echo_json({"key": value, "revision": got.revision, "record": got.record})
        return
    click.echo(f"# {coll.name} {value!r}, revision {got.revision}")
    click.echo(pretty(got.record))


@main.command()
@_STORE
@click.argument("log")
@click.option("--stream", help="Only this stream (exact match).")
@click.option("--prefix", help="Only streams starting with this prefix.")
@click.option(
    "--after", type=click.IntRange(min=0), default=0, show_default=True, help="Only entries with a greater seq."
)
@click.option("--limit", type=click.IntRange(min=0), help="Show at most this many entries.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing entries as they are appended (Ctrl-C stops).")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="With --follow: stop after this many seconds without a new entry."
)
@_JSON
@_friendly
def log(
    store: str,
    log: str,
    stream: str | None,
    prefix: str | None,
    after: int,
    limit: int | None,
    follow: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Show the entries of LOG in seq order (statestore's own logs too: _statestore_history...).

    --json prints one JSON object per line: seq, stream, version, at, record.
    """
    if stream is not None and prefix is not None:
        raise click.UsageError("give --stream or --prefix, not both")
    with _open(store) as opened:
        decl = _log(opened, log)
        view = LogView(opened, decl)
        if follow:
            entries = view.follow(after, stream=stream, stream_prefix=prefix, timeout=timeout)
            try:
                for n, entry in enumerate(entries, 1):
                    click.echo(_entry_json(entry) if as_json else _entry_line(entry))
                    if limit is not None and n >= limit:
                        break
            except KeyboardInterrupt:
                pass
            finally:
                entries.close()
            return
        got = view.read(stream=stream, stream_prefix=prefix, after=after, limit=limit)
    if as_json:
        for entry in got:
            click.echo(_entry_json(entry))
        return
    table = Table(box=box.SIMPLE)
    for column in ("seq", "at", "stream", "v"):
        table.add_column(column, no_wrap=True)
    table.add_column("record", overflow="fold")
    for entry in got:
        table.add_row(str(entry.seq), _at(entry.at), entry.stream, str(entry.version), _cell(entry.record, 80))
    console = Console()
    console.print(table)
    console.print(f"{len(got)} entr{'ies' if len(got) != 1 else 'y'}", style="dim")


def _at(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _entry_json(entry: Entry[Any]) -> str:
    return dumps(
        {
            "seq": entry.seq,
            "stream": entry.stream,
            "version": entry.version,
            "at": _at(entry.at),
            "record": entry.record,
        }
    )


def _entry_line(entry: Entry[Any]) -> str:
    return f"{entry.seq}\t{_at(entry.at)}\t{entry.stream}\t{entry.version}\t{dumps(entry.record)}"


# ---------------------------------------------------------------- check, copy, diff, dump


@main.command()
@_STORE
@_JSON
@_friendly
def check(store: str, as_json: bool) -> None:
    """Check that a store is sound: exit 0 if it is, 1 with the problems found if not.

    SQLite: PRAGMA integrity_check. Both backends: every record and log
    entry decodes, sits under its own key, and seqs and stream versions are
    in order. Files: no journal left half-applied, no stray files (warnings).
    """
    from statestore.cli.check import check_store

    with _open(store) as opened:
        report = check_store(opened)
    if as_json:
        _echo_json({**attrs.asdict(report), "ok": report.ok})
    else:
        for line in report.problems:
            click.echo(f"problem: {line}")
        for line in report.warnings:
            click.echo(f"warning: {line}")
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(f"{report.location}: {verdict} ({report.records} records, {report.entries} log entries)")
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--overwrite", is_flag=True, help="Replace DST if it is a store (never anything else).")
@_friendly
def copy(src: str, dst: str, overwrite: bool) -> None:
    """Copy the store SRC to DST exactly, e.g. from SQLite to files to grep it.

    Keys, records, revisions, log entries (seq, stream, version, time),
    schemas and migration history are kept. DST is written aside and moved
    into place only when complete; an existing DST is refused without
    --overwrite.
    """
    done = copy_store(src, dst, overwrite=overwrite)
    click.echo(f"copied {src} -> {done}")


class _Trouble(click.ClickException):
    """An error in a command whose exit status 1 means something else (diff: "different")."""

    exit_code = 2


@main.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="Detail lines per section.")
@click.option(
    "--data",
    "data_only",
    is_flag=True,
    help="Compare user collections and logs only, not statestore's own logs (history, import provenance).",
)
@_JSON
def diff(a: str, b: str, limit: int, data_only: bool, as_json: bool) -> None:
    """Compare two stores of any backends: exit 0 if they hold the same state, 1 if not, 2 on error.

    Records compare by key, JSON and revision; log entries by seq, stream,
    version, time and JSON; statestore's own logs (migration history, legacy
    import provenance and rejects) too, unless --data.
    """
    try:
        result = _friendly(diff_stores)(a, b, internal=not data_only)
    except click.ClickException as exc:
        raise _Trouble(exc.message) from None
    if as_json:
        _echo_json({**attrs.asdict(result), "equal": result.equal})
    else:
        click.echo(result.summary(limit))
    if not result.equal:
        raise SystemExit(1)


@main.command()
@_STORE
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
@_friendly
def dump(store: str, output: Path | None) -> None:
    """Write the whole store as canonical JSON lines: schemas, then records, then log entries.

    Stores holding the same state give the same bytes whatever their
    backend, so dumps can be diffed, hashed or kept under version control.
    """
    if output is None:
        dump_store(store, sys.stdout)
        return
    with output.open("w", encoding="utf-8") as out:
        dump_store(store, out)


# ---------------------------------------------------------------- migrate


@main.command()
@_STORE
@click.option(
    "--app",
    "app",
    required=True,
    metavar="MODULE:NAME",
    help="The application's Schema (or list of schemas), e.g. myapp.state:SCHEMA.",
)
@click.option("--to", "to", type=int, help="The version to bring the schema to (default: the app's version).")
@click.option("--schema", "schema_name", help="Which schema, when the app declares several.")
@click.option("--no-backup", is_flag=True, help="Do not copy the store aside before the first step.")
@_JSON
@_friendly
def migrate(store: str, app: str, to: int | None, schema_name: str | None, no_backup: bool, as_json: bool) -> None:
    """Run the migrations of a store's schema, up to the app's version or down to --to.

    Migrations are code: they come from the application, named by --app
    (imported from the current directory or the installed packages). Going
    up stops only at the app's version; to go down, the store must be at
    the app's version. The store is backed up first unless --no-backup.
    """
    schemas = _import_schemas(app)
    if schema_name is None and len(schemas) > 1:
        raise click.UsageError(
            f"the app declares several schemas; pick one with --schema ({', '.join(s.name for s in schemas)})"
        )
    sch = schemas[0] if schema_name is None else next((s for s in schemas if s.name == schema_name), None)
    if sch is None:
        raise click.UsageError(f"the app declares no schema {schema_name!r}")
    target = sch.version if to is None else to
    loc = parse_location(store)
    stored = stored_schemas(loc.backend, loc.path, str(loc))
    if sch.name not in stored:
        raise SchemaMismatchError(str(loc), f"the store holds no schema {sch.name!r}")
    current = stored[sch.name][0]
    if current < target < sch.version or target > sch.version:
        raise click.UsageError(f"going up stops at the app's version {sch.version}, not {target}")
    if target < current < sch.version:
        raise click.UsageError(
            f"the store is at version {current}, the app at {sch.version}: run the app's version {current} to go down"
        )
    assert loc.path is not None
    cls = SQLiteStore if loc.backend == "sqlite" else FileStore
    with open_store(store, mode="read") as before:
        done = len(before.history(sch.name))
    # Opening with the app's schemas runs the pending (up) steps, backup first.
    with cls(loc.path, schemas, mode="write", backup=not no_backup) as opened:
        if target < opened._read_schemas()[sch.name][0]:
            opened.migrate(target, schema=sch.name, backup=not no_backup)
        steps = opened.history(sch.name)[done:]
    rows = [
        {"version": h.version, "name": h.name, "direction": h.direction, "applied_at": h.applied_at.isoformat()}
        for h in steps
    ]
    if as_json:
        _echo_json({"schema": sch.name, "from": current, "to": target, "steps": rows})
        return
    for row in rows:
        click.echo(f"{row['direction']:<4} {row['version']} {row['name']}")
    click.echo(f"{sch.name}: version {current} -> {target}" if rows else f"{sch.name}: already at version {current}")


@main.command(name="import-legacy")
@_STORE
@click.option(
    "--app", "app", required=True, metavar="MODULE:NAME", help="The application's Schema, e.g. myapp.state:SCHEMA."
)
@click.option(
    "--layout",
    "layout_spec",
    metavar="MODULE:NAME",
    help="The application's LegacyLayout (default: LAYOUT in the --app module).",
)
@click.option(
    "--legacy",
    "root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder of the old install.",
)
@click.option(
    "--on-error",
    type=click.Choice(["abort", "quarantine"]),
    default="abort",
    show_default=True,
    help="abort: create no store if any record is bad; quarantine: import the rest, keep the bad ones in the store.",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything, report, write nothing.")
@click.option("--replace", is_flag=True, help="Import even if the store exists (the old one is kept beside it).")
@click.option("--rename-imported", is_flag=True, help="Rename each legacy file read to <name>.imported afterwards.")
@_JSON
@_friendly
def import_legacy_command(
    store: str,
    app: str,
    layout_spec: str | None,
    root: Path,
    on_error: str,
    dry_run: bool,
    replace: bool,
    rename_imported: bool,
    as_json: bool,
) -> None:
    """Import an old install's JSON state into STORE, once (the layout is the application's code).

    Shows a progress bar, then what each source gave and every rejected record
    with its file, line and reason. Exits 1, creating no store, if any record
    is bad and --on-error is abort.
    """
    from statestore.errors import LegacyImportError
    from statestore.legacy import Legacy, LegacyLayout

    schemas = _import_schemas(app)
    layout = _import_object(layout_spec or f"{app.partition(':')[0]}:LAYOUT", "--layout")
    if not isinstance(layout, LegacyLayout):
        raise click.BadParameter(f"{layout_spec or 'LAYOUT'} is not a statestore LegacyLayout", param_hint="--layout")
    names = {src.into.name for src in layout.sources}
    schema = next((s for s in schemas if names <= {c.name for c in s.collections} | {lg.name for lg in s.logs}), None)
    if schema is None:
        raise click.BadParameter("no schema of --app declares what the layout imports into", param_hint="--app")
    legacy = Legacy(root, layout, after="rename" if rename_imported else "keep")
    console = Console(stderr=as_json)
    options: dict[str, Any] = {"on_error": on_error, "dry_run": dry_run, "replace": replace}
    try:
        report = import_with_progress(console, store, schema, legacy, **options)
    except LegacyImportError as exc:
        if not as_json:
            print_rejects(Console(stderr=True), exc.problems)
        raise
    if as_json:
        _echo_json(
            {
                "location": report.location,
                "imported_store": report.imported_store,
                "dry_run": report.dry_run,
                "sources": [attrs.asdict(s) for s in report.sources],
                "rejects": [attrs.asdict(r) for r in report.rejects],
            }
        )
        return
    if not report.imported_store:
        console.print(f"{store}: the store exists; it is never imported twice (use --replace to import anew)")
        return
    print_report(console, report)


def _import_object(spec: str, option: str) -> Any:
    """The object ``MODULE:NAME`` names (the application's Schema or LegacyLayout); BadParameter if none."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not MODULE:NAME", param_hint=option)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the app's own modules, as `python -m` would find them
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot import {spec}: {exc}", param_hint=option) from None
    return obj


def _import_schemas(spec: str) -> tuple[Schema, ...]:
    obj = _import_object(spec, "--app")
    schemas = (obj,) if isinstance(obj, Schema) else tuple(obj) if isinstance(obj, (list, tuple)) else ()
    if not schemas or not all(isinstance(s, Schema) for s in schemas):
        raise click.BadParameter(f"{spec} is not a statestore Schema (or a list of them)", param_hint="--app")
    return schemas


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
    run_demo(Console(), directory, legacy_root)
