"""The ``statestore`` command.

Every statestore error becomes one clear line on stderr and exit status 1
(2 for ``diff``, whose 1 means "different"); no traceback reaches a command
user, not even for a full disk or a closed stdout. Commands that only look
open the store read-only and without the application's code, as the schemas
stored in it describe it. What they print follows :mod:`.output`: data
verbatim, one record a line when piped, cut cells in a terminal; ``--json``
gives scripts one JSON document (``info``, ``get``, ``check``, ``diff``,
``migrate``, ``backups``, ``import-legacy``) or JSON lines (``ls``, ``log``).
Modules beyond click are imported inside the commands that use them, so
``statestore --help`` starts fast.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from statestore import __version__
from statestore.cli import output
from statestore.cli.output import OutputError, Table, echo
from statestore.errors import NotFoundError, SchemaMismatchError, StateStoreError, StoreExistsError, UnknownNameError

if TYPE_CHECKING:
    from datetime import datetime

    from statestore.schema import Collection, KeyValue, Log, Schema
    from statestore.store import Store
    from statestore.views import Entry

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
            raise
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


# Commands whose exit status 1 means something other than an error (diff: "different").
_ERROR_STATUS = {"diff": 2}


class _Trouble(click.ClickException):
    """An error in a command whose exit status 1 means something else (diff: "different")."""

    exit_code = 2


class _Group(click.Group):
    """The command group: output failures and a closed pipe are handled once, for every command.

    A full disk or a closed stdout is one line on stderr and the command's
    error status (2 for ``diff``), never a traceback; stdout is flushed before
    the command returns so the failure is seen here, not at interpreter exit.
    A reader that stops early (``statestore dump STORE | head``) ends the
    command quietly with status 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            output.flush_stdout()
            return result
        except click.ClickException as exc:
            if ctx.invoked_subcommand in _ERROR_STATUS and exc.exit_code == 1:
                raise _Trouble(exc.message) from None
            raise
        except BrokenPipeError:
            output.quiet_stdout()  # the reader has seen enough
            raise SystemExit(1) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="statestore")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log what statestore does on stderr: migration steps, backups, imports (-vv: more).",
)
def main(verbose: int) -> None:
    """Inspect, convert and migrate statestore stores."""
    if verbose:
        import logging

        logger = logging.getLogger("statestore")
        for old in [h for h in logger.handlers if getattr(h, "statestore_cli", False)]:
            logger.removeHandler(old)  # main() called again in one process (tests)
        handler = logging.StreamHandler()  # stderr: stdout stays the command's output
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler.statestore_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    if sys.stdout is None:  # `statestore … >&-`
        raise OutputError("standard output is closed: redirect it to a file or /dev/null instead")


# ---------------------------------------------------------------- helpers of the store commands

_STORE = click.argument("store", metavar="STORE")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


def _open(location: str) -> Store:
    """Open ``location`` read-only, as the schemas stored in it describe it."""
    from statestore.open import open_store

    return open_store(location, mode="read")


def _names(store: Store) -> str:
    return ", ".join(s.name for s in store.schemas)


def _collection(store: Store, name: str) -> Collection[Any]:
    for coll in store.collections:
        if coll.name == name:
            return coll
    if any(lg.name == name for lg in store.logs):
        raise click.ClickException(f"{name!r} is a log, not a collection: statestore log {store.location} {name}")
    raise UnknownNameError(name, _names(store))


def _log(store: Store, name: str) -> Log[Any]:
    from statestore.store import INTERNAL_LOGS

    for log in (*store.logs, *INTERNAL_LOGS):
        if log.name == name:
            return log
    if any(c.name == name for c in store.collections):
        raise click.ClickException(f"{name!r} is a collection, not a log: statestore ls {store.location} {name}")
    raise UnknownNameError(name, _names(store))


def _echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


_MAX_COLUMNS = 6


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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


_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(!=|>=|<=|\^=|=|>|<)|\s(in)\s)(.*)\Z", re.DOTALL)


def _condition(coll: Collection[Any], view: Any, item: str) -> tuple[str, Any]:
    """A ``--where`` condition as (field, value or operator); UsageError naming it if it cannot be read."""
    from statestore import query

    m = _CONDITION.match(item)
    if m is None:
        raise click.ClickException(
            f"--where {item!r}: not a condition (FIELD=VALUE, !=, >, >=, <, <=, ^= or 'FIELD in A,B')"
        )
    field, op, text = m.group(1), m.group(2) or m.group(3), m.group(4)
    if field not in coll.field_types:
        known = ", ".join(coll.field_types)
        raise click.ClickException(f"--where {item!r}: {coll.name} has no field {field!r} ({known})")
    kind = view._kind(field)
    try:
        if op == "in":
            return field, query.one_of(*(_where_value(kind, part) for part in text.split(",")))
        if op == "^=":
            return field, query.prefix(text)
        value = _where_value(kind, text)
    except ValueError as exc:
        raise click.ClickException(f"--where {item!r}: {exc}") from None
    operators = {"=": None, "!=": query.ne, ">": query.gt, ">=": query.ge, "<": query.lt, "<=": query.le}
    make = operators[op]
    return field, value if make is None else make(value)


def _where_value(kind: str, text: str) -> Any:
    """A value typed after ``--where FIELD<op>``, read as the field's kind; ValueError saying why not."""
    from statestore.strict import Mismatch, parse_datetime

    if kind == "str":
        return text
    if text == "null":
        return None
    if kind == "number":
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if kind == "datetime":
        try:
            parse_datetime(text)
        except Mismatch as exc:
            raise ValueError(str(exc)) from None
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------- info, ls, get, log


#: Files ``info`` looks at, at most, to size a folder store (unless --size): so it costs the same
#: whatever the store's size. An SQLite file and a server's store are sized at once.
SIZE_WALK_LIMIT = 2_000


@main.command()
@_STORE
@_JSON
@click.option("--size", "whole_size", is_flag=True, help="Size a files store by every file (one stat each).")
@_friendly
def info(store: str, as_json: bool, whole_size: bool) -> None:
    """Show a store's schemas, collections (with record counts) and logs (with entry counts).

    A files store with more than 2,000 files is sized by its first 2,000
    ("over N bytes"), so info stays as quick at any size; --size counts
    every file.
    """
    with _open(store) as opened:
        data = _info(opened, None if whole_size else SIZE_WALK_LIMIT)
    if as_json:
        _echo_json(data)
        return
    if data["size_complete"]:
        size = f"{data['size']:,} bytes"
    else:
        size = f"over {data['size']:,} bytes in more than {SIZE_WALK_LIMIT:,} files; --size counts them all"
    echo(f"{data['location']}  ({data['backend']}, {size})")
    for sch in data["schemas"]:
        echo(f"schema {sch['name']} version {sch['version']}")
        table = Table(("kind", "name", "key", "indexes", "unique", "count"), right=("count",))
        for c in sch["collections"]:
            unique = "; ".join(",".join(u) for u in c["unique"])
            table.add_row("collection", c["name"], ",".join(c["key"]), ",".join(c["indexes"]), unique, c["records"])
        for lg in sch["logs"]:
            table.add_row("log", lg["name"], "", "", "", lg["entries"])
        table.print()
        for row in sch["history"]:
            name = f" {row['name']}" if row["name"] else ""
            echo(f"  {row['applied_at']}  {row['direction']:<6} v{row['version']}{name}")
    for imp in data["imports"]:
        echo(
            f"imported {imp['imported_at']} from {imp['root']} (layout v{imp['version']}): "
            f"{imp['files']} files, {imp['imported']} records imported, {imp['rejected']} rejected"
        )
    if data["quarantined"]:
        echo(f"{data['quarantined']} rejected legacy records are quarantined in the store")


def _info(store: Store, size_limit: int | None = None) -> dict[str, Any]:
    from statestore.open import parse_location

    schemas = []
    # No read transaction: on the file backend it would load every record of every collection
    # (1.2 s at 20k records). Each count is consistent on its own; the display is a summary.
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
        logs = [{"name": lg.name, "entries": len(store[lg]), "last_seq": store[lg].last_seq()} for lg in sch.logs]
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
    server_size = getattr(store, "size_bytes", None)  # a server's store: what its tables take there
    size, complete = (server_size(), True) if server_size is not None else _size(loc.path, size_limit)
    return {
        "location": store.location,
        "backend": loc.backend,
        "path": str(getattr(store, "pg_schema", loc.path)),
        "size": size,
        "size_complete": complete,
        "schemas": schemas,
        "imports": list(imports.values()),
        "quarantined": quarantined,
    }


def _size(path: Path | None, limit: int | None = None) -> tuple[int, bool]:
    """Bytes the store takes on disk (an SQLite file with its -wal, or the files of a folder); and if that is all.

    A folder's walk stops after ``limit`` files (None: never), returning the
    bytes of those and False.
    """
    if path is None:
        return 0, True
    if path.is_file():
        side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        return path.stat().st_size + sum(p.stat().st_size for p in side if p.is_file()), True
    # One stat per file (DirEntry knows its type from the listing): rglob with is_file,
    # is_symlink and stat made three, 1 s of a 20k-record store's info.
    total, seen, folders = 0, 0, [str(path)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    if limit is not None and seen >= limit:
                        return total, False
                    total += entry.stat(follow_symlinks=False).st_size
                    seen += 1
    return total, True


@main.command(name="ls")
@_STORE
@click.argument("collection")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="CONDITION",
    help=(
        "Only records meeting CONDITION (repeatable, all must hold): FIELD=VALUE, FIELD!=VALUE, "
        "FIELD>VALUE, >=, <, <=, FIELD^=PREFIX, 'FIELD in A,B,C'. Values are read as the field's "
        "declared type (text, a number, true/false, an ISO datetime; null for a missing value)."
    ),
)
@click.option(
    "--order",
    "order",
    multiple=True,
    metavar="FIELD",
    help="Order by FIELD (-FIELD: descending; repeatable or comma-separated); ties in key order.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Show at most this many records.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many records first.")
@click.option("--count", "count", is_flag=True, help="Print only how many records meet the conditions.")
@_JSON
@_friendly
def ls_command(
    store: str,
    collection: str,
    where: tuple[str, ...],
    order: tuple[str, ...],
    limit: int | None,
    offset: int,
    count: bool,
    as_json: bool,
) -> None:
    """List the records of COLLECTION in key order (or --order), filtered by --where.

    In a terminal, a table whose long cells are cut with …; piped, the column
    names and then one record per line (tab-separated, every cell whole);
    --json: one JSON object per line. A condition that cannot be read is an
    error naming it.
    """
    from statestore.codec import dumps

    with _open(store) as opened:
        coll = _collection(opened, collection)
        view = opened[coll]
        conditions: dict[str, Any] = {}
        for item in where:
            field, condition = _condition(coll, view, item)
            if field in conditions:
                raise click.ClickException(f"--where {item!r}: {field} already has a condition")
            conditions[field] = condition
        order_by = [f.strip() for item in order for f in item.split(",") if f.strip()]
        if count:
            echo(str(view.count(**conditions)))
            return
        query = view._query(conditions, order_by, limit, offset)
        opened._reading()
        rows = [] if limit == 0 else opened._query(coll, query)
    if as_json:
        for key, revision, data in rows:
            echo(dumps({"key": key, "revision": revision, "record": data}))
        return
    fields = [f for f in coll.field_types if f not in coll.key_fields]
    wide = len(fields) > _MAX_COLUMNS  # too many to read as columns: the rest of the record as one JSON cell
    table = Table(("key", "rev", *(["record"] if wide else fields)), right=("rev",))
    for key, revision, data in rows:
        cells: list[Any] = [data.get(f, "") for f in fields]
        if wide:
            cells = [{f: v for f, v in data.items() if f not in coll.key_fields}]
        table.add_row(key, revision, *cells)
    table.print(footer=_plural(len(rows), "record", "records"))


@main.command()
@_STORE
@click.argument("collection")
@click.argument("key")
@_JSON
@_friendly
def get(store: str, collection: str, key: str, as_json: bool) -> None:
    """Print one record of COLLECTION as JSON (KEY: text, an int for int keys, a JSON array for composite keys).

    A comment line names the key and revision; the record follows, indented
    in a terminal, on one line when piped. --json prints key, revision and
    record as one JSON document.
    """
    from statestore.cli.output import stdout_is_terminal
    from statestore.codec import dumps, pretty

    with _open(store) as opened:
        coll = _collection(opened, collection)
        value = _parse_key(coll, key)
        got = opened[coll].get_versioned(value)
        if got is None:
            raise NotFoundError(coll.name, value)
    if as_json:
        _echo_json({"key": value, "revision": got.revision, "record": got.record})
        return
    echo(f"# {coll.name} {value!r}, revision {got.revision}")
    # Indented for a person; piped, the record is one line of canonical JSON (for grep, jq after tail -n1).
    echo(pretty(got.record) if stdout_is_terminal() else dumps(got.record))


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

    In a terminal, a table whose long records are cut with …; piped (and
    with --follow), one entry per line: seq, at, stream, version and the
    record as JSON, tab-separated. --json prints one JSON object per line:
    seq, stream, version, at, record.
    """
    from statestore.views import LogView

    if stream is not None and prefix is not None:
        raise click.UsageError("give --stream or --prefix, not both")
    with _open(store) as opened:
        decl = _log(opened, log)
        view = LogView(opened, decl)
        if follow:
            entries = view.follow(after, stream=stream, stream_prefix=prefix, timeout=timeout)
            try:
                for n, entry in enumerate(entries, 1):
                    echo(_entry_json(entry) if as_json else _entry_line(entry))
                    output.flush_stdout()
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
            echo(_entry_json(entry))
        return
    table = Table(("seq", "at", "stream", "v", "record"), right=("seq", "v"))
    for entry in got:
        table.add_row(entry.seq, _at(entry.at), entry.stream, entry.version, entry.record)
    table.print(footer=_plural(len(got), "entry", "entries"), cell_width=80)


def _at(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _entry_json(entry: Entry[Any]) -> str:
    from statestore.codec import dumps

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
    cells = (entry.seq, _at(entry.at), entry.stream, entry.version, entry.record)
    return "\t".join(output.plain_cell(c) for c in cells)


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
    import attrs

    from statestore.cli.check import check_store

    with _open(store) as opened:
        report = check_store(opened)
    if as_json:
        _echo_json({**attrs.asdict(report), "ok": report.ok})
    else:
        for line in report.problems:
            echo(f"problem: {line}")
        for line in report.warnings:
            echo(f"warning: {line}")
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        echo(f"{report.location}: {verdict} ({report.records} records, {report.entries} log entries)")
    if not report.ok:
        output.flush_stdout()
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
    from statestore.convert import copy_store
    from statestore.open import parse_location

    if parse_location(dst).backend == "memory":
        raise click.ClickException(
            f"{dst}: a copy needs a destination on disk (sqlite:PATH or files:PATH), not memory:"
        )
    try:
        done = copy_store(src, dst, overwrite=overwrite)
    except StoreExistsError as exc:
        if exc.reason == StoreExistsError(exc.location).reason:  # the default: "overwrite" means the option
            raise click.ClickException(f"{exc.location}: already exists (--overwrite replaces a store)") from None
        raise
    echo(f"copied {parse_location(src)} -> {done}")


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
@_friendly
def diff(a: str, b: str, limit: int, data_only: bool, as_json: bool) -> None:
    """Compare two stores of any backends: exit 0 if they hold the same state, 1 if not, 2 on error.

    Records compare by key, JSON and revision; log entries by seq, stream,
    version, time and JSON; statestore's own logs (migration history, legacy
    import provenance and rejects) too, unless --data.
    """
    import attrs

    from statestore.convert import diff_stores

    result = diff_stores(a, b, internal=not data_only)
    if as_json:
        _echo_json({**attrs.asdict(result), "equal": result.equal})
    else:
        echo(result.summary(limit))
    if not result.equal:
        output.flush_stdout()
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
    from statestore.cli.output import stdout
    from statestore.convert import dump_store

    if output is None:
        dump_store(store, stdout)
        return
    with output.open("w", encoding="utf-8") as out:
        dump_store(store, out)


# ---------------------------------------------------------------- migrate, backups


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
    the app's version. A store already at the target is left alone (no
    step, no backup). The store is backed up first unless --no-backup.
    """
    from statestore.backends.locations import connect
    from statestore.backends.stored import stored_schemas
    from statestore.open import open_store, parse_location

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
    stored = stored_schemas(loc.backend, loc.path, str(loc), url=loc.url)
    if sch.name not in stored:
        raise SchemaMismatchError(str(loc), f"the store holds no schema {sch.name!r}")
    current = stored[sch.name][0]
    rows: list[dict[str, Any]] = []
    if target != current:
        if current < target < sch.version or target > sch.version:
            raise click.UsageError(f"going up stops at the app's version {sch.version}, not {target}")
        if target < current < sch.version:
            raise click.UsageError(
                f"the store is at version {current}, the app at {sch.version}: "
                f"run the app's version {current} to go down"
            )
        with open_store(store, mode="read") as before:
            done = len(before.history(sch.name))
        # Opening with the app's schemas runs the pending (up) steps, backup first.
        with connect(loc, schemas, mode="write", backup=not no_backup) as opened:
            if target < opened._read_schemas()[sch.name][0]:
                opened.migrate(target, schema=sch.name, backup=not no_backup)
            steps = opened.history(sch.name)[done:]
        rows = [
            {"version": h.version, "name": h.name, "direction": h.direction, "applied_at": h.applied_at.isoformat()}
            for h in steps
        ]
    elif target == sch.version:
        # No step to run, but the store still follows the app's declarations (new collections,
        # indexes), and a declaration that changed without a new version is refused here too.
        with connect(loc, schemas, mode="write", backup=not no_backup):
            pass
    if as_json:
        _echo_json({"schema": sch.name, "from": current, "to": target, "steps": rows})
        return
    for row in rows:
        echo(f"{row['direction']:<4} {row['version']} {row['name']}")
    echo(f"{sch.name}: version {current} -> {target}" if rows else f"{sch.name}: already at version {current}")


@main.command()
@_STORE
@click.option("--prune", is_flag=True, help="Delete the older backups, keeping the newest --keep.")
@click.option("--keep", type=click.IntRange(min=0), help="With --prune: how many of the newest backups to keep.")
@_JSON
@_friendly
def backups(store: str, prune: bool, keep: int | None, as_json: bool) -> None:
    """List the backups taken of STORE before migrations, oldest first; --prune --keep N deletes older ones.

    A backup is a store at the version it was taken from, beside the store
    (``state.backup-<schema>-v<N>-<time>-<id>.db``, or a folder
    ``state.backup-…`` for a files store): open it read-only, or move it back
    in place of the store to undo a migration.
    """
    from statestore.cli.backups import find_backups, remove_backup
    from statestore.open import parse_location

    if prune != (keep is not None):
        raise click.UsageError("--prune and --keep N go together")
    loc = parse_location(store)
    if loc.url is not None:  # PostgreSQL: backups are schemas <schema>_backup_… on the server
        from statestore.backends.postgres import drop_backup
        from statestore.backends.postgres import find_backups as find_schemas
        from statestore.cli.backups import Backup

        url = loc.url
        found = [Backup(Path(name), before, taken, size) for name, before, taken, size in find_schemas(url)]

        def remove(backup: Backup) -> None:
            drop_backup(url, backup.path.name)

    elif loc.path is None:
        raise click.ClickException(f"{store}: an in-memory store has no backups")
    else:
        found = find_backups(loc.backend, loc.path)

        def remove(backup: Backup) -> None:
            remove_backup(backup.path)

    removed = []
    if prune:
        assert keep is not None
        doomed = found[: max(len(found) - keep, 0)]
        for backup in doomed:
            remove(backup)
            removed.append(backup)
        found = found[len(doomed) :]
    if as_json:
        _echo_json(
            {
                "store": str(loc),
                "backups": [b.as_dict() for b in found],
                "removed": [b.as_dict() for b in removed],
            }
        )
        return
    for backup in removed:
        echo(f"removed {backup.path}")
    table = Table(("taken", "before", "bytes", "path"), right=("bytes",))
    for backup in found:
        table.add_row(backup.taken, backup.before, backup.size, str(backup.path))
    if found:
        table.print(footer=_plural(len(found), "backup", "backups"))
    else:
        echo(f"{loc}: no backups")


# ---------------------------------------------------------------- import-legacy, demo


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

    Shows a progress bar (on a terminal), then what each source gave and
    every rejected record with its file, line and reason. Exits 1, creating
    no store, if any record is bad and --on-error is abort. --dry-run reads,
    checks and reports the same way, and writes nothing.
    """
    import attrs

    from statestore.cli.legacy import import_with_progress, print_rejects, print_report
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
    options: dict[str, Any] = {"on_error": on_error, "dry_run": dry_run, "replace": replace}
    try:
        report = import_with_progress(store, schema, legacy, **options)
    except LegacyImportError as exc:
        if not as_json:
            print_rejects(exc.problems, err=True)
        remedy = "fix those files, or pass --on-error quarantine to import the rest and keep the bad records aside"
        raise click.ClickException(f"{exc} — {remedy}") from None
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
    if not report.imported_store and not report.dry_run:
        echo(f"{report.location}: the store exists; it is never imported twice (use --replace to import anew)")
        return
    print_report(report)


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
    from statestore.schema import Schema

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
    help="Where to create the demo stores, kept afterwards (default: a temporary folder, deleted at the end).",
)
@click.option(
    "--legacy",
    "legacy_root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The old tracker install to import (default: one generated in the demo folder).",
)
@_friendly
def demo(directory: Path | None, legacy_root: Path | None) -> None:
    """Import an old tracker install into a new SQLite store and show what is in it.

    Without --dir everything happens in a temporary folder that is deleted
    at the end; with --dir the stores stay, and the follow-up commands it
    prints run as printed.
    """
    from statestore.cli.legacy import run_demo

    run_demo(directory, legacy_root)
