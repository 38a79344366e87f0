"""The file backend's index files (issue 14): a fresh process answers indexed queries and len()
reading only the candidate records, and never serves a stale answer.

The index is a cache of the records: these tests compare every answer it
gives with the one the full load of the records gives.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

import statestore as ss
from statestore.backends.files import FileStore
from statestore.backends.files.indexing import IndexFiles

INDEX_DIR = (".statestore", "index")


@attrs.define
class Doc:
    id: str
    kind: Any = None  # any JSON: str, int, float, bool, None, list
    group: str = ""
    n: int = 0


DOCS = ss.Collection("docs", Doc, key="id", indexes=["kind"], unique=["group"])
PLAIN = ss.Collection("plain", Doc, key="id")
OTHER = ss.Collection("other", Doc, key="id", indexes=["kind"])
EVENTS = ss.Log("events", Doc)
SCHEMA = ss.Schema("idx", version=1, collections=[DOCS, PLAIN, OTHER], logs=[EVENTS])
KINDS: list[Any] = ["a", "b", 1, 1.0, True, 0, False, None, 2.5, [1], "1"]


def open_files(root: Path, **kw: Any) -> FileStore:
    store = ss.open_store(f"files:{root}", SCHEMA, **kw)
    assert isinstance(store, FileStore)
    return store


def truth(root: Path, kinds: list[Any]) -> tuple[dict[str, list[str]], int]:
    """What the records say, through the full load (once loaded, the cache answers, not the index)."""
    with open_files(root, mode="read") as store:
        docs = store[DOCS]
        docs.all()
        assert DOCS.name in store._colls
        return {repr(k): [d.id for d in docs.find(kind=k)] for k in kinds}, len(docs)


def fresh_answers(root: Path, kinds: list[Any]) -> tuple[dict[str, list[str]], int, int]:
    """Indexed finds and len() in a fresh store object: (keys per kind, len, record files read)."""
    reads = 0
    with open_files(root, mode="read") as store:
        read_rec = store._read_rec

        def counting(coll: Any, name: str) -> Any:
            nonlocal reads
            reads += 1
            return read_rec(coll, name)

        store._read_rec = counting  # type: ignore[method-assign]
        docs = store[DOCS]
        count = len(docs)
        found = {repr(k): [d.id for d in docs.find(kind=k)] for k in kinds}
        assert DOCS.name not in store._colls, "answered through the full cache, not the index"
    return found, count, reads


def check(root: Path) -> None:
    kinds = [k for k in KINDS if not isinstance(k, list)]
    want, count = truth(root, kinds)
    found, fresh_count, _reads = fresh_answers(root, kinds)
    assert fresh_count == count
    assert found == want


def random_writes(store: ss.Store, rng: random.Random, n: int) -> None:
    docs = store[DOCS]
    for _ in range(n):
        key = f"d{rng.randrange(60):03d}"
        op = rng.random()
        if op < 0.2:
            docs.delete(key)
        elif op < 0.3:
            with store.transaction():
                for j in range(rng.randrange(1, 5)):
                    k = f"d{rng.randrange(60):03d}"
                    docs.put(Doc(k, rng.choice(KINDS), group=f"g-{k}", n=j))
        else:
            docs.put(Doc(key, rng.choice(KINDS), group=f"g-{key}", n=rng.randrange(9)))


def test_a_fresh_process_reads_only_the_candidates(tmp_path: Path) -> None:
    with open_files(tmp_path / "s") as store, store.transaction():
        for i in range(400):
            store[DOCS].insert(Doc(f"d{i:04d}", kind=f"k{i % 40}", group=f"g{i}"))
    found, count, reads = fresh_answers(tmp_path / "s", ["k7", "nope"])
    assert count == 400
    assert found == {"'k7'": [f"d{i:04d}" for i in range(7, 400, 40)], "'nope'": []}
    assert reads == 10  # the ten candidates, not 400 files
    with open_files(tmp_path / "s", mode="read") as store:
        assert [d.id for d in store[DOCS].find(group="g5")] == ["d0005"]  # a unique field is indexed too


def test_answers_match_the_records_through_every_kind_of_write(tmp_path: Path) -> None:
    rng = random.Random(7)
    with open_files(tmp_path / "s") as a, open_files(tmp_path / "s") as b:
        for _round in range(12):
            random_writes(rng.choice([a, b]), rng, rng.randrange(1, 25))
            check(tmp_path / "s")


def test_an_index_left_behind_by_a_killed_writer_is_never_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits whose writer died before writing the index: readers re-read what the head says changed."""
    root = tmp_path / "s"
    rng = random.Random(3)
    with open_files(root) as store:
        random_writes(store, rng, 30)
        check(root)
        with monkeypatch.context() as m:
            m.setattr(IndexFiles, "_index_commit", lambda *a, **k: None)  # the kill: records committed, no index
            store[DOCS].put(Doc("new", kind="a", group="new"))
            store[DOCS].delete("d001")
            random_writes(store, rng, 10)
        check(root)
        random_writes(store, rng, 10)  # the next writer chains on, carrying the missed changes
        check(root)
        with monkeypatch.context() as m:
            m.setattr(IndexFiles, "_index_commit", lambda *a, **k: None)
            random_writes(store, rng, 80)  # more than the change head remembers
        want, count = truth(root, ["a"])
        with open_files(root, mode="read") as reader:
            assert len(reader[DOCS]) == count
            assert DOCS.name in reader._colls  # answered by a full load: the index is too old to use
            assert [d.id for d in reader[DOCS].find(kind="a")] == want["'a'"]
        random_writes(store, rng, 1)  # rebuilt
        check(root)


def test_a_collection_left_alone_keeps_a_usable_index(tmp_path: Path) -> None:
    """Commits to other collections only: its chain is carried forward before the head forgets it."""
    root = tmp_path / "s"
    rng = random.Random(4)
    with open_files(root) as store:
        random_writes(store, rng, 20)
        for i in range(200):
            store[OTHER].put(Doc(f"o{i % 10}", kind=i))
            store[PLAIN].put(Doc(f"p{i % 10}", kind=i))
    check(root)  # answered from the index, not a full load
    with open_files(root) as store:
        for i in range(200):  # a log append is a commit that moves the generation too
            store[EVENTS].append(Doc(f"e{i}"))
    check(root)


def test_deleting_the_index_folder_is_always_safe(tmp_path: Path) -> None:
    root = tmp_path / "s"
    rng = random.Random(5)
    with open_files(root) as store:
        random_writes(store, rng, 40)
        shutil.rmtree(root.joinpath(*INDEX_DIR))
        _want, count = truth(root, [])
        with open_files(root, mode="read") as reader:
            assert len(reader[DOCS]) == count
        random_writes(store, rng, 40)  # rebuilt when its held-back changes are written (every 24 commits)
        assert root.joinpath(*INDEX_DIR, "docs.idx").exists()
        check(root)
        shutil.rmtree(root.joinpath(*INDEX_DIR))
        random_writes(store, rng, 40)  # a writer whose index folder vanished under it
        assert root.joinpath(*INDEX_DIR, "docs.idx").exists()
        check(root)


def test_damaged_index_files_are_not_used(tmp_path: Path) -> None:
    root = tmp_path / "s"
    rng = random.Random(9)
    with open_files(root) as store:
        random_writes(store, rng, 40)
    folder = root.joinpath(*INDEX_DIR)
    delta = folder / "docs.delta"
    with delta.open("ab") as f:
        f.write(b'{"since": 1, "gen"')  # a line torn by a kill
    check(root)
    with open_files(root) as store:
        random_writes(store, rng, 5)  # cut off before the next line
    assert b'"gen"\n' not in delta.read_bytes()
    check(root)
    base = folder / "docs.idx"
    for damage in (b"", b"garbage\n", base.read_bytes()[:-3], base.read_bytes() + b"x"):
        base.write_bytes(damage)
        _want, count = truth(root, [])
        with open_files(root, mode="read") as reader:
            assert len(reader[DOCS]) == count
            assert DOCS.name in reader._colls  # not from the damaged index: from the records
    with open_files(root) as store:
        random_writes(store, rng, 3)
    check(root)


def test_records_stay_plain_json_and_the_delta_stays_small(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with open_files(root) as store:
        for i in range(3000):
            store[DOCS].put(Doc(f"d{i % 50:03d}", kind=f"k{i % 7}", group=f"g{i % 50}", n=i))
    assert sorted(p.name for p in (root / "docs").iterdir()) == [f"d{i:03d}.json" for i in range(50)]
    folder = root.joinpath(*INDEX_DIR)
    assert (folder / "docs.delta").stat().st_size <= max(16 << 10, (folder / "docs.idx").stat().st_size // 2) + 4096
    check(root)


_KILL_CHILD = textwrap.dedent(
    """
    import random, sys
    sys.path.insert(0, sys.argv[2])
    import test_files_index as t
    store = t.open_files(__import__("pathlib").Path(sys.argv[1]))
    rng = random.Random(int(sys.argv[3]))
    print("ready", flush=True)
    while True:
        t.random_writes(store, rng, 1)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_at_any_moment_never_leaves_a_stale_index(tmp_path: Path) -> None:
    """SIGKILL a writer at random moments (between records and index too); every answer matches the records."""
    root = tmp_path / "s"
    open_files(root).close()
    rng = random.Random(11)
    for kill in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_CHILD, str(root), str(Path(__file__).parent), str(kill)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.stderr else b""
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        check(root)


def test_info_reads_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``statestore info`` counted records through a read transaction that loaded them all (issue 14)."""
    import json

    from click.testing import CliRunner

    from statestore.cli import main

    root = tmp_path / "s"
    with open_files(root) as store, store.transaction():
        for i in range(200):
            store[DOCS].insert(Doc(f"d{i:03d}", kind="a", group=f"g{i}"))
    reads = 0
    read_rec = FileStore._read_rec

    def counting(self: FileStore, coll: Any, name: str) -> Any:
        nonlocal reads
        reads += 1
        return read_rec(self, coll, name)

    monkeypatch.setattr(FileStore, "_read_rec", counting)
    result = CliRunner().invoke(main, ["info", f"files:{root}", "--json"])
    assert result.exit_code == 0, result.output
    counts = {c["name"]: c["records"] for c in json.loads(result.output)["schemas"][0]["collections"]}
    assert counts == {"docs": 200, "plain": 0, "other": 0}
    assert reads == 0


def test_folding_the_delta_gives_the_base_a_rebuild_gives(tmp_path: Path) -> None:
    """The delta folded into the base line by line is byte for byte what building from the records gives."""
    from statestore.backends.files.index import Base, build_base, merge, read_chain

    root = tmp_path / "s"
    rng = random.Random(8)
    with open_files(root) as store:
        random_writes(store, rng, 300)
    with open_files(root) as store:
        random_writes(store, rng, 1)  # another writer: its line carries what the first one held back
        folder = root.joinpath(*INDEX_DIR)
        base = Base.parse((folder / "docs.idx").read_bytes())
        chain = read_chain(base, (folder / "docs.delta").read_bytes(), DOCS.lookup_fields)
        assert chain is not None
        assert chain.changes  # something to fold
        records = {n.name: json.loads(n.read_text()) for n in (root / "docs").iterdir()}
        assert merge(chain, chain.tip) == build_base(chain.tip, DOCS.lookup_fields, records.items())


def test_a_writer_alone_appends_one_delta_line_per_run_of_commits(tmp_path: Path) -> None:
    """Appending a line on every put cost a third of a put: a run of one writer's commits shares one line."""
    root = tmp_path / "s"
    with open_files(root) as store:
        store[DOCS].put(Doc("first", kind="a", group="first"))
        delta = root.joinpath(*INDEX_DIR, "docs.delta")
        before = delta.read_bytes().count(b"\n")
        for i in range(96):
            store[DOCS].put(Doc(f"d{i}", kind=i % 3, group=f"g{i}"))
        assert delta.read_bytes().count(b"\n") - before <= 96 // 20
        check(root)  # what was held back is found through the change head
    check(root)


def _failing_index_write(*_args: Any, **_kw: Any) -> None:
    raise OSError("no space left on device")


def test_two_writers_taking_turns_in_runs_longer_and_shorter_than_a_delta_line(tmp_path: Path) -> None:
    """A writer whose every commit since its line's tip was its own skips the head's history: never after another's.

    Runs of 1 to 50 commits (a delta line carries up to 24 of one writer's
    commits) by two store objects in turn: after each run, a fresh process's
    answers are the records', and the chain folded into the base is byte for
    byte the base a rebuild from the records gives.
    """
    from statestore.backends.files.index import Base, build_base, merge, read_chain

    root = tmp_path / "s"
    rng = random.Random(14)
    folder = root.joinpath(*INDEX_DIR)
    folded = 0
    with open_files(root) as a, open_files(root) as b:
        for turn, run in enumerate([30, 5, 26, 1, 50, 24, 25, 2, 48]):
            writer, other = (a, b) if turn % 2 else (b, a)
            random_writes(writer, rng, run)
            if turn in (3, 6):
                # The other writer commits but cannot write its index line (a full disk, say): the
                # next line of the writer must still carry that commit's changes, from the head.
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(other, "_index_one", _failing_index_write)
                    other[DOCS].put(Doc(f"lost{turn}", kind="a", group=f"lost{turn}"))
                random_writes(writer, rng, 1)
                check(root)
                random_writes(writer, rng, 30)
            random_writes(other, rng, 1)  # the other writer: its line carries what was held back
            check(root)
            base = Base.parse((folder / "docs.idx").read_bytes())
            chain = read_chain(base, (folder / "docs.delta").read_bytes(), DOCS.lookup_fields)
            assert chain is not None
            records = {n.name: json.loads(n.read_text()) for n in (root / "docs").iterdir()}
            head_gen = int((root / ".statestore" / "changes").read_bytes().split()[0])
            if chain.tip == head_gen:  # (a writer may still hold its run's last commits back)
                assert merge(chain, chain.tip) == build_base(chain.tip, DOCS.lookup_fields, records.items())
                folded += 1
    assert folded >= 5


# ---------------------------------------------------------------- log summaries (issue 14, point 2)

_PAD = "p" * 300  # ~400-byte entries: 400 of them pass the summary's 64 KB step


def _fill_log(root: Path, n: int, start: int = 0) -> None:
    with open_files(root) as store, store.transaction():
        for i in range(start, start + n):
            store[EVENTS].append(Doc(f"e{i}", group=_PAD, n=i), stream=f"s{i % 3}")


def _fresh_log_counts(root: Path) -> tuple[int, int, int]:
    """len() and last_seq() of the log in a fresh store object, and how many log lines it parsed."""
    parsed = 0
    with open_files(root, mode="read") as store:
        parse = store._parse_line

        def counting(*args: Any, **kw: Any) -> Any:
            nonlocal parsed
            parsed += 1
            return parse(*args, **kw)

        store._parse_line = counting  # type: ignore[method-assign]
        return len(store[EVENTS]), store[EVENTS].last_seq(), parsed


def _summary_path(root: Path) -> Path:
    return root.joinpath(*INDEX_DIR, "events.count")


def _summary_text(doc: dict[str, Any]) -> str:
    """A summary as a writer writes it: with the crc of the rest."""
    import zlib

    doc = {k: v for k, v in doc.items() if k != "crc"}
    doc["crc"] = zlib.crc32(json.dumps(doc, sort_keys=True).encode("ascii"))
    return json.dumps(doc, sort_keys=True)


def test_a_fresh_process_counts_log_entries_without_reading_them(tmp_path: Path) -> None:
    """``len(log)``, ``last_seq()`` and ``statestore info`` parsed every line of the log (issue 14)."""
    from click.testing import CliRunner

    from statestore.cli import main

    root = tmp_path / "s"
    _fill_log(root, 400)
    assert json.loads(_summary_path(root).read_text())["entries"] == 400  # plain JSON, one line
    assert _fresh_log_counts(root) == (400, 400, 2)  # each answer checks only the summary's last line
    _fill_log(root, 5, start=400)  # past the summary: read, not skipped
    count, last, parsed = _fresh_log_counts(root)
    assert (count, last) == (405, 405)
    assert parsed == 2 + 2 * 5
    result = CliRunner().invoke(main, ["info", f"files:{root}", "--json"])
    assert result.exit_code == 0, result.output
    logs = json.loads(result.output)["schemas"][0]["logs"]
    assert logs == [{"name": "events", "entries": 405, "last_seq": 405}]


def test_a_log_summary_that_does_not_fit_the_file_is_not_trusted(tmp_path: Path) -> None:
    """Missing, damaged, stale or foreign summaries (hand edits, a copied store) never give a wrong count."""
    root = tmp_path / "s"
    _fill_log(root, 400)
    log = root / "events.jsonl"
    summary = _summary_path(root)
    good = summary.read_bytes()
    lines = log.read_bytes().splitlines(keepends=True)

    summary.unlink()  # an older store, or the index folder deleted
    assert _fresh_log_counts(root)[:2] == (400, 400)
    torn = good.replace(b'"entries": 400', b'"entries": 401')  # a rewrite caught half-way: the crc says so
    negative = _summary_text({**json.loads(good), "entries": -1}).encode()
    for bad in (b"", b"{", b'{"format": 1}', b"[]", torn, negative):
        summary.write_bytes(bad)
        assert _fresh_log_counts(root)[:2] == (400, 400)
    summary.write_bytes(good)

    # The file replaced by hand with its first half (another inode): the summary is not about it.
    half = root / "half.tmp"
    half.write_bytes(b"".join(lines[:200]))
    os.replace(half, log)
    assert _fresh_log_counts(root)[:2] == (200, 200)

    # Cut short in place (same inode): shorter than the summary's end.
    log.write_bytes(b"".join(lines))
    ino = log.stat().st_ino
    summary.write_text(_summary_text({**json.loads(good), "ino": ino}))
    assert _fresh_log_counts(root) == (400, 400, 2)  # trusted again
    with open(log, "r+b") as f:
        f.truncate(sum(len(x) for x in lines[:300]))
    assert log.stat().st_ino == ino
    assert _fresh_log_counts(root)[:2] == (300, 300)

    # Rewritten in place with other seqs where the summary's last line was: not trusted either.
    renumbered = [x.replace(b'"seq":', b'"seq":1') for x in lines]  # seq n -> 1n: still increasing
    with open(log, "r+b") as f:
        f.write(b"".join(renumbered))
    assert log.stat().st_ino == ino
    assert _fresh_log_counts(root)[:2] == (400, 1400)


def test_damage_after_a_log_summary_is_still_reported(tmp_path: Path) -> None:
    """The lines a summary does not cover are checked as always: a damaged one names its line."""
    root = tmp_path / "s"
    _fill_log(root, 400)
    with open(root / "events.jsonl", "ab") as f:
        f.write(b"not json\n")
    with open_files(root, mode="read") as store, pytest.raises(ss.CorruptStoreError) as info:
        len(store[EVENTS])
    assert info.value.line == 401


def test_len_in_a_fresh_process_reads_only_the_index_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``len()`` read the whole base file (names and values) to take its count (issue 14, point 2)."""
    root = tmp_path / "s"
    with open_files(root) as store, store.transaction():
        for i in range(400):
            store[DOCS].insert(Doc(f"d{i:04d}", kind=f"k{i % 7}", group=f"g{i}"))
    shutil.rmtree(root.joinpath(*INDEX_DIR))
    with open_files(root) as store:
        store[OTHER].put(Doc("o1"))  # the next commit rebuilds the bases from the records
    assert root.joinpath(*INDEX_DIR, "docs.idx").stat().st_size > 4096
    want = [f"d{i:04d}" for i in range(400) if i % 7 == 3]
    with open_files(root, mode="read") as store:
        assert len(store[DOCS]) == 400
        base = store._index_bases["docs"][1]
        assert base is not None
        assert base.raw is None  # the header only
        assert [d.id for d in store[DOCS].find(kind="k3")] == want  # the body read when a lookup needs it
        assert base.raw is not None
        assert DOCS.name not in store._colls
    # The base file changed between its header and its body: no answer from it, the right answer anyway.
    monkeypatch.setattr(FileStore, "_base_body", lambda *a: None)
    with open_files(root, mode="read") as store:
        assert len(store[DOCS]) == 400
        assert [d.id for d in store[DOCS].find(kind="k3")] == want
        assert DOCS.name in store._colls  # answered by loading the records


def _delta_lines(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in root.joinpath(*INDEX_DIR, "docs.delta").read_bytes().splitlines()]


def check_kinds(root: Path, kinds: list[Any]) -> None:
    want, count = truth(root, kinds)
    found, fresh_count, _reads = fresh_answers(root, kinds)
    assert (found, fresh_count) == (want, count)


def test_updates_that_keep_the_indexed_values_add_nothing_to_the_index(tmp_path: Path) -> None:
    """An update of other fields left one entry per record in the delta, and a new base every few hundred
    commits (issue 14 point 3): the index holds the same values, so its lines now carry nothing for them.

    Answers stay the records' throughout, also when another writer changed an indexed value in between
    and could not write its own line (a full disk): that record is carried by the next line.
    """
    root = tmp_path / "s"
    kinds = ["k0", "k1", "k2", "k3", "moved"]
    with open_files(root) as a, open_files(root) as b:
        with a.transaction():
            for i in range(30):
                a[DOCS].insert(Doc(f"d{i:03d}", kind=f"k{i % 3}", group=f"g{i}"))
        a[DOCS].put(Doc("d000", kind="k0", group="g0", n=1))  # a line, from here on this writer's own
        start = len(_delta_lines(root))
        for r in range(100):
            key = f"d{r % 30:03d}"
            if r % 2:
                a[DOCS].update(key, lambda d: attrs.evolve(d, n=d.n + 1))
            else:
                with a.transaction():  # a put replacing a record, and a kind written as an equal value
                    old = a[DOCS][key]
                    a[DOCS].put(attrs.evolve(old, n=old.n + 1))
        lines = _delta_lines(root)[start:]
        assert len(lines) >= 3  # still carried forward, within the generations the head remembers
        assert all(line["set"] == {} and line["del"] == [] for line in lines), lines
        check_kinds(root, kinds)

        # Another writer moves d001 to another kind; its own index write fails.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(b, "_index_one", _failing_index_write)
            b[DOCS].update("d001", lambda d: attrs.evolve(d, kind="moved"))
        # This writer now rewrites d001 with that same kind: its line must still carry it.
        a[DOCS].update("d001", lambda d: attrs.evolve(d, n=d.n + 1))
        for r in range(60):
            a[DOCS].update(f"d{r % 30:03d}", lambda d: attrs.evolve(d, n=d.n + 1))
        check_kinds(root, kinds)
        found, _count, _reads = fresh_answers(root, ["moved", "k1"])
        assert found["'moved'"] == ["d001"]
        assert "d001" not in found["'k1'"]
        # And changes of indexed values among updates of other fields are all carried.
        for r in range(90):
            key = f"d{r % 30:03d}"
            kind = f"k{(r // 30 + 1) % 4}" if r % 7 == 0 else None
            a[DOCS].update(key, lambda d, kind=kind: attrs.evolve(d, kind=kind or d.kind, n=d.n + 1))
        check_kinds(root, kinds)
    check_kinds(root, kinds)


def test_a_transaction_reading_many_records_remembers_a_bounded_number(tmp_path: Path) -> None:
    """Txn.prior keeps the first PRIOR_MAX records a write transaction reads per collection, not all of them;
    records past that are written to the index again, and every answer stays the records'."""
    from statestore.backends.files.cache import PRIOR_MAX

    root = tmp_path / "s"
    kinds = ["k0", "k1", "moved"]
    n = PRIOR_MAX + 60
    with open_files(root) as store:
        with store.transaction():
            for i in range(n):
                store[DOCS].insert(Doc(f"d{i:04d}", kind=f"k{i % 2}", group=f"g{i}"))
        for _round in range(2):
            with store.transaction():
                for i in range(n):  # every record read, half of them written (a commit of > 256 files
                    doc = store[DOCS][f"d{i:04d}"]  # makes readers load the collection: not the point here)
                    if i % 2 == _round:
                        store[DOCS].put(attrs.evolve(doc, n=doc.n + 1, kind="moved" if i % 37 == 0 else doc.kind))
                txn = store._txn()
                assert txn is not None
                assert len(txn.prior[DOCS.name]) == PRIOR_MAX
            check_kinds(root, kinds)
        for i in range(0, n, 7):  # and lone writes of this writer, held back
            store[DOCS].update(f"d{i:04d}", lambda d: attrs.evolve(d, n=d.n + 1))
        check_kinds(root, kinds)
    check_kinds(root, kinds)
