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
import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

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
from statestore.legacy.documents import (
    BOM,
    DECODER,
    HOOKED_SCAN,
    Doc,
    Dups,
    Parts,
    all_dups,
    dup_objects,
    ends_inside,
    inexact_at,
    inexact_numbers,
    inexact_reason,
    json_pointer,
    json_text,
    kind_of,
    locate,
    slice_of,
)
from statestore.schema import Collection, KeyValue, Log

__all__ = ["FileInfo", "Item", "Reader"]


@attrs.frozen
class FileInfo:
    """A source file as it was read: for the provenance rows."""

    size: int
    mtime: float
    sha256: str


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
    doc: Doc | None = None
    parts: Parts | None = None


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
            before, numbers = dup_objects[0], inexact_numbers[0]
            # A leading byte order mark is not part of the document (RFC 8259 8.1).
            doc = DECODER.decode(text[1:] if text.startswith(BOM) else text)
            self.doc_dups = dup_objects[0] != before
            self.doc_inexact = inexact_numbers[0] != numbers
            return doc, None
        except RecursionError:
            return None, self.reject(index, into, rel, "nested deeper than statestore can read", raw=text)
        except json.JSONDecodeError as exc:
            truncated = ends_inside(text, exc)
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
        whole = Doc(text)
        if self.doc_dups:
            dup = all_dups(doc)[0]
            yield self._dup_reject(index, into, rel, whole, (), dup, text)
            return
        found = inexact_at(doc) if self.doc_inexact else None
        if found is not None:
            yield self.reject(index, into, rel, inexact_reason(found[1]), pointer=json_pointer(*found[0]), raw=text)
            return
        value = doc
        if record is not None and isinstance(doc, dict):
            try:
                value = record(doc, path)
            except Exception as exc:
                yield self.reject(index, into, rel, f"record(): {type(exc).__name__}: {exc}", pointer="", raw=text)
                return
        yield Item(index, into, rel, value, pointer="", raw=text, doc=whole, parts=())

    def _dup_reject(self, index: int, into: str, rel: str, doc: Doc, base: Parts, dup: Parts, raw: str) -> Item:
        """The reject of a record (at ``base``) with a member repeated at ``dup``: located at the second copy."""
        spans = doc.spans(dup)
        line = column = None
        if len(spans) > 1:
            line, column = doc.line_column(spans[1][0])
        reason = f"member {dup[-1]!r} appears twice (at {json_pointer(*dup)}): which copy is meant is not ours to guess"
        return self.reject(index, into, rel, reason, line=line, column=column, pointer=json_pointer(*base), raw=raw)

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
        whole = Doc(text)
        try:
            container = records(doc)
        except Exception as exc:  # the app's function on a document it did not expect
            yield self.reject(index, into, rel, f"records(): {type(exc).__name__}: {exc}", raw=text)
            return
        base = locate(container, doc)
        # Every member repeated anywhere in the document, found before any callback reshapes it:
        # inside a record, that record is a reject; a repeated record key, each copy is one;
        # anywhere else (or in a container records() rebuilt), the whole document is one.
        bad_entries: dict[str, Parts] = {}
        for dup in all_dups(doc) if self.doc_dups else ():
            if base is not None and dup[: len(base)] == base and len(dup) > len(base):
                if len(dup) > len(base) + 1:
                    bad_entries.setdefault(dup[len(base)], dup)
                continue
            yield self._dup_reject(index, into, rel, whole, (), dup, text)
            return
        if isinstance(container, dict):
            dups = container.duplicates if isinstance(container, Dups) else {}
            entries: Iterable[tuple[Any, Any]] = container.items()
            single_key = decl.key_fields[0] if isinstance(decl, Collection) and not decl.composite else None
            # A JSON object's keys are text: an int key is written as its digits ({"7": ...}), read back here.
            int_key = single_key is not None and decl.field_types[single_key] is int
        elif isinstance(container, list):
            dups, entries, single_key, int_key = {}, enumerate(container), None, False
        else:
            reason = f"expected a list or an object of records, got {kind_of(container)}"
            yield self.reject(index, into, rel, reason, pointer=json_pointer(*base) if base is not None else None)
            return
        for where, value in entries:
            parts = (*base, str(where)) if base is not None else None
            if dups and where in dups:
                pointer = json_pointer(*parts) if parts is not None else None
                reason = f"duplicate key {where!r} in the document: none of its copies is imported"
                spans = whole.spans(parts) if parts is not None else []
                for n, copy_ in enumerate(dups[where]):
                    line = column = None
                    raw = json_text(copy_)
                    if len(spans) == len(dups[where]):
                        line, column = whole.line_column(spans[n][0])
                        raw = text[spans[n][0] : spans[n][1]]
                    yield self.reject(index, into, rel, reason, line=line, column=column, pointer=pointer, raw=raw)
                continue
            original = value
            found = inexact_at(value) if self.doc_inexact else None
            if found is not None:
                raw = (slice_of(whole, parts) if parts is not None else None) or json_text(original)
                pointer = json_pointer(*parts, *found[0]) if parts is not None else None
                yield self.reject(index, into, rel, inexact_reason(found[1]), pointer=pointer, raw=raw)
                continue
            if bad_entries and str(where) in bad_entries and parts is not None:
                raw = slice_of(whole, parts) or json_text(original)
                yield self._dup_reject(index, into, rel, whole, parts, bad_entries[str(where)], raw)
                continue
            if isinstance(value, dict) and single_key is not None:
                if single_key not in value:
                    key: Any = int(where) if int_key and _INT_TEXT.fullmatch(where) else where
                    value = {single_key: key, **value}
                elif not _same_key(value[single_key], where):
                    # Filed under one key, naming another: which one is meant is not ours to guess.
                    reason = (
                        f"the map files this record under {where!r} but its {single_key} is "
                        f"{json_text(value[single_key])}: which key is meant is not ours to guess"
                    )
                    raw = (slice_of(whole, parts) if parts is not None else None) or json_text(original)
                    pointer = json_pointer(*parts, single_key) if parts is not None else None
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=raw)
                    continue
            if record is not None and isinstance(value, dict):
                try:
                    value = record(value, where)
                except Exception as exc:
                    reason = f"record(): {type(exc).__name__}: {exc}"
                    raw = (slice_of(whole, parts) if parts is not None else None) or json_text(original)
                    pointer = json_pointer(*parts) if parts is not None else None
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=raw)
                    continue
            # The pointer is made from ``parts`` if the record is rejected (most are not).
            raw_text = None if parts is not None else json_text(original)
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
        if number == 1 and text.startswith(BOM):
            text = text[1:]  # a byte order mark: not part of the first line's document (RFC 8259 8.1)
        before, numbers = dup_objects[0], inexact_numbers[0]
        try:
            # The decoder's scanner directly (decode() costs more than it on a short line).
            raw, end = HOOKED_SCAN(text, 0)
            if end != len(text) and text[end:].strip():
                raw = DECODER.decode(text)
        except RecursionError:
            return self.reject(index, into, rel, "nested deeper than statestore can read", line=number, raw=text)
        except (StopIteration, ValueError):
            try:
                raw = DECODER.decode(text)  # the error, as decode() words it (or leading white space)
            except RecursionError:
                return self.reject(index, into, rel, "nested deeper than statestore can read", line=number, raw=text)
            except json.JSONDecodeError as exc:
                what = "truncated last line" if not complete and ends_inside(text, exc) else "invalid JSON"
                return self.reject(index, into, rel, f"{what}: {exc.msg}", line=number, column=exc.colno, raw=text)
        found = inexact_at(raw) if inexact_numbers[0] != numbers else None
        if found is not None:
            reason = inexact_reason(found[1])
            return self.reject(index, into, rel, reason, line=number, pointer=json_pointer(*found[0]), raw=text)
        if dup_objects[0] != before:
            dup = all_dups(raw)[0]
            item = self._dup_reject(index, into, rel, Doc(text), (), dup, text)
            assert item.reject is not None
            item.reject = attrs.evolve(item.reject, line=number)
            return item
        if not isinstance(raw, dict):
            reason = f"expected an object, got {kind_of(raw)}"
            return self.reject(index, into, rel, reason, line=number, pointer="", raw=text)
        is_log = isinstance(src.into, Log)
        try:
            stream = src.stream(raw) if src.stream is not None and is_log else ""
            at = self._timestamp(index, src.at(raw)) if src.at is not None and is_log else self.now
            record = src.record(raw) if src.record is not None else raw
        except KeyError as exc:
            field = exc.args[0]
            reason = f"missing field {field!r}"
            return self.reject(index, into, rel, reason, line=number, pointer=json_pointer(field), raw=text)
        except Exception as exc:
            return self.reject(index, into, rel, f"{type(exc).__name__}: {exc}", line=number, raw=text)
        if not isinstance(stream, str):
            return self.reject(index, into, rel, f"stream must be text, got {kind_of(stream)}", line=number, raw=text)
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
                ptr = json_pointer(len(got))
                if isinstance(value, LegacyEntry):
                    try:
                        at = self._timestamp(index, value.at) if value.at is not None else self.now
                    except (TypeError, ValueError) as exc:
                        got.append(self.reject(index, into, rel, str(exc), pointer=ptr, raw=json_text(value.record)))
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
                    ptr = item.pointer if item.pointer is not None else json_pointer(*(item.parts or ()))
                    item = self.reject(index, into, rel, why, pointer=ptr, raw=json_text(item.data))
                yield item
            yield self.reject(index, into, rel, reason, pointer=json_pointer(n))
            return
        yield from got


#: An int as a JSON writer spells it: the only map keys read as an int key (not "007", "+7" or "7.0").
_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


def _same_key(value: Any, where: str) -> bool:
    """A record's own key field ``value`` agrees with the map key ``where`` it is filed under (text either way)."""
    if type(value) is str:
        return value == where
    return type(value) is int and str(value) == where


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
