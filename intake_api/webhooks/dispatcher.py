"""Sends due deliveries: signed, in fair shares, each attempt under a deadline.

Deliveries live in the database. A dispatcher leases the ones it sends; if its process dies the
lease runs out and another dispatcher (or this one, restarted) sends them again with the same
``webhook-id``. A slow or dead receiver holds at most its share of the slots: one subscription,
one owner (whatever number of subscriptions it made) and one origin (whoever subscribed to it)
each a few, and the due deliveries of everyone else are taken in turns with the rest.

It does not poll: a transaction that makes a delivery due now (a new event, a retry by hand)
announces it after its commit (``shared.wakeup``, ``repository.WAKEUP``), and between
announcements the dispatcher sleeps until the earliest due time it knows of (a retry's backoff,
a lost lease running out). Without notifications it looks every ``webhook_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from intake_api.webhooks import repository, signing, targets
from intake_api.webhooks.models import WebhookDelivery, WebhookSubscription
from shared.bus import TRANSIENT
from shared.db import Database
from shared.settings import Settings
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)

USER_AGENT = "aduan-webhooks/1"
# A lease outlives the attempt's deadline (twice over, plus this), so only a dead process
# loses one, and its deliveries are taken over soon after.
LEASE_MARGIN = timedelta(seconds=5)
MAX_ERROR_LENGTH = 500


def backoff(attempts: int, settings: Settings) -> float:
    """Exponential, capped, with jitter so that receivers back up are not hit all at once."""
    delay = min(settings.webhook_retry_base_seconds * 2.0 ** max(attempts - 1, 0),
                settings.webhook_retry_max_seconds)
    return delay / 2 + random.uniform(0, delay / 2)


Key = TypeVar("Key")


def _count(counter: Counter[Key], key: Key, step: int) -> None:
    counter[key] += step
    if counter[key] <= 0:
        del counter[key]


class Dispatcher:
    def __init__(self, database: Database, settings: Settings,
                 wakeup: Wakeup | None = None) -> None:
        self.database = database
        self.settings = settings
        self.wakeup = wakeup
        self.woken = wakeup.subscribe(repository.WAKEUP) if wakeup else asyncio.Event()
        self.policy = targets.Policy(allow_http=settings.webhook_allow_http,
                                     allow_private=settings.webhook_allow_private)
        self.shares = repository.Shares(
            per_subscription=settings.webhook_concurrency_per_subscription,
            per_owner=settings.webhook_concurrency_per_owner,
            per_origin=settings.webhook_concurrency_per_origin)
        # Attempts in flight by subscription, by owner and by origin.
        self.in_flight: Counter[uuid.UUID] = Counter()
        self.by_owner: Counter[str] = Counter()
        self.by_origin: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.sent = 0

    async def run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        limits = httpx.Limits(max_connections=self.settings.webhook_concurrency * 2)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False,
                                     headers={"user-agent": USER_AGENT}) as client:
            try:
                while True:
                    # Cleared before looking: whatever is announced from here on wakes it.
                    self.woken.clear()
                    self.slot_freed.clear()
                    try:
                        started = await self.dispatch_due(client)
                        if not started:
                            await self._pause(await self._next_due())
                    except TRANSIENT as exc:
                        # Attempts in flight go on; only looking for new ones waits.
                        logger.warning("webhooks: database unavailable (%s)",
                                       type(exc).__name__)
                        await self._pause(None)
            finally:
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)

    def _saturated(self) -> repository.Saturated:
        shares = self.shares
        return repository.Saturated(
            subscriptions=[s for s, n in self.in_flight.items() if n >= shares.per_subscription],
            owners=[o for o, n in self.by_owner.items() if n >= shares.per_owner],
            origins=[o for o, n in self.by_origin.items() if n >= shares.per_origin])

    def _take(self, candidate: repository.Candidate, step: int) -> None:
        """Counts an attempt in flight (``step`` 1) or done (-1) against each of its shares."""
        _count(self.in_flight, candidate.subscription_id, step)
        _count(self.by_owner, candidate.owner, step)
        _count(self.by_origin, candidate.origin, step)

    async def _next_due(self) -> datetime | None:
        """When the next delivery this dispatcher could start falls due (None: none pending,
        or no slot free; a freed slot wakes it anyway)."""
        if len(self.tasks) >= self.settings.webhook_concurrency:
            return None
        async with self.database.transaction() as session:
            return await repository.next_due(session, saturated=self._saturated())

    async def _pause(self, due: datetime | None) -> None:
        """Sleeps until announced, a slot frees up, ``due``, or the fallback interval."""
        listening = self.wakeup is not None and self.wakeup.listening
        timeout = (self.wakeup.fallback_seconds if self.wakeup is not None and listening
                   else self.settings.webhook_poll_seconds)
        if due is not None:
            timeout = min(timeout, max((due - datetime.now(UTC)).total_seconds(), 0.0))
        waits = [asyncio.create_task(self.woken.wait()),
                 asyncio.create_task(self.slot_freed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def dispatch_due(self, client: httpx.AsyncClient) -> int:
        free = self.settings.webhook_concurrency - len(self.tasks)
        if free <= 0:
            return 0
        now = datetime.now(UTC)
        until = now + timedelta(seconds=2 * self.settings.webhook_timeout_seconds) + LEASE_MARGIN
        async with self.database.transaction() as session:
            candidates = await repository.due(session, now, saturated=self._saturated(),
                                              shares=self.shares, limit=free * 4)
            chosen = self._choose(candidates, free)
            leased = (await repository.lease(session, list(chosen), now, until) if chosen
                      else [])
        for delivery, subscription in leased:
            candidate = chosen[delivery.id]
            self._take(candidate, +1)
            task = asyncio.create_task(self._send(client, delivery, subscription, candidate),
                                       name=f"webhook:{delivery.id}")
            self.tasks.add(task)
        return len(leased)

    def _choose(self, candidates: Sequence[repository.Candidate],
                free: int) -> dict[uuid.UUID, repository.Candidate]:
        """Of the candidates (in turns), those that fit the free slots and every share, counting
        the attempts in flight."""
        shares = self.shares
        subscriptions, owners = Counter(self.in_flight), Counter(self.by_owner)
        origins = Counter(self.by_origin)
        chosen: dict[uuid.UUID, repository.Candidate] = {}
        for candidate in candidates:
            if len(chosen) >= free:
                break
            if (subscriptions[candidate.subscription_id] < shares.per_subscription
                    and owners[candidate.owner] < shares.per_owner
                    and origins[candidate.origin] < shares.per_origin):
                subscriptions[candidate.subscription_id] += 1
                owners[candidate.owner] += 1
                origins[candidate.origin] += 1
                chosen[candidate.delivery_id] = candidate
        return chosen

    async def _send(self, client: httpx.AsyncClient, delivery: WebhookDelivery,
                    subscription: WebhookSubscription,
                    candidate: repository.Candidate) -> None:
        try:
            status_code, error = await self.attempt(client, delivery, subscription)
            await self._record(delivery, subscription, status_code, error)
        except Exception:
            logger.exception("webhook delivery %s could not be recorded", delivery.id)
        finally:
            self._take(candidate, -1)
            self.tasks.discard(asyncio.current_task())
            self.slot_freed.set()

    async def attempt(self, client: httpx.AsyncClient, delivery: WebhookDelivery,
                      subscription: WebhookSubscription) -> tuple[int | None, str | None]:
        """One POST; the status code, or the reason there is none."""
        body = delivery.body.encode()
        timestamp = int(datetime.now(UTC).timestamp())
        headers = signing.headers(subscription.secret, str(delivery.id), timestamp, body)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                target = targets.parse(subscription.url, self.policy)
                address = (await targets.resolve(target, self.policy))[0]
                url = httpx.URL(subscription.url)
                # Connect to the address just checked, not to whatever the name says next.
                headers["host"] = url.netloc.decode()
                extensions: dict[str, Any] = {}
                if url.scheme == "https":
                    extensions["sni_hostname"] = target.host
                async with client.stream("POST", url.copy_with(host=str(address)),
                                         content=body, headers=headers,
                                         extensions=extensions) as response:
                    return response.status_code, None
        except targets.TargetRefused as exc:
            return None, f"refused target: {exc}"
        except TimeoutError:
            return None, f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH] or type(exc).__name__

    async def _record(self, delivery: WebhookDelivery, subscription: WebhookSubscription,
                      status_code: int | None, error: str | None) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
        gone = status_code == 410
        if status_code is not None and 200 <= status_code < 300:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None,
                          last_error=None)
        elif gone:
            values.update(status="failed", next_attempt_at=None,
                          last_error="410 Gone: the subscription is disabled")
        else:
            if status_code is not None:
                values["last_error"] = f"answered {status_code}"
            # The retry period runs from the first failed attempt (or from a manual retry).
            since = now if delivery.attempts == 0 else delivery.retrying_since
            values["retrying_since"] = since
            if (now - since).total_seconds() >= self.settings.webhook_retry_for_seconds:
                values.update(status="failed", next_attempt_at=None)
            else:
                wait = backoff(delivery.attempts + 1, self.settings)
                values.update(status="pending", next_attempt_at=now + timedelta(seconds=wait))
        assert delivery.leased_until is not None
        async with self.database.transaction() as session:
            recorded = await repository.record_attempt(session, delivery.id,
                                                       delivery.leased_until, values)
            if recorded and values["status"] == "pending":
                # Its next due time: this dispatcher and any other recompute when to wake.
                repository.announce_due(session)
            if recorded and gone:
                await repository.disable(session, subscription.id, "the receiver answered "
                                                                   "410 Gone")
        self.sent += 1
        if not recorded:
            logger.warning("webhook delivery %s: lease lost before its result was stored",
                           delivery.id)
