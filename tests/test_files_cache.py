"""The file backend's in-memory cache: how it is built and what a fresh process pays (issue 14).

Timings live in ``tools/bench.py --suite fresh``; these tests check the shape of
the work (what is called, what is read, what is copied), which is what makes
the timings flat.
"""

from __future__ import annotations

import gc
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statestore as ss
from statestore.backends.files import FileStore
from statestore.backends.files import names as keynames
from statestore.backends.files.cache import Records
from statestore.testing.models import SCHEMA, TASKS, Task


def open_files(root: Path, **kw: Any) -> FileStore:
    store = ss.open_store(f"files:{root}", SCHEMA, **kw)
    assert isinstance(store, FileStore)
    return store


def fill(root: Path, n: int) -> None:
    with open_files(root) as store, store.transaction():
        tasks = store[TASKS]
        for i in random.Random(1).sample(range(n), n):
            tasks.insert(Task(f"t{i:05d}", status=("todo", "done")[i % 2], points=i % 7))


def test_a_fresh_cache_is_built_in_one_sort_not_one_insert_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inserting each name into sorted lists in directory order is O(N²): the first load sorts once."""
    fill(tmp_path / "s", 300)
    calls = 0
    put = Records.put

    def counting(self: Records, name: str, rec: Any) -> None:
        nonlocal calls
        calls += 1
        put(self, name, rec)

    monkeypatch.setattr(Records, "put", counting)
    with open_files(tmp_path / "s", mode="read") as store:
        tasks = store[TASKS]
        assert len(tasks) == 300
        assert tasks.keys() == [f"t{i:05d}" for i in range(300)]
        assert len(tasks.find(status="todo")) == 150
    assert calls == 0


def test_the_collector_is_paused_while_a_cache_is_built(tmp_path: Path) -> None:
    """Each parsed record is a few container objects: the GC would scan the growing cache again and again."""
    fill(tmp_path / "s", 2000)
    runs = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal runs
        runs += phase == "start"

    enabled = gc.isenabled()
    with open_files(tmp_path / "s", mode="read") as store:
        gc.callbacks.append(count)
        try:
            assert len(store[TASKS]) == 2000
        finally:
            gc.callbacks.remove(count)
        assert gc.isenabled() == enabled  # restored as it was
    # (Once re-enabled, the collector owes one young-generation pass: one, not one per 700 objects.)
    assert runs <= 1


_KEYS = st.lists(st.text(max_size=6), unique=True, max_size=40)


@given(_KEYS, st.randoms(use_true_random=False))
def test_building_at_once_equals_putting_one_by_one(keys: list[str], rnd: random.Random) -> None:
    recs = [(keynames.encode(k), (k, 1 + i, {"status": ("a", "b", None)[i % 3]})) for i, k in enumerate(keys)]
    rnd.shuffle(recs)
    one_by_one = Records()
    for name, rec in recs:
        one_by_one.put(name, rec)
    one_by_one.lookup("status", "a")
    built = Records()
    built.build(recs)
    assert built.records == one_by_one.records
    assert built.keys == one_by_one.keys
    assert built.names == one_by_one.names
    assert built.lookup("status", "a") == one_by_one.lookup("status", "a")
    # And it stays a working cache: later puts keep the order.
    for target in (built, one_by_one):
        target.put(keynames.encode("zz~"), ("zz~", 1, {}))
        if recs:
            target.put(recs[0][0], None)
    assert built.names == one_by_one.names
    assert built.keys == one_by_one.keys


def test_a_read_transaction_shares_the_cache_instead_of_copying_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying every collection cost 10 ms per read transaction at 100k records (issue 14)."""
    fill(tmp_path / "s", 200)
    copies = 0
    copy = Records.copy

    def counting(self: Records, **kw: Any) -> Records:
        nonlocal copies
        copies += 1
        return copy(self, **kw)

    monkeypatch.setattr(Records, "copy", counting)
    with open_files(tmp_path / "s", mode="read") as store:
        tasks = store[TASKS]
        assert len(tasks) == 200
        for _ in range(3):
            with store.transaction():
                assert len(tasks) == 200
                assert tasks.get("t00007") is not None
        assert copies == 0
        # Once no transaction holds it, the cache changes in place again.
        with open_files(tmp_path / "s") as writer:
            writer[TASKS].delete("t00007")
        assert len(tasks) == 199
        with pytest.raises(KeyError), store.transaction():
            assert tasks.get("t00008") is not None
            raise KeyError("a read transaction that ends with an error releases its snapshot too")
        with open_files(tmp_path / "s") as writer:
            writer[TASKS].delete("t00008")
        assert len(tasks) == 198
        assert copies == 0


def test_a_shared_snapshot_is_copied_before_the_cache_changes(tmp_path: Path) -> None:
    """Writes after the snapshot, seen by another thread through the shared cache: the snapshot does not move."""
    fill(tmp_path / "s", 50)
    with open_files(tmp_path / "s", mode="read") as store, open_files(tmp_path / "s") as writer:
        tasks = store[TASKS]
        assert tasks["t00001"].title == ""
        assert len(tasks.find(status="done")) == 25
        seen: list[tuple[str, int, int]] = []

        def outside() -> None:  # another thread of this process: no transaction, the store's cache
            seen.append((tasks["t00001"].title, len(tasks), len(tasks.find(status="done"))))

        with store.transaction():
            writer[TASKS].put(Task("t00001", "changed", status="todo"))
            writer[TASKS].delete("t00002")
            run(outside)
            writer[TASKS].put(Task("t00003", "changed too", status="todo"))
            run(outside)
            assert seen == [("changed", 49, 24), ("changed", 49, 23)]
            # The snapshot did not move.
            assert tasks["t00001"].title == ""
            assert tasks["t00003"].title == ""
            assert "t00002" in tasks
            assert len(tasks) == 50
            assert len(tasks.find(status="done")) == 25
        assert tasks["t00003"].title == "changed too"
        assert len(tasks) == 49
        assert len(tasks.find(status="done")) == 23


def run(fn: Any) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()
