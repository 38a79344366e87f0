"""How statements travel to the server: encoded parameters, libpq pipelines, rows.

The store's statements go through libpq directly (psycopg's ``pgconn``):
parameters encoded here (:func:`encode_params`), sent in pipelines and read
back by :func:`receive`, their rows wrapped in :class:`Rows`. Stored JSON
objects are read by :func:`fast_record` first (the C scanner), the careful
way only when that fails. The store's modules take psycopg from here
(``psycopg`` is None when the extra is missing; :mod:`.server` guards its
own import the same way).
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
from collections.abc import Sequence
from typing import Any

from statestore.backends import rawjson

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import pq
    from psycopg.adapt import PyFormat, Transformer
except ImportError:  # pragma: no cover - the locations module checks first and names the extra
    psycopg = pg_errors = pq = None  # type: ignore[assignment]

__all__ = [  # psycopg's modules too: the package's other modules take them from here, guarded once
    "Rows",
    "Statement",
    "ThreadConnection",
    "encode_params",
    "fast_record",
    "forget_connection",
    "numbered",
    "pg_errors",
    "pq",
    "psycopg",
    "receive",
]


class ThreadConnection:
    """One thread's connection, held in its thread-local storage, with its prepared statements."""

    __slots__ = ("__weakref__", "con", "generation", "loader", "pg", "prepared")

    def __init__(self, con: Any) -> None:
        self.con = con
        self.pg = con.pgconn
        self.generation = -1  # the store's table generation its prepared statements were made for
        # (SQL, parameter types) -> the name of the statement prepared on this connection.
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self.loader = Transformer.from_context(con)


class Rows:
    """What one statement returned: its rows (as tuples) and how many rows it touched."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


# A statement ready to send: its SQL (``%s`` placeholders), its encoded parameters (None: it has
# none), their type OIDs and formats, and whether to run it as a statement prepared on the
# connection (the frequent point lookups and writes: planned once) or unnamed (planned for
# its parameters each time: ranges, where a generic plan could pick the wrong index).
Statement = tuple[str, "list[bytes | None] | None", tuple[int, ...], "list[int] | None", bool]

_TEXT, _BYTEA, _INT8, _UNKNOWN = 25, 17, 20, 0
_NUL_MESSAGE = "PostgreSQL text fields cannot contain NUL (0x00) bytes"


def encode_params(params: Sequence[Any]) -> tuple[list[bytes | None], tuple[int, ...], list[int]]:
    """Parameters as libpq takes them: str as UTF-8 text, int as int8 text, bytes as binary bytea, None as NULL.

    A str holding NUL raises psycopg.DataError (libpq would cut it there);
    a lone surrogate, psycopg.DataError too: neither reaches the server.
    Any other type (a float, a bool, a list) has all the parameters adapted
    by psycopg instead.
    """
    values: list[bytes | None] = []
    types: list[int] = []
    formats: list[int] = []
    for value in params:
        kind = type(value)
        if kind is str:
            if "\0" in value:
                raise psycopg.DataError(_NUL_MESSAGE)
            try:
                values.append(value.encode())
            except UnicodeEncodeError as exc:
                raise psycopg.DataError(str(exc)) from None
            types.append(_TEXT)
            formats.append(0)
        elif kind is int:
            values.append(b"%d" % value)
            types.append(_INT8)
            formats.append(0)
        elif kind is bytes:
            values.append(value)
            types.append(_BYTEA)
            formats.append(1)
        elif value is None:
            values.append(None)
            types.append(_UNKNOWN)
            formats.append(0)
        else:  # a float, a bool, a list for ANY(...): psycopg's own adaptation, for them all
            return _adapted(params)
    return values, tuple(types), formats


def _adapted(params: Sequence[Any]) -> tuple[list[bytes | None], tuple[int, ...], list[int]]:
    """Parameters adapted as psycopg adapts them (its default types and formats)."""
    adapter = Transformer()
    dumped = adapter.dump_sequence(params, [PyFormat.AUTO] * len(params))
    values = [None if v is None else bytes(v) for v in dumped]
    return values, tuple(adapter.types or ()), [int(f) for f in adapter.formats or ()]


# The C scanner of rawjson's strict decoder: the fast way to read the canonical JSON this
# backend writes. Whatever it does not accept whole goes the careful way (rawjson.load), which
# accepts exactly the same texts and says what is wrong with the others.
_scan_json: Any = rawjson.SCAN


def fast_record(text: Any) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None when it needs the careful look (damage, or not an object)."""
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError, RecursionError, TypeError):
        return None
    if end != len(text) or type(value) is not dict:
        return None
    return value


def numbered(sql: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``, … (the statements here hold no other ``%``)."""
    count = 0

    def number(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub("%s", number, sql)


def forget_connection(connections: list[Any], lock: threading.Lock, con: Any) -> None:
    """Close the connection of a thread that ended (unless close() already did)."""
    with lock:
        if con not in connections:
            return
        connections.remove(con)
    with contextlib.suppress(Exception):
        con.close()


def receive(pg: Any, syncs: int) -> list[Any]:
    """Every result of a pipeline up to its ``syncs``-th sync, waiting for the socket (interruptibly) in between."""
    fd = pg.socket
    while pg.flush():  # 1: more to send (a big record); read meanwhile so the server never blocks
        readable, _w, _x = select.select([fd], [fd], [])
        if readable:
            pg.consume_input()
    results: list[Any] = []
    sync = pq.ExecStatus.PIPELINE_SYNC
    while True:
        while pg.is_busy():
            select.select([fd], [], [])
            pg.consume_input()
        res = pg.get_result()
        if res is None:
            if pg.status != pq.ConnStatus.OK:  # lost: no sync is coming
                for got in results:
                    if got.status == pq.ExecStatus.FATAL_ERROR:
                        raise pg_errors.error_from_result(got, encoding="utf-8")
                raise psycopg.OperationalError("the connection to the server was lost")
            continue  # the end of one statement's results
        if res.status == sync:
            syncs -= 1
            if not syncs:
                return results
            continue
        results.append(res)
