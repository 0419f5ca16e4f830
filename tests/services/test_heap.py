"""After start-up a server's own objects are out of the collector's sight; garbage is not."""

from __future__ import annotations

import gc
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
