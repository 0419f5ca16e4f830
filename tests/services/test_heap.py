"""After start-up a server's own objects are out of the collector's sight; garbage is not."""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator

import pytest

from services import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_start_up_built_and_still_collects_later_garbage() -> None:
    built_at_start_up = _Node()
    settle_cycle = _Node()
    settle_cycle.other = settle_cycle
    left_behind = weakref.ref(settle_cycle)
    del settle_cycle
    heap.settle()
    assert left_behind() is None  # start-up's garbage was collected before the freeze
    assert gc.get_freeze_count() > 0
    assert all(obj is not built_at_start_up for obj in gc.get_objects())  # not scanned again
    assert gc.get_threshold() == heap.THRESHOLDS
    later = _Node()
    later.other = later
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None  # a cycle made while serving is still collected


def _private_growth_of_a_child_collecting() -> int:
    """How many kB of its parent's heap a forked child copies by one full collection (the
    growth of its private dirty memory, /proc/self/smaps_rollup)."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            before = _private_dirty_kb()
            gc.collect()
            os.write(writing, str(_private_dirty_kb() - before).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as answer:
        grown = int(answer.read())
    os.waitpid(pid, 0)
    return grown


def _private_dirty_kb() -> int:
    with open("/proc/self/smaps_rollup") as rollup:
        return sum(int(line.split()[1]) for line in rollup
                   if line.startswith(("Private_Dirty:", "Private_Hugetlb:")))


@pytest.mark.usefixtures("restored")
def test_children_forked_after_sharing_do_not_copy_the_heap_by_collecting() -> None:
    # A heap of some size, as a server's after importing its app.
    kept = [[_Node() for _ in range(100)] for _ in range(2_000)]
    gc.collect()
    unshared = _private_growth_of_a_child_collecting()
    heap.share_with_forks()
    shared = _private_growth_of_a_child_collecting()
    assert unshared > 4_096  # the collection wrote to every page of the heap it walked
    assert shared < unshared / 4, (shared, unshared)
    del kept
