"""Checking legacy records against their declarations (statestore.legacy): the importer's rejects for values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statestore.codec import Codec, dumps
from statestore.errors import ValidationError
from statestore.legacy.declarations import (
    Reject,
)
from statestore.legacy.documents import Doc, Parts, json_pointer, json_text, kind_of
from statestore.legacy.reading import Item
from statestore.schema import Collection, Log
from statestore.strict import TRUNCATED_TIMES


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
            base = json_pointer(*item.parts)
        pointer = (base or "") + json_pointer(*rel_parts) if (base is not None or rel_parts) else None
        doc, parts = item.doc, item.parts
        if doc is None and item.line is not None and item.raw is not None:
            doc, parts = Doc(item.raw), ()  # a JSON Lines record: columns inside its line
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
            raw = json_text(item.data)
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
            return self.reject(item, name, f"expected an object, got {kind_of(data)}")
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
