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


async def retried(call: Callable[[], Awaitable[T]], *, when: Callable[[Exception], bool],
                  wait_initial: float = 0.2, wait_jitter: float = 1.0) -> T:
    """``call()`` until it returns, or until it fails in a way ``when`` does not retry (that
    failure propagates). ``when`` sees every failure first: the place to log or count it."""
    async for attempt in stamina.retry_context(on=when, attempts=None, timeout=None,
                                               wait_initial=wait_initial,
                                               wait_max=MAX_WAIT_SECONDS,
                                               wait_jitter=wait_jitter):
        with attempt:
            return await call()
    raise AssertionError("unreachable: stamina retries until `when` says no")


async def forever(call: Callable[[], Awaitable[T]], *, what: str,
                  on: type[Exception] | tuple[type[Exception], ...] = Exception,
                  traceback: bool = False) -> T:
    """``call()`` until it returns; each failure of type ``on`` is logged and waited out
    (others propagate). ``traceback``: log the stack too, for failures nobody expected."""
    attempts = 0

    def logged(exc: Exception) -> bool:
        nonlocal attempts
        if not isinstance(exc, on):
            return False
        attempts += 1
        logger.warning("%s failed (attempt %d): %s: %s", what, attempts, type(exc).__name__,
                       exc, exc_info=exc if traceback else None)
        return True

    return await retried(call, when=logged)
