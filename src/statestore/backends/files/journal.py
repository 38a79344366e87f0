"""The file backend's transaction journal and change head (``<root>/.statestore/``).

A write transaction is staged in memory. To commit, the writer (holding the
store's write lock) writes the whole transaction -- every record file's new
text, every deletion, every log's lines and the byte offset they go at -- to
``journal.json`` by atomic rename, then rewrites the change head to announce
it (flag ``F``, the journal's generation): that head write is the commit
point. It then applies the journal to the data files, deletes the journal and
settles the head. A ``journal.json`` that no head announces with its own
generation was never committed (or was applied long ago) and is deleted, never
applied. A writer killed after the announcement leaves a committed journal
that the next writer (or the next write-mode open) applies again -- applying is
idempotent: record files are rewritten whole and log files are cut back to the
recorded offset before the lines are appended. A writer killed before it
leaves nothing but temporary files. Readers treat a journal as part of the
store: for the records and log lines it names, they read the journal, not the
(possibly half-applied) data files; an announced journal that is gone was
applied whole before it was unlinked.

A small transaction's journal is not a file of its own: it travels inside
the change head (below), whose in-place rewrite is then the commit point, so
committing costs two small writes to one open file instead of creating,
renaming and deleting a journal file (renaming over an existing file forces a
data flush on ext4, a fifth of a millisecond or more).

The change head (``changes``) is a store-wide generation counter plus the
names of the record files changed by the last few generations. It is bumped
*before* (or, for an embedded journal, together with) applying a journal, so a reader that reads the head before and
after reading data files sees a different generation whenever an apply
overlapped its read (a seqlock), and a cache can re-read just the files that
changed. Because the bump precedes the apply, a crash between the two can
never leave another process's cache stale: a cache built while a journal was
present distrusts that journal's files until the journal is gone.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import attrs

__all__ = ["CHANGES", "JOURNAL", "LOCK", "Head", "Journal", "committed_root_file"]

JOURNAL = "journal.json"
CHANGES = "changes"
LOCK = "write.lock"
_MAGIC = b"statestore-journal 1 "
#: How many generations the change head remembers, and how many names per collection.
_KEEP = 64
_MAX_NAMES = 256
#: Generations forgotten at once: in between, the history is only extended, so its checksum goes on
#: from the last one (a whole new crc32 of ~2 KB once per _FORGET commits, not on every one).
_FORGET = 16
# Built once: json.dumps() with any option builds a new encoder per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
# And JSONEncoder.encode builds a C encoder per call: a journal is a tree of tuples, strs, ints and
# bools (no cycle to look for), which one C encoder with _COMPACT's settings writes byte for byte alike.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_ascii = json.encoder.encode_basestring_ascii
_COMPACT_TREE = (
    _c_make_encoder(None, _COMPACT.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    if _c_make_encoder is not None
    else None
)


@attrs.frozen
class Journal:
    """One committed transaction: what to write where.

    ``records`` holds (collection, file name, new file text or None to
    delete); ``logs`` holds (log, byte offset, lines to write there).

    A ``direct`` journal carries no texts: it announces the one record file
    that a transaction is replacing or deleting on its own. One rename or
    unlink is atomic by itself, so there is nothing to roll forward; readers
    only learn to read that file from disk rather than from their cache.
    """

    txid: str
    gen: int
    records: tuple[tuple[str, str, str | None], ...]
    logs: tuple[tuple[str, int, str], ...]
    direct: bool = False
    # encode() is asked twice per commit (its size, then the head's bytes): keep the first answer.
    _encoded: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def encode(self) -> bytes:
        """The journal file: a header line with a checksum, then the JSON body (ASCII)."""
        if self._encoded is not None:
            return self._encoded
        if self.direct and len(self.records) == 1 and not self.logs and self.records[0][2] is None:
            # The one a lone record write announces (every single put): the same bytes, written directly.
            coll, name, _none = self.records[0]
            body = (
                f'{{"txid":{_ascii(self.txid)},"gen":{int.__repr__(self.gen)},'
                f'"records":[[{_ascii(coll)},{_ascii(name)},null]],"logs":[],"direct":true}}'
            ).encode("ascii")
        else:
            doc: dict[str, Any] = {"txid": self.txid, "gen": self.gen, "records": self.records, "logs": self.logs}
            if self.direct:
                doc["direct"] = True
            text = "".join(_COMPACT_TREE(doc, 0)) if _COMPACT_TREE is not None else _COMPACT.encode(doc)
            body = text.encode("ascii")
        encoded = _MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body
        object.__setattr__(self, "_encoded", encoded)  # frozen: a cache, not a change
        return encoded

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
                doc.get("direct") is True,
            )
        except (ValueError, KeyError, TypeError):
            return None

    def names(self, collection: str) -> set[str]:
        """The record files of ``collection`` this journal writes or deletes."""
        return {n for c, n, _ in self.records if c == collection}

    def root_file(self, name: str) -> tuple[bool, str | None]:
        """(True, new text or None if deleted) when this journal replaces the root file ``name``.

        Root files are the manifest and whole log files a migration rewrote;
        readers take them from a committed journal until it is applied.
        """
        for c, n, t in self.records:
            if c == "." and n == name:
                return True, t
        return False, None

    def changes(self) -> dict[str, list[str]]:
        """File names per collection, as the change head records them."""
        out: dict[str, list[str]] = {}
        for c, n, _ in self.records:
            out.setdefault(c, []).append(n)
        return out


@attrs.define
class Head:
    """The change head: generation ``gen``, the files changed since generation ``base``,
        and (for a small transaction) the committed journal being applied.

        On disk (``changes``, rewritten in place, never renamed)::

            <gen> <base> <history length> <journal length> <crc32> <F or ->\n<history><journal>

    ``F`` says a large journal is being committed as ``journal.json``: only
    then do readers and writers look for that file.

        The history has one line per generation and collection:
        ``<gen>\t<collection>\t<file name>\t...`` (``*`` for "too many, reload").
        File and collection names never hold tabs or newlines. The lengths delimit
        exactly what the crc covers, so a reader that catches a rewrite half-way
        (or a stale tail before the file is truncated) gets a crc mismatch, never a
        wrong head.
    """

    gen: int = 0
    base: int = 0
    history: bytes = b""
    journal: Journal | None = None
    journal_file: bool = False
    # crc32 of ``history`` once known: heads derived from this one carry it on (most keep or extend
    # the same history), so a commit does not checksum the whole history again.
    _history_crc: int | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    @classmethod
    def decode(cls, raw: bytes | None) -> Head | None:
        """Parse a head file; an empty or missing one is generation 0; None if torn."""
        if not raw:
            return cls()
        first, _, rest = raw.partition(b"\n")
        try:
            gen, base, hlen, jlen, crc, flag = first.split()
            size = int(hlen) + int(jlen)
            body = rest[:size]
            if len(body) != size or flag not in (b"F", b"-"):
                return None
            history = body[: int(hlen)]
            history_crc = zlib.crc32(history)
            if zlib.crc32(body[int(hlen) :], history_crc) != int(crc, 16):  # = crc32(body)
                return None
            head = cls(int(gen), int(base), history, None, flag == b"F", history_crc=history_crc)
        except ValueError:
            return None
        if int(jlen):
            head.journal = Journal.decode(body[int(hlen) :])
            if head.journal is None:
                return None
        return head

    @staticmethod
    def length(raw: bytes) -> int | None:
        """How many bytes the head starting ``raw`` occupies, from its first line; None if unreadable."""
        first, nl, _rest = raw.partition(b"\n")
        try:
            fields = first.split()
            return len(first) + len(nl) + int(fields[2]) + int(fields[3]) if nl and len(fields) == 6 else None
        except ValueError:
            return None

    @classmethod
    def torn(cls, raw: bytes) -> Head:
        """The stand-in for a head that stays torn: a negative generation derived from its bytes.

        No writer uses a negative generation (the next one replaces the head),
        and ``changed`` knows nothing since any other generation, so a cache
        reloads once, then stays current while the same torn bytes stay.
        """
        gen = -2 - int.from_bytes(hashlib.blake2b(raw, digest_size=7).digest(), "big")
        return cls(gen, gen)

    def encode(self, size: int = 0) -> bytes:
        """The head file's bytes, followed by zero bytes up to ``size`` if they are fewer."""
        journal = self.journal.encode() if self.journal is not None else b""
        history_crc = self._history_crc
        if history_crc is None:
            history_crc = self._history_crc = zlib.crc32(self.history)
        crc = zlib.crc32(journal, history_crc) if journal else history_crc  # = crc32(history + journal)
        flag = "F" if self.journal_file else "-"
        first = f"{self.gen} {self.base} {len(self.history)} {len(journal)} {crc:08x} {flag}\n".encode("ascii")
        pad = size - len(first) - len(self.history) - len(journal)
        return b"".join((first, self.history, journal, bytes(pad) if pad > 0 else b""))

    def changed(self, collection: str, since: int) -> set[str] | None:
        """Files of ``collection`` changed after generation ``since``; None if unknown (reload all)."""
        if since == self.gen:
            return set()
        if not (self.base <= since < self.gen):
            return None
        out: set[str] = set()
        want = collection.encode("ascii")
        try:
            # Lines are in generation order (``bump`` adds at the end): read back from the newest
            # and stop at the first one not after ``since``.
            for line in reversed(self.history.splitlines()):
                gen, coll, *names = line.split(b"\t")
                if int(gen) <= since:
                    break
                if coll == want:
                    if names == [b"*"]:
                        return None
                    out.update(n.decode("ascii") for n in names)
        except ValueError:
            return None
        return out

    def bump(
        self, gen: int, changes: dict[str, list[str]], journal: Journal | None, *, journal_file: bool = False
    ) -> Head:
        """The head for generation ``gen`` after the given changes, carrying ``journal`` if given
        (or announcing a ``journal.json`` with ``journal_file``).

        At least the last ``_KEEP`` generations are remembered (at most
        ``_KEEP + _FORGET``: older ones are forgotten ``_FORGET`` at a time);
        a cache older than that reloads its collection.
        """
        history = self.history
        base = self.base
        start = 0
        if gen - 1 - _KEEP >= base + _FORGET:
            base = gen - 1 - _KEEP
            # Lines are in generation order, so only a few at the front fall out:
            # walk those rather than splitting all _KEEP of them. (Every line is after
            # the base it was written with, so while the base stays, none falls out.)
            while start < len(history) and int(history[start : history.index(b"\t", start)]) <= base:
                start = history.index(b"\n", start) + 1
        if len(changes) == 1:  # (a commit to one collection: no generator to run)
            [(coll, names)] = changes.items()
            line = f"{gen}\t{coll}\t{chr(9).join(names) if len(names) <= _MAX_NAMES else '*'}\n"
            new = line.encode("ascii")
        else:
            new = b"".join(
                f"{gen}\t{coll}\t{chr(9).join(names) if len(names) <= _MAX_NAMES else '*'}\n".encode("ascii")
                for coll, names in changes.items()
            )
        crc = self._history_crc
        if start or crc is None:
            return Head(gen, base, history[start:] + new, journal, journal_file)
        # The same history, extended: its checksum goes on from the old one.
        return Head(gen, base, history + new, journal, journal_file, history_crc=zlib.crc32(new, crc))

    def settled(self) -> Head:
        """The same head with its journal applied and dropped."""
        return Head(self.gen, self.base, self.history, history_crc=self._history_crc)


def committed_root_file(internal: Path, name: str) -> tuple[bool, str | None]:
    """``Journal.root_file`` of the committed journal in the ``.statestore`` folder ``internal``, if any.

    For readers that have no store object (``open_store`` without a schema):
    the change head's own journal, or ``journal.json`` when the head announces one.
    """
    try:
        head = Head.decode((internal / CHANGES).read_bytes())
    except OSError:
        return False, None
    if head is None:
        return False, None
    journal = head.journal
    if journal is None and head.journal_file:
        try:
            journal = Journal.decode((internal / JOURNAL).read_bytes())
        except OSError:
            journal = None
    # As FileStore._journal: only the journal file of the head's own generation is the announced one.
    if journal is None or (head.journal is None and journal.gen != head.gen):
        return False, None
    return journal.root_file(name)
