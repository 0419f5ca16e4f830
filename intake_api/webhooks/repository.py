"""SQL of the webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api.models import Complaint
from intake_api.webhooks.models import WebhookDelivery, WebhookSubscription
from shared.auth import Role, Token
from shared.db import announce_after_commit
from shared.vocabulary import CASE_OPENING_KINDS

STATUSES = ("pending", "delivered", "failed")
# What a transaction announces after its commit when it made a delivery due (``shared.wakeup``):
# the dispatchers wake. Deliveries are an outbox too, of HTTP requests to partners' systems.
WAKEUP = "webhook_deliveries"
# Eleven parameters a row, well within the 32,767 a statement may carry.
DELIVERIES_PER_STATEMENT = 500


async def add_subscription(session: AsyncSession, subscription: WebhookSubscription) -> None:
    session.add(subscription)
    await session.flush()


async def subscription_count(session: AsyncSession, owner: str) -> int:
    query = select(func.count()).where(WebhookSubscription.owner == owner)
    return int((await session.execute(query)).scalar_one())


async def get_subscription(session: AsyncSession, owner: str | None,
                           subscription_id: uuid.UUID) -> WebhookSubscription | None:
    """The subscription if ``owner`` holds it (``None``: whoever holds it)."""
    found = await session.get(WebhookSubscription, subscription_id)
    if found is None or (owner is not None and found.owner != owner):
        return None
    return found


async def subscriptions_page(session: AsyncSession, owner: str, *,
                             before: tuple[datetime, uuid.UUID] | None,
                             limit: int) -> Sequence[WebhookSubscription]:
    query = (select(WebhookSubscription).where(WebhookSubscription.owner == owner)
             .order_by(WebhookSubscription.created_at.desc(), WebhookSubscription.id.desc())
             .limit(limit))
    if before is not None:
        query = query.where(or_(
            WebhookSubscription.created_at < before[0],
            and_(WebhookSubscription.created_at == before[0],
                 WebhookSubscription.id < before[1])))
    return (await session.execute(query)).scalars().all()


async def every_subscription(session: AsyncSession,
                             owner: str | None = None) -> Sequence[WebhookSubscription]:
    """Every subscription (of ``owner``), oldest first: for an administrator's command line,
    since the API shows each caller its own alone."""
    query = select(WebhookSubscription).order_by(WebhookSubscription.created_at,
                                                 WebhookSubscription.id)
    if owner is not None:
        query = query.where(WebhookSubscription.owner == owner)
    return (await session.execute(query)).scalars().all()


async def delete_subscription(session: AsyncSession, subscription: WebhookSubscription) -> None:
    await session.delete(subscription)
    await session.flush()


# A subscription speaks for its owner's token: once that is revoked (by whatever process, at
# whatever moment) nothing more is made or sent for it, as the API answers the token 401. Read
# from the tokens at every selection rather than from a flag set at revocation, so a consumer
# or dispatcher that raced the revocation still drops what it would have sent.
_OWNER_REVOKED = exists().where(Token.name == WebhookSubscription.owner,
                                Token.revoked_at.is_not(None))
SPEAKING = and_(WebhookSubscription.active.is_(True), ~_OWNER_REVOKED)


def _listeners_query() -> Select[WebhookSubscription]:
    return (
        select(WebhookSubscription)
        .where(SPEAKING,
               WebhookSubscription.events.overlap(
                   bindparam("event_types", type_=ARRAY(String(64)))),
               or_(WebhookSubscription.role == Role.admin.value,
                   and_(WebhookSubscription.role == Role.partner.value,
                        WebhookSubscription.owner.in_(bindparam("submitters", expanding=True))),
                   and_(WebhookSubscription.role == Role.liaison.value,
                        WebhookSubscription.agency_code.in_(
                            bindparam("agencies", expanding=True)))))
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )


# Built once: the consumer asks for every batch, and building the statement cost more than
# running it.
_LISTENERS = _listeners_query()
_ANYONE_LISTENING = select(exists().where(
    SPEAKING,
    WebhookSubscription.events.overlap(bindparam("event_types", type_=ARRAY(String(64))))))


async def anyone_listening(session: AsyncSession, event_types: Collection[str]) -> bool:
    """Whether any active subscription is to one of ``event_types`` (one index-sized query,
    where finding who hears each complaint reads the complaints too)."""
    if not event_types:
        return False
    found = await session.scalar(_ANYONE_LISTENING, {"event_types": sorted(event_types)})
    return bool(found)


_CASE_OPENING = frozenset(kind.value for kind in CASE_OPENING_KINDS)


@dataclass(frozen=True)
class Listeners:
    """The active subscriptions a batch's events may reach, by whom they listen as."""

    admins: Sequence[WebhookSubscription] = ()
    partners: Mapping[str, Sequence[WebhookSubscription]] = field(default_factory=dict)
    liaisons: Mapping[str, Sequence[WebhookSubscription]] = field(default_factory=dict)

    def of(self, complaint: Complaint, agency: str) -> list[WebhookSubscription]:
        """Who may hear of an event of ``complaint`` that happened while ``agency`` had it: an
        admin of all; a partner of its own; a liaison of its agency's, when the complaint opens
        a case, in the order they subscribed."""
        heard = [*self.admins, *self.partners.get(complaint.submitted_by, ())]
        if complaint.kind in _CASE_OPENING:
            heard += self.liaisons.get(agency, ())
        return sorted(heard, key=lambda s: (s.created_at, s.id))


async def listeners(session: AsyncSession, submitters: Collection[str],
                    agencies: Collection[str], event_types: Collection[str]) -> Listeners:
    """The active subscriptions to any of ``event_types`` of the admins, of the partners in
    ``submitters`` and of the liaisons of ``agencies``, in one query."""
    if not event_types:
        return Listeners()
    admins: list[WebhookSubscription] = []
    partners: dict[str, list[WebhookSubscription]] = {}
    liaisons: dict[str, list[WebhookSubscription]] = {}
    for subscription in (await session.execute(_LISTENERS, {
            "event_types": sorted(event_types), "submitters": sorted(submitters),
            "agencies": sorted(agencies)})).scalars():
        if subscription.role == Role.admin.value:
            admins.append(subscription)
        elif subscription.role == Role.partner.value:
            partners.setdefault(subscription.owner, []).append(subscription)
        elif subscription.agency_code is not None:
            liaisons.setdefault(subscription.agency_code, []).append(subscription)
    return Listeners(admins, partners, liaisons)


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts deliveries, a few hundred to a statement; one already made for its subscription
    and event is left as it is."""
    for start in range(0, len(rows), DELIVERIES_PER_STATEMENT):
        await session.execute(pg_insert(WebhookDelivery)
                              .values(list(rows[start:start + DELIVERIES_PER_STATEMENT]))
                              .on_conflict_do_nothing())
    if rows:
        announce_due(session)


def announce_due(session: AsyncSession) -> None:
    """Wakes the dispatchers once this transaction commits: it made a delivery due or changed
    when one falls due."""
    announce_after_commit(session, WAKEUP)


async def deliveries_page(session: AsyncSession, subscription_id: uuid.UUID, *,
                          status: str | None, before: tuple[datetime, uuid.UUID] | None,
                          limit: int) -> Sequence[WebhookDelivery]:
    query = (select(WebhookDelivery)
             .where(WebhookDelivery.subscription_id == subscription_id)
             .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
             .limit(limit))
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(
            or_(WebhookDelivery.created_at < before[0],
                and_(WebhookDelivery.created_at == before[0], WebhookDelivery.id < before[1])))
    return (await session.execute(query)).scalars().all()


async def get_delivery(session: AsyncSession, subscription_id: uuid.UUID,
                       delivery_id: uuid.UUID, *, for_update: bool = False
                       ) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.subscription_id == subscription_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    """Deliveries by status (``pending``, ``delivered``, ``failed``), for monitoring."""
    rows = await session.execute(select(WebhookDelivery.status, func.count())
                                 .group_by(WebhookDelivery.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(count) for status, count in rows.all()})
    return counts


# --- the dispatcher ------------------------------------------------------------------------------

# One receiving server, whoever subscribed to it (``targets.origin_of``, stored with the URL):
# the dispatcher shares its slots out by it (and by owner, and subscription).
_ORIGIN = WebhookSubscription.origin


@dataclass(frozen=True)
class Shares:
    """Attempts in flight one subscription, one owner and one origin may hold at once."""

    per_subscription: int
    per_owner: int
    per_origin: int


@dataclass(frozen=True)
class Saturated:
    """Who holds its whole share now: none of their deliveries is looked at."""

    subscriptions: Collection[uuid.UUID] = ()
    owners: Collection[str] = ()
    origins: Collection[str] = ()


class Candidate(NamedTuple):
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    owner: str
    origin: str


def _pending_of_others(saturated: Saturated) -> list[ColumnElement[bool]]:
    """Pending deliveries of active subscriptions whose owner's token stands, none of whose
    sharers is ``saturated``."""
    where = [WebhookDelivery.status == "pending", SPEAKING]
    if saturated.subscriptions:
        where.append(WebhookDelivery.subscription_id.not_in(list(saturated.subscriptions)))
    if saturated.owners:
        where.append(WebhookSubscription.owner.not_in(list(saturated.owners)))
    if saturated.origins:
        where.append(_ORIGIN.not_in(list(saturated.origins)))
    return where


async def due(session: AsyncSession, now: datetime, *, saturated: Saturated, shares: Shares,
              limit: int) -> Sequence[Candidate]:
    """Deliveries due now, in turns: every owner's and origin's first before anyone's second,
    and at most its share of each subscription, owner and origin."""
    ranked = (
        select(WebhookDelivery.id, WebhookDelivery.subscription_id, WebhookSubscription.owner,
               _ORIGIN.label("origin"), WebhookDelivery.next_attempt_at,
               func.row_number().over(partition_by=WebhookDelivery.subscription_id,
                                      order_by=WebhookDelivery.next_attempt_at).label("n"))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(*_pending_of_others(saturated), WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until < now))
        .subquery()
    )
    turn = (ranked.c.n, ranked.c.next_attempt_at)
    shared = (
        select(ranked.c.id, ranked.c.subscription_id, ranked.c.owner, ranked.c.origin,
               ranked.c.next_attempt_at,
               func.row_number().over(partition_by=ranked.c.owner, order_by=turn)
               .label("by_owner"),
               func.row_number().over(partition_by=ranked.c.origin, order_by=turn)
               .label("by_origin"))
        .where(ranked.c.n <= shares.per_subscription)
        .subquery()
    )
    query = (select(shared.c.id, shared.c.subscription_id, shared.c.owner, shared.c.origin)
             .where(shared.c.by_owner <= shares.per_owner,
                    shared.c.by_origin <= shares.per_origin)
             .order_by(func.greatest(shared.c.by_owner, shared.c.by_origin),
                       shared.c.next_attempt_at)
             .limit(limit))
    return [Candidate(*row) for row in (await session.execute(query)).all()]


async def next_due(session: AsyncSession, *, saturated: Saturated) -> datetime | None:
    """The earliest moment a pending delivery (of none ``saturated``) may be sent: its next
    attempt, or the end of the lease another dispatcher holds on it."""
    query = (
        select(func.min(func.greatest(
            WebhookDelivery.next_attempt_at,
            func.coalesce(WebhookDelivery.leased_until, WebhookDelivery.next_attempt_at))))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(*_pending_of_others(saturated))
    )
    due: datetime | None = (await session.execute(query)).scalar_one()
    return due


async def lease(session: AsyncSession, ids: Sequence[uuid.UUID], now: datetime,
                until: datetime) -> Sequence[tuple[WebhookDelivery, WebhookSubscription]]:
    """Takes the deliveries no other dispatcher took meanwhile (the row lock decides), and
    whose subscription still speaks for its owner (it may have been revoked since ``due``)."""
    speaking = select(WebhookSubscription.id).where(SPEAKING)
    taken = (await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "pending",
               WebhookDelivery.subscription_id.in_(speaking),
               or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until < now))
        .values(leased_until=until)
        .returning(WebhookDelivery.id)
    )).scalars().all()
    if not taken:
        return []
    query = (select(WebhookDelivery, WebhookSubscription)
             .join(WebhookSubscription,
                   WebhookSubscription.id == WebhookDelivery.subscription_id)
             .where(WebhookDelivery.id.in_(taken)))
    return [(d, s) for d, s in (await session.execute(query)).all()]


async def record_attempt(session: AsyncSession, delivery_id: uuid.UUID, leased_until: datetime,
                         values: dict[str, Any]) -> bool:
    """Stores an attempt's result, unless the lease was lost (another dispatcher took over)
    or the delivery was stopped meanwhile (its subscription disabled): then only a delivery
    made is recorded, being true; a retry would never be sent."""
    held = [WebhookDelivery.id == delivery_id, WebhookDelivery.leased_until == leased_until]
    if values.get("status") != "delivered":
        held.append(WebhookDelivery.status == "pending")
    result = await session.execute(
        update(WebhookDelivery)
        .where(*held)
        .values(attempts=WebhookDelivery.attempts + 1, leased_until=None, **values)
        .returning(WebhookDelivery.id)
    )
    return result.first() is not None


async def disable(session: AsyncSession, subscription_id: uuid.UUID, reason: str) -> None:
    await _stop(session, WebhookSubscription.id == subscription_id, reason)


async def _stop(session: AsyncSession, which: ColumnElement[bool], reason: str) -> int:
    """Disables the active subscriptions ``which`` selects and fails their pending deliveries:
    nothing is left waiting to be sent. Returns how many it stopped."""
    stopped = (await session.execute(
        update(WebhookSubscription)
        .where(which, WebhookSubscription.active.is_(True))
        .values(active=False, disabled_reason=reason)
        .returning(WebhookSubscription.id))).scalars().all()
    if stopped:
        await session.execute(update(WebhookDelivery)
                              .where(WebhookDelivery.subscription_id.in_(stopped),
                                     WebhookDelivery.status == "pending")
                              .values(status="failed", next_attempt_at=None,
                                      last_error=f"subscription disabled: {reason}"))
    return len(stopped)


# Why ``stop_owned_by`` stopped a subscription when its owner's token was revoked.
REVOKED_OWNER = "the owner's token was revoked"


async def stop_owned_by(session: AsyncSession, owner: str, reason: str) -> int:
    """Disables every subscription ``owner`` holds and fails their pending deliveries (its token
    was revoked): the owner sees why, should the token ever be looked at again, and nothing is
    left waiting to be sent. Returns how many subscriptions it stopped."""
    return await _stop(session, WebhookSubscription.owner == owner, reason)
