"""The one retry policy for background work: capped exponential backoff with jitter (stamina)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Each retry is logged here, naming what is retried; stamina's own log line would only say
# "<context block>".
stamina.instrumentation.set_on_retry_hooks([])

# Background loops (relays, consumers, dead letters) wait for a backing service as long as it
# takes, never more than this between two tries.
MAX_WAIT_SECONDS = 5.0


async def forever(call: Callable[[], Awaitable[T]], *, what: str,
                  on: type[Exception] | tuple[type[Exception], ...] = Exception,
                  traceback: bool = False) -> T:
    """``call()`` until it returns; each failure of type ``on`` is logged and waited out
    (others propagate). ``traceback``: log the stack too, for failures nobody expected."""
    async for attempt in stamina.retry_context(on=on, attempts=None, timeout=None,
                                               wait_initial=0.2, wait_max=MAX_WAIT_SECONDS):
        with attempt:
            try:
                return await call()
            except on as exc:
                logger.warning("%s failed (attempt %d): %s: %s", what, attempt.num,
                               type(exc).__name__, exc, exc_info=traceback)
                raise
    raise AssertionError("unreachable: stamina retries forever")
