"""The SQL a PostgreSQL store sends for ``find``/``count``/``iter`` conditions.

A condition on a declared index or unique field becomes a WHERE clause on
that field's lookup column (the value's canonical JSON text, NULL when the
field is missing or null), so the server filters, through the column's index
where one serves. Every clause admits *at least* the rows the condition
admits (:meth:`statestore.query.Term.matches` is the rule): the store checks
each returned row in Python again, so a clause may be wider than its
condition but never narrower. A clause is *exact* when it admits exactly
those rows; ``count`` then counts on the server without reading a record.

What is sent, per operator (anything else, and every condition on a field
without a lookup column, is left to Python):

* ``eq``/``one_of``: equality of the canonical JSON text (``IS NULL`` for
  None). A number is sent in each of its stored spellings (``1`` and
  ``1.0``), since ``1 == 1.0``. Exact. Only JSON scalars are sent.
* ``prefix``: a range of the text (``"ab`` up to the next string), which
  the index serves. Exact: JSON escapes each character on its own.
* ``gt``/``ge``/``lt``/``le`` on a number field: the text read as
  ``numeric``, compared with the operand widened by two units in its last
  place as a float (a float is stored as its shortest decimal, which is
  not its exact value); text that is not a plain JSON number, or whose
  exponent has more than four digits, is admitted. Wide.
* the same on a bool field: the booleans that meet it. Exact.
* the same on a text field: the string between the quotes of its JSON text
  compared as UTF-8 bytes (``COLLATE "C"``: code point order), where that
  text has no escape (the JSON text itself does not sort as the string
  does: ``"ab"`` > ``"ab!"``); a text with an escape is admitted. Wide.
* the same on a datetime field: the instant, read by PostgreSQL
  (``timestamptz``) from a text of the shape :data:`DATETIME_TEXT` allows,
  which is read the same way by Python; any other text is admitted. Wide.

A condition on a field without a lookup column is sent through PostgreSQL's
JSON functions (``data::jsonb -> field``), for text, number, boolean and
datetime fields: equality and ``one_of`` (as JSON values: ``1`` equals ``1.0``),
``prefix``, ranges on numbers (widened as above), on text (as code points:
``COLLATE "C"``), on booleans and on datetimes (as instants, for the texts
:data:`DATETIME_TEXT` allows; any other string is admitted). PostgreSQL's
JSON parser refuses some text statestore stores (``\\u0000``, a lone
surrogate, an exponent past numeric's range), so a record holding a ``\\u``
escape or an exponent of five digits or more is admitted without being
parsed there. Wide, always.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import attrs

from statestore.codec import dumps
from statestore.query import Term, prefix_end
from statestore.strict import Mismatch, parse_datetime

_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False)  # codec.dumps' spelling of a lone surrogate

#: A plain JSON number whose exponent PostgreSQL's numeric can hold.
NUMBER_TEXT = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]{1,4})?$"

_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
#: The JSON text (quotes included) of a timestamp PostgreSQL's ``timestamptz`` reads as
#: :func:`statestore.strict.parse_datetime` does, to the same instant, without an error: a valid
#: date of years 1-9999, ``T`` or a space, seconds below 60, up to 6 fractional digits (then
#: zeros only), ``Z`` or an offset of at most 15:59 (PostgreSQL's limit). Python reads more
#: (``t``, ``z``, a comma, offsets to 23:59): such a text is odd, and Python decides.
_TIMESTAMP = (
    f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "([.][0-9]{1,6}0{0,3})?(Z|[-+](0[0-9]|1[0-5]):?[0-5][0-9])"
)
DATETIME_TEXT = f'"{_TIMESTAMP}"'
_DATETIME = re.compile(DATETIME_TEXT)

_BOOL_OPS = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


@attrs.frozen
class Clause:
    """A WHERE clause with its parameters; ``exact`` when it admits exactly the rows its condition does."""

    sql: str
    params: tuple[Any, ...]
    exact: bool
    #: The clause for rows whose field is not odd (same parameters), when that is simpler:
    #: a number range without its odd rows, which the field's number index serves in order.
    core: str | None = None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def _texts(value: Any) -> list[str]:
    """Every canonical JSON text a stored value equal to ``value`` (a non-null scalar) can have.

    Equality is the model's (``query.same_value``): a number equals any
    number of the same value (``1 == 1.0``, ``0.0 == -0.0``), true and false
    only themselves.
    """
    texts = {dumps(value)}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (isinstance(value, int) or value.is_integer()):
        whole = int(value)
        texts.add(dumps(whole))
        if float(whole) == whole:
            texts.add(dumps(float(whole)))
        if whole == 0:
            texts.add("-0.0")
    return sorted(texts)


def _equal_any(column: str, values: list[Any]) -> Clause | None:
    if not all(_scalar(v) for v in values):
        return None
    texts = sorted({t for v in values if v is not None for t in _texts(v)})
    parts = []
    if any(v is None for v in values):
        parts.append(f"{column} IS NULL")
    if texts:
        parts.append(f"{column} = ANY(%s)")
    if not parts:
        return Clause("FALSE", (), True)  # one_of() with nothing in it
    sql = parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})"
    return Clause(sql, (texts,) if texts else (), True)


def equal_clause(column: str, value: Any) -> Clause | None:
    """``column`` holds ``value`` (a JSON scalar; None: null or missing), exactly; None for other values."""
    return _equal_any(column, [value])


def _text_value(column: str) -> tuple[str, str]:
    """(value, odd) for a text field's lookup column: the string, byte-ordered, where its JSON text has no escape.

    A string's JSON text without an escape is the string in quotes: cut
    them off, and UTF-8 bytes (COLLATE "C") order as Python orders code
    points. A text with an escape (a quote, a backslash, a control
    character, a lone surrogate) or a value of another type is odd: Python decides.
    """
    plain = f"(left({column}, 1) = '\"' AND strpos({column}, '\\') = 0)"
    value = f'(CASE WHEN {plain} THEN substr({column}, 2, length({column}) - 2) END) COLLATE "C"'
    return value, f"({column} IS NOT NULL AND NOT {plain})"


def _text_range(column: str, op: str, value: Any) -> Clause | None:
    if not isinstance(value, str) or "\\u" in dumps(value):  # NUL or a lone surrogate: not sendable
        return None
    text, odd = _text_value(column)
    sql_op = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
    return Clause(f"({text} {sql_op} %s OR {odd})", (value,), False)


def datetime_value(column: str) -> str:
    """A datetime field's lookup text as ``timestamptz`` (NULL when null, missing or odd: see DATETIME_TEXT)."""
    return f"(CASE WHEN {column} ~ '^{DATETIME_TEXT}$' THEN substr({column}, 2, length({column}) - 2)::timestamptz END)"


def datetime_odd(column: str) -> str:
    """True for a datetime field holding a text the server does not read as Python would: Python decides."""
    return f"({column} IS NOT NULL AND NOT {column} ~ '^{DATETIME_TEXT}$')"


def instant(text: Any) -> Any:
    """What :func:`datetime_value` is for the lookup ``text`` (as a Python datetime), read here; None when odd."""
    if not isinstance(text, str) or _DATETIME.fullmatch(text) is None:
        return None
    return parse_datetime(text[1:-1])


def _instant_operand(value: Any) -> Any:
    """A datetime operand (stored JSON form: ISO text) as the instant to send; None: Python compares."""
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except Mismatch:
        return None


def _datetime_range(column: str, op: str, value: Any) -> Clause | None:
    bound = _instant_operand(value)
    if bound is None:
        return None
    sql_op = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
    return Clause(f"({datetime_value(column)} {sql_op} %s OR {datetime_odd(column)})", (bound,), False)


def _number_range(column: str, op: str, value: Any) -> Clause | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        margin = 2 * Decimal(math.ulp(float(value)))
    except OverflowError:  # an integer past any float: no margin to speak of
        return None
    bound = Decimal(value) - margin if op in ("gt", "ge") else Decimal(value) + margin
    cmp = ">=" if op in ("gt", "ge") else "<="
    # The shape of the field's number index (number_value), so the index serves the range.
    core = f"{number_value(column)} {cmp} %s"
    return Clause(f"({core} OR {number_odd(column)})", (bound,), False, core)


def number_value(column: str) -> str:
    """A number field's lookup text as ``numeric`` (NULL when null, missing or not a plain number).

    The expression of the field's number index: a query that uses it, as
    written here, is served by that index.
    """
    return f"(CASE WHEN {column} ~ '{NUMBER_TEXT}' THEN {column}::numeric END)"


def number_odd(column: str) -> str:
    """True for a number field holding something else than a plain JSON number (damage): Python decides."""
    return f"({column} IS NOT NULL AND NOT {column} ~ '{NUMBER_TEXT}')"


#: Records PostgreSQL's JSON parser may refuse: a \u escape (NUL, control characters, lone
#: surrogates) or an exponent numeric cannot hold. They are admitted unparsed.
_PARSEABLE = "(strpos(data, %s) = 0 AND data !~ %s)"
_PARSEABLE_PARAMS = ("\\u", "[eE][-+]?[0-9]{5}")
_JSON_KINDS = ("str", "number", "bool", "datetime")


def _json_clause(term: Term) -> Clause | None:
    """``term`` on the record's JSON, where PostgreSQL can parse it; None for what stays in Python."""
    op, value, kind = term.op, term.value, term.kind
    if kind not in _JSON_KINDS or "\\u" in dumps(value):
        return None  # an operand PostgreSQL's text or JSON cannot hold (NUL, a lone surrogate) stays in Python
    got = "(data::jsonb -> %s)"
    cond: str
    params: tuple[Any, ...]
    if op in ("eq", "in"):
        values = [value] if op == "eq" else list(value)
        if not all(_scalar(v) for v in values):
            return None
        # Every spelling of an equal number: jsonb compares numbers as decimals, so the int 2**60 and the
        # float 2.0**60 (stored as 1.152921504606847e+18) differ there though they are one value.
        texts = sorted({t for v in values if v is not None for t in _texts(v)})
        parts = []
        params = ()
        if any(v is None for v in values):
            parts.append(f"({got} IS NULL OR {got} = 'null'::jsonb)")
            params += (term.field, term.field)
        if texts:
            parts.append(f"{got} = ANY(%s::jsonb[])")
            params += (term.field, texts)
        if not parts:
            return Clause("FALSE", (), True)
        cond = " OR ".join(parts)
    elif op == "prefix" and isinstance(value, str):
        cond, params = "starts_with(data::jsonb ->> %s, %s)", (term.field, value)
    elif op in _BOOL_OPS and kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            margin = 2 * Decimal(math.ulp(float(value)))
        except OverflowError:
            return None
        bound = Decimal(value) - margin if op in ("gt", "ge") else Decimal(value) + margin
        cmp = ">=" if op in ("gt", "ge") else "<="
        # CASE: AND may cast a string to numeric first, which is an error.
        cond = f"CASE WHEN jsonb_typeof({got}) = 'number' THEN ({got})::numeric {cmp} %s ELSE FALSE END"
        params = (term.field, term.field, bound)
    elif op in _BOOL_OPS and kind == "str" and isinstance(value, str):
        sql_op = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        text = '(data::jsonb ->> %s) COLLATE "C"'
        cond = f"CASE WHEN jsonb_typeof({got}) = 'string' THEN {text} {sql_op} %s ELSE FALSE END"
        params = (term.field, term.field, value)
    elif op in _BOOL_OPS and kind == "bool" and isinstance(value, bool):
        meets = [dumps(b) for b in (False, True) if _BOOL_OPS[op](b, value)]
        cond, params = f"{got} = ANY(%s::jsonb[])", (term.field, meets)
    elif op in _BOOL_OPS and kind == "datetime" and (bound := _instant_operand(value)) is not None:
        sql_op = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        text = "(data::jsonb ->> %s)"
        # A string of another spelling (t, z, a comma, a larger offset) is admitted: Python decides.
        cond = (
            f"CASE WHEN jsonb_typeof({got}) = 'string' THEN (CASE WHEN {text} ~ '^{_TIMESTAMP}$' "
            f"THEN {text}::timestamptz {sql_op} %s ELSE TRUE END) ELSE FALSE END"
        )
        params = (term.field, term.field, term.field, bound)
    else:
        return None
    # CASE, not OR: only CASE keeps PostgreSQL from parsing a record it was told to skip.
    return Clause(f"(CASE WHEN {_PARSEABLE} THEN ({cond}) ELSE TRUE END)", (*_PARSEABLE_PARAMS, *params), False)


def term_clause(column: str | None, term: Term) -> Clause | None:
    """The clause for ``term`` on the lookup column ``column`` (quoted, None: none), or None to leave it to Python."""
    if column is None:
        return _json_clause(term)
    op, value, kind = term.op, term.value, term.kind
    if op == "eq":
        return _equal_any(column, [value])
    if op == "in":
        return _equal_any(column, list(value))
    if op == "prefix":
        if not isinstance(value, str):
            return None
        # A string is stored as its JSON text; one holding a lone surrogate as all-ASCII
        # escapes (\\u00e9\\udc80): both spellings of the prefix are sent.
        lows = sorted(
            {low[:-1] for low in (dumps(value), _ASCII.encode(value)) if low.isascii() or low == dumps(value)}
        )
        parts, params = [], []
        for low in lows:
            high = prefix_end(low)
            parts.append(f"{column} >= %s" if high is None else f"({column} >= %s AND {column} < %s)")
            params.extend([low] if high is None else [low, high])
        return Clause(f"({' OR '.join(parts)})", tuple(params), True)
    if op in _BOOL_OPS and kind == "number":
        return _number_range(column, op, value)
    if op in _BOOL_OPS and kind == "str":
        return _text_range(column, op, value)
    if op in _BOOL_OPS and kind == "datetime":
        return _datetime_range(column, op, value)
    if op in _BOOL_OPS and kind == "bool" and isinstance(value, bool):
        return _equal_any(column, [b for b in (False, True) if _BOOL_OPS[op](b, value)])
    return None


@attrs.frozen
class OrderPlan:
    """How the server orders by one field's lookup column, for ``order_by`` with a ``limit``.

    ``value`` is an SQL value that orders as Python orders the field's
    values (numbers within ``tolerant``'s margin, text, booleans and
    datetimes exactly), NULL for a null or missing field; ``odd`` is true for a row
    whose stored text ``value`` cannot order (an escaped string, a number
    past numeric's exponent, a value of another type): such rows come first
    from the server, so every one of them is read and ordered in Python.
    """

    value: str
    odd: str
    tolerant: bool
    #: The field has a number index on ``value``: odd rows are read by a query of their own, and the
    #: rest ordered by ``value`` alone, which the index serves.
    split: bool = False
    #: What a row carries as its order value when not ``value`` itself: a datetime's JSON text,
    #: read here (:func:`instant`), since PostgreSQL holds instants no Python datetime can.
    shown: str | None = None


def order_plan(column: str | None, kind: str) -> OrderPlan | None:
    """The plan for ordering by a field of ``kind`` held in the lookup ``column``; None: Python orders."""
    if column is None:
        return None
    if kind == "number":
        return OrderPlan(number_value(column), number_odd(column), True, split=True)
    if kind == "str":
        return OrderPlan(*_text_value(column), False)
    if kind == "datetime":
        return OrderPlan(datetime_value(column), datetime_odd(column), False, shown=column)
    if kind == "bool":
        plain = f"{column} IN ('false', 'true')"  # 'false' < 'true', as False < True
        return OrderPlan(
            f'(CASE WHEN {plain} THEN {column} END) COLLATE "C"', f"({column} IS NOT NULL AND NOT {plain})", False
        )
    return None


# _PARSEABLE with its parameters written in: an order plan is SQL alone.
_PARSEABLE_SQL = "(strpos(data, '\\u') = 0 AND data !~ '[eE][-+]?[0-9]{5}')"
_JSON_TYPES = {"number": "number", "str": "string", "bool": "boolean"}


def json_order_plan(field: str, kind: str) -> OrderPlan | None:
    """The plan for ordering by a field without a lookup column: its value read from the record's JSON.

    A record PostgreSQL's JSON parser may refuse (see _PARSEABLE), or whose
    field holds a value of another type, is odd: read and ordered in Python.
    """
    name = "'" + field.replace("'", "''") + "'"  # a declared field name, as an SQL string
    got = f"(data::jsonb -> {name})"
    # CASE everywhere: only CASE keeps PostgreSQL from parsing a record it was told to skip.
    if kind == "datetime":
        text = f"(data::jsonb ->> {name})"
        fits = f"({got} IS NULL OR {got} = 'null'::jsonb OR {text} ~ '^{_TIMESTAMP}$')"
        value = f"(CASE WHEN {_PARSEABLE_SQL} AND {text} ~ '^{_TIMESTAMP}$' THEN {text}::timestamptz END)"
        shown = f"(CASE WHEN {_PARSEABLE_SQL} THEN {got}::text END)"
        return OrderPlan(value, f"(CASE WHEN {_PARSEABLE_SQL} THEN NOT {fits} ELSE TRUE END)", False, shown=shown)
    json_type = _JSON_TYPES.get(kind)
    if json_type is None:
        return None
    typed = f"jsonb_typeof({got}) = '{json_type}'"
    fits = f"coalesce(jsonb_typeof({got}) IN ('{json_type}', 'null'), TRUE)"  # missing: SQL NULL, as null
    if kind == "number":
        value = f"(CASE WHEN {_PARSEABLE_SQL} AND {typed} THEN ({got})::numeric END)"
    elif kind == "str":
        value = f'(CASE WHEN {_PARSEABLE_SQL} AND {typed} THEN (data::jsonb ->> {name}) END) COLLATE "C"'
    else:  # 'false' < 'true', as False < True
        value = f'(CASE WHEN {_PARSEABLE_SQL} AND {typed} THEN ({got})::text END) COLLATE "C"'
    return OrderPlan(value, f"(CASE WHEN {_PARSEABLE_SQL} THEN NOT {fits} ELSE TRUE END)", kind == "number")


def beyond(plan: OrderPlan, descending: bool, last: Any, boundary: Any, boundary_null: bool) -> bool:
    """Whether every row after ``last`` (the SQL value of the last row read) follows the boundary row in Python.

    ``boundary`` is the SQL value of the row that must be the last one
    returned (None when its field is null, or when its value is odd:
    ``boundary_null`` says which). Nulls come first ascending and last
    descending, ties are broken by key: so a tie is never beyond.
    """
    if last is None:
        return False
    if boundary is None:
        return boundary_null and not descending  # a null is before every value ascending
    if plan.tolerant:
        margin = 2 * Decimal(math.ulp(float(boundary)))
        return bool(last < boundary - margin) if descending else bool(last > boundary + margin)
    return bool(last < boundary) if descending else bool(last > boundary)


def after_clause(plan: OrderPlan, kind: str, descending: bool, value: Any) -> Clause | None:
    """SQL every row coming after a row whose first order field holds ``value`` meets (wide); None: no such clause.

    ``iter`` reads its next batch after the last row of the one before: this
    lets the server skip the rows before it (those of an equal value stay:
    ties are broken by key, in Python). Odd rows always pass.
    """
    if value is None:
        # Ascending, nulls come first: anything may follow. Descending, nulls come last: only nulls.
        return None if not descending else Clause(f"{plan.value} IS NULL", (), False)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        try:
            margin = 2 * Decimal(math.ulp(float(value)))
        except OverflowError:
            return None
        bound: Any = Decimal(value) + margin if descending else Decimal(value) - margin
    elif kind == "str":
        if not isinstance(value, str) or "\\u" in dumps(value):  # NUL or a lone surrogate: not sendable
            return None
        bound = value
    elif kind == "bool":
        if not isinstance(value, bool):
            return None
        bound = dumps(value)
    elif kind == "datetime":
        bound = _instant_operand(value)
        if bound is None:
            return None
    else:
        return None
    if descending:
        return Clause(f"({plan.value} IS NULL OR {plan.value} <= %s)", (bound,), False)
    return Clause(f"({plan.odd} OR {plan.value} >= %s)", (bound,), False)
