"""Decoding the JSON a store holds, strictly: what statestore never writes is damage.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (which are
not JSON, and which statestore's encoder refuses to write), keeps the last of
two members with the same name in an object (dropping the other in silence),
reads a number past a 64-bit float (``1e400``) as infinity, and raises
``RecursionError`` on deeply nested arrays. Backends decode stored text with
:func:`load`, which turns all of these into one :class:`StoredJSONError`
(a ``ValueError``) whose message says what is wrong; each backend wraps it
into a ``CorruptStoreError`` naming the file, table, key or line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from statestore.errors import CorruptStoreError

if TYPE_CHECKING:
    from statestore.store import StoredSchemas

__all__ = ["PLAIN_SCAN", "SCAN", "StoredJSONError", "load"]


class StoredJSONError(ValueError):
    """Stored text that statestore cannot have written: not JSON, NaN/Infinity, or nested too deeply.

    ``lineno`` is the line of a JSON syntax error (1-based), None otherwise.
    """

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno


def _refuse_constant(name: str) -> NoReturn:
    raise StoredJSONError(f"holds {name}, which is not JSON (statestore never writes it)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object the decoder read, as a dict; StoredJSONError if a member name comes twice."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                raise StoredJSONError(
                    f"holds an object with a duplicate member {name!r} (statestore never writes one; "
                    "reading it would keep one value and drop the other)"
                )
            seen.add(name)
    return out


def _float(text: str) -> float:
    """The float a JSON number with a fraction or exponent spells; StoredJSONError past a 64-bit float."""
    value = float(text)
    if value - value != 0.0:  # infinity: the only non-finite value a JSON number can become
        raise StoredJSONError(f"holds the number {text}, beyond what a 64-bit float holds (statestore never writes it)")
    return value


# One decoder, built once: json.loads(text, parse_constant=...) would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_object, parse_float=_float)
# Its scanner reads one value starting at an index and says where it ended. Text
# that is exactly one value from its first to its last character (what statestore
# writes: no surrounding whitespace) decodes through it alone; anything else takes
# ``decode``, which skips whitespace, refuses extra data and explains errors.
SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]

# The plain scanner: no hook per object or per float, so about 1.5 µs less per record of two
# objects, but a duplicate member and a number past a float (1e400 -> inf) pass it unseen.
# Only for a caller that proves both absent itself (backends/sqlite/reading.py: _scan_decoded).
PLAIN_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(parse_constant=_refuse_constant).scan_once  # type: ignore[attr-defined]


def load(text: str | bytes) -> Any:
    """The value ``text`` holds; StoredJSONError if it is not strict JSON or is nested too deeply to read.

    An integer longer than Python reads (4,300 digits by default), a number
    past a 64-bit float (``1e400``: json would read infinity) and an object
    naming a member twice (json would keep the last value) are StoredJSONErrors
    too: statestore never writes them.

    ``bytes`` are decoded as ``json.loads`` does (UTF-8, -16 or -32, a BOM
    allowed); bytes that are not text in that encoding are a StoredJSONError.
    Anything else (an int, None) is a TypeError.
    """
    if type(text) is str:
        try:
            value, end = SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass  # decoded again below, which raises the error that explains it
        else:
            if end == len(text):
                return value
    try:
        if type(text) is not str:
            if not isinstance(text, (bytes, bytearray)):
                raise TypeError(f"JSON text must be str or bytes, not {type(text).__name__}")
            text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
        return _DECODER.decode(text)
    except StoredJSONError:
        raise
    except RecursionError:
        raise StoredJSONError("nested too deeply to read (is it damaged?)") from None
    except UnicodeDecodeError as exc:
        raise StoredJSONError(f"not valid UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise StoredJSONError(f"not valid JSON: {exc}", exc.lineno) from None
    except ValueError as exc:  # an integer past Python's digit limit (sys.set_int_max_str_digits)
        raise StoredJSONError(f"holds a number Python will not read: {exc}") from None


def stored_schemas_of(rows: Iterable[tuple[Any, Any, Any]], location: str) -> StoredSchemas:
    """``{name: (version, description)}`` from a store's schema rows (name, version, description text).

    A row whose description is not a JSON object, or whose version is not an
    int, is CorruptStoreError naming the schema.
    """
    out: StoredSchemas = {}
    for name, version, description in rows:
        try:
            desc = load(description)
        except (TypeError, ValueError):
            desc = None
        if not isinstance(desc, dict) or not isinstance(version, int):
            raise CorruptStoreError(location, f"schema {name!r} has no valid version and description")
        out[str(name)] = (version, desc)
    return out
