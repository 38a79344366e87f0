"""A record file read and structured in one pass: the plain JSON scanner and the codec's counting structurer.

``FileStore._parse`` reads a record file strictly (``backends.rawjson``: a
Python hook per object, to find a member named twice, and per float, to
find ``1e400``), and the codec then structures its dict into the record's
class. :func:`one_pass` does both at once where it can prove the same
answer, as the SQLite backend does (``backends/sqlite/reading.py``): the
plain scanner (no hooks), then ``strict.counted``'s structurer, which checks
every field's type and refuses any non-finite float, and counts the strings
the dict holds. A record file also holds the ``_statestore`` member
(``{"key": ..., "revision": ...}``): its strings are counted here.

Why the answer is the strict one when ``2 * strings == text.count('"')``
(``strings``: every member name and string value the decoded document
holds, at every depth, the ``_statestore`` member included):

* Outside a JSON string a ``"`` opens or closes one; inside one it is
  escaped (``\\"``). So ``text.count('"') = 2 * T + E`` with ``T`` the string
  tokens of the text and ``E >= 0`` the escaped quotes.
* Decoding keeps one string per string token, except where an object names
  a member twice: the dict keeps one name and the last value, so the first
  name (and every string of the first value) is gone. So ``strings <= T``,
  and ``strings < T`` if any object named a member twice.
* If ``2 * strings == 2 * T + E`` then ``T <= strings <= T``: no object
  named a member twice (and ``E == 0``).

The other strict rules hold without a test: ``NaN`` and the infinities
raise in the plain scanner too; a number past a float (``1e400``) becomes
infinity, which the counting structurer refuses in every field, and the
``_statestore`` member accepts only exact ints and strings (an infinity
there is a float: refused); a number past Python's digit limit and deep
nesting raise in the scanner. Anything refused here (also a document of
another shape, text that is not what statestore writes, a key or revision
that does not fit) gives None: the caller then reads the file the strict
way, which gives the same record or raises the same error as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statestore.backends.files import names as keynames
from statestore.backends.files.cache import META, Rec
from statestore.backends.rawjson import PLAIN_SCAN
from statestore.errors import LAST_REVISION
from statestore.schema import Collection, KeyValue

__all__ = ["one_pass"]


def one_pass(
    coll: Collection[Any], name: str, raw: bytes, expected: KeyValue, counted: Callable[[Any, int], Any]
) -> tuple[Rec, Any] | None:
    """(the record as ``FileStore._parse`` reads it, the structured record) from record file ``name``'s bytes.

    ``expected``: the key whose file ``name`` is (a point read); ``counted``:
    the codec's counting structurer of ``coll.type``. None when this cannot
    prove the strict answer (see the module docstring): the caller takes the
    strict way. Composite keys always take it. The dict in the record shares
    its lists with the structured record: the caller must not hand it out.
    """
    # As FileStore._load_record's fast path: UTF-8 text that starts "{" and a byte that is not NUL.
    key_fields = coll.key_fields
    if type(raw) is not bytes or raw[:1] != b"{" or len(raw) < 2 or not raw[1] or len(key_fields) != 1:
        return None
    try:
        text = raw.decode("utf-8", "surrogatepass")
        doc, end = PLAIN_SCAN(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if text[end:].strip(" \t\n\r") or type(doc) is not dict:
        return None
    meta = doc.pop(META, None)
    if type(meta) is not dict or len(meta) != 2:
        return None
    revision, key = meta.get("revision"), meta.get("key")
    if type(revision) is not int or not 1 <= revision <= LAST_REVISION:
        return None
    if coll.field_types[key_fields[0]] is int:
        if type(key) is not int:
            return None
        strings = 3  # "_statestore", "key", "revision"
    elif type(key) is str:
        strings = 4  # and the key
    else:
        return None
    if key != expected and keynames.encode(key) != name:
        return None
    obj = counted(doc, text.count('"') - 2 * strings)
    if obj is None:
        return None
    return (key, revision, doc), obj
