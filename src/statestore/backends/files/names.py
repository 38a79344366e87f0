"""Record keys as file names for the file backend (``<collection>/<name>.json``).

The encoding is reversible and injective, and its output is safe on every
common file system:

* Only ``a-z 0-9 - _ .`` appear literally. An upper-case ASCII letter becomes
  ``^`` plus the lower-case letter (``Foo`` -> ``^foo``) and every other
  character becomes ``%xx`` per UTF-8 byte, lower-case hex. Names therefore
  never contain upper-case letters or non-ASCII text, so two keys can never
  meet in one file on a case-insensitive (NTFS, APFS) or normalising (HFS+)
  file system.
* ``/``, ``\\``, NUL and other separators are escaped, a leading dot is
  escaped (no hidden files, no ``.``/``..``), and a name whose part before
  its first dot is a reserved Windows device (``con``, ``nul.txt``...) gets
  its first letter escaped.
* Composite keys join their encoded parts with ``~`` (escaped inside parts);
  an empty ``str`` part is ``%``. ``int`` parts are their decimal digits; a
  collection's key types are fixed by its declaration, so an ``int`` key never
  meets the ``str`` key of the same digits.
* A name longer than :data:`MAX_NAME` bytes keeps a readable prefix and ends
  in ``+`` and a 128-bit digest of the key; such a name cannot be decoded
  (:func:`decode` returns None) and the full key is read from the file.

Ordinary keys stay readable: ``task-1`` is ``task-1.json``.
"""

from __future__ import annotations

import hashlib
import json
import re

from statestore.schema import KeyValue

__all__ = ["MAX_NAME", "SUFFIX", "decode", "encode"]

SUFFIX = ".json"
#: Longest file name produced, in bytes (file systems allow 255).
MAX_NAME = 240
_PREFIX = 150
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_HEX = frozenset("0123456789abcdef")
#: A str key that is its own file name stem: only literal characters, no leading dot.
_PLAIN = re.compile(r"[a-z0-9_-][a-z0-9._-]*")
_SEP = "~"
_EMPTY = "%"
_HASHED = "+"
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"] + [f"{dev}{n}" for dev in ("com", "lpt") for n in range(10)]
)


def _escape(text: str) -> str:
    return "".join(f"%{b:02x}" for b in text.encode("utf-8", "surrogatepass"))


def _encode_part(part: str | int) -> str:
    if isinstance(part, int):
        return str(part)
    if part == "":
        return _EMPTY
    out = []
    for i, ch in enumerate(part):
        if ch in _LITERAL and not (ch == "." and i == 0):
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("^" + ch.lower())
        else:
            out.append(_escape(ch))
    return "".join(out)


def _tokens(stem: str) -> list[str]:
    """Split an encoded stem into units that must not be cut apart (``%xx``, ``^x``, one char)."""
    out, i = [], 0
    while i < len(stem):
        if stem[i] == "%" and len(stem) >= i + 3 and set(stem[i + 1 : i + 3]) <= _HEX:
            size = 3
        elif stem[i] == "^":
            size = 2
        else:
            size = 1
        out.append(stem[i : i + size])
        i += size
    return out


def encode(key: KeyValue) -> str:
    """The file name (with ``.json``) for ``key``: a validated str, int or tuple of them."""
    # Most keys need no escaping (``task-1``): the general path below costs
    # ~2 µs, paid twice by every put.
    if (
        type(key) is str
        and len(key) <= MAX_NAME - len(SUFFIX)
        and _PLAIN.fullmatch(key)
        and key.split(".", 1)[0] not in _RESERVED
    ):
        return key + SUFFIX
    parts = key if isinstance(key, tuple) else (key,)
    stem = _SEP.join(_encode_part(p) for p in parts)
    if stem.split(".", 1)[0] in _RESERVED:
        stem = _escape(stem[0]) + stem[1:]
    if len(stem) + len(SUFFIX) <= MAX_NAME:
        return stem + SUFFIX
    digest = hashlib.sha256(json.dumps(list(parts)).encode("ascii")).hexdigest()[:32]
    prefix = ""
    for token in _tokens(stem):
        if len(prefix) + len(token) > _PREFIX:
            break
        prefix += token
    return prefix + _HASHED + digest + SUFFIX


def _decode_part(text: str, tp: type) -> str | int:
    if tp is int:
        value = int(text)
        if str(value) != text:
            raise ValueError(f"not a canonical int: {text!r}")
        return value
    if text == _EMPTY:
        return ""
    raw = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError(f"bad escape in {text!r}")
            raw.append(int(pair, 16))
            i += 3
        elif ch == "^":
            nxt = text[i + 1 : i + 2]
            if not ("a" <= nxt <= "z"):
                raise ValueError(f"bad upper-case escape in {text!r}")
            raw += nxt.upper().encode()
            i += 2
        elif ch in _LITERAL:
            raw += ch.encode()
            i += 1
        else:
            raise ValueError(f"unexpected character {ch!r} in {text!r}")
    return raw.decode("utf-8", "surrogatepass")


def decode(name: str, types: tuple[type, ...]) -> KeyValue | None:
    """The key stored under file ``name`` for key fields of ``types`` (str/int).

    Returns None for a digest name (the key is only inside the file). Raises
    ValueError when ``name`` is not a name :func:`encode` produces.
    """
    if not name.endswith(SUFFIX) or name.startswith("."):
        raise ValueError(f"not a record file name: {name!r}")
    stem = name[: -len(SUFFIX)]
    if _HASHED in stem:
        return None
    texts = stem.split(_SEP)
    if len(texts) != len(types):
        raise ValueError(f"{name!r} does not have {len(types)} key parts")
    values = tuple(_decode_part(t, tp) for t, tp in zip(texts, types))
    key: KeyValue = values if len(values) > 1 else values[0]
    if encode(key) != name:
        raise ValueError(f"{name!r} is not the canonical name of its key")
    return key
