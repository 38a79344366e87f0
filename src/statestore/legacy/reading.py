"""Reading a legacy install: parsing each source's files and checking each record (statestore.legacy).

Every record that cannot be read becomes a :class:`~statestore.legacy.Reject`
located by ``path:line:column`` (and the JSON pointer inside its document),
never an exception and never a silent skip; its ``raw`` is the record's own
text exactly as the file has it (the slice of the document for a record
inside one, the line for a JSON Lines record). Each file's size, mtime and
sha256 are taken from the very bytes that were read, for the provenance rows.
No file is read outside the install's root(s): a link that leads out is a
reject.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from statestore.codec import Codec, dumps
from statestore.errors import ValidationError
from statestore.legacy.declarations import (
    Function,
    JsonFile,
    JsonFiles,
    JsonLines,
    Legacy,
    LegacyEntry,
    Progress,
    Reject,
    Source,
)
from statestore.schema import Collection, KeyValue, Log
from statestore.strict import TRUNCATED_TIMES

__all__ = ["Checker", "FileInfo", "Item", "Reader"]


@attrs.frozen
class FileInfo:
    """A source file as it was read: for the provenance rows."""

    size: int
    mtime: float
    sha256: str


class _Dups(dict[str, Any]):
    """A JSON object that had the same member more than once (kept: every value, in order)."""

    duplicates: dict[str, list[Any]]


#: How many objects with a repeated member the decoder has built (only ever grows): a
#: document whose parse left it unchanged has none, and is not searched for them.
_dup_objects = [0]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    dups: dict[str, list[Any]] = {}
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            dups.setdefault(k, [seen[k]]).append(v)
        seen[k] = v
    marked = _Dups(out)
    marked.duplicates = dups
    _dup_objects[0] += 1
    return marked


class _Inexact(float):
    """A JSON number a 64-bit float does not hold (more digits than it keeps, or past its range).

    Made by the decoder in place of the float it would round to, so the record
    holding it is rejected, naming the number, instead of stored rounded.
    """

    text: str


#: How many such numbers the decoder has met (only ever grows), as ``_dup_objects``.
_inexact_numbers = [0]


def _float(text: str) -> float:
    value = float(text)
    if len(text) < 16 and "e" not in text and "E" not in text:
        return value  # at most 15 digits and no exponent: a float holds it exactly (DBL_DIG is 15)
    if repr(value) == text or (math.isfinite(value) and Decimal(repr(value)) == Decimal(text)):
        return value  # (1.50 and 1.5e0 are 1.5 exactly: only their spelling differs)
    out = _Inexact(value)
    out.text = text
    _inexact_numbers[0] += 1
    return out


def _inexact_at(value: Any, parts: Parts = ()) -> tuple[Parts, _Inexact] | None:
    """Where in ``value`` the first number a float does not hold is, and that number."""
    if type(value) is _Inexact:
        return parts, value
    for k, v in _children(value):
        found = _inexact_at(v, (*parts, str(k)))
        if found is not None:
            return found
    return None


def _inexact_reason(number: _Inexact) -> str:
    held = "an infinity" if not math.isfinite(number) else repr(float(number))
    return (
        f"number {number.text} has more digits than a 64-bit float holds, or is past its range "
        f"(it would be stored as {held}): nothing is rounded in silence"
    )


#: A byte order mark JSON may start with (RFC 8259 8.1: a reader may ignore it); it is not data.
_BOM = "\ufeff"

_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_float)
#: For skipping over values while locating a record in its document's text.
_PLAIN = json.JSONDecoder()
_SCAN: Any = getattr(_PLAIN, "scan_once")  # noqa: B009 (not in the stubs)
_HOOKED_SCAN: Any = getattr(_DECODER, "scan_once")  # noqa: B009
_NEWLINE = re.compile("\n")
_WS = re.compile(r"[ \t\n\r]*")
_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009 (not in the stubs)

Parts = tuple[str, ...]
Span = tuple[int, int]


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _all_dups(value: Any) -> list[Parts]:
    """The pointer parts of every member repeated somewhere inside ``value`` (document order)."""
    out: list[Parts] = []
    stack: list[tuple[Any, Parts]] = [(value, ())]
    while stack:
        v, at = stack.pop()
        if isinstance(v, _Dups):
            out.extend((*at, k) for k in v.duplicates)
        for k, child in _children(v):
            if isinstance(child, (dict, list)):
                stack.append((child, (*at, str(k))))
    return out


def _children(value: Any) -> Iterable[tuple[object, Any]]:
    """(member or index, value) of a JSON object or array; nothing for a scalar."""
    if isinstance(value, dict):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return ()


def _locate(container: Any, doc: Any) -> Parts | None:
    """The pointer parts of ``container`` inside ``doc`` (found by identity); None if it is not part of it."""
    if container is doc:
        return ()
    stack: list[tuple[Any, Parts]] = [(doc, ())]
    while stack:
        value, at = stack.pop()
        for k, v in _children(value):
            if v is container:
                return (*at, str(k))
            if isinstance(v, (dict, list)):
                stack.append((v, (*at, str(k))))
    return None


class _Doc:
    """A JSON text, to find where a value is in it: the text's spans of the value at a pointer.

    Only used for records that are rejected, so a document is walked (once per
    container, then cached) only when one of its records is.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._members: dict[Span, dict[str, list[Span]] | None] = {}
        self._root: Span | None = None
        self._newlines: list[int] | None = None

    def spans(self, parts: Parts) -> list[Span]:
        """Every span of the value at ``parts`` (several for a member the document repeats)."""
        try:
            if self._root is None:  # once: scanning the whole document again per reject is quadratic
                start = self._skip(0)
                self._root = (start, self._end(start))
            here = [self._root]
            for part in parts:
                nxt: list[Span] = []
                for span in here:
                    members = self._members_of(span)
                    if members is not None:
                        nxt.extend(members.get(part, ()))
                here = nxt
                if not here:
                    break
        except (ValueError, IndexError, StopIteration):
            return []
        return here

    def _end(self, i: int) -> int:
        end: int = _SCAN(self.text, i)[1]
        return end

    def _members_of(self, span: Span) -> dict[str, list[Span]] | None:
        if span in self._members:
            return self._members[span]
        text, i = self.text, span[0]
        out: dict[str, list[Span]] | None = None
        if text[i] == "{":
            out = {}
            i = self._skip(i + 1)
            while text[i] != "}":
                key, i = _scanstring(text, i + 1)
                i = self._skip(self._skip(i) + 1)  # past ':'
                end = self._end(i)
                out.setdefault(key, []).append((i, end))
                i = self._skip(end)
                if text[i] == ",":
                    i = self._skip(i + 1)
        elif text[i] == "[":
            out = {}
            i = self._skip(i + 1)
            n = 0
            while text[i] != "]":
                end = self._end(i)
                out[str(n)] = [(i, end)]
                n += 1
                i = self._skip(end)
                if text[i] == ",":
                    i = self._skip(i + 1)
        self._members[span] = out
        return out

    def _skip(self, i: int) -> int:
        m = _WS.match(self.text, i)
        assert m is not None
        return m.end()

    def line_column(self, pos: int) -> tuple[int, int]:
        """1-based line and column (in characters) of ``pos``."""
        if self._newlines is None:  # once per document, not a count from the start per reject
            self._newlines = [m.start() for m in _NEWLINE.finditer(self.text)]
        line = bisect.bisect_left(self._newlines, pos)
        return line + 1, pos - (self._newlines[line - 1] if line else -1)


@attrs.define
class Item:
    """One record read from a source, or a reject.

    ``source`` is the source's index in the layout and ``rel`` the file (or,
    for a Function source, the source's name): together they say whose
    counts it joins. ``doc`` and ``parts`` say where the record is in its
    file's text (None when it cannot be told: a container records() built);
    ``line`` is its line for a JSON Lines record.
    """

    source: int
    into: str
    rel: str
    data: Any = None
    key: KeyValue | None = None
    line: int | None = None
    pointer: str | None = None
    raw: str | None = None
    stream: str = ""
    at: str = ""
    reject: Reject | None = None
    doc: _Doc | None = None
    parts: Parts | None = None


def _truncated(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether the input ended inside a value (not: any error in a file without a trailing newline)."""
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()):
        return True
    rest = text[exc.pos :].rstrip()  # cut inside a literal: `{"done": tr`
    return any(len(rest) < len(word) and word.startswith(rest) for word in ("true", "false", "null"))


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, is ``root`` or under it (``root`` resolved)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return real == root or root in real.parents


class Reader:
    """Reads every source of a layout into Items (records or rejects), in order.

    ``files`` lists (source index, source, path) for every file found;
    ``seen`` gets each one's FileInfo as it is read (a Function source: one
    entry under its name, over its ``paths``). A file that leads out of its
    root through a link is never read: it is a reject.
    """

    def __init__(self, legacy: Legacy, progress: Progress | None, now: str) -> None:
        self.legacy = legacy
        self.progress = progress
        self.now = now
        self.done = 0
        self.total = 0
        self.reported = 0
        self.doc_dups = False
        self.doc_inexact = False
        self.seen: dict[tuple[int, str], FileInfo] = {}
        #: source index -> timestamps whose digits past microseconds were cut (Go's nanoseconds)
        self.cut: dict[int, int] = {}
        #: source index -> the first such timestamp, as the file has it
        self.cut_example: dict[int, str] = {}
        self.files: list[tuple[int, Source, Path]] = []
        self.outside: set[Path] = set()
        self._real: dict[Path, Path] = {}
        for index, src in enumerate(legacy.layout.sources):
            root = legacy.root_of(src)
            for f in src.files(root):
                self.files.append((index, src, f))
                if not _inside(f, self._resolved(root)):
                    self.outside.add(f)
                    continue
                with contextlib.suppress(OSError):
                    self.total += f.stat().st_size

    def _resolved(self, root: Path) -> Path:
        real = self._real.get(root)
        if real is None:
            real = self._real[root] = root.resolve()
        return real

    def root(self, index: int) -> Path:
        return self.legacy.root_of(self.legacy.layout.sources[index])

    def rel(self, path: Path, root: Path) -> str:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return str(path)

    def _unreadable(self, index: int, path: Path, rel: str) -> None:
        """A provenance entry for a file that could not be read: its size if known, no digest."""
        try:
            st = path.stat() if path not in self.outside else path.lstat()
            self.seen[index, rel] = FileInfo(st.st_size, st.st_mtime, "")
        except OSError:
            self.seen[index, rel] = FileInfo(-1, 0.0, "")

    def _advance(self, size: int) -> None:
        self.done += size
        # Reported every 256 KiB and at the end, not for every line of a large log.
        if self.progress is not None and (self.done - self.reported >= 1 << 18 or self.done >= self.total):
            self.reported = self.done
            self.progress(self.done, self.total)

    @staticmethod
    def reject(source: int, into: str, rel: str, reason: str, **kw: Any) -> Item:
        line, column, pointer = kw.pop("line", None), kw.pop("column", None), kw.pop("pointer", None)
        return Item(source, into, rel, reject=Reject(rel, line, column, pointer, reason, into=into, **kw))

    def _leaves(self, index: int, into: str, path: Path, rel: str) -> Item:
        self._unreadable(index, path, rel)
        return self.reject(index, into, rel, "symlink leaves the legacy root: not read")

    def read_file(self, index: int, into: str, path: Path, rel: str) -> tuple[str | None, Item | None]:
        """(text, None), or (None, reject) for a file that cannot be read or is not UTF-8."""
        try:
            with path.open("rb") as f:
                mtime = os.fstat(f.fileno()).st_mtime
                raw = f.read()
        except OSError as exc:
            self._unreadable(index, path, rel)
            return None, self.reject(index, into, rel, f"cannot read: {exc.strerror or exc}")
        self.seen[index, rel] = FileInfo(len(raw), mtime, hashlib.sha256(raw).hexdigest())
        self._advance(len(raw))
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            reason = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})"
            b64 = base64.b64encode(raw).decode("ascii")
            return None, self.reject(index, into, rel, reason, line=line, column=column, raw_base64=b64)

    def parse(self, index: int, into: str, rel: str, text: str) -> tuple[Any, Item | None]:
        try:
            before, numbers = _dup_objects[0], _inexact_numbers[0]
            # A leading byte order mark is not part of the document (RFC 8259 8.1).
            doc = _DECODER.decode(text[1:] if text.startswith(_BOM) else text)
            self.doc_dups = _dup_objects[0] != before
            self.doc_inexact = _inexact_numbers[0] != numbers
            return doc, None
        except RecursionError:
            return None, self.reject(index, into, rel, "nested deeper than statestore can read", raw=text)
        except json.JSONDecodeError as exc:
            truncated = _truncated(text, exc)
            reason = ("truncated (the file ends mid-document): " if truncated else "invalid JSON: ") + exc.msg
            return None, self.reject(index, into, rel, reason, line=exc.lineno, column=exc.colno, raw=text)

    def items(self) -> Iterator[Item]:
        done: set[int] = set()
        for index, src, path in self.files:
            rel = self.rel(path, self.root(index))
            if isinstance(src, Function):
                if index not in done:  # a Function reads all its paths at once
                    done.add(index)
                    yield from self._function(index, src)
            elif path in self.outside:
                yield self._leaves(index, src.into.name, path, rel)
            elif isinstance(src, JsonFile):
                yield from self._json_file(index, src, path, rel)
            elif isinstance(src, JsonFiles):
                yield from self._json_files(index, src, path, rel)
            else:
                yield from self._json_lines(index, src, path, rel)
        for index, src in enumerate(self.legacy.layout.sources):
            if isinstance(src, Function) and index not in done:
                yield from self._function(index, src)

    # -- one source kind each

    def _document(self, index: int, into: str, path: Path, rel: str) -> tuple[str, Any, Item | None]:
        """(text, parsed document, None) of a JSON file, or ("", None, the reject saying why not)."""
        text, bad = self.read_file(index, into, path, rel)
        if text is None:
            return "", None, bad or self.reject(index, into, rel, "unreadable")
        doc, bad = self.parse(index, into, rel, text)
        return text, doc, bad

    def _json_file(self, index: int, src: JsonFile, path: Path, rel: str) -> Iterator[Item]:
        into = src.into.name
        text, doc, bad = self._document(index, into, path, rel)
        if bad is not None:
            yield bad
            return
        records = src.records
        record = src.record
        yield from self._many(index, src.into, rel, text, doc, lambda d: records(d) if records else d, record)

    def _json_files(self, index: int, src: JsonFiles, path: Path, rel: str) -> Iterator[Item]:
        into = src.into.name
        text, doc, bad = self._document(index, into, path, rel)
        if bad is not None:
            yield bad
            return
        record, records = src.record, src.records
        if records is not None:

            def each(raw: Any, _where: Any) -> Any:
                return record(raw, path) if record is not None else raw

            yield from self._many(index, src.into, rel, text, doc, lambda d: records(d, path), each)
            return
        whole = _Doc(text)
        if self.doc_dups:
            dup = _all_dups(doc)[0]
            yield self._dup_reject(index, into, rel, whole, (), dup, text)
            return
        found = _inexact_at(doc) if self.doc_inexact else None
        if found is not None:
            yield self.reject(index, into, rel, _inexact_reason(found[1]), pointer=_pointer(*found[0]), raw=text)
            return
        value = doc
        if record is not None and isinstance(doc, dict):
            try:
                value = record(doc, path)
            except Exception as exc:
                yield self.reject(index, into, rel, f"record(): {type(exc).__name__}: {exc}", pointer="", raw=text)
                return
        yield Item(index, into, rel, value, pointer="", raw=text, doc=whole, parts=())

    def _dup_reject(self, index: int, into: str, rel: str, doc: _Doc, base: Parts, dup: Parts, raw: str) -> Item:
        """The reject of a record (at ``base``) with a member repeated at ``dup``: located at the second copy."""
        spans = doc.spans(dup)
        line = column = None
        if len(spans) > 1:
            line, column = doc.line_column(spans[1][0])
        reason = f"member {dup[-1]!r} appears twice (at {_pointer(*dup)}): which copy is meant is not ours to guess"
        return self.reject(index, into, rel, reason, line=line, column=column, pointer=_pointer(*base), raw=raw)

    def _many(
        self,
        index: int,
        decl: Collection[Any] | Log[Any],
        rel: str,
        text: str,
        doc: Any,
        records: Any,
        record: Any,
    ) -> Iterator[Item]:
        """The records of one document: ``records(doc)`` is their container, ``record(raw, where)`` reshapes each."""
        into = decl.name
        whole = _Doc(text)
        try:
            container = records(doc)
        except Exception as exc:  # the app's function on a document it did not expect
            yield self.reject(index, into, rel, f"records(): {type(exc).__name__}: {exc}", raw=text)
            return
        base = _locate(container, doc)
        # Every member repeated anywhere in the document, found before any callback reshapes it:
        # inside a record, that record is a reject; a repeated record key, each copy is one;
        # anywhere else (or in a container records() rebuilt), the whole document is one.
        bad_entries: dict[str, Parts] = {}
        for dup in _all_dups(doc) if self.doc_dups else ():
            if base is not None and dup[: len(base)] == base and len(dup) > len(base):
                if len(dup) > len(base) + 1:
                    bad_entries.setdefault(dup[len(base)], dup)
                continue
            yield self._dup_reject(index, into, rel, whole, (), dup, text)
            return
        if isinstance(container, dict):
            dups = container.duplicates if isinstance(container, _Dups) else {}
            entries: Iterable[tuple[Any, Any]] = container.items()
            single_key = decl.key_fields[0] if isinstance(decl, Collection) and not decl.composite else None
        elif isinstance(container, list):
            dups, entries, single_key = {}, enumerate(container), None
        else:
            reason = f"expected a list or an object of records, got {_kind(container)}"
            yield self.reject(index, into, rel, reason, pointer=_pointer(*base) if base is not None else None)
            return
        for where, value in entries:
            parts = (*base, str(where)) if base is not None else None
            if dups and where in dups:
                pointer = _pointer(*parts) if parts is not None else None
                reason = f"duplicate key {where!r} in the document: none of its copies is imported"
                spans = whole.spans(parts) if parts is not None else []
                for n, copy_ in enumerate(dups[where]):
                    line = column = None
                    raw = _json(copy_)
                    if len(spans) == len(dups[where]):
                        line, column = whole.line_column(spans[n][0])
                        raw = text[spans[n][0] : spans[n][1]]
                    yield self.reject(index, into, rel, reason, line=line, column=column, pointer=pointer, raw=raw)
                continue
            original = value
            found = _inexact_at(value) if self.doc_inexact else None
            if found is not None:
                raw = (_slice(whole, parts) if parts is not None else None) or _json(original)
                pointer = _pointer(*parts, *found[0]) if parts is not None else None
                yield self.reject(index, into, rel, _inexact_reason(found[1]), pointer=pointer, raw=raw)
                continue
            if bad_entries and str(where) in bad_entries and parts is not None:
                raw = _slice(whole, parts) or _json(original)
                yield self._dup_reject(index, into, rel, whole, parts, bad_entries[str(where)], raw)
                continue
            if isinstance(value, dict) and single_key is not None:
                if single_key not in value:
                    value = {single_key: where, **value}
                elif not _same_key(value[single_key], where):
                    # Filed under one key, naming another: which one is meant is not ours to guess.
                    reason = (
                        f"the map files this record under {where!r} but its {single_key} is "
                        f"{_json(value[single_key])}: which key is meant is not ours to guess"
                    )
                    raw = (_slice(whole, parts) if parts is not None else None) or _json(original)
                    pointer = _pointer(*parts, single_key) if parts is not None else None
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=raw)
                    continue
            if record is not None and isinstance(value, dict):
                try:
                    value = record(value, where)
                except Exception as exc:
                    reason = f"record(): {type(exc).__name__}: {exc}"
                    raw = (_slice(whole, parts) if parts is not None else None) or _json(original)
                    pointer = _pointer(*parts) if parts is not None else None
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=raw)
                    continue
            # The pointer is made from ``parts`` if the record is rejected (most are not).
            raw_text = None if parts is not None else _json(original)
            yield Item(index, into, rel, value, raw=raw_text, doc=whole, parts=parts)

    def _json_lines(self, index: int, src: JsonLines, path: Path, rel: str) -> Iterator[Item]:
        into = src.into.name
        try:
            handle = path.open("rb")
        except OSError as exc:
            self._unreadable(index, path, rel)
            yield self.reject(index, into, rel, f"cannot read: {exc.strerror or exc}")
            return
        digest, size, step = hashlib.sha256(), 0, 0
        with handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            line_item = self._line
            for number, line in enumerate(handle, 1):
                digest.update(line)
                step += len(line)
                if step >= 1 << 16:  # progress in steps, not a call per line
                    size += step
                    self._advance(step)
                    step = 0
                item = line_item(index, src, rel, number, line)
                if item is not None:
                    yield item
            size += step
            self._advance(step)
        self.seen[index, rel] = FileInfo(size, mtime, digest.hexdigest())

    def _line(self, index: int, src: JsonLines, rel: str, number: int, line: bytes) -> Item | None:
        into = src.into.name
        complete = line.endswith(b"\n")
        body = line.rstrip(b"\r\n")
        if not body or body.isspace():
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            b64 = base64.b64encode(body).decode("ascii")
            return self.reject(index, into, rel, "not valid UTF-8", line=number, column=exc.start + 1, raw_base64=b64)
        if number == 1 and text.startswith(_BOM):
            text = text[1:]  # a byte order mark: not part of the first line's document (RFC 8259 8.1)
        before, numbers = _dup_objects[0], _inexact_numbers[0]
        try:
            # The decoder's scanner directly (decode() costs more than it on a short line).
            raw, end = _HOOKED_SCAN(text, 0)
            if end != len(text) and text[end:].strip():
                raw = _DECODER.decode(text)
        except RecursionError:
            return self.reject(index, into, rel, "nested deeper than statestore can read", line=number, raw=text)
        except (StopIteration, ValueError):
            try:
                raw = _DECODER.decode(text)  # the error, as decode() words it (or leading white space)
            except RecursionError:
                return self.reject(index, into, rel, "nested deeper than statestore can read", line=number, raw=text)
            except json.JSONDecodeError as exc:
                what = "truncated last line" if not complete and _truncated(text, exc) else "invalid JSON"
                return self.reject(index, into, rel, f"{what}: {exc.msg}", line=number, column=exc.colno, raw=text)
        found = _inexact_at(raw) if _inexact_numbers[0] != numbers else None
        if found is not None:
            reason = _inexact_reason(found[1])
            return self.reject(index, into, rel, reason, line=number, pointer=_pointer(*found[0]), raw=text)
        if _dup_objects[0] != before:
            dup = _all_dups(raw)[0]
            item = self._dup_reject(index, into, rel, _Doc(text), (), dup, text)
            assert item.reject is not None
            item.reject = attrs.evolve(item.reject, line=number)
            return item
        if not isinstance(raw, dict):
            reason = f"expected an object, got {_kind(raw)}"
            return self.reject(index, into, rel, reason, line=number, pointer="", raw=text)
        is_log = isinstance(src.into, Log)
        try:
            stream = src.stream(raw) if src.stream is not None and is_log else ""
            at = self._timestamp(index, src.at(raw)) if src.at is not None and is_log else self.now
            record = src.record(raw) if src.record is not None else raw
        except KeyError as exc:
            field = exc.args[0]
            reason = f"missing field {field!r}"
            return self.reject(index, into, rel, reason, line=number, pointer=_pointer(field), raw=text)
        except Exception as exc:
            return self.reject(index, into, rel, f"{type(exc).__name__}: {exc}", line=number, raw=text)
        if not isinstance(stream, str):
            return self.reject(index, into, rel, f"stream must be text, got {_kind(stream)}", line=number, raw=text)
        return Item(index, into, rel, record, line=number, pointer="", raw=text, stream=stream, at=at)

    def _timestamp(self, index: int, value: str | datetime) -> str:
        """``_timestamp(value)``, counting in ``cut`` the timestamps that lose digits past microseconds."""
        if isinstance(value, str) and "." in value:
            m = _FRACTION.search(value)
            if m is not None and m.group(1)[6:].strip("0"):
                self.cut[index] = self.cut.get(index, 0) + 1
                self.cut_example.setdefault(index, value)
        return _timestamp(value)

    def _function(self, index: int, src: Function) -> Iterator[Item]:
        into, rel, root = src.into.name, src.name, self.root(index)
        # Its provenance: its files' sizes added up, the newest mtime, a digest of their digests.
        size, mtime, digest = 0, 0.0, hashlib.sha256()
        outside = [p for p in src.files(root) if p in self.outside]
        if outside:
            # It would read outside the install: none of it is read.
            self.seen[index, rel] = FileInfo(-1, 0.0, "")
            reason = f"symlink leaves the legacy root ({self.rel(outside[0], root)}): not read"
            yield self.reject(index, into, rel, reason)
            return
        for path in src.files(root):
            try:
                raw = path.read_bytes()
                mtime = max(mtime, path.stat().st_mtime)
            except OSError:
                continue
            size += len(raw)
            digest.update(f"{self.rel(path, root)}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
            self._advance(len(raw))
        self.seen[index, rel] = FileInfo(size, mtime, digest.hexdigest())
        # Nothing is yielded until read() is done: one that fails part-way rejects the whole source.
        got: list[Item] = []
        try:
            for value in src.read(root):
                ptr = _pointer(len(got))
                if isinstance(value, LegacyEntry):
                    try:
                        at = self._timestamp(index, value.at) if value.at is not None else self.now
                    except (TypeError, ValueError) as exc:
                        got.append(self.reject(index, into, rel, str(exc), pointer=ptr, raw=_json(value.record)))
                        continue
                    got.append(Item(index, into, rel, value.record, pointer=ptr, stream=value.stream, at=at))
                else:
                    got.append(Item(index, into, rel, value, pointer=ptr))
        except Exception as exc:
            n = len(got)
            reason = f"read(): {type(exc).__name__}: {exc} (after {n} record(s); none of this source is imported)"
            for item in got:
                if item.reject is None:
                    why = "not imported: read() failed after it"
                    ptr = item.pointer if item.pointer is not None else _pointer(*(item.parts or ()))
                    item = self.reject(index, into, rel, why, pointer=ptr, raw=_json(item.data))
                yield item
            yield self.reject(index, into, rel, reason, pointer=_pointer(n))
            return
        yield from got


def _same_key(value: Any, where: str) -> bool:
    """A record's own key field ``value`` agrees with the map key ``where`` it is filed under (text either way)."""
    if type(value) is str:
        return value == where
    return type(value) is int and str(value) == where


def _slice(doc: _Doc, parts: Parts) -> str | None:
    spans = doc.spans(parts)
    return doc.text[spans[0][0] : spans[0][1]] if len(spans) == 1 else None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


_FRACTION = re.compile(r"\.(\d+)")


def _six_digits(m: re.Match[str]) -> str:
    return "." + (m.group(1) + "00000")[:6]


def _timestamp(value: str | datetime) -> str:
    """An ISO 8601 UTC timestamp from text or a datetime; a value without a zone is taken as UTC.

    Digits past microseconds (Go writes nanoseconds) are cut: a datetime holds no more.
    """
    if isinstance(value, str):
        if value[-1:] in ("Z", "z") and "." not in value and len(value) == 20:
            # The usual "2025-01-01T10:00:00Z", without building an aware datetime to convert.
            naive = datetime.fromisoformat(value[:-1])
            if naive.tzinfo is None:
                return naive.isoformat(timespec="microseconds") + "+00:00"
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        if "." in text:
            # Six fraction digits: Go writes up to nine, and Python 3.10 takes only three or six.
            text = _FRACTION.sub(_six_digits, text, count=1)
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp must be ISO 8601 text or a datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None or not offset:
        return value.replace(tzinfo=timezone.utc).isoformat(timespec="microseconds")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- validating


class Checker:
    """Checks records against their declarations (``typed``: the attrs types; otherwise only the keys).

    ``extras[i]`` is source i's ``extra``; ``fields_known``: whether members
    can be told from the class's field names (not with an app's converter,
    whose hooks may rename them: then its codec alone decides). ``dropped``
    counts (source, member) dropped by ``extra="drop"``.
    """

    def __init__(self, codec: Codec, typed: dict[str, bool], extras: Sequence[str], fields_known: bool) -> None:
        self.codec = codec
        self.typed = typed
        self.extras = extras
        self.fields_known = fields_known
        self.dropped: dict[tuple[int, str], int] = {}
        #: source index -> timestamps in record fields cut to microseconds (digits past them were not zero)
        self.cut: dict[int, int] = {}
        #: source index -> the first such timestamp, as the file has it
        self.cut_example: dict[int, str] = {}
        self._cut_texts: list[str] = []
        self._plans: dict[str, tuple[str, tuple[str, ...], bool, frozenset[str] | None, Any]] = {}

    def reject(self, item: Item, into: str, reason: str, rel_parts: Parts = (), *, value: bool = True) -> Reject:
        """A located reject for ``item``: its exact text, and where (the field at ``rel_parts``, if found).

        With ``value``, a reason that does not show the field's text as the file has it gets it appended.
        """
        line, column, raw = item.line, None, item.raw
        base = item.pointer
        if base is None and item.parts is not None:
            base = _pointer(*item.parts)
        pointer = (base or "") + _pointer(*rel_parts) if (base is not None or rel_parts) else None
        doc, parts = item.doc, item.parts
        if doc is None and item.line is not None and item.raw is not None:
            doc, parts = _Doc(item.raw), ()  # a JSON Lines record: columns inside its line
        if doc is not None and parts is not None:
            spans = doc.spans(parts)
            if len(spans) == 1:
                start, end = spans[0]
                if item.line is None:
                    line, column = doc.line_column(start)
                    # One record per file: the file; one of many: the record's slice of it.
                    raw = doc.text if not parts else doc.text[start:end]
                else:
                    column = start + 1
                fields = doc.spans((*parts, *rel_parts)) if rel_parts else []
                if len(fields) == 1:
                    f_start, f_end = fields[0]
                    if item.line is None:
                        line, column = doc.line_column(f_start)
                    else:
                        column = f_start + 1
                    found = doc.text[f_start:f_end]
                    if value and found not in reason:
                        shown = found if len(found) <= 80 else found[:77] + "..."
                        reason = f"{reason} (the file has {shown})"
        if raw is None:
            raw = _json(item.data)
        return Reject(item.rel, line, column, pointer, reason, raw, into=into)

    def _plan(self, decl: Collection[Any] | Log[Any]) -> tuple[str, tuple[str, ...], bool, frozenset[str] | None, Any]:
        """(name, key fields, typed, declared member names or None, type): looked up once per declaration."""
        keys = decl.key_fields if isinstance(decl, Collection) else ()
        names = frozenset(decl.field_types) if self.fields_known else None
        return decl.name, keys, self.typed[decl.name], names, decl.type

    def check(self, item: Item, decl: Collection[Any] | Log[Any]) -> tuple[Any, str] | Reject:
        """(stored dict, its text), or the Reject saying why not."""
        data = item.data
        plan = self._plans.get(decl.name)
        if plan is None:
            plan = self._plans[decl.name] = self._plan(decl)
        name, key_fields, typed, names, tp = plan
        if not isinstance(data, dict):
            return self.reject(item, name, f"expected an object, got {_kind(data)}")
        for f in key_fields:
            if f not in data:
                return self.reject(item, name, f"missing key field {f!r}", (f,))
        if not typed:
            try:
                return data, dumps(data)
            except (TypeError, ValueError) as exc:
                return self.reject(item, name, f"not JSON: {exc}")
        if names is not None and not data.keys() <= names:
            extra = [k for k in data if k not in names]
            if self.extras[item.source] == "drop":
                for k in extra:
                    self.dropped[item.source, k] = self.dropped.get((item.source, k), 0) + 1
                data = {k: v for k, v in data.items() if k in names}
            else:
                listed = ", ".join(repr(k) for k in extra)
                reason = f"undeclared field(s) {listed}: {decl.type.__name__} does not declare them"
                reason += ' (extra="drop" drops them)'
                return self.reject(item, decl.name, reason, (extra[0],), value=False)
        codec = self.codec
        cut = self._cut_texts
        before = len(cut)
        token = TRUNCATED_TIMES.set(cut)  # nanoseconds in record fields are cut, and counted per source
        try:
            return codec.encode(name, tp, codec.decode(name, tp, data))
        except ValidationError as exc:
            return self.reject(item, name, _reason(exc.reason), _path_parts(exc.path))
        finally:
            TRUNCATED_TIMES.reset(token)
            if len(cut) != before:
                self.cut[item.source] = self.cut.get(item.source, 0) + len(cut) - before
                self.cut_example.setdefault(item.source, cut[before])


def _reason(reason: str) -> str:
    return reason.split(": ", 1)[1] if reason.startswith("stored data does not fit") else reason


def _path_parts(path: str) -> Parts:
    """``$.tags[2]`` -> ``("tags", "2")``."""
    if not path or path == "$":
        return ()
    rest = path.removeprefix("$")
    return tuple(part for part in rest.replace("[", ".").replace("]", "").split(".") if part)
