"""The file backend's transaction journal and change head (``<root>/.statestore/``).

A write transaction is staged in memory. To commit, the writer (holding the
store's write lock) writes the whole transaction -- every record file's new
text, every deletion, every log's lines and the byte offset they go at -- to
``journal.json`` by atomic rename: that rename is the commit point. It then
bumps the change head, applies the journal to the data files, and deletes the
journal. A writer killed after the rename leaves a committed journal that the
next writer (or the next write-mode open) applies again -- applying is
idempotent: record files are rewritten whole and log files are cut back to the
recorded offset before the lines are appended. A writer killed before the
rename leaves nothing but a temporary file. Readers treat a journal as part of
the store: for the records and log lines it names, they read the journal, not
the (possibly half-applied) data files.

The change head (``changes``) is a store-wide generation counter plus the
names of the record files changed by the last few generations. It is bumped
*before* a journal is applied, so a reader that reads the head before and
after reading data files sees a different generation whenever an apply
overlapped its read (a seqlock), and a cache can re-read just the files that
changed. Because the bump precedes the apply, a crash between the two can
never leave another process's cache stale: a cache built while a journal was
present distrusts that journal's files until the journal is gone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

__all__ = ["CHANGES", "JOURNAL", "LOCK", "Head", "Journal"]

JOURNAL = "journal.json"
CHANGES = "changes"
LOCK = "write.lock"
_MAGIC = b"statestore-journal 1 "
#: How many generations the change head remembers, and how many names per collection.
_KEEP = 64
_MAX_NAMES = 256


@attrs.frozen
class Journal:
    """One committed transaction: what to write where.

    ``records`` holds (collection, file name, new file text or None to
    delete); ``logs`` holds (log, byte offset, lines to write there).
    """

    txid: str
    gen: int
    records: tuple[tuple[str, str, str | None], ...]
    logs: tuple[tuple[str, int, str], ...]

    def encode(self) -> bytes:
        """The journal file: a header line with a checksum, then the JSON body (ASCII)."""
        body = json.dumps(
            {"txid": self.txid, "gen": self.gen, "records": self.records, "logs": self.logs},
            separators=(",", ":"),
        ).encode("ascii")
        return _MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body

    @classmethod
    def decode(cls, raw: bytes) -> Journal | None:
        """The journal in ``raw``, or None if it is not a complete journal (never committed)."""
        head, _, body = raw.partition(b"\n")
        if not head.startswith(_MAGIC) or head[len(_MAGIC) :] != hashlib.sha256(body).hexdigest().encode("ascii"):
            return None
        try:
            doc = json.loads(body)
            return cls(
                str(doc["txid"]),
                int(doc["gen"]),
                tuple((str(c), str(n), None if t is None else str(t)) for c, n, t in doc["records"]),
                tuple((str(lg), int(off), str(text)) for lg, off, text in doc["logs"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def names(self, collection: str) -> set[str]:
        """The record files of ``collection`` this journal writes or deletes."""
        return {n for c, n, _ in self.records if c == collection}

    def changes(self) -> dict[str, list[str]]:
        """File names per collection, as the change head records them."""
        out: dict[str, list[str]] = {}
        for c, n, _ in self.records:
            out.setdefault(c, []).append(n)
        return out


@attrs.define
class Head:
    """The change head: generation ``gen`` and the files changed since generation ``base``."""

    gen: int = 0
    base: int = 0
    raw: bytes = b""
    _entries: list[tuple[int, dict[str, Any]]] | None = None

    @classmethod
    def decode(cls, raw: bytes | None) -> Head:
        """Parse just the first line (``gen base``); the change list is parsed when needed.

        A missing or unreadable head is generation 0 with no history, which
        makes every cache reload.
        """
        if not raw:
            return cls()
        first, _, _ = raw.partition(b"\n")
        try:
            gen, base = (int(x) for x in first.split())
        except ValueError:
            return cls()
        return cls(gen, base, raw)

    def entries(self) -> list[tuple[int, dict[str, Any]]]:
        """(generation, {collection: [file names] or "*"}) for each remembered generation."""
        if self._entries is None:
            try:
                doc = json.loads(self.raw.partition(b"\n")[2] or b"[]")
                self._entries = [(int(g), dict(c)) for g, c in doc]
            except (ValueError, TypeError):
                self._entries = []
                self.base = self.gen  # forget the history: every cache older than gen reloads
        return self._entries

    def changed(self, collection: str, since: int) -> set[str] | None:
        """Files of ``collection`` changed after generation ``since``; None if unknown (reload all)."""
        if since == self.gen:
            return set()
        entries = self.entries()
        if not (self.base <= since < self.gen):
            return None
        out: set[str] = set()
        for gen, colls in entries:
            if gen > since and collection in colls:
                names = colls[collection]
                if names == "*":
                    return None
                out.update(names)
        return out

    def bump(self, gen: int, changes: dict[str, list[str]]) -> bytes:
        """The head file for generation ``gen`` after the given changes."""
        entries = [*self.entries(), (gen, {c: (n if len(n) <= _MAX_NAMES else "*") for c, n in changes.items()})]
        base = self.base
        if len(entries) > _KEEP:
            dropped = entries[: len(entries) - _KEEP]
            entries = entries[len(entries) - _KEEP :]
            base = dropped[-1][0]
        if not self.raw:
            base = self.gen
        body = json.dumps(entries, separators=(",", ":"), ensure_ascii=True)
        return f"{gen} {base}\n{body}\n".encode("ascii")
