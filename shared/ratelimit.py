"""Per-token rate limiting: a token bucket per caller, in process memory."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from shared.problems import Problem


@dataclass
class _Bucket:
    tokens: float
    updated: float


# Callers (client addresses for public pages) remembered at most; full buckets are forgotten first.
MAX_CALLERS = 50_000


@dataclass
class RateLimiter:
    per_minute: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _forget_idle(self, now: float) -> None:
        """A bucket untouched for a minute is full again: dropping it changes nothing."""
        for caller in [c for c, b in self.buckets.items() if now - b.updated >= 60.0]:
            del self.buckets[caller]

    def check(self, caller: str) -> None:
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        bucket = self.buckets.get(caller)
        if bucket is None and len(self.buckets) >= MAX_CALLERS:
            self._forget_idle(now)
        if bucket is None:
            bucket = self.buckets[caller] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / rate)
            raise Problem(429, f"Rate limit of {self.per_minute} requests a minute exceeded.",
                          headers={"Retry-After": str(wait)})
        bucket.tokens -= 1.0


def rate_limiter_of(request: Request) -> RateLimiter:
    """The per-token limiter of the app serving ``request``."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def public_rate_limiter_of(request: Request) -> RateLimiter:
    """The per-address limiter of the pages open without a token (the complainant's status)."""
    limiter: RateLimiter = request.app.state.public_rate_limiter
    return limiter


# Endpoints take their limiter as a dependency; the buckets live as long as the app.
async def _rate_limiter(request: Request) -> RateLimiter:
    return rate_limiter_of(request)


async def _public_rate_limiter(request: Request) -> RateLimiter:
    return public_rate_limiter_of(request)


# Dependencies are coroutines: FastAPI runs a plain function in a thread, a hop that costs a
# request more than the dependency itself.
RateLimiterDep = Annotated[RateLimiter, Depends(_rate_limiter)]
PublicRateLimiterDep = Annotated[RateLimiter, Depends(_public_rate_limiter)]
