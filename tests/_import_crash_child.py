"""A child process that imports the tracker legacy install; the parent kills it at a random moment."""

from __future__ import annotations

import sys

import statestore as ss
from statestore.examples.tracker import LAYOUT, SCHEMA

if __name__ == "__main__":
    location, root = sys.argv[1], sys.argv[2]
    ss.import_legacy(location, SCHEMA, ss.Legacy(root, LAYOUT))
    print("done", flush=True)
