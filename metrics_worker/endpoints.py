"""HTTP edge of the metrics service."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from metrics_worker import repository, service
from metrics_worker.models import Target
from metrics_worker.periods import PERIOD, parse_period, period_from_query
from metrics_worker.schemas import MonthlyOut, Summary, TargetIn, TargetOut
from shared.auth import Actor, Role, require
from shared.db import SessionDep
from shared.problems import documented, not_found
from shared.runtime import ZoneDep

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

Reader = Annotated[Actor, Depends(require(Role.analyst, Role.assistant))]
TargetSetter = Annotated[Actor, Depends(require(Role.assistant))]

PROBLEMS = documented(401, 403, 429, saying={404: "No target for this period",
                                             422: "Invalid period or field"})
MONTHLY_COLUMNS = ("month", "group", "contacts", "received", "registered", "closed")

PeriodQuery = Annotated[str | None, Query(max_length=16, description="YYYY, YYYY-Qn or YYYY-MM")]
FromQuery = Annotated[date | None, Query(alias="from")]
ToQuery = Annotated[date | None, Query(alias="to")]


@router.get("/summary", response_model=Summary, response_model_by_alias=True,
            responses=PROBLEMS, summary="Every figure of a period (METRICS.md)")
async def get_summary(session: SessionDep, _: Reader, zone: ZoneDep,
                      period: PeriodQuery = None, first: FromQuery = None,
                      last: ToQuery = None) -> Summary:
    chosen = period_from_query(period, first, last)
    return await service.summary(session, chosen, zone)


@router.get("/monthly", response_model=MonthlyOut, responses={
    **PROBLEMS, 200: {"content": {"application/json": {}, "text/csv": {}},
                      "description": "Rows as JSON, or RFC 4180 CSV with a header row"}},
    summary="Monthly figures, grouped")
async def get_monthly(
    request: Request, session: SessionDep, _: Reader, zone: ZoneDep,
    first: FromQuery = None, last: ToQuery = None, period: PeriodQuery = None,
    group_by: Literal["none", "channel", "substance", "agency", "kind"] = "none",
    format: Literal["json", "csv"] | None = None,
) -> Any:
    chosen = period_from_query(period, first, last)
    rows = await service.monthly(session, chosen, zone, group_by)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        return MonthlyOut(rows=rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(MONTHLY_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, c) for c in MONTHLY_COLUMNS])
    return Response(buffer.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'inline; filename="aduan-monthly.csv"'})


PeriodPath = Annotated[str, Path(pattern=PERIOD.pattern, description="YYYY, YYYY-Qn or YYYY-MM")]


@router.put("/targets/{period}", response_model=TargetOut, responses=PROBLEMS,
            summary="Set (replace) the closure targets of a period")
async def put_target(period: PeriodPath, body: TargetIn, session: SessionDep,
                     actor: TargetSetter) -> TargetOut:
    parse_period(period)
    target = await repository.put_target(session, period, body.closures,
                                         body.examination_closures, actor.name)
    return _target_out(target)


@router.get("/targets/{period}", response_model=TargetOut, responses=PROBLEMS,
            summary="The closure targets of a period")
async def get_target(period: PeriodPath, session: SessionDep, _: Reader) -> TargetOut:
    target = await repository.get_target(session, period)
    if target is None:
        raise not_found(f"target for {period}")
    return _target_out(target)


def _target_out(target: Target) -> TargetOut:
    return TargetOut(period=target.period, closures=target.closures,
                     examination_closures=target.examination_closures,
                     updated_at=target.updated_at, updated_by=target.updated_by)
