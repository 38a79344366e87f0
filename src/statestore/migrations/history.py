"""The history of a schema's migrations, kept as entries of the internal ``_statestore_history`` log."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import attrs

from statestore.codec import dumps
from statestore.errors import (
    MigrationHistoryError,
)
from statestore.schema import (
    HISTORY,
    Schema,
    migration_checksum,
)

if TYPE_CHECKING:
    from statestore.store import Store

__all__ = ["HistoryRow", "append_history", "read_history", "verify_history"]


@attrs.frozen
class HistoryRow:
    """One step in a schema's history, as kept in the store.

    ``direction`` is ``"create"`` (the store was created at ``version``),
    ``"up"`` or ``"down"`` (migration ``version`` was applied or undone).
    ``checksum`` is :meth:`Migration.checksum` of the declaration that ran.
    """

    schema: str
    version: int
    name: str
    checksum: str
    direction: str
    applied_at: datetime


def read_history(store: Store, schema: str) -> list[HistoryRow]:
    """Every history row of ``schema``, oldest first."""
    rows = store._entries(HISTORY, stream=schema, prefix=None, after=0, limit=None)
    return [
        HistoryRow(
            schema,
            int(data.get("version", 0)),
            str(data.get("name", "")),
            str(data.get("checksum", "")),
            str(data.get("direction", "")),
            datetime.fromisoformat(at),
        )
        for _seq, _stream, _version, at, data in rows
    ]


def append_history(store: Store, schema: str, version: int, name: str, direction: str) -> None:
    """Add a history row inside the current write transaction."""
    data = {
        "version": version,
        "name": name,
        "checksum": migration_checksum(version, name),
        "direction": direction,
    }
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    current = store._stream_version(HISTORY, schema)
    store._add_entry(HISTORY, schema, current + 1, at, data, dumps(data))


def verify_history(store: Store, schema: Schema, stored_version: int) -> None:
    """Raise MigrationHistoryError if the applied history disagrees with the declared migrations."""
    applied: dict[int, HistoryRow] = {}
    base = 0
    rows = read_history(store, schema.name)
    if not rows:
        return
    for row in rows:
        if row.direction == "create":
            applied, base = {}, row.version
        elif row.direction == "up":
            applied[row.version] = row
        elif row.direction == "down":
            applied.pop(row.version, None)
    for v in range(base + 1, stored_version + 1):
        declared = schema.migration(v)
        got = applied.get(v)
        name = declared.name if declared is not None else ""
        if got is None:
            if declared is not None:
                raise MigrationHistoryError(
                    store.location,
                    schema.name,
                    v,
                    f"the store never applied {name!r}, yet it is at version {stored_version}",
                )
            continue
        if got.checksum != migration_checksum(v, name):
            what = f"declares {name!r}" if declared is not None else "declares no migration"
            raise MigrationHistoryError(
                store.location,
                schema.name,
                v,
                f"the store applied {got.name or '(no migration)'!r} but the code {what}",
            )
