"""A writer for test_files_crash: writes forever, acknowledging each returned write on stdout.

Usage: python _files_crash_child.py STORE_DIR. Even steps put a new record
``p<i>``; odd steps run one transaction that moves a unit from account ``a``
to ``b`` and appends one log entry, so ``a + b`` stays constant and the log
holds exactly one entry per committed move. After a write returns, the child
prints ``p <i>`` or ``t <i>`` and flushes: the parent kills it at a random
moment and checks that everything acknowledged survived.
"""

from __future__ import annotations

import sys

import attrs

import statestore as ss


@attrs.define
class Item:
    id: str
    n: int = 0


@attrs.define
class Move:
    i: int


ITEMS = ss.Collection("items", Item, key="id")
MOVES = ss.Log("moves", Move)
SCHEMA = ss.Schema("crash", version=1, collections=[ITEMS], logs=[MOVES])
TOTAL = 1_000_000


def main(root: str) -> None:
    store = ss.open_store(f"files:{root}", SCHEMA)
    items, moves = store[ITEMS], store[MOVES]
    with store.transaction():
        if "a" not in items:
            items.put(Item("a", TOTAL))
            items.put(Item("b", 0))
    start = moves.last_seq() * 2 + 100  # fresh numbers after every restart
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = start
    while True:
        if i % 2 == 0:
            items.put(Item(f"p{i}", i))
            out.write(f"p {i}\n")
        else:
            with store.transaction():
                items.update("a", lambda it: attrs.evolve(it, n=it.n - 1))
                items.update("b", lambda it: attrs.evolve(it, n=it.n + 1))
                moves.append(Move(i), stream="moves")
            out.write(f"t {i}\n")
        out.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
