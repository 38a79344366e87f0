"""A writer for test_files_alone_kills: single writes outside any transaction, acknowledged one by one.

Usage: python _files_alone_child.py STORE_DIR SEED. Every write takes the
file backend's one-step paths (``Store._write_alone``, ``Store._append_alone``):
an insert of a new record ``n<i>``, a put replacing one of ten records
``r<j>`` (its field ``n`` is the revision the put gives it), and an append
to one of four streams with ``expect_version`` (the stream's last version).
After a write returns, the child prints what it acknowledged and flushes:

    i <i>                        inserted n<i>
    p <j> <revision>             r<j> now at that revision
    a <seq> <stream> <version>   appended

The parent kills it at a random moment and checks that everything
acknowledged survived, and nothing is torn or half-done.
"""

from __future__ import annotations

import random
import sys

import attrs

import statestore as ss


@attrs.define
class Rec:
    id: str
    kind: str
    n: int = 0


@attrs.define
class Note:
    i: int
    text: str


RECS = ss.Collection("recs", Rec, key="id", indexes=["kind"])
NOTES = ss.Log("notes", Note)
SCHEMA = ss.Schema("alone", version=1, collections=[RECS], logs=[NOTES])
STREAMS = ["s0", "s1", "s2", "s3"]
KINDS = ["k0", "k1", "k2", "k3", "k4"]


def main(root: str, seed: str) -> None:
    rng = random.Random(seed)
    store = ss.open_store(f"files:{root}", SCHEMA)
    recs, notes = store[RECS], store[NOTES]
    revisions = {}
    for j in range(10):
        got = recs.get_versioned(f"r{j}")
        revisions[j] = got.revision if got is not None else 0
    versions = {s: (notes.read(stream=s)[-1].version if notes.read(stream=s) else 0) for s in STREAMS}
    i = notes.last_seq() * 3 + len(recs) + 1000  # fresh numbers after every restart
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    while True:
        i += 1
        step = rng.randrange(3)
        if step == 0:
            assert recs.insert(Rec(f"n{i}", rng.choice(KINDS), i)) == 1
            out.write(f"i {i}\n")
        elif step == 1:
            j = rng.randrange(10)
            revision = recs.put(Rec(f"r{j}", rng.choice(KINDS), revisions[j] + 1))
            assert revision == revisions[j] + 1, (revision, revisions[j])
            revisions[j] = revision
            out.write(f"p {j} {revision}\n")
        else:
            stream = rng.choice(STREAMS)
            entry = notes.append(Note(i, "x" * rng.randrange(200)), stream=stream, expect_version=versions[stream])
            versions[stream] = entry.version
            out.write(f"a {entry.seq} {stream} {entry.version} {i}\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
