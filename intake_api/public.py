"""The complainant's own view, without an account: ``POST /public/status`` and ``/status``.

A wrong code and an unknown number answer the same 404 after the same work (one indexed lookup,
one hash, one constant-time comparison), and lookups are limited per client address.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import access, repository, status_page
from intake_api.schemas import PublicStatus, StatusQuery
from intake_api.service import outcome_of
from shared.db import SessionDep
from shared.problems import Problem, documented, json_pointer, validation_message
from shared.ratelimit import PublicRateLimiterDep
from shared.runtime import runtime_of

router = APIRouter(tags=["status"])

NO_MATCH = "No complaint has this tracking number and access code."
FORM = "application/x-www-form-urlencoded"


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def within_address_limit(request: Request, limiter: PublicRateLimiterDep) -> None:
    """429 with Retry-After once this client address has looked up too often."""
    limiter.check(_address(request))


Limited = Annotated[None, Depends(within_address_limit)]


async def read_query(request: Request) -> StatusQuery:
    """The two fields, from a JSON body or a form, as the client sent them."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        data = {k: v for k, v in form.items() if k in StatusQuery.model_fields}
        if any(not isinstance(v, str) for v in data.values()):
            raise Problem(422, "Send the fields as text, not files.")
    else:
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Problem(400, "The request body is not valid JSON.") from None
    try:
        return StatusQuery.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": json_pointer(e["loc"]), "message": validation_message(e)}
                  for e in exc.errors()]
        raise Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors) from None


async def find_status(session: AsyncSession, query: StatusQuery) -> PublicStatus:
    number = query.tracking_number.strip().upper()
    complaint = await repository.by_tracking_number(session, number)
    if not access.matches(number, query.access_code,
                          complaint.access_code_hash if complaint else None):
        raise Problem(404, NO_MATCH)
    assert complaint is not None
    outcome = outcome_of(complaint)
    return PublicStatus(
        tracking_number=complaint.tracking_number, kind=complaint.kind, status=complaint.status,
        received_at=complaint.received_at,
        updated_at=outcome.updated_at if outcome else None,
        due_at=outcome.due_at if outcome else None,
        closure_stage=outcome.closure_stage if outcome else None,
        closure_reason=outcome.closure_reason if outcome else None,
        resolution=outcome.resolution if outcome else None,
    )


_BODY = {"required": ["tracking_number", "access_code"], "type": "object", "properties": {
    "tracking_number": {"type": "string", "maxLength": 32, "example": "ADU-2022-000193"},
    "access_code": {"type": "string", "maxLength": 64, "example": "7KQ2-M9XD-4HPT"}}}
_PROBLEMS = documented(400, 408, 413, saying={
    404: NO_MATCH, 415: "Neither JSON nor a form, or compressed", 422: "Missing or invalid field",
    429: "Too many lookups from this address (see Retry-After)",
    503: "At capacity (see Retry-After)"})
_PAGES: dict[int | str, dict[str, Any]] = {
    **{code: {"description": text, "content": {"text/html": {}}}
       for code, text in {400: "The page, saying the form could not be read",
                          404: "The page, saying number and code do not match",
                          422: "The page, saying the form is incomplete",
                          429: "The page, saying to wait (see Retry-After)"}.items()},
    **{code: _PROBLEMS[code] for code in (408, 413, 415, 503)},
}


@router.post(
    "/public/status", response_model=PublicStatus, responses=_PROBLEMS,
    summary="A complaint's status, for the complainant (tracking number and access code)",
    description="No account needed. JSON or a form with the same two fields. The same 404 for a "
                "wrong code and an unknown number; limited per client address.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _BODY}, FORM: {"schema": _BODY}}}},
)
async def public_status(request: Request, session: SessionDep, _: Limited) -> PublicStatus:
    return await find_status(session, await read_query(request))


def _page(request: Request, status_code: int = 200, **content: Any) -> HTMLResponse:
    zone = runtime_of(request).settings.zone
    return HTMLResponse(status_page.render(zone=zone, **content), status_code=status_code,
                        headers=status_page.SECURITY_HEADERS)


@router.get("/status", response_class=HTMLResponse,
            summary="The complainant's status page (HTML form, Indonesian and English)")
async def status_form(request: Request) -> HTMLResponse:
    return _page(request)


@router.post("/status", response_class=HTMLResponse, responses=_PAGES,
             summary="The status page's form answered as HTML (same rules as /public/status)",
             openapi_extra={"requestBody": {"required": True,
                                            "content": {FORM: {"schema": _BODY}}}})
async def status_answer(request: Request, session: SessionDep,
                        limiter: PublicRateLimiterDep) -> HTMLResponse:
    number = ""
    try:
        # Checked here, not as a dependency: a person is answered with the page, not JSON.
        limiter.check(_address(request))
        query = await read_query(request)
        number = query.tracking_number
        answer = await find_status(session, query)
    except Problem as problem:
        notices = {
            404: ("Nomor pelacakan atau kode akses tidak cocok.",
                  "The tracking number or the access code does not match."),
            429: ("Terlalu banyak percobaan. Coba lagi sebentar lagi.",
                  "Too many attempts. Try again in a moment."),
        }
        notice = notices.get(problem.status, ("Isian tidak lengkap atau tidak sah.",
                                              "The form is incomplete or invalid."))
        response = _page(request, problem.status, tracking_number=number, notice=notice)
        response.headers.update(problem.headers)
        return response
    return _page(request, tracking_number=number, answer=answer)
