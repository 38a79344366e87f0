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

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from statestore import __version__
from statestore.cli import output, reading
from statestore.cli.common import JSON_OPTION, STORE, echo_json, friendly, open_read, plural
from statestore.cli.output import OutputError, Table, echo
from statestore.errors import SchemaMismatchError, StoreExistsError

if TYPE_CHECKING:
    from statestore.schema import Schema

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


# The commands that look into a store live in .reading; those that check, copy, compare, dump,
# migrate, prune, import and demonstrate follow here.
for _command in (reading.info, reading.ls_command, reading.get, reading.log):
    main.add_command(_command)


@main.command()
@STORE
@JSON_OPTION
@friendly
def check(store: str, as_json: bool) -> None:
    """Check that a store is sound: exit 0 if it is, 1 with the problems found if not.

    SQLite: PRAGMA integrity_check. Both backends: every record and log
    entry decodes, sits under its own key, and seqs and stream versions are
    in order. Files: no journal left half-applied, no stray files (warnings).
    """
    import attrs

    from statestore.cli.check import check_store

    with open_read(store) as opened:
        report = check_store(opened)
    if as_json:
        echo_json({**attrs.asdict(report), "ok": report.ok})
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
@friendly
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
@JSON_OPTION
@friendly
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
        echo_json({**attrs.asdict(result), "equal": result.equal})
    else:
        echo(result.summary(limit))
    if not result.equal:
        output.flush_stdout()
        raise SystemExit(1)


@main.command()
@STORE
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
@friendly
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
    _dump_to_file(store, output)


def _dump_to_file(store: str, output: Path) -> None:
    """``dump -o FILE``: FILE is replaced only by a whole dump, and never names the store or a file of it.

    The dump is written to a temporary file beside FILE (through a symbolic
    link: beside its target) and renamed over it once complete, so a store
    that cannot be read, a full disk or an interrupt leaves FILE as it was.
    FILE keeps its permissions; a new one gets the usual ones (umask). A
    FILE that is not a regular file (``/dev/stdout``, a named pipe) is
    written directly.
    """
    import secrets

    from statestore.backends.locations import parse_location
    from statestore.convert import dump_store, overlap

    target = Path(os.path.realpath(output))
    source = parse_location(store).path
    how = None if source is None else overlap(source, target)
    if how is not None:  # writing there would destroy what is being read
        where = {"itself": "is", "inside": "is inside", "holds": "holds", "beside": "is a file SQLite keeps beside"}
        raise click.ClickException(
            f"{output}: {where[how]} the store being dumped ({source}): dump to a file elsewhere"
        )
    if output.exists() and not output.is_file():
        # A device, a pipe or a socket (-o /dev/stdout): written as it is, nothing to rename over.
        try:
            with open(output, "w", encoding="utf-8") as out:
                dump_store(store, out)
        except OSError as exc:
            raise click.ClickException(f"{output}: {exc.strerror or exc}") from None
        return
    tmp = target.with_name(f".{target.name}.dump-{secrets.token_hex(4)}")
    try:
        with tmp.open("x", encoding="utf-8") as out:
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o7777)
            dump_store(store, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # the output's folder or disk, not the store (whose errors say so)
            raise click.ClickException(f"{output}: {exc.strerror or exc}") from None
        raise


@main.command()
@STORE
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
@JSON_OPTION
@friendly
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
        echo_json({"schema": sch.name, "from": current, "to": target, "steps": rows})
        return
    for row in rows:
        echo(f"{row['direction']:<4} {row['version']} {row['name']}")
    echo(f"{sch.name}: version {current} -> {target}" if rows else f"{sch.name}: already at version {current}")


@main.command()
@STORE
@click.option("--prune", is_flag=True, help="Delete the older backups, keeping the newest --keep.")
@click.option("--keep", type=click.IntRange(min=0), help="With --prune: how many of the newest backups to keep.")
@JSON_OPTION
@friendly
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
        from statestore.backends.locations import require_psycopg

        require_psycopg(str(loc))
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
        echo_json(
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
        table.print(footer=plural(len(found), "backup", "backups"))
    else:
        echo(f"{loc}: no backups")


@main.command(name="import-legacy")
@STORE
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
@JSON_OPTION
@friendly
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

    from statestore.backends.locations import parse_location
    from statestore.cli.legacy import import_with_progress, print_rejects, print_report
    from statestore.errors import LegacyImportError
    from statestore.legacy import Legacy, LegacyLayout

    if parse_location(store).backend == "memory":
        raise click.BadParameter("a legacy import needs a store that lasts (sqlite:, files: or postgresql://)")
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
        echo_json(
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
    except (Exception, SystemExit) as exc:  # the application's own code failed while being imported
        raise click.ClickException(
            f"{option} {spec}: importing {module_name} raised {type(exc).__name__}: {exc} "
            f"(python -c 'import {module_name}' shows where)"
        ) from None
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
@friendly
def demo(directory: Path | None, legacy_root: Path | None) -> None:
    """Import an old tracker install into a new SQLite store and show what is in it.

    Without --dir everything happens in a temporary folder that is deleted
    at the end; with --dir the stores stay, and the follow-up commands it
    prints run as printed.
    """
    from statestore.cli.legacy import run_demo

    run_demo(directory, legacy_root)
