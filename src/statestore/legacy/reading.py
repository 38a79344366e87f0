"""Reading a legacy install: parsing each source's files and checking each record (statestore.legacy).

Every record that cannot be read becomes a :class:`~statestore.legacy.Reject`
located by ``path:line:column`` or by the JSON pointer inside its document,
never an exception and never a silent skip. Each file's size, mtime and
sha256 are taken from the very bytes that were read, for the provenance rows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
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


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _find_dups(value: Any, at: str) -> str | None:
    """The pointer of a member repeated somewhere inside ``value``, or None."""
    path: list[object] = []

    def walk(v: Any) -> bool:
        if isinstance(v, _Dups):
            path.append(next(iter(v.duplicates)))
            return True
        for k, child in _children(v):
            if isinstance(child, (dict, list)):
                path.append(k)
                if walk(child):
                    return True
                path.pop()
        return False

    return at + _pointer(*path) if walk(value) else None


def _children(value: Any) -> Iterable[tuple[object, Any]]:
    """(member or index, value) of a JSON object or array; nothing for a scalar."""
    if isinstance(value, dict):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return ()


def _pointer_join(base: str, part: object) -> str:
    return base + _pointer(part)


def _locate(container: Any, doc: Any) -> str:
    """The pointer of ``container`` inside ``doc`` (found by identity), '' for the document itself."""
    if container is doc:
        return ""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, at = stack.pop()
        for k, v in _children(value):
            if v is container:
                return _pointer_join(at, k)
            if isinstance(v, (dict, list)):
                stack.append((v, _pointer_join(at, k)))
    return ""


@attrs.define
class Item:
    """One record read from a source, or a reject.

    ``source`` is the source's index in the layout and ``rel`` the file (or,
    for a Function source, the source's name): together they say whose
    counts it joins.
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
    dups: bool = False  # its document had a repeated member somewhere: look for one in it


class Reader:
    """Reads every source of a layout into Items (records or rejects), in order.

    ``files`` lists (source index, source, path) for every file found;
    ``seen`` gets each one's FileInfo as it is read (a Function source: one
    entry under its name, over its ``paths``).
    """

    def __init__(self, legacy: Legacy, progress: Progress | None, now: str) -> None:
        self.legacy = legacy
        self.root = legacy.root
        self.progress = progress
        self.now = now
        self.done = 0
        self.total = 0
        self.reported = 0
        self.doc_dups = False
        self.seen: dict[tuple[int, str], FileInfo] = {}
        self.files: list[tuple[int, Source, Path]] = []
        for index, src in enumerate(legacy.layout.sources):
            for f in src.files(self.root):
                self.files.append((index, src, f))
                with contextlib.suppress(OSError):
                    self.total += f.stat().st_size

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _unreadable(self, index: int, path: Path, rel: str) -> None:
        """A provenance entry for a file that could not be read: its size if known, no digest."""
        try:
            st = path.stat()
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

    def read_file(self, index: int, into: str, path: Path) -> tuple[str | None, Item | None]:
        """(text, None), or (None, reject) for a file that cannot be read or is not UTF-8."""
        rel = self.rel(path)
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
            before = _dup_objects[0]
            doc = _DECODER.decode(text)
            self.doc_dups = _dup_objects[0] != before
            return doc, None
        except json.JSONDecodeError as exc:
            # A document that ends mid-way, without the newline editors and json.dump(...)+"\n" leave.
            truncated = exc.pos >= len(text.rstrip()) or not text.endswith("\n")
            reason = ("truncated (the file ends mid-document): " if truncated else "invalid JSON: ") + exc.msg
            return None, self.reject(index, into, rel, reason, line=exc.lineno, column=exc.colno, raw=text)

    def items(self) -> Iterator[Item]:
        done: set[int] = set()
        for index, src, path in self.files:
            if isinstance(src, JsonFile):
                yield from self._json_file(index, src, path)
            elif isinstance(src, JsonFiles):
                yield from self._json_files(index, src, path)
            elif isinstance(src, JsonLines):
                yield from self._json_lines(index, src, path)
            elif index not in done:  # a Function reads all its paths at once
                done.add(index)
                yield from self._function(index, src)
        for index, src in enumerate(self.legacy.layout.sources):
            if isinstance(src, Function) and not src.paths:
                yield from self._function(index, src)

    # -- one source kind each

    def _document(self, index: int, into: str, path: Path) -> tuple[str, Any, Item | None]:
        """(text, parsed document, None) of a JSON file, or ("", None, the reject saying why not)."""
        text, bad = self.read_file(index, into, path)
        if text is None:
            return "", None, bad or self.reject(index, into, self.rel(path), "unreadable")
        doc, bad = self.parse(index, into, self.rel(path), text)
        return text, doc, bad

    def _json_file(self, index: int, src: JsonFile, path: Path) -> Iterator[Item]:
        into, rel = src.into.name, self.rel(path)
        text, doc, bad = self._document(index, into, path)
        if bad is not None:
            yield bad
            return
        try:
            container = src.records(doc) if src.records is not None else doc
        except Exception as exc:  # the app's function on a document it did not expect
            yield self.reject(index, into, rel, f"records(): {type(exc).__name__}: {exc}", raw=text)
            return
        base = _locate(container, doc)
        if isinstance(container, dict):
            dups = container.duplicates if isinstance(container, _Dups) else {}
            entries: Iterable[tuple[Any, Any]] = container.items()
            single_key = src.into.key_fields[0] if not src.into.composite else None
        elif isinstance(container, list):
            dups, entries, single_key = {}, enumerate(container), None
        else:
            reason = f"expected a list or an object of records, got {_kind(container)}"
            yield self.reject(index, into, rel, reason, pointer=base)
            return
        for where, value in entries:
            pointer = _pointer_join(base, where)
            if where in dups:
                reason = f"duplicate key {where!r} in the document: none of its copies is imported"
                for copy_ in dups[where]:
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=_json(copy_))
                continue
            if isinstance(value, dict) and single_key is not None and single_key not in value:
                value = {single_key: where, **value}
            if src.record is not None and isinstance(value, dict):
                try:
                    value = src.record(value, where)
                except Exception as exc:
                    reason = f"record(): {type(exc).__name__}: {exc}"
                    yield self.reject(index, into, rel, reason, pointer=pointer, raw=_json(value))
                    continue
            yield Item(index, into, rel, value, pointer=pointer, raw=None, dups=self.doc_dups)

    def _json_files(self, index: int, src: JsonFiles, path: Path) -> Iterator[Item]:
        into, rel = src.into.name, self.rel(path)
        text, doc, bad = self._document(index, into, path)
        if bad is not None:
            yield bad
            return
        value = doc
        if src.record is not None and isinstance(doc, dict):
            try:
                value = src.record(doc, path)
            except Exception as exc:
                yield self.reject(index, into, rel, f"record(): {type(exc).__name__}: {exc}", pointer="", raw=text)
                return
        yield Item(index, into, rel, value, pointer="", raw=text, dups=self.doc_dups)

    def _json_lines(self, index: int, src: JsonLines, path: Path) -> Iterator[Item]:
        into, rel = src.into.name, self.rel(path)
        try:
            handle = path.open("rb")
        except OSError as exc:
            self._unreadable(index, path, rel)
            yield self.reject(index, into, rel, f"cannot read: {exc.strerror or exc}")
            return
        digest, size = hashlib.sha256(), 0
        with handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            for number, line in enumerate(handle, 1):
                digest.update(line)
                size += len(line)
                self._advance(len(line))
                item = self._line(index, src, rel, number, line)
                if item is not None:
                    yield item
        self.seen[index, rel] = FileInfo(size, mtime, digest.hexdigest())

    def _line(self, index: int, src: JsonLines, rel: str, number: int, line: bytes) -> Item | None:
        into = src.into.name
        complete = line.endswith(b"\n")
        body = line.rstrip(b"\r\n")
        if not body.strip():
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            b64 = base64.b64encode(body).decode("ascii")
            return self.reject(index, into, rel, "not valid UTF-8", line=number, column=exc.start + 1, raw_base64=b64)
        try:
            before = _dup_objects[0]
            raw = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            what = "truncated last line" if not complete else "invalid JSON"
            return self.reject(index, into, rel, f"{what}: {exc.msg}", line=number, column=exc.colno, raw=text)
        if not isinstance(raw, dict):
            reason = f"expected an object, got {_kind(raw)}"
            return self.reject(index, into, rel, reason, line=number, pointer="", raw=text)
        try:
            stream = src.stream(raw) if src.stream is not None else ""
            at = _timestamp(src.at(raw)) if src.at is not None else self.now
            record = src.record(raw) if src.record is not None else raw
        except KeyError as exc:
            field = exc.args[0]
            reason = f"missing field {field!r}"
            return self.reject(index, into, rel, reason, line=number, pointer=_pointer(field), raw=text)
        except Exception as exc:
            return self.reject(index, into, rel, f"{type(exc).__name__}: {exc}", line=number, raw=text)
        if not isinstance(stream, str):
            return self.reject(index, into, rel, f"stream must be text, got {_kind(stream)}", line=number, raw=text)
        dups = _dup_objects[0] != before
        return Item(index, into, rel, record, line=number, pointer="", raw=text, stream=stream, at=at, dups=dups)

    def _function(self, index: int, src: Function) -> Iterator[Item]:
        into, rel = src.into.name, src.name
        # Its provenance: its files' sizes added up, the newest mtime, a digest of their digests.
        size, mtime, digest = 0, 0.0, hashlib.sha256()
        for path in src.files(self.root):
            with contextlib.suppress(OSError):
                raw = path.read_bytes()
                size += len(raw)
                mtime = max(mtime, path.stat().st_mtime)
                digest.update(f"{self.rel(path)}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
                self._advance(len(raw))
        self.seen[index, rel] = FileInfo(size, mtime, digest.hexdigest())
        try:
            for n, value in enumerate(src.read(self.root)):
                if isinstance(value, LegacyEntry):
                    try:
                        at = _timestamp(value.at) if value.at is not None else self.now
                    except (TypeError, ValueError) as exc:
                        yield self.reject(index, into, rel, str(exc), pointer=_pointer(n), raw=_json(value.record))
                        continue
                    ptr = _pointer(n)
                    yield Item(index, into, rel, value.record, pointer=ptr, stream=value.stream, at=at, dups=True)
                else:
                    yield Item(index, into, rel, value, pointer=_pointer(n), dups=True)
        except Exception as exc:
            yield self.reject(index, into, rel, f"read(): {type(exc).__name__}: {exc}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _timestamp(value: str | datetime) -> str:
    """An ISO 8601 UTC timestamp from text or a datetime; a value without a zone is taken as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp must be ISO 8601 text or a datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None or not offset:
        return value.replace(tzinfo=timezone.utc).isoformat(timespec="microseconds")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- validating


class Checker:
    """Checks records against their declarations (``typed``: the attrs types; otherwise only the keys)."""

    def __init__(self, codec: Codec, typed: dict[str, bool]) -> None:
        self.codec = codec
        self.typed = typed

    def check(self, item: Item, decl: Collection[Any] | Log[Any]) -> tuple[Any, str] | Reject:
        """(stored dict, its text), or the Reject saying why not."""
        data = item.data

        def bad(reason: str, pointer: str | None = None) -> Reject:
            at = item.pointer if pointer is None else (item.pointer or "") + pointer
            raw = item.raw if item.raw is not None else _json(data)
            return Reject(item.rel, item.line, None, at, reason, raw, into=decl.name)

        if not isinstance(data, dict):
            return bad(f"expected an object, got {_kind(data)}")
        if item.dups:
            dup = _find_dups(data, "")
            if dup is not None:
                return bad("a member appears twice", dup)
        if isinstance(decl, Collection):
            for f in decl.key_fields:
                if f not in data:
                    return bad(f"missing key field {f!r}", _pointer(f))
        if not self.typed[decl.name]:
            try:
                return data, dumps(data)
            except (TypeError, ValueError) as exc:
                return bad(f"not JSON: {exc}")
        fast = _convert(self.codec, decl.type, data)
        if fast is not None:
            return fast
        try:
            record = self.codec.decode(decl.name, decl.type, data)
            encoded, text = self.codec.encode(decl.name, decl.type, record)
        except ValidationError as exc:
            return bad(_reason(exc.reason), _path_to_pointer(exc.path))
        return encoded, text


def _convert(codec: Codec, tp: type[Any], data: dict[str, Any]) -> tuple[Any, str] | None:
    """(stored dict, text) through the converter itself (once per legacy record, so no wrappers); None if bad.

    A record this refuses goes through Codec.decode, whose error names the field and the reason.
    """
    converter = codec.converter
    try:
        encoded = converter.unstructure(converter.structure(data, tp), tp)
        return encoded, dumps(encoded)
    except Exception:
        return None


def _reason(reason: str) -> str:
    return reason.split(": ", 1)[1] if reason.startswith("stored data does not fit") else reason


def _path_to_pointer(path: str) -> str:
    """``$.tags[2]`` -> ``/tags/2``."""
    if not path or path == "$":
        return ""
    out, rest = [], path.removeprefix("$")
    for part in rest.replace("[", ".").replace("]", "").split("."):
        if part:
            out.append(part)
    return _pointer(*out)
