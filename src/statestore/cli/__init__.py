"""The ``statestore`` command: :mod:`.commands` (inspect, query, convert, diff, migrate),
:mod:`.legacy` (import reports, progress, the demo) and :mod:`.check` (store checks)."""

from statestore.cli.commands import main

__all__ = ["main"]
