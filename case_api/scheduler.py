"""Closes ``awaiting_completion`` cases whose completion deadline has passed.

Any number of case-service processes may run this: the rows are locked with ``SKIP LOCKED`` and
the status is checked under the lock, so each case is closed exactly once.
"""

from __future__ import annotations

import asyncio
import logging

from case_api import service
from shared.runtime import Runtime

logger = logging.getLogger(__name__)


async def expire_once(runtime: Runtime) -> int:
    total = 0
    while True:
        async with runtime.work_database.transaction() as session:
            closed = await service.expire_overdue(session, runtime.clock.now())
        total += closed
        if closed == 0:
            return total


async def run_expiry(runtime: Runtime) -> None:
    while True:
        try:
            closed = await expire_once(runtime)
            if closed:
                logger.info("closed %d case(s) past their completion deadline", closed)
        except Exception as exc:
            logger.warning("expiry pass failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(runtime.settings.expiry_interval_seconds)
