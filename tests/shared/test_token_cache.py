"""The cache of callers: trusted only while revocations are heard."""

from __future__ import annotations

import time

from shared.token_cache import RevocableCache, forget_everywhere


def test_nothing_is_kept_unless_revocations_are_heard() -> None:
    cache: RevocableCache[str] = RevocableCache()
    cache.put("h", "posko", cache.generation)
    assert cache.get("h") is None
    cache.listening(True)
    cache.put("h", "posko", cache.generation)
    assert cache.get("h") == "posko"
    cache.listening(False)  # a revocation may pass unheard from now on
    assert cache.get("h") is None
    cache.listening(True)
    assert cache.get("h") is None  # what was kept before is not trusted again


def test_a_revocation_heard_during_a_look_up_wins() -> None:
    cache: RevocableCache[str] = RevocableCache()
    cache.listening(True)
    began = cache.generation
    cache.forget("posko")  # the notification arrives while the look-up runs
    cache.put("h", "posko", began)
    assert cache.get("h") is None


def test_entries_expire_and_the_oldest_goes_first() -> None:
    cache: RevocableCache[str] = RevocableCache(ttl=0.05, size=2)
    cache.listening(True)
    for key in ("a", "b", "c"):
        cache.put(key, key.upper(), cache.generation)
    assert cache.get("a") is None
    assert cache.get("c") == "C"
    time.sleep(0.06)
    assert cache.get("c") is None


def test_a_revocation_made_in_this_process_is_forgotten_at_once() -> None:
    cache: RevocableCache[str] = RevocableCache()
    cache.listening(True)
    cache.put("h", "posko", cache.generation)
    forget_everywhere()
    assert cache.get("h") is None
