"""One legacy import's records (statestore.legacy).

What was read, checked (shared keys, unique clashes, records the code cannot
read), written into a store built aside, and verified against what was read.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from statestore.backends.locations import connect, parse_location
from statestore.codec import Codec, dumps
from statestore.errors import (
    CorruptStoreError,
    LegacyImportError,
    MigrationError,
    ValidationError,
)
from statestore.legacy.checking import Checker
from statestore.legacy.declarations import (
    Function,
    ImportReport,
    Legacy,
    OnError,
    Progress,
    Reject,
    SourceReport,
)
from statestore.legacy.placing import aside_prefix, move_into_place, remove_store_files, target_of
from statestore.legacy.reading import Item, Reader
from statestore.migrations import records_checked_by_caller
from statestore.schema import IMPORTS, REJECTS, Collection, KeyValue, Log, Schema, check_key
from statestore.store import Durability, Store

__all__ = ["Build", "Entries", "Records"]


#: What was read for one collection: key -> every (item, stored dict, text) with that key.
Records = dict[str, dict[KeyValue, list[tuple[Item, Any, str]]]]
Entries = dict[str, list[tuple[Item, Any, str]]]


class Build:
    """One import: what was read, and the store built from it."""

    def __init__(
        self,
        location: str,
        schema: Schema,
        legacy: Legacy,
        on_error: OnError,
        progress: Progress | None,
        converter: Any,
        durability: Durability,
    ) -> None:
        layout = legacy.layout
        if layout.version > schema.version:
            raise ValueError(
                f"the legacy layout is for version {layout.version}, newer than the schema's {schema.version}"
            )
        self.location, self.schema, self.legacy, self.on_error = location, schema, legacy, on_error
        self.converter, self.durability = converter, durability
        self.now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        self.reader = Reader(legacy, progress, self.now)
        # Each source's declaration: the schema's own, or (a layout older than the code) the
        # application's declaration of that version, under its name then.
        self.decls: dict[str, Collection[Any] | Log[Any]] = {}
        typed: dict[str, bool] = {}
        for src in layout.sources:
            own = schema.collection(src.into.name) or schema.log(src.into.name)
            decl = src.into
            if own is not None and (own is decl or own.describe() == decl.describe()):
                # The code's declaration: its types describe records at the code's version only.
                typed[decl.name] = layout.version == schema.version
            elif own is not None and layout.version == schema.version:
                raise ValueError(f"legacy source {src.path!r}: {decl.name!r} is declared differently by the schema")
            else:
                typed[decl.name] = True
            other = self.decls.get(decl.name)
            if other is not None and other.describe() != decl.describe():
                raise ValueError(f"legacy sources declare {decl.name!r} in two different ways")
            self.decls[decl.name] = decl
        extras = [src.extra for src in layout.sources]
        self.checker = Checker(Codec(converter), typed, extras, fields_known=converter is None)
        self.records: Records = {}
        self.entries: Entries = {}
        self.rejects: list[Reject] = []
        # (source index, file or Function name) -> [imported, rejected]
        self.counts: dict[tuple[int, str], list[int]] = {}
        # log -> seq given in the last build -> index in self.entries[log]
        self._seqs: dict[str, dict[int, int]] = {}

    def release(self) -> None:
        """Drop what was read (the report keeps the rejects): the import's objects go now, not at a GC pass."""
        self.records.clear()
        self.entries.clear()

    # ------------------------------------------------------------ reading

    def read(self, *, dry_run: bool) -> ImportReport:
        """Read and check everything; raise LegacyImportError if anything is bad and on_error is abort."""
        # Per declaration: where its records go and how its keys are checked (looked up once, not per record).
        plans: dict[str, tuple[Collection[Any] | Log[Any], Any, Callable[[Any], KeyValue] | None]] = {}
        for name, decl in self.decls.items():
            if isinstance(decl, Collection):
                plans[name] = (decl, self.records.setdefault(name, {}), _key_checker(decl))
            else:
                plans[name] = (decl, self.entries.setdefault(name, []), None)
        check, reject, rejects = self.checker.check, self.checker.reject, self.rejects
        # The same records are rejected in a dry run and in the import (PostgreSQL's streams are text).
        nul_refused = target_of(self.location)[0] == "postgres"
        last_source, last_rel, counts = -1, "", [0, 0]
        for item in self.reader.items():
            if item.source != last_source or item.rel != last_rel:  # items come file by file
                last_source, last_rel = item.source, item.rel
                counts = self.counts.setdefault((last_source, last_rel), [0, 0])
            if item.reject is not None:
                rejects.append(item.reject)
                counts[1] += 1
                continue
            decl, target, valid = plans[item.into]
            checked = check(item, decl)
            if type(checked) is Reject:
                rejects.append(checked)
                counts[1] += 1
                continue
            data, text = checked  # type: ignore[misc]
            if valid is not None:
                try:
                    key = valid(decl.key_of(data))  # type: ignore[union-attr]
                except ValidationError as exc:
                    rejects.append(reject(item, decl.name, exc.reason))
                    counts[1] += 1
                    continue
                copies = target.get(key)
                if copies is None:
                    target[key] = [(item, data, text)]
                else:
                    copies.append((item, data, text))
            else:
                if nul_refused and "\0" in item.stream:
                    reason = "a stream holding NUL, which PostgreSQL text cannot store"
                    rejects.append(reject(item, decl.name, reason, value=False))
                    counts[1] += 1
                    continue
                target.append((item, data, text))
            counts[0] += 1
        self._reject_shared_keys()
        self._reject_unique_clashes()
        return self.report(dry_run=dry_run)

    def report(self, *, dry_run: bool) -> ImportReport:
        """The report of what was read (and rejected so far); raises LegacyImportError as ``read`` says."""
        self.rejects.sort(key=lambda r: (r.path, r.line or 0, r.pointer or ""))
        report = ImportReport(
            self.location,
            self.legacy.describe(),
            self.legacy.layout.version,
            tuple(self._source_reports()),
            tuple(self.rejects),
            dry_run,
            imported_store=not dry_run,
        )
        if self.rejects and self.on_error == "abort" and not dry_run:
            raise LegacyImportError(self.location, self.legacy.describe(), tuple(self.rejects))
        return report

    def _unimport(self, item: Item, reject: Reject) -> None:
        """``item``, counted as imported, becomes ``reject``."""
        self.rejects.append(reject)
        counts = self.counts[item.source, item.rel]
        counts[0] -= 1
        counts[1] += 1

    def _reject_shared_keys(self) -> None:
        """A key two records share: neither is imported (which one is right is not ours to guess)."""
        for name, by_key in self.records.items():
            for key, copies in by_key.items():
                if len(copies) > 1:
                    located = [self.checker.reject(i, name, "") for i, _, _ in copies]
                    for n, (item, _data, _text) in enumerate(copies):
                        others = ", ".join(r.where() for m, r in enumerate(located) if m != n)
                        reason = f"duplicate key {key!r} (also at {others}): none of its copies is imported"
                        self._unimport(item, attrs.evolve(located[n], reason=reason))

    def _reject_unique_clashes(self) -> None:
        """Records sharing a value of a unique field (None exempt): none of them is imported.

        Checked across all sources, among the records that are imported
        otherwise, on every unique group at once (a record in two clashes is
        one reject naming both), so both backends, a dry run and every
        ``on_error`` reject exactly the same records.
        """
        for name, by_key in self.records.items():
            decl = self.decls[name]
            if not isinstance(decl, Collection) or not decl.unique:
                continue
            clashes: dict[KeyValue, list[tuple[tuple[str, ...], str, list[Item]]]] = {}
            for group in decl.unique:
                seen: dict[str, list[tuple[KeyValue, Item]]] = {}
                for key, copies in by_key.items():
                    if len(copies) != 1:
                        continue
                    item, data, _text = copies[0]
                    values = [data.get(f) for f in group]
                    if any(v is None for v in values):
                        continue
                    seen.setdefault(dumps(values), []).append((key, item))
                for value, holders in seen.items():
                    if len(holders) > 1:
                        for key, _item in holders:
                            clashes.setdefault(key, []).append((group, value, [i for _k, i in holders]))
            for key, found in clashes.items():
                item = by_key[key][0][0]
                mine = self.checker.reject(item, name, "")
                parts = []
                for group, value, sharing in found:
                    others = ", ".join(self.checker.reject(i, name, "").where() for i in sharing if i is not item)
                    shown = value[1:-1] if len(group) == 1 else value
                    parts.append(f"unique {'/'.join(group)} {shown} is also at {others}")
                reason = "; ".join(parts) + ": none of the records sharing it is imported"
                self._unimport(item, attrs.evolve(mine, reason=reason))
            for key in clashes:
                del by_key[key]

    def _source_reports(self) -> Iterator[SourceReport]:
        for index, src in enumerate(self.legacy.layout.sources):
            keys = [k for k in self.counts if k[0] == index]
            if not keys and not isinstance(src, Function) and not src.files(self.legacy.root_of(src)):
                continue  # nothing of it is there
            imported = sum(self.counts[k][0] for k in keys)
            rejected = sum(self.counts[k][1] for k in keys)
            dropped = tuple(sorted((f, n) for (i, f), n in self.checker.dropped.items() if i == index))
            cut = self.reader.cut.get(index, 0) + self.checker.cut.get(index, 0)
            example = self.reader.cut_example.get(index) or self.checker.cut_example.get(index, "")
            yield SourceReport(src.path, src.into.name, imported + rejected, imported, rejected, dropped, cut, example)

    # ------------------------------------------------------------ writing

    def write(self, path: Path, *, replace: bool) -> ImportReport:
        """Build the store aside, verify it, migrate it, read it back, and move it into place; the report.

        A record or entry the current declarations cannot read after the
        migrations is a reject: with ``abort`` no store is placed; with
        ``quarantine`` the store is built again without it (and its original
        text kept as a reject), at most a few times.
        """
        for _attempt in range(3):
            aside_path = path.with_name(f"{aside_prefix(path)}{secrets.token_hex(4)}{path.suffix}")
            try:
                failed = self._build(f"{target_of(self.location)[0]}:{aside_path}")
                if failed:
                    self._reject_unreadable(failed)
                    self.report(dry_run=False)  # abort: raises with every reject
                    remove_store_files(aside_path)
                    continue
                report = self.report(dry_run=False)
                move_into_place(aside_path, path, replace=replace)
                return report
            except BaseException:
                remove_store_files(aside_path)
                raise
            finally:
                aside_path.with_name(aside_path.name + ".lock").unlink(missing_ok=True)  # SQLite's migration lock
        raise LegacyImportError(self.location, self.legacy.describe(), tuple(self.rejects))

    def dry_run(self) -> ImportReport:
        """Read and check everything; with migrations pending, also build and migrate a throwaway store.

        So a dry run reports what the import would reject, also the records
        that fail only after the migrations. The throwaway store lives in a
        temporary folder (SQLite when the target is memory:) and is deleted.
        """
        report = self.read(dry_run=True)
        if self.legacy.layout.version == self.schema.version:
            return report
        backend = target_of(self.location)[0]
        with tempfile.TemporaryDirectory(prefix="statestore-dry-run-") as tmp:
            # A throwaway SQLite store stands in for memory: and for a server's store.
            if backend in ("sqlite", "memory", "postgres"):
                failed = self._build(f"sqlite:{Path(tmp) / 'store.db'}")
            else:
                failed = self._build(f"{backend}:{Path(tmp) / 'store'}")
        if not failed:
            return report
        self._reject_unreadable(failed)
        return self.report(dry_run=True)

    def write_postgres(self, url: str, *, replace: bool, busy_timeout: float) -> ImportReport:
        """``write`` for a PostgreSQL store: built in a schema aside, renamed into place in one transaction.

        Rejects after the migrations are handled as ``write`` handles them.
        With ``replace`` the schema of the store being replaced is kept as
        ``<schema cut to 30>_replaced_<time>_<4 hex>``, as the file backends keep theirs.
        """
        from statestore.backends.postgres import aside_schema, place_schema, split_url, with_schema

        schema = split_url(url)[1]
        for _attempt in range(3):
            aside = with_schema(url, aside_schema(schema, "import"))
            try:
                failed = self._build(aside)
                if failed:
                    self._reject_unreadable(failed)
                    self.report(dry_run=False)  # abort: raises with every reject
                    place_schema(aside, None, replace=False)
                    continue
                report = self.report(dry_run=False)
                stamp = time.strftime("%Y%m%dt%H%M%Sz", time.gmtime())
                # Within PostgreSQL's 63 characters (a longer name would be cut), unique within a second.
                keep = f"{schema[:30]}_replaced_{stamp}_{secrets.token_hex(2)}" if replace else None
                place_schema(aside, url, replace=replace, keep_as=keep, busy_timeout=busy_timeout)
                return report
            except BaseException:
                place_schema(aside, None, replace=False)  # drops the half-built store
                raise
        raise LegacyImportError(self.location, self.legacy.describe(), tuple(self.rejects))

    def _build(self, aside: str) -> list[tuple[str, Any, str]]:
        """Build, verify and migrate the store at the location ``aside``; what cannot be read back after migrations.

        Returns (collection or log name, key or seq, reason) of each record
        or entry the schema's declarations refuse (only when migrations ran:
        otherwise every record was already checked against them).
        """
        schema, layout = self.schema, self.legacy.layout
        decls = list(self.decls.values())
        collections = {d.name: d for d in decls if isinstance(d, Collection)}
        logs = {d.name: d for d in decls if isinstance(d, Log)}
        if layout.schema is not None and layout.version < schema.version:
            # The application's schema of that version: every collection its migrations expect.
            for c in layout.schema.collections:
                collections.setdefault(c.name, c)
            for lg in layout.schema.logs:
                logs.setdefault(lg.name, lg)
        old = Schema(
            schema.name, version=layout.version, collections=list(collections.values()), logs=list(logs.values())
        )
        options: dict[str, Any] = {"durability": self.durability, "converter": self.converter}
        with connect(parse_location(aside), [old], backup=False, check_history=False, **options) as store:
            self._fill(store)
        self._verify(aside, old)
        if layout.version == schema.version:
            return []
        # Migrations run here, on the store no one else sees yet: one that fails leaves no store.
        try:
            with (
                records_checked_by_caller(),
                connect(parse_location(aside), [schema], backup=False, **options) as store,
            ):
                return _unreadable(store, schema)
        except MigrationError as exc:
            raise attrs.evolve(exc, location=self.location) from exc.__cause__

    def _reject_unreadable(self, failed: list[tuple[str, Any, str]]) -> None:
        """Each record or entry that failed the read-back becomes the reject of what it was read from.

        An entry is found by its seq in the log of its name, a record by its
        key (in any collection: a migration may have renamed it); one that
        cannot be told is a reject of its own, without the original text.
        """
        gone: dict[str, list[int]] = {}
        for name, where, reason in failed:
            why = f"cannot be read as the current {name!r} after the migrations: {reason}"
            rows = self.entries.get(name)
            if isinstance(where, int) and rows is not None and where in self._seqs.get(name, {}):
                index = self._seqs[name][where]
                item = rows[index][0]
                self._unimport(item, self.checker.reject(item, name, why))
                gone.setdefault(name, []).append(index)
                continue
            holders = [(n, by_key) for n, by_key in self.records.items() if len(by_key.get(where, ())) == 1]
            if (not isinstance(where, int) or name not in self.entries) and len(holders) == 1:
                old_name, by_key = holders[0]
                item = by_key[where][0][0]
                self._unimport(item, self.checker.reject(item, old_name, why))
                del by_key[where]
                continue
            self.rejects.append(Reject(name, None, None, None, f"{where!r}: {why}", None, into=name))
        for name, indexes in gone.items():
            for index in sorted(indexes, reverse=True):
                del self.entries[name][index]

    def _fill(self, store: Store) -> None:
        """Everything, in one transaction: records, entries, provenance and quarantine."""
        with store.transaction():
            for name, by_key in self.records.items():
                decl = self.decls[name]
                assert isinstance(decl, Collection)
                rows = ((key, 1, copies[0][1], copies[0][2]) for key, copies in by_key.items() if len(copies) == 1)
                store._write_many(decl, rows)
            for name, entries in self.entries.items():
                decl = self.decls[name]
                assert isinstance(decl, Log)
                store._add_entries(decl, _numbered(entries))  # a new store: every stream starts at 1
                self._seqs[name] = {seq: seq - 1 for seq in range(1, len(entries) + 1)}
            stream, legacy = store.schema.name, self.legacy
            for n, ((index, rel), info) in enumerate(self.reader.seen.items(), 1):
                good, bad = self.counts.get((index, rel), [0, 0])
                row = {
                    "path": rel,
                    "into": legacy.layout.sources[index].into.name,
                    "size": info.size,
                    "mtime": info.mtime,
                    "sha256": info.sha256,
                    "imported": good,
                    "rejected": bad,
                    "root": str(legacy.root_of(legacy.layout.sources[index])),
                    "version": legacy.layout.version,
                }
                store._add_entry(IMPORTS, stream, n, self.now, row, dumps(row))
            for n, reject in enumerate(self.rejects, 1):
                row = attrs.asdict(reject)
                store._add_entry(REJECTS, stream, n, self.now, row, dumps(row))

    def _verify(self, aside: str, schema: Schema) -> None:
        """Reopen the built store and check it holds exactly what was read."""
        where = str(parse_location(aside))  # without a password
        with connect(parse_location(aside), [schema], mode="read", check_history=False) as store:
            for coll in schema.collections:
                want = sum(1 for copies in self.records.get(coll.name, {}).values() if len(copies) == 1)
                got = store._count(coll)
                if got != want:
                    reason = f"collection {coll.name!r} holds {got} records after the import, not {want}"
                    raise CorruptStoreError(where, reason)
            for log in schema.logs:
                want = len(self.entries.get(log.name, ()))
                got = store._last_seq(log)
                if got != want:
                    raise CorruptStoreError(where, f"log {log.name!r} holds {got} entries after the import, not {want}")


def _unreadable(store: Store, schema: Schema) -> list[tuple[str, Any, str]]:
    """(collection or log, key or seq, reason) of each stored record or entry ``schema`` cannot read."""
    out: list[tuple[str, Any, str]] = []
    codec = store.codec
    with store.transaction():
        for coll in schema.collections:
            for key, _rev, data in store._scan(coll, {}, copy=False):
                try:
                    codec.decode(coll.name, coll.type, data, key)
                except ValidationError as exc:
                    out.append((coll.name, key, _field_reason(exc)))
        for log in schema.logs:
            for seq, _stream, _version, _at, data in store._entries(log, stream=None, prefix=None, after=0, limit=None):
                try:
                    codec.decode(log.name, log.type, data)
                except ValidationError as exc:
                    out.append((log.name, seq, _field_reason(exc)))
    return out


def _field_reason(exc: ValidationError) -> str:
    return f"{exc.path}: {exc.reason}" if exc.path and exc.path != "$" else exc.reason


def _key_checker(decl: Collection[Any]) -> Callable[[Any], KeyValue]:
    """The shared layer's key validation for ``decl`` (str/int parts, 64-bit ints, no lone surrogates)."""
    key_types = tuple(decl.field_types[f] for f in decl.key_fields)

    def full(value: Any) -> KeyValue:
        return check_key(decl, key_types, value)

    if decl.composite or key_types[0] is not str:
        return full

    def key(value: Any) -> KeyValue:
        # The usual key, ASCII text, has nothing more to check (no lone surrogate in ASCII).
        if type(value) is str and value.isascii():
            return value
        return full(value)

    return key


def _numbered(rows: Sequence[tuple[Item, Any, str]]) -> Iterator[tuple[str, int, str, Any, str]]:
    """(stream, version, at, data, text) with versions 1, 2, 3... per stream, in order."""
    versions: dict[str, int] = {}
    for item, data, text in rows:
        version = versions[item.stream] = versions.get(item.stream, 0) + 1
        yield item.stream, version, item.at, data, text
