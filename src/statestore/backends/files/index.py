"""Index files: what a fresh process needs to answer an indexed query without reading every record.

Kept in ``.statestore/index/``, per collection ``<c>``:

* ``<c>.idx``, the base, replaced whole (temp file and rename). A JSON
  header line ``{"format", "gen", "count", "names", "fields"}`` (``gen`` the
  change-head generation it describes, ``names`` the byte length of the
  names, ``fields`` the ``[field, byte length]`` of each section that
  follows), then the record file names, one a line, sorted, then for each
  declared index and unique field the lines ``<value>\\t<file name>``, sorted
  by bytes. ``<value>`` is the field's scalar value as JSON, numbers and
  booleans normalised the way the in-memory index compares them (``1``,
  ``1.0`` and ``true`` are one value); a field holding a list or object has no
  line.
* ``<c>.delta``, appended to by writers under the write lock after a commit
  point (a writer committing alone, once per run of its commits): one JSON line
  ``{"since": S, "gen": G, "fields": [field], "set": {file name: [value or
  null per field]}, "del": [file name]}`` holding every change to the collection in the
  generations after ``S`` up to ``G``.

Records stay the source of truth. A reader trusts the base, then the delta
lines that chain on from it (each ``since`` equal to the ``gen`` before it;
anything else ends the chain), and re-reads the record files the change head
says changed after the chain's last generation. When the head no longer
remembers that far back (or the files are missing, torn or of another
format), the index is not used and the collection is loaded from its records
as before; the next write rebuilds it. So a process killed between committing
records and writing the index never makes a reader miss a change, and
deleting the whole folder is always safe. Candidates the index names are read
from their record files and checked again before they are returned: the index
only narrows the search. Files added by hand (outside statestore) are not in
the index until it is rebuilt: delete ``.statestore/index/`` to make a
fresh process see them in indexed queries.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statestore.schema import Collection

__all__ = [
    "FORMAT",
    "INDEX",
    "Base",
    "Chain",
    "StaleIndex",
    "build_base",
    "candidates",
    "delta_line",
    "encode_value",
    "field_values",
    "lookup_terms",
    "merge",
    "read_chain",
    "same_values",
]

INDEX = "index"
# The C escaper json.dumps() uses for a str with ensure_ascii (its default).
_ascii_string = json.encoder.encode_basestring_ascii
FORMAT = 1
_SCALARS = (str, int, float, bool, type(None))


def encode_value(value: Any) -> bytes | None:
    """The index's form of a scalar (None for a list or object, which is never indexed).

    Values equal as the in-memory index compares them (``1 == 1.0 == True``)
    get the same bytes; JSON escapes tabs and newlines, so the bytes hold
    neither.
    """
    tp = type(value)
    if tp is str:  # the usual case, exactly as json.dumps writes it (ensure_ascii)
        return _ascii_string(value).encode("ascii")
    if tp is int:
        return int.__repr__(value).encode("ascii")
    if not isinstance(value, _SCALARS):
        return None
    if isinstance(value, bool) or (isinstance(value, float) and math.isfinite(value) and value.is_integer()):
        value = int(value)
    return json.dumps(value).encode("ascii")


def field_values(data: dict[str, Any], fields: Sequence[str]) -> list[str | None]:
    """Each field's encoded value as text (None: not indexed), for a delta line."""
    out: list[str | None] = []
    for field in fields:
        value = data.get(field)
        if type(value) is str:
            out.append(_ascii_string(value))  # (what encode_value gives, as text)
            continue
        enc = encode_value(value)
        out.append(None if enc is None else enc.decode("ascii"))
    return out


def same_values(old: dict[str, Any], new: dict[str, Any], fields: Sequence[str]) -> bool:
    """Whether records ``old`` and ``new`` have the same index entries for ``fields``.

    True only if each field's values are equal (``==``). For the JSON values
    records hold, equal values have equal :func:`encode_value` bytes (``1``,
    ``1.0`` and ``True`` are one value there too; two lists or objects are
    never indexed), so True means the index holds for ``new`` exactly what it
    holds for ``old``. False may also be said of values the index holds alike
    (two different lists, which it does not hold at all): the caller then
    writes them again, which is never wrong.
    """
    for field in fields:  # noqa: SIM110 - a loop, not all() over a generator: once per commit
        if old.get(field) != new.get(field):
            return False
    return True


def build_base(gen: int, fields: Sequence[str], recs: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    """The base file's bytes for the records ``(file name, data)`` as of generation ``gen``."""
    names: list[bytes] = []
    lines: list[list[bytes]] = [[] for _ in fields]
    for name, data in recs:
        bname = name.encode("ascii")
        names.append(bname + b"\n")
        for i, field in enumerate(fields):
            enc = encode_value(data.get(field))
            if enc is not None:
                lines[i].append(enc + b"\t" + bname + b"\n")
    names.sort()
    sections = [b"".join(names)]
    for section in lines:
        section.sort()
        sections.append(b"".join(section))
    header = {
        "format": FORMAT,
        "gen": gen,
        "count": len(names),
        "names": len(sections[0]),
        "fields": [[f, len(s)] for f, s in zip(fields, sections[1:])],  # in the order of the sections
    }
    return json.dumps(header, sort_keys=True).encode("ascii") + b"\n" + b"".join(sections)


class StaleIndex(Exception):
    """A base read header first changed before its body was needed: the index cannot answer now."""


class Base:
    """A parsed base file: its generation, record count, names and per-field lines (split when first used).

    Built from the whole file, or from its start only (``total`` the file's
    size, ``load`` reading the whole file again, None if it changed): a
    count needs only the header, and the body is read when a lookup needs
    it (StaleIndex if it changed meanwhile).
    """

    def __init__(
        self,
        raw: bytes | None,
        gen: int,
        count: int,
        spans: dict[str, tuple[int, int]],
        load: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.raw, self.gen, self.count, self._spans, self._load = raw, gen, count, spans, load
        self._lines: dict[str, list[bytes]] = {}

    @classmethod
    def parse(
        cls, raw: bytes | None, total: int | None = None, load: Callable[[], bytes | None] | None = None
    ) -> Base | None:
        """The base in ``raw``; None if missing, damaged or of another format (then it is not used).

        With ``total`` (the file's size) and ``load``, ``raw`` may be only the start of the file (its header line).
        """
        if not raw:
            return None
        end = raw.find(b"\n")  # (not partition: that would copy the whole rest of the file)
        first = raw[:end] if end >= 0 else raw
        try:
            header = json.loads(first)
            if end < 0 or header.get("format") != FORMAT:
                return None
            gen, count, size, fields = header["gen"], header["count"], header["names"], header["fields"]
            offset = len(first) + 1
            spans = {"": (offset, offset + int(size))}
            offset += int(size)
            for field, length in fields:
                spans[str(field)] = (offset, offset + int(length))
                offset += int(length)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        whole = total is None or load is None or len(raw) == total
        if offset != (len(raw) if whole else total) or type(gen) is not int or type(count) is not int:
            return None  # cut short or padded: not what a writer wrote
        return cls(raw, gen, count, spans) if whole else cls(None, gen, count, spans, load)

    def has_field(self, field: str) -> bool:
        return field in self._spans and field != ""

    def _section(self, field: str) -> list[bytes]:
        lines = self._lines.get(field)
        if lines is None:
            raw = self.raw
            if raw is None:
                raw = self._load() if self._load is not None else None
                if raw is None or len(raw) != max(end for _start, end in self._spans.values()):
                    raise StaleIndex(field)
                self.raw = raw
            start, end = self._spans[field]
            lines = self._lines[field] = raw[start:end].split(b"\n")[:-1]
        return lines

    def has(self, name: str) -> bool:
        """Whether file ``name`` held a record at the base's generation."""
        names = self._section("")
        want = name.encode("ascii")
        i = bisect.bisect_left(names, want)
        return i < len(names) and names[i] == want

    def lookup(self, field: str, enc: bytes) -> list[str]:
        """File names whose ``field`` had the value encoded as ``enc`` at the base's generation."""
        lines = self._section(field)
        prefix = enc + b"\t"
        out = []
        for i in range(bisect.bisect_left(lines, prefix), len(lines)):
            line = lines[i]
            if not line.startswith(prefix):
                break
            out.append(line[len(prefix) :].decode("ascii"))
        return out


def merge(chain: Chain, gen: int) -> bytes:
    """A new base for generation ``gen``: the chain's base with its changes folded in.

    Works on the lines as they are (no record is read, no value encoded
    again): O(N) in bytes, and the sorts find the lines mostly in order.
    """
    base, changes = chain.base, chain.changes
    gone = {n.encode("ascii") for n in changes}
    kept = [(n, v) for n, v in changes.items() if v is not None]
    names = [n + b"\n" for n in base._section("") if n not in gone]
    names.extend(n.encode("ascii") + b"\n" for n, _v in kept)
    names.sort()
    sections = [b"".join(names)]
    for i, field in enumerate(chain.fields):
        lines = [line + b"\n" for line in base._section(field) if line[line.rindex(b"\t") + 1 :] not in gone]
        lines.extend(f"{v[i]}\t{n}\n".encode("ascii") for n, v in kept if v[i] is not None)
        lines.sort()
        sections.append(b"".join(lines))
    header = {
        "format": FORMAT,
        "gen": gen,
        "count": len(names),
        "names": len(sections[0]),
        "fields": [[f, len(s)] for f, s in zip(chain.fields, sections[1:])],
    }
    return json.dumps(header, sort_keys=True).encode("ascii") + b"\n" + b"".join(sections)


#: json.dumps(doc, sort_keys=True, separators=(",", ":")), built once (dumps builds one per call).
_DELTA_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def delta_line(since: int, gen: int, fields: Sequence[str], changes: dict[str, list[str | None] | None]) -> bytes:
    """One delta line: the collection's changes after generation ``since`` up to ``gen``."""
    doc = {
        "since": since,
        "gen": gen,
        "fields": list(fields),  # what the values are of: a writer declaring other fields ends the chain
        "set": {n: v for n, v in changes.items() if v is not None},
        "del": sorted(n for n, v in changes.items() if v is None),
    }
    return _DELTA_ENCODER.encode(doc).encode("ascii") + b"\n"


class Chain:
    """The base plus the delta lines that chain on from it: the index as of generation ``tip``.

    ``changes`` maps the file names changed since the base to their encoded
    field values (None: deleted).
    """

    def __init__(self, base: Base, tip: int, changes: dict[str, list[str | None] | None], fields: list[str]) -> None:
        self.base, self.tip, self.changes, self.fields = base, tip, changes, fields

    def existed(self, name: str) -> bool:
        """Whether file ``name`` held a record at generation ``tip``."""
        if name in self.changes:
            return self.changes[name] is not None
        return self.base.has(name)

    def count(self) -> int:
        """Records at generation ``tip``."""
        count = self.base.count
        for name, values in self.changes.items():
            count += (values is not None) - self.base.has(name)
        return count

    def lookup(self, field: str, enc: bytes) -> set[str]:
        """File names whose ``field`` had the value ``enc`` at generation ``tip``."""
        out = {n for n in self.base.lookup(field, enc) if n not in self.changes}
        i = self.fields.index(field)
        want = enc.decode("ascii")
        out.update(n for n, values in self.changes.items() if values is not None and values[i] == want)
        return out


def read_chain(base: Base | None, delta: bytes | None, fields: Sequence[str]) -> Chain | None:
    """The index from a base and its delta file's bytes; None without a base that has ``fields``.

    Lines up to the base's generation are older than the base (it was rebuilt
    after them); the first line that does not chain on, or does not parse,
    ends the chain (a torn last line, a writer that could not chain on).
    """
    if base is None or not all(base.has_field(f) for f in fields):
        return None
    tip = base.gen
    changes: dict[str, list[str | None] | None] = {}
    names = list(fields)
    for line in (delta or b"").split(b"\n")[:-1]:  # the part after the last newline is torn
        try:
            doc = json.loads(line)
            since, gen, sets, dels = doc["since"], doc["gen"], doc["set"], doc["del"]
            if gen <= base.gen:
                continue
            if since != tip or gen <= since or doc["fields"] != names:
                break
            line_changes: dict[str, list[str | None] | None] = {}
            for name, values in sets.items():
                if not isinstance(values, list) or len(values) != len(names):
                    raise ValueError("values do not fit the fields")
                line_changes[str(name)] = values
            for name in dels:
                line_changes[str(name)] = None
            changes.update(line_changes)
        except (ValueError, KeyError, TypeError, AttributeError):
            break
        tip = gen
    return Chain(base, tip, changes, names)


def lookup_terms(coll: Collection[Any], where: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """(field, its value as the index holds it) for each condition of ``where`` an index can answer."""
    out: list[tuple[str, bytes]] = []
    for field, value in where.items():
        enc = encode_value(value) if field in coll.lookup_fields else None
        if enc is not None:
            out.append((field, enc))
    return out


def candidates(chain: Chain, terms: list[tuple[str, bytes]]) -> set[str]:
    """The file names the index lists for every one of ``terms`` (at least one): a superset, checked after."""
    names: set[str] | None = None
    for field, enc in terms:
        found = chain.lookup(field, enc)
        names = found if names is None else names & found
    assert names is not None
    return names
