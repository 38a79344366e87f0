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
  record and entry counts match what was read), migrated if the layout is
  older than the code, and moved into place by one rename (never over a
  store another process made meanwhile). A crash leaves no store, so the
  next start imports again.
* **nothing lost, nothing silent**: every record that cannot be read is a
  :class:`Reject` naming ``path:line:column`` or the JSON pointer inside its
  document, and why. ``on_error="abort"`` (default) raises
  :class:`~statestore.errors.LegacyImportError` listing them all and creates
  no store; ``on_error="quarantine"`` imports the rest and keeps every reject,
  verbatim, in the store (``store.rejects()``). Legacy files are never
  modified unless ``after="rename"``.
* **recorded**: each source file's path, size, mtime, sha256 (of the bytes
  imported) and counts are kept in the store (``store.imports()``); a
  :class:`Function` source is one row named after it, over its ``paths``.

Reading lives in :mod:`statestore.legacy.reading` (decoding in
:mod:`statestore.legacy.documents`), checking in :mod:`statestore.legacy.checking`,
the import's steps in :mod:`statestore.legacy.building`.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import attrs

from statestore.schema import Collection, Log, Schema
from statestore.views import ImportRecord, Reject

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
]

OnError = Literal["abort", "quarantine"]
After = Literal["keep", "rename"]
#: What a source does with a member its record's class does not declare: reject the record
#: (default; the reject names the members), or drop the member and count it in the report.
Extra = Literal["reject", "drop"]
#: ``progress(done, total)``: bytes of legacy files read so far, out of all of them.
Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- reports


@attrs.frozen
class SourceReport:
    """What one source gave: records read, imported and rejected."""

    path: str
    into: str
    read: int
    imported: int
    rejected: int
    #: (member, how many records lost it) for a source with ``extra="drop"``, sorted by member.
    dropped: tuple[tuple[str, int], ...] = ()
    #: Timestamps (an entry's ``at``, a record's datetime fields) cut to microseconds: the digits
    #: past them (Go writes nanoseconds) were not zero. A Python datetime holds no more.
    cut_timestamps: int = 0
    #: The first timestamp cut, as the source has it ("" when none was).
    cut_example: str = ""


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
    written into the collection's key field when a record lacks it (for an
    ``int`` key field, a key spelled as JSON writes an int, ``"7"``, is that int).
    ``record(raw, index_or_key)`` may reshape each record (e.g. generate an id).
    ``root`` names one of :class:`Legacy`'s ``roots`` (default: its ``root``);
    ``extra`` says what happens to members the record's class does not declare.
    """

    path: str
    into: Collection[Any]
    records: Callable[[Any], Any] | None = None
    record: Callable[[Any, Any], Any] | None = None
    root: str = ""
    extra: Extra = "reject"

    def files(self, root: Path) -> list[Path]:
        file = root / self.path
        return [file] if file.is_file() else []


@attrs.frozen
class JsonFiles:
    """Files matched by ``glob`` under the root: one record per file, or many with ``records``.

    ``record(doc, path)`` builds the record, typically adding the key taken
    from the file name. With ``records(doc, path)``, each file holds many
    records: it returns their container (a list, or a map ``{key: record}``
    as for :class:`JsonFile`) and ``record(raw, path)`` reshapes each one.
    Hidden files (``.x.tmp``) and names the glob does not match (``*.lock``)
    are ignored.
    """

    glob: str
    into: Collection[Any]
    record: Callable[[Any, Path], Any] | None = None
    records: Callable[[Any, Path], Any] | None = None
    root: str = ""
    extra: Extra = "reject"

    @property
    def path(self) -> str:
        return self.glob

    def files(self, root: Path) -> list[Path]:
        found = [Path(p) for p in _glob.glob(self.glob, root_dir=root)]
        return sorted(root / p for p in found if not p.name.startswith(".") and (root / p).is_file())


@attrs.frozen
class JsonLines:
    """One JSON object per line: an event log into a :class:`~statestore.schema.Log`, or records into a Collection.

    For a log, ``stream(raw)`` and ``at(raw)`` give each entry's stream and
    timestamp (ISO 8601 text or a datetime; without a zone it is taken as
    UTC; Go's nanoseconds are cut to microseconds); order is kept. For a
    collection each line is one record (``stream`` and ``at`` are not used).
    ``record(raw)`` gives the record (default: the line's object). Blank
    lines are skipped; a last line cut off by a crash is a reject, like any
    other bad line, located by its line number.
    """

    path: str
    into: Log[Any] | Collection[Any]
    stream: Callable[[dict[str, Any]], str] | None = None
    at: Callable[[dict[str, Any]], str | datetime] | None = None
    record: Callable[[dict[str, Any]], Any] | None = None
    root: str = ""
    extra: Extra = "reject"

    def files(self, root: Path) -> list[Path]:
        file = root / self.path
        return [file] if file.is_file() else []


@attrs.frozen
class Function:
    """Any other shape: ``read(root)`` yields records (dicts) for a collection, or LegacyEntry for a log.

    ``paths`` are the files it reads (relative to the root), for provenance
    and for deciding whether legacy state exists. An exception it raises,
    even after it yielded records, rejects the whole source: each record it
    had yielded is a reject ("not imported: read() failed after it"), and
    the failure itself one more, at the index of the record it was making,
    so read = imported + rejected and nothing of a half-read source is
    imported.
    """

    name: str
    into: Collection[Any] | Log[Any]
    read: Callable[[Path], Iterable[Any]]
    paths: Sequence[str] = ()
    root: str = ""
    extra: Extra = "reject"

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
    ``schema``, for a layout older than the code, is the application's
    schema as it was at ``version``: the store is built with all of its
    collections and logs, so later migrations find the ones no source fills
    (without it, only the sources' ``into`` declarations exist).
    """

    version: int
    sources: tuple[Source, ...] = attrs.field(converter=_sources)
    schema: Schema | None = None


def _roots(roots: Mapping[str, str | os.PathLike[str]] | None) -> tuple[tuple[str, Path], ...]:
    return tuple((name, _path(p)) for name, p in (roots or {}).items())


def _optional_path(p: str | os.PathLike[str] | None) -> Path | None:
    return None if p is None else _path(p)


@attrs.frozen
class Legacy:
    """A legacy install to import: its ``root`` folder (or several ``roots``), its layout and the import policy.

    ``roots`` names folders for an install spread over several (XDG's
    config and state folders): ``Legacy(roots={"config": ..., "state": ...},
    layout=LAYOUT)``, each source naming its own with ``root="state"``. A
    source that names no root reads under ``root``; one that names a root
    that is not given, or none when there is no ``root``, is a ValueError.
    Paths in reports and provenance are relative to the source's root.
    """

    root: Path | None = attrs.field(default=None, converter=_optional_path)
    layout: LegacyLayout = attrs.field(kw_only=False, default=None)
    on_error: OnError = "abort"
    after: After = "keep"
    roots: tuple[tuple[str, Path], ...] = attrs.field(default=None, converter=_roots, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.layout is None:
            raise TypeError("Legacy() needs a layout")
        if self.root is None and not self.roots:
            raise TypeError("Legacy() needs a root folder or roots")
        for src in self.layout.sources:
            self.root_of(src)

    def root_of(self, src: Source) -> Path:
        """The folder ``src`` reads under."""
        if not src.root:
            if self.root is None:
                raise ValueError(f"legacy source {src.path!r} names no root, and the install has several")
            return self.root
        for name, path in self.roots:
            if name == src.root:
                return path
        raise ValueError(f"legacy source {src.path!r} names the root {src.root!r}, which is not given")

    def all_roots(self) -> list[Path]:
        """Every folder of the install."""
        return ([self.root] if self.root is not None else []) + [p for _n, p in self.roots]

    def describe(self) -> str:
        """The root, or ``name=folder`` of each root: for reports."""
        parts = [str(self.root)] if self.root is not None else []
        return ", ".join(parts + [f"{name}={path}" for name, path in self.roots])
