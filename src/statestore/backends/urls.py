"""Showing a PostgreSQL location without its password (used by locations and the PostgreSQL backend alike).

Plain standard library: importing it loads neither psycopg nor a backend.
"""

from __future__ import annotations


def shown_url(url: str) -> str:
    """A PostgreSQL URL without its password (user part and ``password`` parameter)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = [(k, "****" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/:,"), ""))
