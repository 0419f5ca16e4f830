"""HTTP edge of the intake service: it owns the transaction of each request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from intake_api import idempotency, repository, service
from intake_api.schemas import ComplaintCreate, ComplaintCreated, ComplaintOut, ComplaintPage
from shared.auth import Actor, Role, require
from shared.db import SessionDep, database_of
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_JSON, Problem, parse_id, problem_response
from shared.vocabulary import Kind

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])

IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

Submitter = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]
Reader = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]

PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {}}}
    for code, text in {
        400: "Malformed JSON", 401: "Missing, unknown or revoked token",
        403: "Role may not do this", 409: "Duplicate external_reference or key in flight",
        413: "Body over 256 KiB", 415: "Not JSON", 422: "Invalid field", 429: "Rate limited",
    }.items()
}


@router.post("", status_code=201, response_model=ComplaintCreated, responses=PROBLEMS,
             summary="Record a complaint")
async def submit_complaint(
    payload: ComplaintCreate, request: Request, session: SessionDep, actor: Submitter,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    runtime = request.app.state.runtime
    now = runtime.clock.now()
    zone = runtime.settings.zone
    if idempotency_key is None:
        out = await service.submit(session, actor, payload, now=now, zone=zone)
        return _created(out)

    idempotency.check_key(idempotency_key)
    database = database_of(request)
    fingerprint = idempotency.request_fingerprint(await request.json())
    stored = await idempotency.claim(database, actor.name, idempotency_key, fingerprint)
    if stored is not None:
        headers = {"Idempotent-Replayed": "true"}
        if stored.location:
            headers["Location"] = stored.location
        media = "application/json" if stored.status_code < 400 else PROBLEM_JSON
        # The very bytes of the first answer, not a re-rendering of them.
        return Response(stored.body.encode(), status_code=stored.status_code, headers=headers,
                        media_type=media)
    try:
        out = await service.submit(session, actor, payload, now=now, zone=zone)
        created = _created(out)
        await idempotency.record(session, actor.name, idempotency_key, idempotency.StoredResponse(
            201, bytes(created.body).decode(), _location(out)))
    except Problem as problem:
        refused = problem_response(problem)
        # The request's own transaction rolls back: the refusal is stored in one of its own.
        async with database.transaction() as own:
            await idempotency.record(own, actor.name, idempotency_key, idempotency.StoredResponse(
                problem.status, bytes(refused.body).decode(), None))
        raise
    except BaseException:
        await idempotency.release(database, actor.name, idempotency_key)
        raise
    return created


def _location(out: ComplaintOut) -> str:
    return f"/v1/complaints/{out.id}"


def _created(out: ComplaintOut) -> JSONResponse:
    return JSONResponse(out.model_dump(mode="json"), status_code=201,
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
    session: SessionDep, actor: Reader,
    status: Annotated[str | None, Query(max_length=32)] = None,
    kind: Kind | None = None,
    tracking_number: Annotated[str | None, Query(
        max_length=32, description="Finds one complaint by its number (an empty page when it "
                                   "is unknown or outside the caller's scope).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ComplaintPage:
    rows = await repository.page(
        session,
        submitted_by=actor.name if actor.role is Role.partner else None,
        status=status, kind=kind.value if kind else None, tracking_number=tracking_number,
        before_seq=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    items = [service.to_out(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return ComplaintPage(items=items, next_cursor=next_cursor)
