"""The PostgreSQL backend: :class:`PostgresStore` (``store``) and whole-store operations on a server (``server``).

Imported only when a ``postgresql://`` location is used: it needs psycopg
(the ``postgres`` extra), which nothing else in statestore imports.
"""

from statestore.backends.postgres.server import (
    DEFAULT_SCHEMA,
    aside_schema,
    drop_backup,
    find_backups,
    import_lock,
    place_schema,
    schema_exists,
    schema_vacant,
    split_url,
    stored_schemas,
    with_schema,
)
from statestore.backends.postgres.store import PostgresStore

__all__ = [
    "DEFAULT_SCHEMA",
    "PostgresStore",
    "aside_schema",
    "drop_backup",
    "find_backups",
    "import_lock",
    "place_schema",
    "schema_exists",
    "schema_vacant",
    "split_url",
    "stored_schemas",
    "with_schema",
]
