"""The file backend: one JSON document per record, one JSONL file per log (see :mod:`.store`)."""

from statestore.backends.files.store import FileStore

__all__ = ["FileStore"]
