"""The callers of recently presented tokens, so a request need not look its token up.

API.md: a revoked token is refused at once. So an entry is trusted only while this process
hears revocations: ``aduan token revoke`` (``shared.auth.revoke_token``) notifies
``REVOCATIONS`` in its own transaction, PostgreSQL delivers it at the commit, and every process
listening (``shared.wakeup``) forgets all it kept. While the listening connection is down
nothing is kept and every request looks its token up, as without a cache; when it drops,
everything kept is forgotten, since a revocation may have passed unheard. Entries also expire
after ``ttl`` seconds, should a notification ever go astray with the connection still up.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Generic, TypeVar

REVOCATIONS = "aduan_tokens_revoked"

V = TypeVar("V")

# Every cache of this process: a revocation made here is forgotten by them before it commits.
_CACHES: weakref.WeakSet[RevocableCache[Any]] = weakref.WeakSet()


def forget_everywhere() -> None:
    for cache in list(_CACHES):
        cache.forget()


class RevocableCache(Generic[V]):
    def __init__(self, *, ttl: float = 60.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self.hearing = False
        # Bumped whenever everything is forgotten: a look-up that began before a revocation
        # must not store what it read after the revocation was heard.
        self.generation = 0
        self._entries: dict[str, tuple[V, float]] = {}
        _CACHES.add(self)

    def get(self, key: str) -> V | None:
        if not self.hearing:
            return None
        found = self._entries.get(key)
        if found is None:
            return None
        value, expires = found
        if time.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, value: V, generation: int) -> None:
        if not self.hearing or generation != self.generation:
            return
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[key] = (value, time.monotonic() + self.ttl)

    def forget(self, _notice: str = "") -> None:
        self.generation += 1
        self._entries.clear()

    def listening(self, hearing: bool) -> None:
        """Told whenever the process starts or stops hearing revocations."""
        self.forget()
        self.hearing = hearing
