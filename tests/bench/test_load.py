"""The load generator's own pauses must not be measured as the server's."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bench.load import without_collector


@without_collector
async def _observe(seen: list[bool], hold: asyncio.Event | None = None) -> None:
    seen.append(gc.isenabled())
    if hold is not None:
        await hold.wait()
    seen.append(gc.isenabled())


async def test_the_collector_is_paused_while_a_load_runs_and_resumed_after() -> None:
    assert gc.isenabled()
    seen: list[bool] = []
    await _observe(seen)
    assert seen == [False, False]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_loads_side_by_side_resume_the_collector_once_the_last_ends() -> None:
    first_seen: list[bool] = []
    second_seen: list[bool] = []
    release_first, release_second = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_observe(first_seen, release_first))
    second = asyncio.create_task(_observe(second_seen, release_second))
    await asyncio.sleep(0)
    release_first.set()
    await first
    assert not gc.isenabled()  # the second load still runs
    release_second.set()
    await second
    assert first_seen == second_seen == [False, False]
    assert gc.isenabled()


async def test_a_load_that_fails_still_resumes_the_collector() -> None:
    @without_collector
    async def failing() -> None:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        await failing()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
