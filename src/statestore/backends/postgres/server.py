"""PostgreSQL locations and the server-side operations on whole stores (without opening one).

The URL handling (the ``schema`` parameter, hiding passwords), the advisory
lock keys, and what copying, importing, backups and the command do to a
store's schema as a whole: whether it exists, its stored schemas, placing a
schema built aside, listing and dropping backups, the import lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from statestore.backends import rawjson
from statestore.backends.urls import shown_url
from statestore.errors import BackendError, StoreBusyError, StoreNotFoundError, ValidationError
from statestore.store import StoredSchemas

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the locations module checks first and names the extra
    psycopg = None  # type: ignore[assignment]

DEFAULT_SCHEMA = "statestore"
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names silently: refuse them instead


def q(name: str) -> str:
    """Quote an identifier (names are validated at declaration time, and when read from a store)."""
    return '"' + name.replace('"', '""') + '"'


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key derived from ``parts`` (stable across machines and versions)."""
    digest = hashlib.sha256("\0".join(("statestore", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def split_url(url: str) -> tuple[str, str, str]:
    """(URL to connect to, schema name, URL to show) for a ``postgresql://`` location.

    The ``schema`` query parameter names the store's PostgreSQL schema
    (default ``statestore``) and is removed before connecting. The URL to
    show has no password (neither in the user part nor a ``password``
    parameter): it is what errors, ``repr`` and the command print. A schema
    name that is not a lower-case identifier of at most 63 characters raises
    ValidationError.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    connect = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest, safe="/:,", quote_via=quote), ""))
    shown = shown_url(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode([*rest, ("schema", schema)]), "")))
    if not SCHEMA_NAME.match(schema) or len(schema) > MAX_IDENTIFIER:
        raise ValidationError(
            "location",
            shown,
            "",
            f"schema {schema!r}: a PostgreSQL schema for a store is a lower-case identifier "
            f"([a-z_][a-z0-9_]*) of at most {MAX_IDENTIFIER} characters",
        )
    return connect, schema, shown


def password_of(url: str) -> str | None:
    """The password a URL carries (to scrub it from any server message), or None."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k == "password"]
    if parts.password:
        found.append(unquote(parts.password))
    return found[-1] if found else None


_MAX_MS = 2**31 - 1  # PostgreSQL's timeouts are int milliseconds


def lock_timeout(seconds: float) -> str:
    """``lock_timeout`` for a busy timeout: at least 1 ms; 0 (no limit) past what the setting holds, or inf."""
    ms = seconds * 1000
    return "0" if ms >= _MAX_MS else f"{max(1, int(ms))}ms"


def connect_timeout(seconds: float) -> int:
    """libpq's ``connect_timeout`` (whole seconds, at least 1) for a busy timeout; 0 (no limit) past its range."""
    return 0 if seconds >= _MAX_MS else max(1, int(seconds))


def quick_connect(url: str) -> Any:
    """A short-lived autocommit connection for looking at a store without opening it."""
    return psycopg.connect(url, autocommit=True, connect_timeout=30)


def schema_exists(url: str) -> bool:
    """True if the store a ``postgresql://`` location names exists (its schema has statestore's tables).

    A server that cannot be reached raises BackendError (without the password).
    """
    return _look(url) == "store"


def schema_vacant(url: str) -> bool:
    """True if the schema ``url`` names does not exist or holds nothing (room for a new store)."""
    return _look(url) in ("absent", "empty")


def _look(url: str) -> str:
    """What the schema ``url`` names is (see :func:`_destination`); BackendError if the server cannot be reached."""
    connect, schema, shown = split_url(url)
    try:
        with quick_connect(connect) as con:
            return _destination(con, schema)
    except psycopg.Error as exc:
        raise BackendError(shown, f"cannot connect to the server: {scrubbed(exc, url)}") from None


@contextlib.contextmanager
def import_lock(url: str, timeout: float) -> Iterator[None]:
    """Hold the store's import lock (a session-level advisory lock) on a connection of its own.

    Importers on every machine take it, so one imports and the others then
    find the store. Waiting longer than ``timeout`` raises StoreBusyError.
    Half-built stores a crashed import of this store left (named by
    :func:`aside_schema`) are dropped once the lock is held.
    """
    connect, schema, shown = split_url(url)
    try:
        con = quick_connect(connect)
    except psycopg.Error as exc:
        raise BackendError(shown, f"cannot connect to the server: {scrubbed(exc, url)}") from None
    try:
        try:
            con.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout(timeout),))
            con.execute("SELECT pg_advisory_lock(%s)", (lock_key("import", schema),))
            stale = con.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (schema[:30] + "_import_",)
            ).fetchall()
            for (name,) in stale:
                if is_aside_of(name, schema, "import"):  # never another store's schema, nor its import's
                    con.execute(f"DROP SCHEMA {q(name)} CASCADE")
        except pg_errors.LockNotAvailable:
            raise StoreBusyError(shown, timeout) from None
        except psycopg.Error as exc:
            raise BackendError(shown, scrubbed(exc, url)) from None
        yield
    finally:
        con.close()  # ends the session: the lock goes with it


def stored_schemas(url: str) -> StoredSchemas:
    """``{name: (version, description)}`` as the store at ``url`` holds them; StoreNotFoundError if none."""
    connect, schema, shown = split_url(url)
    if not schema_exists(url):
        raise StoreNotFoundError(shown)
    try:
        with quick_connect(connect) as con:
            rows = con.execute(f"SELECT name, version, description FROM {q(schema)}._statestore_schemas").fetchall()
    except psycopg.Error as exc:
        raise BackendError(shown, scrubbed(exc, url)) from None
    return rawjson.stored_schemas_of(rows, shown)


def aside_schema(schema: str, purpose: str) -> str:
    """A fresh name for a store built aside for ``schema`` (``purpose``: ``import`` or ``copy``).

    ``<schema cut to 30>_<purpose>_<8 hex of the whole name>_<8 random hex>``:
    the hash tells apart stores whose names share their first 30
    characters, so one store's cleanup never takes another's schema.
    """
    return f"{schema[:30]}_{purpose}_{_owner_tag(schema)}_{secrets.token_hex(4)}"


def _owner_tag(schema: str) -> str:
    return hashlib.sha256(schema.encode()).hexdigest()[:8]


def is_aside_of(name: str, schema: str, purpose: str) -> bool:
    """True if ``name`` is one of :func:`aside_schema`'s names for ``schema`` and ``purpose``."""
    pattern = rf"{re.escape(schema[:30])}_{purpose}_{_owner_tag(schema)}_[0-9a-f]{{8}}"
    return re.fullmatch(pattern, name) is not None


def with_schema(url: str, schema: str) -> str:
    """``url`` naming another schema (everything else, password included, kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe="/:,", quote_via=quote), ""))


def _destination(con: Any, schema: str) -> str:
    """What the schema ``schema`` is: ``absent``, ``store`` (statestore's tables), ``empty`` or ``other``."""
    if con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
        return "absent"
    if con.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = '_statestore_schemas'",
        (schema,),
    ).fetchone():
        return "store"
    held = con.execute(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s)"
        " + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s)"
        " + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s)",
        (schema, schema, schema),
    ).fetchone()[0]
    return "empty" if held == 0 else "other"


def place_schema(
    tmp_url: str, url: str | None, *, replace: bool, keep_as: str | None = None, busy_timeout: float = 30.0
) -> None:
    """Move the store built in the schema of ``tmp_url`` to the schema of ``url`` in one transaction (None: drop it).

    The move holds the destination store's write lock, so no writer of an
    existing store there is cut off mid-transaction. What is at the
    destination decides:

    * nothing: the schema is renamed;
    * an empty schema (one an administrator made for the store, with its
      owner and grants): the tables move into it, so it keeps its
      permissions;
    * a statestore store: with ``replace`` it is dropped in the same
      transaction (renamed to ``keep_as`` instead, when given); without it,
      StoreExistsError and nothing changes;
    * anything else (an application's own tables): StoreExistsError saying
      so, ``replace`` or not: statestore never drops what it did not make.

    A store moved into place is whole: PostgreSQL's DDL is transactional.
    Waiting longer than ``busy_timeout`` for the store's lock, or for its
    tables (a client idle in a transaction holds them), is StoreBusyError
    and changes nothing.
    """
    from statestore.errors import StoreExistsError

    connect, tmp, _shown = split_url(tmp_url)
    try:
        with quick_connect(connect) as con:
            if url is None:
                con.execute(f"DROP SCHEMA IF EXISTS {q(tmp)} CASCADE")
                return
            _c, schema, shown = split_url(url)
            con.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout(busy_timeout),))
            con.execute("BEGIN")
            con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("write", schema),))
            found = _destination(con, schema)
            if found == "other" or (found == "store" and not replace):
                con.execute("ROLLBACK")
                if found == "other":
                    raise StoreExistsError(shown, "holds tables that are not a statestore store; not replacing them")
                raise StoreExistsError(shown)
            if found == "store":
                if keep_as is not None:
                    con.execute(f"ALTER SCHEMA {q(schema)} RENAME TO {q(keep_as)}")
                else:
                    con.execute(f"DROP SCHEMA {q(schema)} CASCADE")
            if found == "empty":
                tables = con.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (tmp,)).fetchall()
                for (table,) in tables:
                    con.execute(f"ALTER TABLE {q(tmp)}.{q(table)} SET SCHEMA {q(schema)}")
                con.execute(f"DROP SCHEMA {q(tmp)}")
            else:
                con.execute(f"ALTER SCHEMA {q(tmp)} RENAME TO {q(schema)}")
            con.execute("COMMIT")
    except pg_errors.LockNotAvailable:
        raise StoreBusyError(split_url(url or tmp_url)[2], busy_timeout) from None
    except psycopg.Error as exc:
        raise BackendError(split_url(url or tmp_url)[2], scrubbed(exc, tmp_url)) from None


def _backup_note(comment: Any) -> dict[str, str] | None:
    """A backup schema's comment (``{"backup_of", "before", "taken"}``), or None for any other schema."""
    if not isinstance(comment, str) or not comment.startswith('{"backup_of":'):
        return None
    try:
        note = rawjson.load(comment)
        datetime.strptime(note["taken"], "%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(note, dict) or not all(isinstance(note.get(k), str) for k in ("backup_of", "before", "taken")):
        return None
    return note


def _backup_rows(con: Any, schema: str) -> list[tuple[str, dict[str, str], int, int]]:
    """(name, note, bytes, oid) of every backup schema of the store ``schema``."""
    rows = con.execute(
        "SELECT n.nspname, obj_description(n.oid, 'pg_namespace'), coalesce(sum(pg_total_relation_size(c.oid)), 0), "
        "n.oid::bigint FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r' "
        "WHERE starts_with(n.nspname, %s) GROUP BY n.nspname, n.oid",
        (schema[:25],),
    ).fetchall()
    out = []
    for name, comment, size, oid in rows:
        note = _backup_note(comment)
        # A backup renamed into place (restored) keeps its comment: it is the store, never its backup.
        if note is not None and note["backup_of"] == schema and name != schema:
            out.append((str(name), note, int(size), int(oid)))
    return out


def find_backups(url: str) -> list[tuple[str, str, str, int]]:
    """The backups of the store at ``url``, oldest first: (schema name, taken before, UTC time, bytes).

    A backup is a schema whose comment says it is a backup of this store
    (``PostgresStore._backup`` writes it), whatever its name: a schema that
    only looks like one is not listed, nor another store's, nor the store
    itself when it is a backup restored by renaming.
    """
    connect, schema, shown = split_url(url)
    try:
        with quick_connect(connect) as con:
            rows = _backup_rows(con, schema)
    except psycopg.Error as exc:
        raise BackendError(shown, scrubbed(exc, url)) from None
    found = []
    for name, note, size, oid in rows:
        taken = datetime.strptime(note["taken"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        found.append((taken.isoformat(), oid, name, note["before"], size))
    # The note says the second; the schema's oid (assigned in creation order) orders those taken within one.
    return [(name, before, taken, size) for taken, _oid, name, before, size in sorted(found)]


def drop_backup(url: str, name: str) -> None:
    """Drop one backup schema of the store at ``url`` (a name :func:`find_backups` listed); ValueError otherwise."""
    connect, schema, shown = split_url(url)
    try:
        with quick_connect(connect) as con:
            if name not in {n for n, _note, _size, _oid in _backup_rows(con, schema)}:
                raise ValueError(f"{name!r} is not a backup of {shown}")
            con.execute(f"DROP SCHEMA {q(name)} CASCADE")
    except psycopg.Error as exc:
        raise BackendError(shown, scrubbed(exc, url)) from None


def scrubbed(exc: BaseException, url: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    secret = password_of(url)
    return text.replace(secret, "****") if secret else text
