"""Rewrite the bundled legacy installs in ``fixtures/legacy/`` (or under ``--root``).

The generator lives in the package (:mod:`statestore.examples.legacy_tracker`),
so ``statestore demo`` can generate the same installs wherever it runs::

    python tools/make_legacy_tracker.py                # rewrites fixtures/legacy/tracker*
    python tools/make_legacy_tracker.py --root /tmp/x  # writes the same trees elsewhere
"""

from __future__ import annotations

from pathlib import Path

from statestore.examples.legacy_tracker import main

if __name__ == "__main__":
    main(Path(__file__).resolve().parent.parent / "fixtures" / "legacy")
