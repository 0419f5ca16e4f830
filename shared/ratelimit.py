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


@dataclass
class RateLimiter:
    per_minute: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, caller: str) -> None:
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = time.monotonic()
        bucket = self.buckets.get(caller)
        if bucket is None:
            bucket = self.buckets[caller] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / rate)
            raise Problem(429, f"Rate limit of {self.per_minute} requests a minute exceeded.",
                          headers={"Retry-After": str(wait)})
        bucket.tokens -= 1.0


async def rate_limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(rate_limiter_of)]
