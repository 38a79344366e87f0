"""Helpers of the SQLite tests: plain sqlite3 connections beside a store, and the statements a store runs.

Imported by the test modules by name (the tests folder is on ``sys.path``);
``conftest.py`` closes the connections :func:`raw` opened after each test.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import statestore as ss
from statestore.testing.models import TASKS, Task

_RAW: list[sqlite3.Connection] = []


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, closed when the test ends (Python 3.13 warns about one left open)."""
    con = sqlite3.connect(path, isolation_level=None)
    _RAW.append(con)
    return con


def keep(con: sqlite3.Connection) -> sqlite3.Connection:
    """Close ``con`` (one opened with other settings) when the test ends, as :func:`raw` does its own."""
    _RAW.append(con)
    return con


def close_raw() -> None:
    while _RAW:
        _RAW.pop().close()


class Statements:
    """The statements one thread's connection of ``store`` runs (SQLite's trace), in order."""

    def __init__(self, store: ss.Store) -> None:
        self.seen: list[str] = []
        con: sqlite3.Connection = store._con()  # type: ignore[attr-defined]
        con.set_trace_callback(self.seen.append)

    def take(self) -> list[str]:
        """The statements run since the last call, each cut to its first word (its first two for a PRAGMA).

        Statements a statement runs inside it (SQLite traces them as ``-- ...``) are left out.
        """
        out = [" ".join(s.split()[:2]) if s.startswith("PRAGMA") else s.split()[0] for s in self.seen]
        out = [s for s in out if s != "--"]
        self.seen.clear()
        return out


def warm(store: ss.Store) -> Statements:
    """Make the store's schema mark current (the first write after creating a store checks the schemas)."""
    store[TASKS].put(Task("warm"))
    return Statements(store)
