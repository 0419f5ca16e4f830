"""HTTP edge of the case service: it owns the transaction of each request."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from case_api import repository, service
from case_api.schemas import (
    AgencyName,
    AgencyOut,
    AgencyPage,
    CaseOut,
    CasePage,
    TransitionRequest,
)
from case_api.workflow import Status
from shared.auth import Actor, Role, require
from shared.conditional import IfMatch
from shared.db import SessionDep
from shared.pagination import PagingDep
from shared.problems import documented, invalid, not_found, parse_id
from shared.runtime import ClockDep, ZoneDep
from shared.vocabulary import AGENCY_CODE

router = APIRouter(prefix="/v1/cases", tags=["cases"])
agency_router = APIRouter(prefix="/v1/agencies", tags=["agencies"])

IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

Reader = Annotated[Actor, Depends(require(Role.assistant, Role.liaison, Role.analyst))]
CaseWorker = Annotated[Actor, Depends(require(Role.assistant, Role.liaison))]
Staff = Annotated[Actor, Depends(require(Role.assistant))]
AgencyCode = Annotated[str, Path(max_length=64)]

PROBLEMS = documented(401, 403, 422, 429, saying={
    404: "No such case in the caller's scope",
    409: "Action not allowed in the current status (see allowed_actions)",
    412: "If-Match does not match the case's version",
})


def _if_match(value: str | None) -> IfMatch | None:
    if value is None:
        return None
    try:
        return IfMatch.parse(value)
    except ValueError:
        raise invalid("/header/If-Match", 'If-Match must be "*" or a list of entity tags such '
                                          'as "5" (quotes included)') from None


@router.get("", response_model=CasePage, responses=PROBLEMS,
            summary="Cases, newest first (a liaison sees only its agency's)")
async def list_cases(
    session: SessionDep, actor: Reader, clock: ClockDep, paging: PagingDep,
    status: Status | None = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    overdue: Annotated[bool | None, Query(
        description="true: open cases past their due_at; false: every other case")] = None,
) -> CasePage:
    now = clock.now()
    if actor.role is Role.liaison:
        if agency is not None and agency != actor.agency_code:
            return CasePage(items=[], next_cursor=None)
        agency = actor.agency_code
    rows = await repository.page(
        session, status=status.value if status else None, agency=agency, assignee=assignee,
        overdue=overdue, now=now, before_seq=paging.after(), limit=paging.fetch,
    )
    shown, next_cursor = paging.page(rows, key=lambda row: row.seq)
    histories = await repository.histories(session, [row.id for row in shown])
    return CasePage(items=[service.render(row, histories[row.id], actor, now) for row in shown],
                    next_cursor=next_cursor)


async def _render(session: SessionDep, actor: Actor, case_id: uuid.UUID,
                  now: datetime) -> Response:
    case = await service.visible_case(session, actor, case_id)
    history = list(await repository.history(session, case.id))
    body = service.render(case, history, actor, now)
    return JSONResponse(body.model_dump(mode="json"), headers={"ETag": service.etag(case)})


@router.get("/{case_id}", response_model=CaseOut, responses=PROBLEMS,
            summary="One case with its history; ETag carries its version")
async def get_case(case_id: IdPath, session: SessionDep, actor: Reader,
                   clock: ClockDep) -> Response:
    return await _render(session, actor, parse_id(case_id, "case"), clock.now())


TRANSITION_RULES = """\
Checks run in this order, and the first that fails answers: the token (401), a role that never
acts, partner or analyst (403), the body's shape and the action's name (422), the case in the
caller's scope (404), the role for this action (403), `If-Match` (412), the action allowed in the
current status (409, with `allowed_actions`), the action's fields and reasons (422,
`errors[0].field` names the field), `effective_at` and `due_at` (422), then the domain's formal
check: a `report` whose reporter did not go to the agency first cannot be `register`ed (409; such
a case never lists `register` in its `allowed_actions`). An explicit `due_at` must be later than
the transition's effective time. Default due dates are calendar days in the office's time zone,
counted from the effective time. The system's expiry is recorded with actor and role `system`.
"""


@router.post("/{case_id}/transitions", response_model=CaseOut, responses=PROBLEMS,
             summary="Take a workflow action on a case", description=TRANSITION_RULES)
async def transition_case(
    case_id: IdPath, payload: TransitionRequest, session: SessionDep, actor: CaseWorker,
    clock: ClockDep, zone: ZoneDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    now = clock.now()
    case = await service.transition(session, actor, parse_id(case_id, "case"), payload,
                                    if_match=_if_match(if_match), now=now, zone=zone)
    return await _render(session, actor, case.id, now)


@agency_router.get("", response_model=AgencyPage, responses=PROBLEMS,
                   summary="Agencies seen in complaints, with open-case counts")
async def list_agencies(session: SessionDep, actor: Reader, paging: PagingDep) -> AgencyPage:
    only = actor.agency_code if actor.role is Role.liaison else None
    rows = await repository.agencies(session, only=only, after=paging.after_text(),
                                     limit=paging.fetch)
    shown, next_cursor = paging.page(rows, key=lambda row: row.code)
    return AgencyPage(items=[_agency(row) for row in shown], next_cursor=next_cursor)


@agency_router.get("/{code}", response_model=AgencyOut, responses=PROBLEMS,
                   summary="One agency with its open-case count")
async def get_agency(code: AgencyCode, session: SessionDep, actor: Reader) -> AgencyOut:
    if actor.role is Role.liaison and code != actor.agency_code:
        raise not_found("agency")
    return await _stored_agency(session, code)


AGENCY_NAMING = """\
An agency's name comes from the first complaint that names it, and no later complaint changes it
(partners cannot rename an agency for everyone). Staff (assistant, admin) set the name here; an
agency not seen yet is registered with it (201), so that complaints find it named.
"""


@agency_router.put("/{code}", response_model=AgencyOut, responses={
    **PROBLEMS, 201: {"description": "Agency registered with this name",
                      "model": AgencyOut}},
    summary="Set an agency's name (staff)", description=AGENCY_NAMING)
async def name_agency(code: Annotated[str, Path(pattern=AGENCY_CODE)], body: AgencyName,
                      session: SessionDep, _: Staff, clock: ClockDep) -> Response:
    created = await repository.name_agency(session, code, body.name, clock.now())
    agency = await _stored_agency(session, code)
    return JSONResponse(agency.model_dump(mode="json"), status_code=201 if created else 200,
                        headers={"Location": f"/v1/agencies/{code}"} if created else None)


async def _stored_agency(session: SessionDep, code: str) -> AgencyOut:
    rows = await repository.agencies(session, only=code, after=None, limit=1)
    if not rows:
        raise not_found("agency")
    return _agency(rows[0])


def _agency(row: repository.AgencyRow) -> AgencyOut:
    return AgencyOut(code=row.code, name=row.name, open_cases=row.open_cases,
                     total_cases=row.total_cases, complaints=row.complaints)
