"""Lookup columns: which column holds an index or unique field, what it holds, and index names."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from statestore.backends.postgres.server import MAX_IDENTIFIER as _MAX_IDENTIFIER
from statestore.codec import dumps

#: The columns of the layout itself: a field with one of these names gets the column ``field:NAME``.
RESERVED = {"key", "revision", "data"}


def column_of(field: str) -> str:
    """The lookup column for ``field``: its own name unless the layout uses it (then ``field:NAME``)."""
    return f"field:{field}" if field in RESERVED else field


def field_of(column: str) -> str:
    """The field a lookup column holds (the inverse of :func:`column_of`)."""
    return column[len("field:") :] if column.startswith("field:") else column


def field_text(data: Mapping[str, Any], field: str) -> str | None:
    """A top-level field's value as its canonical JSON text; None when missing or null.

    This is what a lookup column holds. The backend writes it with the
    record, from the same canonical encoder as ``data``: a generated column
    would have to parse ``data`` on the server, and PostgreSQL's JSON parser
    refuses a ``\\u0000`` anywhere in the document, which statestore stores.
    """
    value = data.get(field)
    return None if value is None else dumps(value)


def index_name(kind: str, table: str, fields: tuple[str, ...]) -> str:
    """``_statestore_<kind>_<table>_<fields>`` cut to fit 63 bytes, with a hash that keeps it unique."""
    digest = hashlib.sha256(f"{table}\0{kind}\0{chr(0).join(fields)}".encode()).hexdigest()[:10]
    readable = f"_statestore_{kind}_{table}__{'__'.join(fields)}"
    return f"{readable[: _MAX_IDENTIFIER - 11]}_{digest}"
