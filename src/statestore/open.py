"""Opening stores by location string: ``sqlite:PATH``, ``files:PATH``, ``memory:`` or a path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from statestore.backends.locations import (
    Location,
    check_not_a_file,
    connect,
    parse_location,
    require_backend,
    store_exists,
)
from statestore.errors import StoreNotFoundError
from statestore.schema import Schema
from statestore.store import Durability, Mode, Store, schemas_of

if TYPE_CHECKING:
    import cattrs

    from statestore.legacy import Legacy

__all__ = ["Location", "open_store", "parse_location", "state_path"]


def open_store(
    location: str | os.PathLike[str],
    schema: Schema | Sequence[Schema] | None = None,
    *,
    mode: Mode = "write",
    durability: Durability = "normal",
    busy_timeout: float = 30.0,
    converter: cattrs.Converter | None = None,
    backup: bool = True,
    check_history: bool = True,
    legacy: Legacy | None = None,
) -> Store:
    """Open (in write mode: create if absent, then migrate) the store at ``location`` for ``schema``.

    ``schema`` may be several schemas (an app made of parts), each with its
    own name, version and migration history; names of collections and logs
    are unique across them. ``mode="write"`` creates the store and its
    directory if absent (owner-only permissions), runs pending migrations
    (taking a backup next to the store first, unless ``backup=False``) and
    brings tables and folders up to the declarations. Many processes may
    have one store open for writing at once; openers racing to migrate it
    migrate it once. ``mode="read"`` never creates or changes a store: a
    missing one raises StoreNotFoundError and every write raises
    ReadOnlyError. A store whose schema version is newer than the code's
    raises SchemaTooNewError in both modes; an older one raises
    MigrationRequiredError in read mode. A migration history that disagrees
    with the declared migrations raises MigrationHistoryError unless
    ``check_history=False``. ``durability="normal"`` survives a killed
    process, ``"full"`` also a power loss. ``converter`` is the
    application's cattrs converter, if it has one.

    Without ``schema`` (read mode only; write mode raises ValueError) the
    store is opened as every schema it holds, rebuilt from the descriptions
    stored in it: records and entries read back as plain JSON dicts, and the
    declarations are found in ``store.collections`` and ``store.logs``. This
    is how tools read a store without the application's code.
    """
    if mode not in ("read", "write"):
        raise ValueError(f"mode must be 'read' or 'write', not {mode!r}")
    if durability not in ("normal", "full"):
        raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
    loc = parse_location(location)
    check_not_a_file(loc)
    require_backend(loc)
    schemas: tuple[Schema, ...]
    if schema is None:
        if mode != "read":
            raise ValueError("open_store without a schema opens the store as it describes itself: pass mode='read'")
        from statestore.backends.stored import described_schemas, stored_schemas

        schemas = schemas_of(described_schemas(stored_schemas(loc.backend, loc.path, str(loc), url=loc.url), str(loc)))
    else:
        schemas = schemas_of(schema)
    if legacy is not None and loc.backend != "memory":
        from statestore.legacy import import_legacy, legacy_present

        target = _legacy_schema(schemas, legacy)
        if not store_exists(os.fspath(location)) and legacy_present(legacy):
            if mode == "read":
                raise StoreNotFoundError(str(loc), legacy=legacy.describe())
            wait = max(busy_timeout, 300.0)  # another process may be importing a large install
            import_legacy(
                os.fspath(location), target, legacy, busy_timeout=wait, converter=converter, durability=durability
            )
    return connect(
        loc,
        schemas,
        mode=mode,
        durability=durability,
        busy_timeout=busy_timeout,
        converter=converter,
        backup=backup,
        check_history=check_history,
    )


def _legacy_schema(schemas: Sequence[Schema], legacy: Legacy) -> Schema:
    """The schema the legacy layout imports into: the one declaring what its sources go into.

    A layout older than the code may name collections the code no longer
    declares (its sources carry their old declarations), so with one schema
    that schema is it; with several, the one declaring most of the names.
    """
    if len(schemas) == 1:
        return schemas[0]
    names = {src.into.name for src in legacy.layout.sources}
    best = max(schemas, key=lambda s: len(names & ({c.name for c in s.collections} | {lg.name for lg in s.logs})))
    if not names & ({c.name for c in best.collections} | {lg.name for lg in best.logs}):
        raise ValueError(f"no schema declares what the legacy layout imports into: {sorted(names)}")
    return best


def state_path(app: str) -> Path:
    """The conventional per-user state directory for ``app`` (platformdirs); not created."""
    import platformdirs

    return Path(platformdirs.user_state_dir(app))
