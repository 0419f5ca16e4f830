"""HTTP edge of the intake service: it owns the transaction of each request."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.routing import APIRoute

from intake_api import idempotency, repository, service
from intake_api.group_commit import group_commit_of
from intake_api.schemas import (
    ComplaintCreate,
    ComplaintCreated,
    ComplaintOut,
    ComplaintPage,
    ComplaintStatus,
)
from shared.auth import BASIC, BEARER, Actor, Role, require
from shared.db import SessionDep
from shared.pagination import PagingDep
from shared.problems import documented, parse_id
from shared.runtime import runtime_of
from shared.vocabulary import Kind

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])

IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

_submitter = require(Role.partner, Role.assistant)
Submitter = Annotated[Actor, Depends(_submitter)]
Reader = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]

PROBLEMS = documented(400, 401, 403, 413, 415, 422, 429, saying={
    409: "Duplicate external_reference or key in flight"})
SUBMISSION_PROBLEMS = documented(400, 401, 403, 413, 415, 422, 429, saying={
    409: "Duplicate external_reference or key in flight",
    503: "At capacity, or the database did not answer in time (see `Retry-After`): nothing was "
         "recorded. With type `…/outcome-unknown`, the database stopped answering while the "
         "complaint was being committed and whether it was recorded is unknown: post it again "
         "with the same `external_reference` (a 409 then names it) or look for it with "
         "`GET /v1/complaints` first, not as a new complaint; a new `Idempotency-Key` cannot "
         "find a post made without one"})


class _Submission(APIRoute):
    """``POST /v1/complaints`` as declared (its document, its parameters), with its common
    case, a JSON body the model accepts and no ``Idempotency-Key``, resolved by hand: the
    caller by the very dependency and schemes FastAPI would call, the body by the model
    FastAPI would validate it with (the JSON it reads, in Python mode), without FastAPI's
    resolution of parameters, which cost a worker about a fifth of its time per complaint.
    Any other request (a body the model refuses, another content type, a key) takes
    FastAPI's own way, which answers it as before: every error is FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handle(request: Request) -> Response:
            payload = await _plain_submission(request)
            if payload is None:
                return await declared(request)
            # The caller (401, 429, 403) after the body, as FastAPI's way: a body it refuses
            # never gets here, and is not counted against the caller's rate twice.
            actor = await _submitter(request, await BEARER(request), await BASIC(request))
            return await submit_complaint(payload, request, actor)

        return handle


async def _plain_submission(request: Request) -> ComplaintCreate | None:
    """The complaint of a request in the common case, or None for FastAPI to answer."""
    headers = request.headers
    if "idempotency-key" in headers or (
            headers.get("content-type", "").partition(";")[0].strip().lower()
            != "application/json"):
        return None
    # The body was read whole already, bounded in size and time (shared.middleware.BodyGuard).
    try:
        return ComplaintCreate.model_validate(await request.json())
    except Exception:  # JSON or a complaint refused: FastAPI reads it again and says why
        return None


async def submit_complaint(
    payload: ComplaintCreate, request: Request, actor: Submitter,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    # The busiest operation reads the runtime and its group commit from the request it takes
    # anyway, rather than as dependencies: every dependency FastAPI resolves costs a request
    # more (a resolution of its own parameters, a cache key, a call) than the look-up it does.
    runtime, group = runtime_of(request), group_commit_of(request)
    database, now, zone = runtime.database, runtime.clock.now(), runtime.settings.zone
    if idempotency_key is None:
        # The busiest path: written with the complaints posted at the same time, by one
        # statement committed before the answer leaves (intake_api/group_commit.py).
        return _created(await service.record_together(group, database, actor, payload,
                                                      now=now, zone=zone))
    # The answer is kept under the key in the same transaction as the complaint.
    async with database.transaction() as session:

        async def submit() -> Response:
            return _created(await service.submit(session, actor, payload, now=now, zone=zone))

        return await idempotency.replay_or_run(
            database, session, caller=actor.name, key=idempotency_key, read_body=request.json,
            now=now, run=submit)


router.add_api_route("", submit_complaint, methods=["POST"], status_code=201,
                    response_model=ComplaintCreated, responses=SUBMISSION_PROBLEMS,
                    summary="Record a complaint", route_class_override=_Submission)


def _location(out: ComplaintOut) -> str:
    return f"/v1/complaints/{out.id}"


def _created(out: ComplaintOut) -> Response:
    # Written by pydantic straight to JSON text: the document JSONResponse would send, without
    # building it as Python objects first.
    return Response(out.model_dump_json(), status_code=201, media_type="application/json",
                    headers={"Location": _location(out)})


@router.get("/{complaint_id}", response_model=ComplaintOut, responses=PROBLEMS,
            summary="One complaint (partners see only their own)")
async def get_complaint(complaint_id: IdPath, session: SessionDep,
                        actor: Reader) -> ComplaintOut:
    found = await service.visible_complaint(session, actor, parse_id(complaint_id, "complaint"))
    return service.to_out(found)


@router.get("", response_model=ComplaintPage, responses=PROBLEMS,
            summary="Complaints, newest first (partners see only their own)")
async def list_complaints(
    session: SessionDep, actor: Reader, paging: PagingDep,
    status: ComplaintStatus | None = None,
    kind: Kind | None = None,
    tracking_number: Annotated[str | None, Query(
        max_length=32, description="Finds one complaint by its number (an empty page when it "
                                   "is unknown or outside the caller's scope).")] = None,
) -> ComplaintPage:
    rows = await repository.page(
        session,
        submitted_by=actor.name if actor.role is Role.partner else None,
        status=status.value if status else None, kind=kind.value if kind else None,
        tracking_number=tracking_number,
        before_seq=paging.after(), limit=paging.fetch,
    )
    shown, next_cursor = paging.page(rows, key=lambda row: row.seq)
    return ComplaintPage(items=[service.to_out(row) for row in shown], next_cursor=next_cursor)
