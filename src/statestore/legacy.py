"""The one-time legacy bootstrap import: an app's old JSON state files into a new store.

An application declares where its old state lives (:class:`LegacyLayout` of
sources: :class:`JsonFile`, :class:`JsonFiles`, :class:`JsonLines`,
:class:`Function`) and passes ``legacy=Legacy(root, LAYOUT)`` to
``open_store``. In write mode, when the store does not exist and at least one
source does, the store is imported before it opens:

* **once**: concurrent starts serialize on a lock file beside the store; the
  first imports, the rest find the store and open it. A store that exists is
  never imported again (``import_legacy(..., replace=True)`` does it on purpose).
* **atomically**: the store is built aside (a hidden sibling), checked (the
  record and entry counts match what was read), and moved into place by one
  rename. A crash leaves no store, so the next start imports again.
* **nothing lost, nothing silent**: every record that cannot be read is a
  :class:`Reject` naming ``path:line:column`` or the JSON pointer inside its
  document, and why. ``on_error="abort"`` (default) raises
  :class:`~statestore.errors.LegacyImportError` listing them all and creates
  no store; ``on_error="quarantine"`` imports the rest and keeps every reject,
  verbatim, in the store (``store.rejects()``). Legacy files are never
  modified unless ``after="rename"``.
* **recorded**: each source file's path, size, mtime, sha256 and counts are
  kept in the store (``store.imports()``).
"""

from __future__ import annotations

import base64
import contextlib
import glob as _glob
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import attrs
import filelock

from statestore.codec import Codec, dumps
from statestore.errors import CorruptStoreError, LegacyImportError, StoreBusyError, ValidationError
from statestore.schema import Collection, KeyValue, Log, Schema
from statestore.store import IMPORTS, REJECTS, Store

__all__ = [
    "Function",
    "ImportRecord",
    "ImportReport",
    "JsonFile",
    "JsonFiles",
    "JsonLines",
    "Legacy",
    "LegacyEntry",
    "LegacyLayout",
    "Reject",
    "SourceReport",
    "import_legacy",
    "legacy_present",
]

OnError = Literal["abort", "quarantine"]
After = Literal["keep", "rename"]
#: ``progress(done, total)``: bytes of legacy files read so far, out of all of them.
Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- reports


@attrs.frozen
class Reject:
    """A legacy record that could not be imported, and why.

    ``path`` is relative to the legacy root; ``line``/``column`` (1-based)
    locate it in the file when known; ``pointer`` is the JSON pointer of the
    record (or of the bad field) inside its document; ``raw`` is the
    record's text (the whole file when the file itself is unreadable;
    ``raw_base64`` instead when it is not UTF-8).
    """

    path: str
    line: int | None
    column: int | None
    pointer: str | None
    reason: str
    raw: str | None = None
    raw_base64: str | None = None
    into: str = ""

    def where(self) -> str:
        """``path:line:column`` or ``path#pointer``: what a person would open."""
        out = self.path
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        if self.pointer:
            out += f" at {self.pointer}"
        return out

    def __str__(self) -> str:
        return f"{self.where()}: {self.reason}"


@attrs.frozen
class SourceReport:
    """What one source gave: records read, imported and rejected."""

    path: str
    into: str
    read: int
    imported: int
    rejected: int


@attrs.frozen
class ImportReport:
    """The result of :func:`import_legacy` (also of a dry run).

    ``imported_store`` is True when this call built the store; False when a
    store was there already (nothing was read) or for a dry run.
    """

    location: str
    root: str
    version: int
    sources: tuple[SourceReport, ...]
    rejects: tuple[Reject, ...]
    dry_run: bool = False
    imported_store: bool = True

    @property
    def imported(self) -> int:
        return sum(s.imported for s in self.sources)

    @property
    def rejected(self) -> int:
        return len(self.rejects)


@attrs.frozen
class ImportRecord:
    """A source file an import read, as recorded in the store (``store.imports()``)."""

    path: str
    into: str
    size: int
    mtime: float
    sha256: str
    imported: int
    rejected: int
    imported_at: datetime
    root: str
    version: int


# ---------------------------------------------------------------- sources


@attrs.frozen
class LegacyEntry:
    """What a :class:`Function` source yields for a log: one entry."""

    record: dict[str, Any]
    stream: str = ""
    at: str | datetime | None = None


@attrs.frozen
class JsonFile:
    """One JSON document holding many records.

    ``records(doc)`` returns the records' container (default: the document
    itself): a list of records, or a map ``{key: record}`` whose keys are
    written into the collection's key field when a record lacks it.
    ``record(raw, index_or_key)`` may reshape each record (e.g. generate an id).
    """

    path: str
    into: Collection[Any]
    records: Callable[[Any], Any] | None = None
    record: Callable[[Any, Any], Any] | None = None

    def files(self, root: Path) -> list[Path]:
        file = root / self.path
        return [file] if file.is_file() else []


@attrs.frozen
class JsonFiles:
    """One record per file, files matched by ``glob`` under the root.

    ``record(doc, path)`` builds the record, typically adding the key taken
    from the file name. Hidden files (``.x.tmp``) and names the glob does not
    match (``*.lock``) are ignored.
    """

    glob: str
    into: Collection[Any]
    record: Callable[[Any, Path], Any] | None = None

    @property
    def path(self) -> str:
        return self.glob

    def files(self, root: Path) -> list[Path]:
        found = [Path(p) for p in _glob.glob(self.glob, root_dir=root)]
        return sorted(root / p for p in found if not p.name.startswith(".") and (root / p).is_file())


@attrs.frozen
class JsonLines:
    """An event log, one JSON object per line, into a :class:`~statestore.schema.Log`.

    ``stream(raw)`` and ``at(raw)`` give each entry's stream and timestamp
    (ISO 8601 text or a datetime; without a zone it is taken as UTC);
    ``record(raw)`` the record (default: the line's object). Order is kept.
    A last line cut off by a crash is a reject, like any other bad line.
    """

    path: str
    into: Log[Any]
    stream: Callable[[dict[str, Any]], str] | None = None
    at: Callable[[dict[str, Any]], str | datetime] | None = None
    record: Callable[[dict[str, Any]], Any] | None = None

    def files(self, root: Path) -> list[Path]:
        file = root / self.path
        return [file] if file.is_file() else []


@attrs.frozen
class Function:
    """Any other shape: ``read(root)`` yields records (dicts) for a collection, or LegacyEntry for a log.

    ``paths`` are the files it reads (relative to the root), for provenance
    and for deciding whether legacy state exists. An exception it raises
    rejects the whole source.
    """

    name: str
    into: Collection[Any] | Log[Any]
    read: Callable[[Path], Iterable[Any]]
    paths: Sequence[str] = ()

    @property
    def path(self) -> str:
        return self.name

    def files(self, root: Path) -> list[Path]:
        return [root / p for p in self.paths if (root / p).is_file()]


Source = JsonFile | JsonFiles | JsonLines | Function


def _sources(sources: Iterable[Source]) -> tuple[Source, ...]:
    return tuple(sources)


def _path(p: str | os.PathLike[str]) -> Path:
    return Path(p).expanduser()


@attrs.frozen
class LegacyLayout:
    """Where an app's old state lives and how it maps onto the schema.

    ``version`` is the schema version the legacy records conform to; after
    the import, pending migrations bring the store to the current version.
    """

    version: int
    sources: tuple[Source, ...] = attrs.field(converter=_sources)


@attrs.frozen
class Legacy:
    """A legacy install to import: its ``root`` folder, its layout and the import policy."""

    root: Path = attrs.field(converter=_path)
    layout: LegacyLayout
    on_error: OnError = "abort"
    after: After = "keep"


def legacy_present(legacy: Legacy) -> bool:
    """True if at least one source of the layout has a file under the root."""
    return any(src.files(legacy.root) for src in legacy.layout.sources)


# ---------------------------------------------------------------- reading


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
        children: Iterable[tuple[object, Any]]
        if isinstance(v, dict):
            children = v.items()
        elif isinstance(v, list):
            children = enumerate(v)
        else:
            return False
        for k, child in children:
            if isinstance(child, (dict, list)):
                path.append(k)
                if walk(child):
                    return True
                path.pop()
        return False

    return at + _pointer(*path) if walk(value) else None


def _pointer_join(base: str, part: object) -> str:
    return base + _pointer(part)


def _locate(container: Any, doc: Any) -> str:
    """The pointer of ``container`` inside ``doc`` (found by identity), '' for the document itself."""
    if container is doc:
        return ""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, at = stack.pop()
        items: Iterable[tuple[object, Any]]
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        for k, v in items:
            if v is container:
                return _pointer_join(at, k)
            if isinstance(v, (dict, list)):
                stack.append((v, _pointer_join(at, k)))
    return ""


@attrs.define
class _Item:
    """One record read from a source, or a reject."""

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


class _Reader:
    """Reads every source of a layout, validating each record against its collection or log."""

    def __init__(self, legacy: Legacy, codec: Codec, progress: Progress | None, now: str) -> None:
        self.legacy = legacy
        self.root = legacy.root
        self.codec = codec
        self.progress = progress
        self.now = now
        self.done = 0
        self.total = 0
        self.reported = 0
        self.doc_dups = False
        self.files: list[tuple[Source, Path]] = []
        for src in legacy.layout.sources:
            for f in src.files(self.root):
                self.files.append((src, f))
                with contextlib.suppress(OSError):
                    self.total += f.stat().st_size

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _advance(self, size: int) -> None:
        self.done += size
        # Reported every 256 KiB and at the end, not for every line of a large log.
        if self.progress is not None and (self.done - self.reported >= 1 << 18 or self.done >= self.total):
            self.reported = self.done
            self.progress(self.done, self.total)

    def reject(self, into: str, rel: str, reason: str, **kw: Any) -> _Item:
        line, column, pointer = kw.pop("line", None), kw.pop("column", None), kw.pop("pointer", None)
        return _Item(into, rel, reject=Reject(rel, line, column, pointer, reason, into=into, **kw))

    def read_file(self, into: str, path: Path) -> tuple[bytes | None, str | None, _Item | None]:
        """(bytes, text, None), or (bytes, None, reject) for a file that is not UTF-8."""
        rel = self.rel(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return None, None, self.reject(into, rel, f"cannot read: {exc.strerror or exc}")
        self._advance(len(raw))
        try:
            return raw, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            reason = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})"
            b64 = base64.b64encode(raw).decode("ascii")
            return raw, None, self.reject(into, rel, reason, line=line, column=column, raw_base64=b64)

    def parse(self, into: str, rel: str, text: str) -> tuple[Any, _Item | None]:
        try:
            before = _dup_objects[0]
            doc = _DECODER.decode(text)
            self.doc_dups = _dup_objects[0] != before
            return doc, None
        except json.JSONDecodeError as exc:
            # A document that ends mid-way, without the newline editors and json.dump(...)+"\n" leave.
            truncated = exc.pos >= len(text.rstrip()) or not text.endswith("\n")
            reason = ("truncated (the file ends mid-document): " if truncated else "invalid JSON: ") + exc.msg
            return None, self.reject(into, rel, reason, line=exc.lineno, column=exc.colno, raw=text)

    def items(self) -> Iterator[_Item]:
        for src, path in self.files:
            if isinstance(src, JsonFile):
                yield from self._json_file(src, path)
            elif isinstance(src, JsonFiles):
                yield from self._json_files(src, path)
            elif isinstance(src, JsonLines):
                yield from self._json_lines(src, path)
            else:
                yield from self._function(src, path)
        for src in self.legacy.layout.sources:
            if isinstance(src, Function) and not src.paths:
                yield from self._function(src, None)

    # -- one source kind each

    def _json_file(self, src: JsonFile, path: Path) -> Iterator[_Item]:
        into, rel = src.into.name, self.rel(path)
        _raw, text, bad = self.read_file(into, path)
        if bad is not None or text is None:
            yield bad or self.reject(into, rel, "unreadable")
            return
        doc, bad = self.parse(into, rel, text)
        if bad is not None:
            yield bad
            return
        try:
            container = src.records(doc) if src.records is not None else doc
        except Exception as exc:  # the app's function on a document it did not expect
            yield self.reject(into, rel, f"records(): {type(exc).__name__}: {exc}", raw=text)
            return
        base = _locate(container, doc)
        if isinstance(container, dict):
            dups = container.duplicates if isinstance(container, _Dups) else {}
            entries: Iterable[tuple[Any, Any]] = container.items()
            single_key = src.into.key_fields[0] if not src.into.composite else None
        elif isinstance(container, list):
            dups, entries, single_key = {}, enumerate(container), None
        else:
            yield self.reject(
                into, rel, f"expected a list or an object of records, got {_kind(container)}", pointer=base
            )
            return
        for where, value in entries:
            pointer = _pointer_join(base, where)
            if where in dups:
                for copy_ in dups[where]:
                    yield self.reject(
                        into,
                        rel,
                        f"duplicate key {where!r} in the document: none of its copies is imported",
                        pointer=pointer,
                        raw=_json(copy_),
                    )
                continue
            if isinstance(value, dict) and single_key is not None and single_key not in value:
                value = {single_key: where, **value}
            if src.record is not None and isinstance(value, dict):
                try:
                    value = src.record(value, where)
                except Exception as exc:
                    yield self.reject(
                        into, rel, f"record(): {type(exc).__name__}: {exc}", pointer=pointer, raw=_json(value)
                    )
                    continue
            yield _Item(into, rel, value, pointer=pointer, raw=None, dups=self.doc_dups)

    def _json_files(self, src: JsonFiles, path: Path) -> Iterator[_Item]:
        into, rel = src.into.name, self.rel(path)
        _raw, text, bad = self.read_file(into, path)
        if bad is not None or text is None:
            yield bad or self.reject(into, rel, "unreadable")
            return
        doc, bad = self.parse(into, rel, text)
        if bad is not None:
            yield bad
            return
        value = doc
        if src.record is not None and isinstance(doc, dict):
            try:
                value = src.record(doc, path)
            except Exception as exc:
                yield self.reject(into, rel, f"record(): {type(exc).__name__}: {exc}", pointer="", raw=text)
                return
        yield _Item(into, rel, value, pointer="", raw=text, dups=self.doc_dups)

    def _json_lines(self, src: JsonLines, path: Path) -> Iterator[_Item]:
        into, rel = src.into.name, self.rel(path)
        try:
            handle = path.open("rb")
        except OSError as exc:
            yield self.reject(into, rel, f"cannot read: {exc.strerror or exc}")
            return
        with handle:
            for number, line in enumerate(handle, 1):
                self._advance(len(line))
                complete = line.endswith(b"\n")
                body = line.rstrip(b"\r\n")
                if not body.strip():
                    continue
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    b64 = base64.b64encode(body).decode("ascii")
                    yield self.reject(into, rel, "not valid UTF-8", line=number, column=exc.start + 1, raw_base64=b64)
                    continue
                try:
                    before = _dup_objects[0]
                    raw = _DECODER.decode(text)
                except json.JSONDecodeError as exc:
                    what = "truncated last line" if not complete else "invalid JSON"
                    yield self.reject(into, rel, f"{what}: {exc.msg}", line=number, column=exc.colno, raw=text)
                    continue
                if not isinstance(raw, dict):
                    yield self.reject(
                        into, rel, f"expected an object, got {_kind(raw)}", line=number, pointer="", raw=text
                    )
                    continue
                try:
                    stream = src.stream(raw) if src.stream is not None else ""
                    at = _timestamp(src.at(raw)) if src.at is not None else self.now
                    record = src.record(raw) if src.record is not None else raw
                except KeyError as exc:
                    yield self.reject(
                        into,
                        rel,
                        f"missing field {exc.args[0]!r}",
                        line=number,
                        pointer=_pointer(exc.args[0]),
                        raw=text,
                    )
                    continue
                except Exception as exc:
                    yield self.reject(into, rel, f"{type(exc).__name__}: {exc}", line=number, raw=text)
                    continue
                if not isinstance(stream, str):
                    yield self.reject(into, rel, f"stream must be text, got {_kind(stream)}", line=number, raw=text)
                    continue
                dups = _dup_objects[0] != before
                yield _Item(into, rel, record, line=number, pointer="", raw=text, stream=stream, at=at, dups=dups)

    def _function(self, src: Function, path: Path | None) -> Iterator[_Item]:
        into, rel = src.into.name, src.name
        if path is not None:
            with contextlib.suppress(OSError):
                self._advance(path.stat().st_size)
            if path != src.files(self.root)[0]:
                return  # read once, on its first file
        try:
            for n, value in enumerate(src.read(self.root)):
                if isinstance(value, LegacyEntry):
                    try:
                        at = _timestamp(value.at) if value.at is not None else self.now
                    except (TypeError, ValueError) as exc:
                        yield self.reject(into, rel, str(exc), pointer=_pointer(n), raw=_json(value.record))
                        continue
                    yield _Item(into, rel, value.record, pointer=_pointer(n), stream=value.stream, at=at, dups=True)
                else:
                    yield _Item(into, rel, value, pointer=_pointer(n), dups=True)
        except Exception as exc:
            yield self.reject(into, rel, f"read(): {type(exc).__name__}: {exc}")


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


class _Checker:
    """Checks records against their declarations; for an older layout version, only their keys."""

    def __init__(self, schema: Schema, codec: Codec, typed: bool) -> None:
        self.schema = schema
        self.codec = codec
        self.typed = typed

    def check(self, item: _Item, decl: Collection[Any] | Log[Any]) -> tuple[Any, str] | Reject:
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
        if not self.typed:
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


# ---------------------------------------------------------------- importing


def _target(location: str) -> tuple[str, Path]:
    from statestore._open import parse_location

    loc = parse_location(location)
    if loc.path is None:
        return loc.backend, Path()
    return loc.backend, loc.path


def store_exists(location: str) -> bool:
    """True if a store (not just an empty file or folder) is at ``location``."""
    backend, path = _target(location)
    if backend == "memory":
        return False
    if backend == "sqlite":
        return path.is_file() and path.stat().st_size > 0
    return (path / "statestore.json").is_file()


def _lock_path(backend: str, path: Path) -> Path:
    return path.with_name(path.name + ".import.lock")


def import_legacy(
    location: str | os.PathLike[str],
    schema: Schema,
    legacy: Legacy,
    *,
    on_error: OnError | None = None,
    after: After | None = None,
    dry_run: bool = False,
    replace: bool = False,
    progress: Progress | None = None,
    busy_timeout: float = 300.0,
    converter: Any = None,
) -> ImportReport:
    """Import ``legacy`` into a new store at ``location``; return the report.

    ``on_error`` and ``after`` default to the ``Legacy``'s. A store already
    at ``location`` is left alone (the report says ``imported_store=False``)
    unless ``replace=True``, which imports anew and keeps the old store
    beside it as ``<name>.replaced-<time>``. ``dry_run`` reads and validates
    everything, writes nothing and returns the report with every reject
    (it never raises for them). Otherwise, with ``on_error="abort"`` and
    anything rejected, raises LegacyImportError (every reject in
    ``problems``) and creates no store. ``progress(done, total)`` is called with
    bytes read. Concurrent calls serialize on ``<store>.import.lock``.
    """
    location = os.fspath(location)
    on_error = on_error or legacy.on_error
    after = after or legacy.after
    if on_error not in ("abort", "quarantine"):
        raise ValueError(f"on_error must be 'abort' or 'quarantine', not {on_error!r}")
    if after not in ("keep", "rename"):
        raise ValueError(f"after must be 'keep' or 'rename', not {after!r}")
    backend, path = _target(location)
    if backend == "memory" and not dry_run:
        raise ValueError("a legacy import needs a store on disk (sqlite: or files:), not memory:")
    if dry_run:
        return _build(location, schema, legacy, on_error, after, True, progress, converter, None)
    from statestore._fs import make_private_dirs

    make_private_dirs(path.parent)
    lock = filelock.FileLock(str(_lock_path(backend, path)), timeout=max(busy_timeout, 0.0), mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreBusyError(location, busy_timeout) from None
    try:
        _sweep_asides(path)
        if store_exists(location) and not replace:
            return ImportReport(location, str(legacy.root), legacy.layout.version, (), (), imported_store=False)
        return _build(location, schema, legacy, on_error, after, False, progress, converter, path)
    finally:
        lock.release()


def _aside_prefix(path: Path) -> str:
    return f".{path.name}.import-"


def _sweep_asides(path: Path) -> None:
    """Remove stores half-built by imports that crashed (we hold the import lock)."""
    prefix = _aside_prefix(path)
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _build(
    location: str,
    schema: Schema,
    legacy: Legacy,
    on_error: OnError,
    after: After,
    dry_run: bool,
    progress: Progress | None,
    converter: Any,
    path: Path | None,
) -> ImportReport:
    from statestore._open import open_store

    layout = legacy.layout
    if layout.version > schema.version:
        raise ValueError(f"the legacy layout is for version {layout.version}, newer than the schema's {schema.version}")
    codec = Codec(converter)
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    reader = _Reader(legacy, codec, progress, now)
    checker = _Checker(schema, codec, typed=layout.version == schema.version)
    decls: dict[str, Collection[Any] | Log[Any]] = {}
    for src in layout.sources:
        own = schema.collection(src.into.name) or schema.log(src.into.name)
        if own is None:
            raise ValueError(
                f"legacy source {src.path!r} goes into {src.into.name!r}, which schema {schema.name!r} does not declare"
            )
        decls[src.into.name] = own

    rejects: list[Reject] = []
    records: dict[str, dict[KeyValue, list[tuple[_Item, Any, str]]]] = {}
    entries: dict[str, list[tuple[_Item, Any, str]]] = {}
    per_file: dict[str, list[int]] = {}
    key_checkers: dict[str, Callable[[Any], KeyValue]] = {}
    for item in reader.items():
        decl = decls[item.into]
        file_counts = per_file.setdefault(item.rel, [0, 0])
        if item.reject is not None:
            rejects.append(item.reject)
            file_counts[1] += 1
            continue
        checked = checker.check(item, decl)
        if isinstance(checked, Reject):
            rejects.append(checked)
            file_counts[1] += 1
            continue
        data, text = checked
        if isinstance(decl, Collection):
            key = decl.key_of(data)
            valid = key_checkers.get(decl.name)
            if valid is None:
                valid = key_checkers[decl.name] = _key_checker(decl)
            try:
                key = valid(key)
            except ValidationError as exc:
                rejects.append(
                    Reject(item.rel, item.line, None, item.pointer, exc.reason, item.raw or text, into=decl.name)
                )
                file_counts[1] += 1
                continue
            records.setdefault(decl.name, {}).setdefault(key, []).append((item, data, text))
        else:
            entries.setdefault(decl.name, []).append((item, data, text))
        file_counts[0] += 1
    # A key that two records share: neither is imported (which one is right is not ours to guess).
    for name, by_key in records.items():
        for key, copies in by_key.items():
            if len(copies) > 1:
                places = ", ".join(_place(i) for i, _, _ in copies)
                for item, _data, text in copies:
                    rejects.append(
                        Reject(
                            item.rel,
                            item.line,
                            None,
                            item.pointer,
                            f"duplicate key {key!r} ({places})",
                            item.raw or text,
                            into=name,
                        )
                    )
                    per_file[item.rel][0] -= 1
                    per_file[item.rel][1] += 1
    sources = []
    for src in layout.sources:
        files = [reader.rel(f) for f in src.files(legacy.root)] or ([src.path] if isinstance(src, Function) else [])
        read = imported = rejected = 0
        for rel in files:
            good, bad = per_file.get(rel, [0, 0])
            imported += good
            rejected += bad
        read = imported + rejected
        if files or isinstance(src, Function):
            sources.append(SourceReport(src.path, src.into.name, read, imported, rejected))
    rejects.sort(key=lambda r: (r.path, r.line or 0, r.pointer or ""))
    report = ImportReport(
        location, str(legacy.root), layout.version, tuple(sources), tuple(rejects), dry_run, imported_store=not dry_run
    )
    if rejects and on_error == "abort" and not dry_run:
        raise LegacyImportError(location, str(legacy.root), tuple(rejects))
    if dry_run:
        return report
    old = Schema(schema.name, version=layout.version, collections=schema.collections, logs=schema.logs)
    assert path is not None
    aside_path = path.with_name(f"{_aside_prefix(path)}{secrets.token_hex(4)}{path.suffix}")
    aside = f"{_target(location)[0]}:{aside_path}"
    assert path is not None
    with open_store(aside, old, backup=False, check_history=False) as store:
        _write(store, records, entries, decls, rejects, per_file, reader, legacy, now)
    _verify(aside, old, records, entries)
    _move_into_place(aside_path, path)
    # The built store's own lock file (SQLite keeps it beside the database); we hold the import lock.
    aside_path.with_name(aside_path.name + ".lock").unlink(missing_ok=True)
    if after == "rename":
        for _src, f in reader.files:
            with contextlib.suppress(OSError):
                f.rename(f.with_name(f.name + ".imported"))
    return report


def _place(item: _Item) -> str:
    return (
        f"{item.rel}:{item.line}"
        if item.line is not None
        else f"{item.rel}{' at ' + item.pointer if item.pointer else ''}"
    )


def _key_checker(decl: Collection[Any]) -> Callable[[Any], KeyValue]:
    """The shared layer's key validation for ``decl`` (str/int parts, 64-bit ints, no lone surrogates)."""
    from statestore.store import CollectionView

    view: CollectionView[Any] = CollectionView.__new__(CollectionView)
    view.decl = decl
    view._key_types = tuple(decl.field_types[f] for f in decl.key_fields)
    return view._key


def _numbered(rows: list[tuple[_Item, Any, str]]) -> Iterator[tuple[str, int, str, Any, str]]:
    """(stream, version, at, data, text) with versions 1, 2, 3... per stream, in order."""
    versions: dict[str, int] = {}
    for item, data, text in rows:
        version = versions[item.stream] = versions.get(item.stream, 0) + 1
        yield item.stream, version, item.at, data, text


def _write(
    store: Store,
    records: Mapping[str, Mapping[KeyValue, list[tuple[_Item, Any, str]]]],
    entries: Mapping[str, list[tuple[_Item, Any, str]]],
    decls: Mapping[str, Collection[Any] | Log[Any]],
    rejects: Sequence[Reject],
    per_file: Mapping[str, list[int]],
    reader: _Reader,
    legacy: Legacy,
    now: str,
) -> None:
    """Everything, in one transaction: records, entries, provenance and quarantine."""
    with store.transaction():
        for name, by_key in records.items():
            decl = decls[name]
            assert isinstance(decl, Collection)
            store._write_many(
                decl, ((key, 1, copies[0][1], copies[0][2]) for key, copies in by_key.items() if len(copies) == 1)
            )
        for name, rows in entries.items():
            decl = decls[name]
            assert isinstance(decl, Log)
            # The store is new: every stream starts at version 1.
            store._add_entries(decl, _numbered(rows))
        stream = store.schema.name
        version = 0
        for src, f in reader.files:
            rel = reader.rel(f)
            good, bad = per_file.get(rel, [0, 0])
            try:
                st = f.stat()
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError:
                continue
            row = {
                "path": rel,
                "into": src.into.name,
                "size": st.st_size,
                "mtime": st.st_mtime,
                "sha256": digest,
                "imported": good,
                "rejected": bad,
                "root": str(legacy.root),
                "version": legacy.layout.version,
            }
            version += 1
            store._add_entry(IMPORTS, stream, version, now, row, dumps(row))
        for n, reject in enumerate(rejects, 1):
            row = attrs.asdict(reject)
            store._add_entry(REJECTS, stream, n, now, row, dumps(row))


def _verify(
    aside: str,
    schema: Schema,
    records: Mapping[str, Mapping[KeyValue, list[Any]]],
    entries: Mapping[str, list[Any]],
) -> None:
    """Reopen the built store and check it holds exactly what was read."""
    from statestore._open import open_store

    with open_store(aside, schema, mode="read", check_history=False) as store:
        for coll in schema.collections:
            want = sum(1 for copies in records.get(coll.name, {}).values() if len(copies) == 1)
            got = store._count(coll)
            if got != want:
                raise CorruptStoreError(
                    aside, f"collection {coll.name!r} holds {got} records after the import, not {want}"
                )
        for log in schema.logs:
            want = len(entries.get(log.name, ()))
            got = store._last_seq(log)
            if got != want:
                raise CorruptStoreError(aside, f"log {log.name!r} holds {got} entries after the import, not {want}")


def _move_into_place(aside: Path, path: Path) -> None:
    """Rename the finished store to ``path`` (keeping any store there as ``<name>.replaced-<time>``)."""
    if aside.suffix and aside.is_file():
        # One self-contained file (no -wal beside it) before it is renamed.
        con = sqlite3.connect(aside)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
        _fsync(aside)
    if path.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        else:
            path.rename(path.with_name(f"{path.name}.replaced-{stamp}"))
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(path.with_name(f"{path.name}.replaced-{stamp}{suffix}"))
    os.rename(aside, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
