"""HTTP edge of the intake service: it owns the transaction of each request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from intake_api import idempotency, repository, service
from intake_api.group_commit import group_commit_of
from intake_api.schemas import (
    ComplaintCreate,
    ComplaintCreated,
    ComplaintOut,
    ComplaintPage,
    ComplaintStatus,
)
from shared.auth import Actor, Role, require
from shared.db import SessionDep
from shared.pagination import PagingDep
from shared.problems import documented, parse_id
from shared.runtime import runtime_of
from shared.vocabulary import Kind

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])

IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

Submitter = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]
Reader = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]

PROBLEMS = documented(400, 401, 403, 413, 415, 422, 429, saying={
    409: "Duplicate external_reference or key in flight"})


@router.post("", status_code=201, response_model=ComplaintCreated, responses=PROBLEMS,
             summary="Record a complaint")
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
