"""Rate limits per caller (a token, a client address), held by every process of a service at once.

A limit of ``n`` a minute is a token bucket of ``n`` that refills at ``n`` a minute, kept as GCRA
(the generic cell rate algorithm) keeps it: one number per caller, its *theoretical arrival
time* (TAT), the moment its bucket would be full again. A request at ``now`` moves it to
``max(TAT, now) + 60 s / n`` and is refused when that lands more than a minute after ``now``,
told to retry once it would not. Same answers as counting tokens, in one integer.

``aduan serve`` runs several HTTP worker processes (services/workers.py), and a caller's
requests reach whichever accepts its connection. So the states live in a file the main process
creates before it starts the workers, and every worker (one started again later too) maps it
(``CallerTable.attach``): a fixed table of slots, each a 64-bit hash of the caller and its TAT,
under ``flock`` on that file for the few microseconds a check takes. The kernel drops the lock
of a process that dies, so a killed worker never leaves the others waiting. One process alone
(``ADUAN_HTTP_WORKERS=1``, tests' apps) keeps the same table in its own memory, unlocked.

A caller's slot is one of ``PROBE`` next to where its hash points. A slot whose TAT has passed
is a full bucket, remembered or not, so it is taken over freely. When all ``PROBE`` slots hold
callers still owed time, the one nearest a full bucket is forgotten: that caller is treated as
new on its next request (let through, never refused wrongly), and the newcomer gets a slot of
its own. Size the table (``ADUAN_RATE_LIMIT_CALLERS``) above the callers seen within a minute.
The hash is keyed by a random secret of the table, so no client can pick addresses that collide.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from fastapi import Depends, Request

from shared.problems import Problem

WINDOW_NS = 60 * 10**9  # a limit is "n a minute"
PROBE = 8  # slots a caller may take, from where its hash points
# magic, slots, secret of the caller hash
_HEADER = struct.Struct("<8sQ16s")
_MAGIC = b"aduanRL1"
# hash of the caller (0: a slot never used), its TAT in CLOCK_MONOTONIC nanoseconds (one clock
# for every process of the machine)
_SLOT = struct.Struct("<Qq")
_SLOTS_AT = 64
_PROBED = struct.Struct("<" + "Qq" * PROBE)
# Callers' hashes each process remembers (a blake2b costs a check about as much as the rest).
_KEYS_REMEMBERED = 4096


class CallerTable:
    """Callers' TATs in a fixed table of memory, shared by processes when mapped from a file."""

    def __init__(self, memory: mmap.mmap, lock_fd: int | None) -> None:
        magic, slots, secret = _HEADER.unpack_from(memory, 0)
        if magic != _MAGIC or len(memory) != _SLOTS_AT + (slots + PROBE - 1) * _SLOT.size:
            raise ValueError("not a rate limit table")
        self.slots: int = slots
        self._memory = memory
        self._lock_fd = lock_fd
        self._secret: bytes = secret
        self._keys: dict[str, int] = {}

    @staticmethod
    def _size(slots: int) -> int:
        # PROBE - 1 slots past the end: a caller's slots never wrap around.
        return _SLOTS_AT + (slots + PROBE - 1) * _SLOT.size

    @classmethod
    def _fill(cls, memory: mmap.mmap, slots: int) -> None:
        _HEADER.pack_into(memory, 0, _MAGIC, slots, secrets.token_bytes(16))

    @classmethod
    def private(cls, slots: int) -> CallerTable:
        """A table for this process alone."""
        memory = mmap.mmap(-1, cls._size(slots))
        cls._fill(memory, slots)
        return cls(memory, None)

    @classmethod
    def create(cls, path: Path, slots: int) -> None:
        """Writes an empty table to ``path`` (a new file, readable by this user only)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, cls._size(slots))
            with mmap.mmap(fd, cls._size(slots)) as memory:
                cls._fill(memory, slots)
        finally:
            os.close(fd)

    @classmethod
    def attach(cls, path: Path) -> CallerTable:
        """The table at ``path``, shared with every process that attached to it. Each process
        opens the file itself: flock is held per open file, so one inherited would not exclude."""
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(mmap.mmap(fd, os.fstat(fd).st_size), fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        self._memory.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def key_of(self, caller: str) -> int:
        key = self._keys.get(caller)
        if key is None:
            if len(self._keys) >= _KEYS_REMEMBERED:
                self._keys.clear()
            digest = hashlib.blake2b(caller.encode(), digest_size=8, key=self._secret).digest()
            key = self._keys[caller] = int.from_bytes(digest, "little") or 1
        return key

    def admit(self, key: int, interval_ns: int, now_ns: int) -> int:
        """Counts a request of the caller ``key`` at ``now_ns`` against a limit of one per
        ``interval_ns`` (a minute's worth at once): 0 when admitted, else the nanoseconds
        until it would be (and nothing is counted)."""
        at = _SLOTS_AT + (key % self.slots) * _SLOT.size
        memory = self._memory
        fd = self._lock_fd
        # flock excludes the other processes. Within one, checks run on its event loop's thread
        # (the limits' dependencies are coroutines), and nothing here awaits.
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            tat: int
            held, tat = _SLOT.unpack_from(memory, at)
            if held != key:
                at, tat = self._slot_for(key, at, now_ns)
            if tat < now_ns:
                tat = now_ns
            tat += interval_ns
            if tat - now_ns > WINDOW_NS:
                return tat - now_ns - WINDOW_NS
            _SLOT.pack_into(memory, at, key, tat)
            return 0
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _slot_for(self, key: int, home: int, now_ns: int) -> tuple[int, int]:
        """Where ``key`` is, or goes (its TAT then 0: a full bucket), among the slots probed."""
        probed = _PROBED.unpack_from(self._memory, home)
        best, best_tat = 0, probed[1]
        for n in range(PROBE):
            held, tat = probed[2 * n], probed[2 * n + 1]
            if held == key:
                return home + n * _SLOT.size, tat
            if tat < best_tat and best_tat > now_ns:
                best, best_tat = n, tat
        return home + best * _SLOT.size, 0


class RateLimiter:
    """A limit of ``per_minute`` requests a minute per caller (0: none)."""

    def __init__(self, per_minute: int, table: CallerTable,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.per_minute = per_minute
        self.table = table
        self._interval = WINDOW_NS // per_minute if per_minute > 0 else 0
        self._clock = clock

    def check(self, caller: str) -> None:
        """Counts a request of ``caller``; 429 with ``Retry-After`` (whole seconds) when over."""
        if not self._interval:
            return
        wait = self.table.admit(self.table.key_of(caller), self._interval, self._clock())
        if wait:
            raise Problem(429, f"Rate limit of {self.per_minute} requests a minute exceeded.",
                          headers={"Retry-After": str(max(1, -(-wait // 10**9)))})


@dataclass
class RateTables:
    """The tables of a service's two limits: per token, and per client address."""

    token: CallerTable
    address: CallerTable

    NAMES: ClassVar[tuple[str, str]] = ("token", "address")

    @classmethod
    def private(cls, slots: int) -> RateTables:
        return cls(CallerTable.private(slots), CallerTable.private(slots))

    @classmethod
    def create(cls, directory: Path, slots: int) -> None:
        """Writes both tables in ``directory`` (a private one: nobody else may write them)."""
        for name in cls.NAMES:
            CallerTable.create(directory / name, slots)

    @classmethod
    def attach(cls, directory: Path) -> RateTables:
        token, address = (CallerTable.attach(directory / name) for name in cls.NAMES)
        return cls(token, address)

    def close(self) -> None:
        self.token.close()
        self.address.close()


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
