"""Legacy JSON as the importer reads it (statestore.legacy): decoding, and where things are in the text.

The decoder marks what json would lose in silence: an object that names a
member twice (``Dups``, with every copy) and a number a 64-bit float does
not hold (``Inexact``); ``Doc`` finds a record's span, line and column in
its document's text, so a reject shows the record's exact bytes.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any


class Dups(dict[str, Any]):
    """A JSON object that had the same member more than once (kept: every value, in order)."""

    duplicates: dict[str, list[Any]]


#: How many objects with a repeated member the decoder has built (only ever grows): a
#: document whose parse left it unchanged has none, and is not searched for them.
dup_objects = [0]


def pairs_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    dups: dict[str, list[Any]] = {}
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            dups.setdefault(k, [seen[k]]).append(v)
        seen[k] = v
    marked = Dups(out)
    marked.duplicates = dups
    dup_objects[0] += 1
    return marked


class Inexact(float):
    """A JSON number a 64-bit float does not hold (more digits than it keeps, or past its range).

    Made by the decoder in place of the float it would round to, so the record
    holding it is rejected, naming the number, instead of stored rounded.
    """

    text: str


#: How many such numbers the decoder has met (only ever grows), as ``dup_objects``.
inexact_numbers = [0]


def exact_float(text: str) -> float:
    value = float(text)
    if len(text) < 16 and "e" not in text and "E" not in text:
        return value  # at most 15 digits and no exponent: a float holds it exactly (DBL_DIG is 15)
    if repr(value) == text or (math.isfinite(value) and Decimal(repr(value)) == Decimal(text)):
        return value  # (1.50 and 1.5e0 are 1.5 exactly: only their spelling differs)
    out = Inexact(value)
    out.text = text
    inexact_numbers[0] += 1
    return out


def inexact_at(value: Any, parts: Parts = ()) -> tuple[Parts, Inexact] | None:
    """Where in ``value`` the first number a float does not hold is, and that number."""
    if type(value) is Inexact:
        return parts, value
    for k, v in children_of(value):
        found = inexact_at(v, (*parts, str(k)))
        if found is not None:
            return found
    return None


def inexact_reason(number: Inexact) -> str:
    held = "an infinity" if not math.isfinite(number) else repr(float(number))
    return (
        f"number {number.text} has more digits than a 64-bit float holds, or is past its range "
        f"(it would be stored as {held}): nothing is rounded in silence"
    )


#: A byte order mark JSON may start with (RFC 8259 8.1: a reader may ignore it); it is not data.
BOM = "\ufeff"

DECODER = json.JSONDecoder(object_pairs_hook=pairs_object, parse_float=exact_float)
#: For skipping over values while locating a record in its document's text.
PLAIN = json.JSONDecoder()
SCAN: Any = getattr(PLAIN, "scan_once")  # noqa: B009 (not in the stubs)
HOOKED_SCAN: Any = getattr(DECODER, "scan_once")  # noqa: B009
NEWLINE = re.compile("\n")
WS = re.compile(r"[ \t\n\r]*")
scan_string: Any = getattr(json.decoder, "scanstring")  # noqa: B009 (not in the stubs)

Parts = tuple[str, ...]
Span = tuple[int, int]


def json_pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def all_dups(value: Any) -> list[Parts]:
    """The pointer parts of every member repeated somewhere inside ``value`` (document order)."""
    out: list[Parts] = []
    stack: list[tuple[Any, Parts]] = [(value, ())]
    while stack:
        v, at = stack.pop()
        if isinstance(v, Dups):
            out.extend((*at, k) for k in v.duplicates)
        for k, child in children_of(v):
            if isinstance(child, (dict, list)):
                stack.append((child, (*at, str(k))))
    return out


def children_of(value: Any) -> Iterable[tuple[object, Any]]:
    """(member or index, value) of a JSON object or array; nothing for a scalar."""
    if isinstance(value, dict):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return ()


def locate(container: Any, doc: Any) -> Parts | None:
    """The pointer parts of ``container`` inside ``doc`` (found by identity); None if it is not part of it."""
    if container is doc:
        return ()
    stack: list[tuple[Any, Parts]] = [(doc, ())]
    while stack:
        value, at = stack.pop()
        for k, v in children_of(value):
            if v is container:
                return (*at, str(k))
            if isinstance(v, (dict, list)):
                stack.append((v, (*at, str(k))))
    return None


class Doc:
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
        end: int = SCAN(self.text, i)[1]
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
                key, i = scan_string(text, i + 1)
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
        m = WS.match(self.text, i)
        assert m is not None
        return m.end()

    def line_column(self, pos: int) -> tuple[int, int]:
        """1-based line and column (in characters) of ``pos``."""
        if self._newlines is None:  # once per document, not a count from the start per reject
            self._newlines = [m.start() for m in NEWLINE.finditer(self.text)]
        line = bisect.bisect_left(self._newlines, pos)
        return line + 1, pos - (self._newlines[line - 1] if line else -1)


def ends_inside(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether the input ended inside a value (not: any error in a file without a trailing newline)."""
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()):
        return True
    rest = text[exc.pos :].rstrip()  # cut inside a literal: `{"done": tr`
    return any(len(rest) < len(word) and word.startswith(rest) for word in ("true", "false", "null"))


def slice_of(doc: Doc, parts: Parts) -> str | None:
    spans = doc.spans(parts)
    return doc.text[spans[0][0] : spans[0][1]] if len(spans) == 1 else None


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)
