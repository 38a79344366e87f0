"""How long statestore takes to start, against a baseline measured in the same run.

Runs each command in fresh processes (the median of ``--runs``, default 7,
taken in turns so the machine's state is shared) and prints the medians and
the ratios to the baseline ``python -c "import sqlite3, json, attrs"``::

    python tools/bench_startup.py             # prints the table; exit 1 if a target is missed
    python tools/bench_startup.py --runs 15

Targets: ``import statestore`` at most 1.6x the baseline, ``statestore --help``
at most 2.5x. ``statestore --help`` runs the console script installed beside
this interpreter (``python -m statestore --help`` if there is none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGETS = {"import statestore": 1.6, "statestore --help": 2.5}


def commands() -> dict[str, list[str]]:
    """What to time: the baseline first."""
    py = [sys.executable]
    script = Path(sys.executable).with_name("statestore")
    help_cmd = [str(script), "--help"] if script.is_file() else [*py, "-m", "statestore", "--help"]
    return {
        "baseline: import sqlite3, json, attrs": [*py, "-c", "import sqlite3, json, attrs"],
        "import statestore": [*py, "-c", "import statestore"],
        "statestore --help": help_cmd,
        "bare interpreter": [*py, "-c", "pass"],
    }


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (the median is kept)")
    args = parser.parse_args(argv)
    cmds = commands()
    for argv_ in cmds.values():  # warm the file cache; not counted
        time_once(argv_)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, argv_ in cmds.items():
            samples[name].append(time_once(argv_))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    baseline = medians["baseline: import sqlite3, json, attrs"]
    missed = 0
    print(f"median of {args.runs} fresh processes each ({sys.version.split()[0]})")
    for name, median in medians.items():
        ratio = median / baseline
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            ok = ratio <= target
            missed += not ok
            verdict = f"  target <= {target:.2g}x: {'ok' if ok else 'MISSED'}"
        print(f"  {name:<40} {median * 1000:7.1f} ms  {ratio:5.2g}x{verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
