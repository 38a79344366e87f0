"""What each declared type accepts: the strict converter behind the codec.

A value must already be of its declared type; nothing is converted, in either
direction (a record written, a stored document read):

=========================  ==================================================  ==========================
declared type              JSON it accepts                                     a reader gets
=========================  ==================================================  ==========================
``str``                    a string                                            ``str``
``int``                    an integer from -2**63 to 2**63-1 (not a bool,      ``int``
                           not a float, not a numeric string)
``float``                  a finite number; an integer stays exact             ``float`` (or the ``int``)
``bool``                   ``true`` / ``false``                                ``bool``
``None``, ``X | None``     ``null`` (or what ``X`` accepts)                    ``None``
``datetime``               an ISO 8601 string with ``Z`` or an offset and      an aware ``datetime``
                           0-9 fractional digits (more than 6 only when the
                           extra digits are zeros)
``Enum`` subclass          one of its values, of the same JSON type            the member
``Literal[...]``           one of its values, of the same JSON type            the value
``list[X]``, ``Sequence``  an array of what ``X`` accepts                      ``list``
``tuple[X, ...]``          an array (of the declared length for ``tuple[A,B]``)  ``tuple``
``set[X]``, ``frozenset``  an array without repeated elements                  ``set`` / ``frozenset``
``dict[str, X]``           an object whose values ``X`` accepts                ``dict``
an attrs class             an object with its fields, and no other             an instance
``A | B``                  what one member accepts, taken as it is             that value
``Any``                    any JSON (finite numbers, 64-bit integers)          the JSON value
=========================  ==================================================  ==========================

Anything else (``object``, ``bytes``, a ``dict`` with non-``str`` keys, a
class cattrs has no JSON form for) cannot be read back as written, so
:func:`type_problem` names it and declarations refuse it. Integers beyond
64 bits are refused everywhere, on every backend, since SQLite cannot
index or compare them.
"""

from __future__ import annotations

from statestore.strict.converter import make_strict_converter
from statestore.strict.datetimes import TRUNCATED_TIMES, keep_truncated_times, parse_datetime
from statestore.strict.types import INT64_MAX, INT64_MIN, Mismatch, check_json, short, type_name, type_problem

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "TRUNCATED_TIMES",
    "Mismatch",
    "check_json",
    "keep_truncated_times",
    "make_strict_converter",
    "parse_datetime",
    "short",
    "type_name",
    "type_problem",
]
