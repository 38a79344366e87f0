"""Helpers of the SQLite tests: plain sqlite3 connections beside a store, and the statements a store runs.

Imported by the test modules by name (the tests folder is on ``sys.path``);
``conftest.py`` closes the connections :func:`raw` opened after each test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
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


def children(source: str, location: str, count: int = 3, n: int = 100) -> list[int]:
    """Run ``count`` processes of ``python -c source location p<i> n`` at once; the numbers they print, all together.

    Each child prints one JSON list of numbers; a child that fails fails the test.
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", source, location, f"p{i}", str(n)], stdout=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    got: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        got.extend(json.loads(out))
    return got
