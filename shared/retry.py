"""The one retry policy for background work: capped exponential backoff with jitter (stamina)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Background loops (relays, consumers, dead letters) wait for a backing service as long as it
# takes, never more than this between two tries.
MAX_WAIT_SECONDS = 5.0


async def forever(call: Callable[[], Awaitable[T]], *, what: str) -> T:
    """``call()`` until it succeeds; every failure is logged and waited out."""
    async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None,
                                               wait_initial=0.2, wait_max=MAX_WAIT_SECONDS):
        with attempt:
            try:
                return await call()
            except Exception as exc:
                logger.warning("%s failed (attempt %d): %s: %s", what, attempt.num,
                               type(exc).__name__, exc)
                raise
    raise AssertionError("unreachable: stamina retries forever")
