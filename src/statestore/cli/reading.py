"""The commands that look into a store: ``info``, ``ls``, ``get`` and ``log``.

They open the store read-only, as the schemas stored in it describe it
(without the application's code), and print through :mod:`.output`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from statestore.cli import output
from statestore.cli.common import JSON_OPTION, STORE, echo_json, friendly, open_read, plural
from statestore.cli.output import Table, echo
from statestore.errors import NotFoundError, UnknownNameError

if TYPE_CHECKING:
    from datetime import datetime

    from statestore.schema import Collection, KeyValue, Log
    from statestore.store import Store
    from statestore.views import Entry


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


_MAX_COLUMNS = 6


def _parse_key(coll: Collection[Any], text: str) -> KeyValue:
    """A key typed on the command line, never converted.

    KEY as it is for a str key field; a decimal integer (``42``, ``-7``: no
    ``+``, spaces, ``_`` or leading zeros) for an int one; for a composite
    key a JSON array whose parts are each exactly their field's type
    (``["a", 1]``: ``1.9``, ``true`` or ``"1"`` for an int part is refused).
    """
    types = [coll.field_types[f] for f in coll.key_fields]
    if not coll.composite:
        if types[0] is int:
            if not _INT_KEY.fullmatch(text):
                raise click.BadParameter(f"{text!r} is not an int key (a decimal integer such as 42 or -7)")
            return int(text)
        return text
    try:
        parts = json.loads(text)
    except (ValueError, RecursionError):
        parts = None
    if not isinstance(parts, list) or len(parts) != len(types):
        fields = ", ".join(coll.key_fields)
        raise click.BadParameter(f"{coll.name} has a composite key ({fields}): give it as a JSON array")
    for name, part, tp in zip(coll.key_fields, parts, types):
        if type(part) is not tp:
            want = "an integer" if tp is int else "a JSON string"
            raise click.BadParameter(f"key part {name} must be {want}, not {json.dumps(part)}")
    return tuple(parts)


_INT_KEY = re.compile(r"-?(0|[1-9][0-9]*)")


_NULL_TEST = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+is\s+(not\s+)?null\s*\Z")
_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(!=|>=|<=|\^=|=|>|<)|\s(in)\s)(.*)\Z", re.DOTALL)


def _condition(coll: Collection[Any], view: Any, item: str) -> tuple[str, Any]:
    """A ``--where`` condition as (field, value or operator); UsageError naming it if it cannot be read."""
    from statestore import query

    null_test = _NULL_TEST.match(item)
    m = null_test or _CONDITION.match(item)
    if m is None:
        raise click.ClickException(
            f"--where {item!r}: not a condition (FIELD=VALUE, !=, >, >=, <, <=, ^=, 'FIELD in A,B', "
            "'FIELD is null' or 'FIELD is not null')"
        )
    field = m.group(1)
    if field not in coll.field_types:
        known = ", ".join(coll.field_types)
        raise click.ClickException(f"--where {item!r}: {coll.name} has no field {field!r} ({known})")
    if null_test is not None:  # for every kind of field, text fields included (where "null" is a text)
        return field, query.ne(None) if null_test.group(2) else None
    op, text = m.group(2) or m.group(3), m.group(4)
    kind = view._kind(field)
    try:
        if op == "in":
            # Spaces around the commas are not part of the values ('status in todo, doing').
            return field, query.one_of(*(_where_value(kind, part.strip()) for part in text.split(",")))
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


#: Files ``info`` looks at, at most, to size a folder store (unless --size): so it costs the same
#: whatever the store's size. An SQLite file and a server's store are sized at once.
SIZE_WALK_LIMIT = 2_000


@click.command()
@STORE
@JSON_OPTION
@click.option("--size", "whole_size", is_flag=True, help="Size a files store by every file (one stat each).")
@friendly
def info(store: str, as_json: bool, whole_size: bool) -> None:
    """Show a store's schemas, collections (with record counts) and logs (with entry counts).

    A files store with more than 2,000 files is sized by its first 2,000
    ("over N bytes"), so info stays as quick at any size; --size counts
    every file.
    """
    with open_read(store) as opened:
        data = _info(opened, None if whole_size else SIZE_WALK_LIMIT)
    if as_json:
        echo_json(data)
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
    # Old record versions kept for the file backend's read transactions (backends/files/versions.py)
    # come and go with them: not counted, and never walked while a writer deletes them.
    kept = str(path / ".statestore" / "versions")
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path != kept:
                        folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    if limit is not None and seen >= limit:
                        return total, False
                    total += entry.stat(follow_symlinks=False).st_size
                    seen += 1
    return total, True


@click.command(name="ls")
@STORE
@click.argument("collection")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="CONDITION",
    help=(
        "Only records meeting CONDITION (repeatable, all must hold): FIELD=VALUE, FIELD!=VALUE, "
        "FIELD>VALUE, >=, <, <=, FIELD^=PREFIX, 'FIELD in A,B,C', 'FIELD is null', 'FIELD is not null'. "
        "Values are read as the field's declared type (text as it is, a number, true/false, an ISO "
        "datetime; null for a missing value, except in a text field: there use 'is null')."
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
@JSON_OPTION
@friendly
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

    with open_read(store) as opened:
        coll = _collection(opened, collection)
        view = opened[coll]
        conditions: dict[str, Any] = {}
        for item in where:
            field, condition = _condition(coll, view, item)
            if field in conditions:
                raise click.ClickException(f"--where {item!r}: {field} already has a condition")
            conditions[field] = condition
        order_by = []
        for item in order:
            for name in item.split(","):
                if name.strip() in ("", "-"):
                    raise click.ClickException(f"--order {item!r}: names no field (FIELD or -FIELD, comma-separated)")
                order_by.append(name.strip())
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
    # A field that may hold text and other values (str | None, Any): its texts that read as JSON are quoted.
    mixed = [f for f in fields if coll.field_types[f] is not str]
    table = Table(("key", "rev", *(["record"] if wide else fields)), right=("rev",), mixed=mixed)
    for key, revision, data in rows:
        cells: list[Any] = [data.get(f, "") for f in fields]
        if wide:
            cells = [{f: v for f, v in data.items() if f not in coll.key_fields}]
        table.add_row(key, revision, *cells)
    table.print(footer=plural(len(rows), "record", "records"))


@click.command()
@STORE
@click.argument("collection")
@click.argument("key")
@JSON_OPTION
@friendly
def get(store: str, collection: str, key: str, as_json: bool) -> None:
    """Print one record of COLLECTION as JSON (KEY: text, an int for int keys, a JSON array for composite keys).

    A comment line names the key and revision; the record follows, indented
    in a terminal, on one line when piped. --json prints key, revision and
    record as one JSON document.
    """
    from statestore.cli.output import stdout_is_terminal
    from statestore.codec import dumps, pretty

    with open_read(store) as opened:
        coll = _collection(opened, collection)
        value = _parse_key(coll, key)
        got = opened[coll].get_versioned(value)
        if got is None:
            raise NotFoundError(coll.name, value)
    if as_json:
        echo_json({"key": value, "revision": got.revision, "record": got.record})
        return
    echo(f"# {coll.name} {value!r}, revision {got.revision}")
    # Indented for a person; piped, the record is one line of canonical JSON (for grep, jq after tail -n1).
    echo(pretty(got.record) if stdout_is_terminal() else dumps(got.record))


@click.command()
@STORE
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
@JSON_OPTION
@friendly
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
    with open_read(store) as opened:
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
    table.print(footer=plural(len(got), "entry", "entries"), cell_width=80)


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
