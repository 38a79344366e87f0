"""Opening a store's schemas (create, check, migrate on open) and running migration steps up or down."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from statestore.errors import (
    MigrationError,
    MigrationRequiredError,
    ReadOnlyError,
    SchemaMismatchError,
)
from statestore.migrations.checks import (
    check_names,
    is_current,
    refuse_drift,
    refuse_newer,
    step_error,
    verify_records,
    verify_unique,
)
from statestore.migrations.context import MigrationContext, Run
from statestore.migrations.history import HistoryRow, append_history, read_history, verify_history
from statestore.schema import (
    INTERNAL_LOGS,
    Migration,
    Schema,
)

if TYPE_CHECKING:
    from statestore.store import Store

_log = logging.getLogger("statestore")
__all__ = ["migrate", "open_schemas"]


def open_schemas(store: Store, *, check_history: bool, backup: bool) -> None:
    """Check, and in write mode create, migrate and sync, the store's schemas (see ``Store._open_schemas``)."""
    stored = store._read_schemas()
    refuse_newer(store, stored)
    refuse_drift(store, stored)
    if store.mode == "read":
        for sch in store.schemas:
            got = stored.get(sch.name)
            if got is None:
                raise SchemaMismatchError(store.location, f"the store holds no schema {sch.name!r}")
            if got[0] < sch.version:
                raise MigrationRequiredError(store.location, sch.name, got[0], sch.version)
            if check_history and not sch.is_described:
                verify_history(store, sch, got[0])
        return
    if is_current(store, stored) and store._structure_ok():
        if check_history:
            for sch in store.schemas:
                if not sch.is_described:
                    verify_history(store, sch, stored[sch.name][0])
        return
    with store._migration_lock(), _migrating(store):
        stored = store._read_schemas()
        refuse_newer(store, stored)
        refuse_drift(store, stored)
        check_names(store, stored)
        pending = [
            (sch, stored[sch.name][0])
            for sch in store.schemas
            if sch.name in stored and stored[sch.name][0] < sch.version
        ]
        for sch, version in [(s, stored[s.name][0]) for s in store.schemas if s.name in stored]:
            if check_history and not sch.is_described:
                verify_history(store, sch, version)
        for sch, version in pending:
            _check_steps(store, sch, version, sch.version)
        if pending and backup:
            taken = store._backup("-".join(f"{s.name}-v{v}" for s, v in pending))
            _log.info("%s: backed up to %s before migrating", store.location, taken)
        run = Run(stored)
        for sch, version in pending:
            _run(store, run, sch, version, sch.version)
        with store.transaction():
            stored = store._read_schemas()
            run = Run(stored)
            for coll in store.collections:
                known = stored.get(store._owner[coll.name].name)
                old = {c["name"]: c for c in known[1].get("collections", ())} if known else {}
                if coll.name in old and old[coll.name].get("unique") != coll.describe()["unique"]:
                    verify_unique(store, coll)
            store._sync_structure(store.collections, [*store.logs, *INTERNAL_LOGS], full=True)
            for sch in store.schemas:
                got = stored.get(sch.name)
                if got is None:
                    store._set_schema(sch.name, sch.version, sch.describe())
                    append_history(store, sch.name, sch.version, "", "create")
                elif got != (sch.version, run.final(sch)):
                    store._set_schema(sch.name, sch.version, run.final(sch))
        store._after_migration()


# ---------------------------------------------------------------- running steps


@contextlib.contextmanager
def _migrating(store: Store) -> Iterator[None]:
    """While this thread migrates the store, its own writes skip the "schemas moved" check.

    Per thread: another thread sharing the store object is checked as usual,
    so it cannot write old-shaped records between two steps.
    """
    state = store._state()
    state.migrating = True
    try:
        yield
    finally:
        state.migrating = False
        store._after_migration()


def _check_steps(store: Store, sch: Schema, start: int, end: int) -> None:
    """Refuse before anything runs when a step from ``start`` to ``end`` cannot run."""
    if end < start:
        for v in range(start, end, -1):
            m = sch.migration(v)
            if m is not None and m.down is None:
                raise step_error(store, sch, v, "down", "this migration has no down step; it cannot be undone")


def _run(store: Store, run: Run, sch: Schema, start: int, end: int) -> list[HistoryRow]:
    steps = range(start + 1, end + 1) if end > start else range(start, end, -1)
    direction = "up" if end > start else "down"
    done: list[HistoryRow] = []
    for v in steps:
        _step(store, run, sch, v, direction)
        done.append(read_history(store, sch.name)[-1])
    return done


def _step(store: Store, run: Run, sch: Schema, version: int, direction: str) -> None:
    m: Migration | None = sch.migration(version)
    name = m.name if m is not None else ""
    fn = None if m is None else (m.up if direction == "up" else m.down)
    try:
        with store.transaction():
            stored = store._read_schemas()
            current, desc = stored[sch.name]
            expected = version - 1 if direction == "up" else version
            if current != expected:
                raise step_error(store, sch, version, direction, f"the store is at version {current}, not {expected}")
            store._sync_structure(store.collections, [*store.logs, *INTERNAL_LOGS], full=False)
            ctx = MigrationContext(store, run, sch, version, name, direction)
            if fn is not None:
                try:
                    fn(ctx)
                except MigrationError:
                    raise
                except Exception as exc:
                    collection, key = ctx.at
                    raise MigrationError(
                        store.location,
                        sch.name,
                        version,
                        name,
                        direction,
                        f"{type(exc).__name__}: {exc}",
                        collection,
                        key,
                    ) from exc
            if direction == "up" and version == sch.version:
                for coll in sch.collections:
                    try:
                        verify_unique(store, coll)
                    except SchemaMismatchError as exc:
                        raise step_error(store, sch, version, direction, exc.reason) from None
                verify_records(store, sch, version)
                store._sync_structure(sch.collections, [*sch.logs, *INTERNAL_LOGS], full=True)
                desc = run.final(sch)
            else:
                # Between steps the stored shapes are neither this code's nor that version's own:
                # "shapes_of" keeps the drift check (which compares shapes) from misreading them.
                at = version if direction == "up" else version - 1
                desc = {**run.description(sch.name, desc), "version": at, "shapes_of": sch.version}
            store._set_schema(sch.name, version if direction == "up" else version - 1, desc)
            append_history(store, sch.name, version, name, direction)
            _log.info(
                "%s: schema %s migrated %s through version %d (%s)", store.location, sch.name, direction, version, name
            )
    finally:
        store._after_migration()


def migrate(store: Store, to: int, *, schema: str | None, backup: bool) -> list[HistoryRow]:
    """``Store.migrate``: run the steps from the stored version of a schema to ``to``."""
    store._check_open()
    if store.mode != "write":
        raise ReadOnlyError(store.location, "migrate")
    if schema is None:
        if len(store.schemas) > 1:
            raise ValueError(f"the store holds several schemas; say which: schema={store.schemas[0].name!r}, ...")
        sch = store.schema
    else:
        found = next((s for s in store.schemas if s.name == schema), None)
        if found is None:
            raise ValueError(f"no schema {schema!r} in this store ({', '.join(s.name for s in store.schemas)})")
        sch = found
    if isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= sch.version:
        raise ValueError(f"to must be a version from 1 to {sch.version} (the code's), not {to!r}")
    with store._migration_lock(), _migrating(store):
        stored = store._read_schemas()
        refuse_newer(store, stored)
        current = stored[sch.name][0]
        if to == current:
            return []
        _check_steps(store, sch, current, to)
        if backup:
            taken = store._backup(f"{sch.name}-v{current}")
            _log.info("%s: backed up to %s before migrating", store.location, taken)
        try:
            return _run(store, Run(stored), sch, current, to)
        finally:
            # Below the code's version (even part way down, a step having failed), this object's
            # declarations no longer describe what the store holds: it stops reading them too.
            try:
                at = store._read_schemas()[sch.name][0]
            except Exception:  # (the store unreachable now: the step's own error is the one to raise)
                at = min(current, to)
            went_down = {k: v for k, v in store._went_down.items() if k != sch.name}
            store._went_down = went_down if at >= sch.version else {**went_down, sch.name: (at, sch.version)}
