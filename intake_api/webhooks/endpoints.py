"""HTTP edge of the webhooks: a caller manages and inspects only its own subscriptions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from intake_api.webhooks import repository, targets
from intake_api.webhooks.events import ALLOWED, EventType
from intake_api.webhooks.models import WebhookDelivery, WebhookSubscription
from intake_api.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionOut,
    SubscriptionPage,
)
from intake_api.webhooks.signing import new_secret
from shared.auth import Actor, Role, require
from shared.db import SessionDep
from shared.pagination import Paging, PagingDep
from shared.problems import Problem, documented, invalid, not_found, parse_id
from shared.runtime import runtime_of
from shared.settings import Settings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Subscriber = Annotated[Actor, Depends(require(Role.partner, Role.liaison))]
IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

MAX_SUBSCRIPTIONS = 25

PROBLEMS = documented(400, 401, 429, saying={
    403: "Role may not subscribe",
    404: "No such subscription or delivery of the caller",
    409: "Too many subscriptions, or a delivered delivery retried",
    410: "The secret was shown once, at creation",
    422: "Invalid field (unknown event type, refused URL)",
})


def policy_of(settings: Settings) -> targets.Policy:
    return targets.Policy(allow_http=settings.webhook_allow_http,
                          allow_private=settings.webhook_allow_private)


def _out(subscription: WebhookSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id, url=subscription.url,
        events=[EventType(e) for e in subscription.events],
        description=subscription.description, active=subscription.active,
        disabled_reason=subscription.disabled_reason, created_at=subscription.created_at)


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id, event_type=EventType(delivery.event_type),
        status=delivery.status,
        attempts=delivery.attempts, last_status_code=delivery.last_status_code,
        last_error=delivery.last_error, next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at, delivered_at=delivery.delivered_at)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _position(row: WebhookSubscription | WebhookDelivery) -> str:
    """The keyset (newest first, the id breaking ties) in a cursor: microseconds since the
    epoch and the id's hex, which fit the 64 characters a text position may have."""
    return f"{(row.created_at - EPOCH) // timedelta(microseconds=1)}|{row.id.hex}"


def _before(paging: Paging) -> tuple[datetime, uuid.UUID] | None:
    position = paging.after_text()
    if position is None:
        return None
    micros, _, row_id = position.partition("|")
    try:
        if not (micros.isascii() and micros.isdigit()):
            raise ValueError(micros)
        return EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=row_id)
    except (ValueError, OverflowError):
        raise invalid("/query/cursor", "not a cursor this service issued") from None


async def _own(session: SessionDep, actor: Actor, subscription_id: str) -> WebhookSubscription:
    found = await repository.get_subscription(session, actor.name,
                                              parse_id(subscription_id, "subscription"))
    if found is None:
        raise not_found("subscription")
    return found


@router.post("", status_code=201, response_model=SubscriptionCreated, responses=PROBLEMS,
             summary="Subscribe a URL to events (partner: its complaints; liaison: its "
                     "agency's cases; admin: all)")
async def subscribe(payload: SubscriptionCreate, request: Request, session: SessionDep,
                    actor: Subscriber) -> JSONResponse:
    allowed = ALLOWED[actor.role]
    for index, event_type in enumerate(payload.events):
        if event_type not in allowed:
            raise invalid(f"/events/{index}", f"a {actor.role.value} may not subscribe to "
                                              f"{event_type.value}")
    if len(set(payload.events)) != len(payload.events):
        raise invalid("/events", "each event type may be named once")
    try:
        policy = policy_of(runtime_of(request).settings)
        await targets.resolve(targets.parse(payload.url, policy), policy)
    except targets.Unresolvable:
        pass  # perhaps not published yet; every delivery checks the address again
    except targets.TargetRefused as exc:
        raise invalid("/url", str(exc)) from None
    if await repository.subscription_count(session, actor.name) >= MAX_SUBSCRIPTIONS:
        raise Problem(409, f"A caller may hold at most {MAX_SUBSCRIPTIONS} subscriptions.")
    subscription = WebhookSubscription(
        id=uuid.uuid4(), owner=actor.name, role=actor.role.value, agency_code=actor.agency_code,
        url=payload.url, events=[e.value for e in payload.events],
        description=payload.description, secret=new_secret(), active=True,
        created_at=datetime.now(UTC))
    await repository.add_subscription(session, subscription)
    body = SubscriptionCreated(**_out(subscription).model_dump(), secret=subscription.secret)
    return JSONResponse(body.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/v1/webhooks/{subscription.id}"})


@router.get("", response_model=SubscriptionPage, responses=PROBLEMS,
            summary="The caller's subscriptions, newest first")
async def list_subscriptions(session: SessionDep, actor: Subscriber,
                             paging: PagingDep) -> SubscriptionPage:
    rows = await repository.subscriptions_page(session, actor.name, before=_before(paging),
                                               limit=paging.fetch)
    page, next_cursor = paging.page(rows, key=_position)
    return SubscriptionPage(items=[_out(r) for r in page], next_cursor=next_cursor)


@router.get("/{subscription_id}", response_model=SubscriptionOut, responses=PROBLEMS,
            summary="One of the caller's subscriptions (never its secret)")
async def get_subscription(subscription_id: IdPath, session: SessionDep,
                           actor: Subscriber) -> SubscriptionOut:
    return _out(await _own(session, actor, subscription_id))


@router.get("/{subscription_id}/secret", responses=PROBLEMS, status_code=410,
            summary="Always 410: the secret is shown once, when the subscription is created")
async def secret_again(subscription_id: IdPath, session: SessionDep,
                       actor: Subscriber) -> Response:
    await _own(session, actor, subscription_id)
    raise Problem(410, "The secret was shown once, in the answer that created the "
                       "subscription. Create a new subscription (and delete this one) to get "
                       "a new secret.", title="Gone", slug="secret-shown-once")


@router.delete("/{subscription_id}", status_code=204, responses=PROBLEMS,
               summary="Stop a subscription; its pending deliveries are dropped")
async def unsubscribe(subscription_id: IdPath, session: SessionDep,
                      actor: Subscriber) -> Response:
    await repository.delete_subscription(session, await _own(session, actor, subscription_id))
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", response_model=DeliveryPage, responses=PROBLEMS,
            summary="The subscription's deliveries, newest first")
async def list_deliveries(subscription_id: IdPath, session: SessionDep, actor: Subscriber,
                          paging: PagingDep,
                          status: DeliveryStatus | None = None) -> DeliveryPage:
    subscription = await _own(session, actor, subscription_id)
    rows = await repository.deliveries_page(session, subscription.id, status=status,
                                            before=_before(paging), limit=paging.fetch)
    page, next_cursor = paging.page(rows, key=_position)
    return DeliveryPage(items=[_delivery_out(r) for r in page], next_cursor=next_cursor)


@router.post("/{subscription_id}/deliveries/{delivery_id}/retry", status_code=202,
             response_model=DeliveryOut, responses=PROBLEMS,
             summary="Send a pending or failed delivery again now (a fresh retry period)")
async def retry_delivery(subscription_id: IdPath, delivery_id: IdPath, session: SessionDep,
                         actor: Subscriber) -> DeliveryOut:
    subscription = await _own(session, actor, subscription_id)
    delivery = await repository.get_delivery(session, subscription.id,
                                             parse_id(delivery_id, "delivery"), for_update=True)
    if delivery is None:
        raise not_found("delivery")
    if delivery.status == "delivered":
        raise Problem(409, "This delivery was already delivered; it is not sent again.",
                      delivery_status=delivery.status)
    if not subscription.active:
        raise Problem(409, "The subscription is disabled (its receiver answered 410 Gone); "
                           "create a new subscription.")
    now = datetime.now(UTC)
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.retrying_since = now
    await session.flush()
    repository.announce_due(session)
    return _delivery_out(delivery)
