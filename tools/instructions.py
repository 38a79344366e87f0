"""Instructions per operation, counted by valgrind's callgrind: the stable measure behind docs/sqlite-speed.md.

    python tools/instructions.py ss append        # statestore on SQLite
    python tools/instructions.py raw append       # tools/bench.py's raw sqlite3 side

Builds ``tools/bench.py``'s workload and side (10,000 records inserted in
one batch), runs 50 operations of the kind to warm up, then N more, under
``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``, for N = 200 and
N = 2,200; prints the difference of the two totals divided by 2,000, so
neither start-up nor building the workload is counted. Operations: put
(replace a stored record), insert, get, update, append. Needs valgrind
(Debian's ``valgrind`` package); a run takes a minute or two. Instruction
counts leave out the time of system calls, which both sides make alike.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ("put", "insert", "get", "update", "append")


def run(side_name: str, op: str, n: int) -> None:
    """The measured program: build, warm up, then ``n`` operations of ``op``."""
    sys.path.insert(0, str(HERE))
    import bench

    w = bench.Workload(n_batch=10000, max_ops=2300, n_stream=10)
    root = Path(tempfile.mkdtemp(prefix="statestore-instructions-"))
    side_class = bench.RawSQLiteSide if side_name == "raw" else bench.SQLiteStatestoreSide
    side = side_class(root, w, "normal")
    side.insert_batch(list(w.batch_ids))
    ids = w.random_ids(7)
    fresh = list(w.single_ids)
    rng = random.Random(3)
    streams = [rng.choice(bench.STREAMS) for _ in range(w.max_ops)]
    calls = {
        "put": lambda j: side.put(ids[j]),
        "insert": lambda j: side.insert(fresh[j]),
        "get": lambda j: side.get(ids[j]),
        "update": lambda j: side.update(ids[j]),
        "append": lambda j: side.append(j, streams[j]),
    }
    call = calls[op]
    try:
        for j in range(50 + n):
            call(j)
    finally:
        side.close()
        shutil.rmtree(root, ignore_errors=True)


def count(side: str, op: str, n: int) -> int:
    """Instructions of one whole run of ``n`` operations under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                side,
                op,
                "--run",
                str(n),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("side", choices=("ss", "raw"))
    parser.add_argument("op", choices=OPS)
    parser.add_argument("--run", type=int, metavar="N", help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.run is not None:
        run(args.side, args.op, args.run)
        return
    small, large = count(args.side, args.op, 200), count(args.side, args.op, 2200)
    print(f"{args.side} {args.op}: {(large - small) // 2000:,} instructions per operation")


if __name__ == "__main__":
    main()
