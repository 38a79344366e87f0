"""ISO 8601 timestamps as statestore reads them, and the cut of extra digits (statestore.strict)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from contextvars import ContextVar

from statestore.strict.types import Mismatch, fail, short

__all__ = ["TRUNCATED_TIMES", "keep_truncated_times", "parse_datetime"]

# ---------------------------------------------------------------- datetimes

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))\Z",
    re.ASCII,
)

#: While set (by the legacy importer), timestamps with more than 6 fractional
#: digits are cut to microseconds and each original text is appended here.
TRUNCATED_TIMES: ContextVar[list[str] | None] = ContextVar("statestore_truncated_times", default=None)
_truncated = TRUNCATED_TIMES


@contextlib.contextmanager
def keep_truncated_times() -> Iterator[list[str]]:
    """Within the block, cut nanosecond timestamps to microseconds and list each one cut.

    Outside such a block a timestamp whose 7th-9th fractional digits are not
    zero is refused: a Python datetime would lose them. The legacy import
    report counts what was cut, per source.
    """
    seen: list[str] = []
    token = _truncated.set(seen)
    try:
        yield seen
    finally:
        _truncated.reset(token)


def parse_datetime(text: str) -> dt.datetime:
    """An aware datetime from ISO 8601 text with ``Z`` or an offset, on every supported Python.

    Raises Mismatch for anything else: no zone, a date alone, an impossible
    date, or digits beyond microseconds (unless inside :func:`keep_truncated_times`).
    """
    m = _ISO.match(text)
    if m is None:
        fail("an ISO 8601 timestamp with Z or an offset, e.g. 2024-05-17T12:34:56Z", text)
    year, month, day, hour, minute, second, frac, z, sign, oh, om = m.groups()
    micro = 0
    if frac:
        if len(frac) > 6 and frac[6:].strip("0"):
            seen = _truncated.get()
            if seen is None:
                fail(f"at most microseconds ({len(frac)} fractional digits would be cut)", text)
            seen.append(text)
        micro = int(frac[:6].ljust(6, "0"))
    if z:
        tz: dt.tzinfo = dt.timezone.utc
    else:
        if int(om) > 59:
            fail("a UTC offset with minutes from 00 to 59", text)
        offset = dt.timedelta(hours=int(oh), minutes=int(om))
        if offset >= dt.timedelta(hours=24):
            fail("a UTC offset under 24 hours", text)
        tz = dt.timezone(-offset if sign == "-" else offset)
    try:
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError as exc:
        raise Mismatch(f"expected a valid timestamp, got {short(text)} ({exc})") from None
