"""Store locations and the backend each one names.

A location is ``sqlite:PATH``, ``files:PATH``, ``memory:``, a PostgreSQL URL
(``postgresql://…`` or ``postgres://…``, whose ``schema`` parameter names the
store's schema) or a plain path (``.db``/``.sqlite``/``.sqlite3`` is SQLite,
anything else the file backend).
Any other ``word:`` prefix is an unknown scheme and an error naming the known
ones, never a folder named after it.
:func:`connect` opens the backend a location names; ``open_store`` (which also
runs the legacy import) is built on it. Backends are imported on first use.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import cattrs

from statestore.backends.urls import shown_url
from statestore.codec import Codec
from statestore.errors import BackendError, ValidationError
from statestore.schema import Schema

if TYPE_CHECKING:
    from statestore.store import Durability, Mode, Store

__all__ = [
    "Backend",
    "Location",
    "check_not_a_file",
    "connect",
    "parse_location",
    "require_backend",
    "require_psycopg",
    "store_exists",
]

Backend = Literal["sqlite", "files", "memory", "postgres"]
_SQLITE_SUFFIXES = {".db", ".sqlite", ".sqlite3"}
# Two letters at least: "C:\\state" is a Windows drive, not a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_KNOWN = "sqlite:PATH, files:PATH, memory:, postgresql://…, or a plain path"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_POSTGRES_EXTRA = "PostgreSQL locations need psycopg: pip install 'statestore[postgres]'"
_SQLITE_HEADER = b"SQLite format 3\x00"


@attrs.frozen
class Location:
    """A parsed store location: which backend, and where (None for ``memory:`` and PostgreSQL).

    ``url`` is the PostgreSQL connection URL as given (it may hold a
    password, so it is never shown: ``str()`` and ``repr()`` show it without).
    """

    backend: Backend
    path: Path | None
    url: str | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        if self.url is not None:
            return shown_url(self.url)
        return f"{self.backend}:{self.path if self.path is not None else ''}"


def parse_location(location: str | os.PathLike[str]) -> Location:
    """Parse a location.

    ``sqlite:PATH`` and ``files:PATH`` name the backend; ``memory:`` is an
    in-memory store; ``postgresql://…`` and ``postgres://…`` are PostgreSQL
    (a libpq URL; the standard ``PG*`` environment variables fill what it
    omits); a plain path ending in ``.db``, ``.sqlite`` or
    ``.sqlite3`` is SQLite and any other plain path is the file backend. ``~``
    is expanded. An empty path raises ValidationError.
    """
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str):
        raise ValidationError("location", location, "", "a location is a string or a path")
    if location == "memory:":
        return Location("memory", None)
    if location.lower().startswith(_POSTGRES_SCHEMES):
        from urllib.parse import urlsplit

        try:
            urlsplit(location)
        except ValueError as exc:  # e.g. an unclosed [: shown without the rest, which may hold a password
            named = location.split(":", 1)[0]
            raise ValidationError("location", f"{named}://…", "", f"not a URL that can be read: {exc}") from None
        return Location("postgres", None, location)
    for prefix in ("sqlite", "files"):
        if location.startswith(prefix + ":"):
            rest = location[len(prefix) + 1 :]
            if not rest:
                raise ValidationError("location", location, "", f"{prefix}: needs a path, e.g. {prefix}:./state")
            return Location(prefix, Path(rest).expanduser())
    if not location or location.startswith("memory:"):
        raise ValidationError("location", location, "", "expected sqlite:PATH, files:PATH, memory: or a path")
    scheme = _SCHEME.match(location)
    if scheme is not None:
        raise ValidationError("location", location, "", _unknown_scheme(scheme.group(1)))
    path = Path(location).expanduser()
    return Location("sqlite" if path.suffix.lower() in _SQLITE_SUFFIXES else "files", path)


def _unknown_scheme(scheme: str) -> str:
    word = scheme.lower()
    if word in ("postgres", "postgresql", "pg"):
        hint = "a PostgreSQL location is a URL: postgresql://USER@HOST/DATABASE?schema=NAME"
    else:
        close = difflib.get_close_matches(word, ["sqlite", "files", "memory"], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}:?" if close else "a plain path never starts with word:"
    return f"unknown scheme {scheme + ':'!r}: {hint} (known: {_KNOWN})"


def check_not_a_file(loc: Location) -> None:
    """Refuse a files-backend location that is a regular file: a files store is a folder.

    The error says so, and names ``sqlite:PATH`` when the file is an SQLite
    database whose name does not say it (``state.bin``), instead of calling
    someone's JSON file a corrupt store. Nothing is read past the first 16 bytes.
    """
    if loc.backend != "files" or loc.path is None or not loc.path.is_file():
        return
    try:
        with loc.path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError:
        head = b""
    hint = f"; it is an SQLite database: open it as sqlite:{loc.path}" if head == _SQLITE_HEADER else ""
    raise BackendError(str(loc), f"is a file, not a store (a files: store is a folder){hint}")


def require_backend(loc: Location) -> None:
    """Raise BackendError if this platform cannot run the backend ``loc`` names.

    The files backend locks with ``fcntl`` (POSIX); where it does not exist
    (Windows) a files location is one clear error, while SQLite and memory
    stores work. A PostgreSQL location needs psycopg (the ``postgres``
    extra): without it, one line saying which extra to install.
    """
    if loc.backend == "postgres":
        require_psycopg(str(loc))
        return
    if loc.backend != "files":
        return
    try:
        import statestore.backends.files  # noqa: F401 - imported to see whether it can be
    except ImportError as exc:
        if exc.name != "fcntl":
            raise
        raise BackendError(
            str(loc),
            "the files backend needs POSIX file locks (fcntl), which this platform does not have; "
            "use sqlite:PATH or memory: here",
        ) from None


def require_psycopg(location: str) -> None:
    """Raise BackendError, one line naming the extra to install, unless psycopg can be imported.

    Called before anything imports :mod:`statestore.backends.postgres` for
    a ``postgresql://`` location (shown as ``location``: no password).
    """
    try:
        import psycopg  # noqa: F401 - imported to see whether it can be
    except ImportError:
        raise BackendError(location, _POSTGRES_EXTRA) from None


def store_exists(location: str | os.PathLike[str]) -> bool:
    """True if a store (not just an empty file or folder) is at ``location``."""
    loc = parse_location(location)
    if loc.backend == "postgres" and loc.url is not None:
        require_psycopg(str(loc))
        from statestore.backends.postgres import schema_exists

        return schema_exists(loc.url)
    if loc.backend == "memory" or loc.path is None:
        return False
    if loc.backend == "sqlite":
        return loc.path.is_file() and loc.path.stat().st_size > 0
    return (loc.path / "statestore.json").is_file()


def connect(
    loc: Location,
    schemas: Sequence[Schema],
    *,
    mode: Mode = "write",
    durability: Durability = "normal",
    busy_timeout: float = 30.0,
    converter: cattrs.Converter | None = None,
    backup: bool = True,
    check_history: bool = True,
) -> Store:
    """Open the backend ``loc`` names (see ``open_store``, which adds the legacy import)."""
    check_not_a_file(loc)
    require_backend(loc)
    codec = Codec(converter)
    if loc.backend == "memory":
        from statestore.backends.memory import MemoryStore

        return MemoryStore(schemas, mode=mode, codec=codec)
    if loc.backend == "postgres":
        from statestore.backends.postgres import PostgresStore

        assert loc.url is not None
        return PostgresStore(
            loc.url,
            schemas,
            mode=mode,
            durability=durability,
            busy_timeout=busy_timeout,
            codec=codec,
            backup=backup,
            check_history=check_history,
        )
    assert loc.path is not None
    if loc.backend == "sqlite":
        from statestore.backends.sqlite import SQLiteStore as backend
    else:
        from statestore.backends.files import FileStore as backend  # type: ignore[assignment]
    return backend(
        loc.path,
        schemas,
        mode=mode,
        durability=durability,
        busy_timeout=busy_timeout,
        codec=codec,
        backup=backup,
        check_history=check_history,
    )
