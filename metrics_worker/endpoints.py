"""HTTP edge of the metrics service."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import repository, service
from metrics_worker.formats import (
    SUMMARY_COLUMNS,
    Format,
    csv_response,
    figure_rows,
    json_rows_response,
    negotiate,
)
from metrics_worker.periods import PERIOD, parse_period, period_from_query
from metrics_worker.schemas import MonthlyOut, Summary, TargetIn, TargetOut
from metrics_worker.service import MONTHLY_COLUMNS
from shared.auth import Actor, Role, require
from shared.db import DatabaseDep, SessionDep
from shared.problems import documented, not_found
from shared.runtime import ZoneDep

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

Reader = Annotated[Actor, Depends(require(Role.analyst, Role.assistant))]
TargetSetter = Annotated[Actor, Depends(require(Role.assistant))]

PROBLEMS = documented(401, 429, saying={
    403: "Role may not do this", 404: "No target for this period",
    406: "The Accept header admits neither JSON nor CSV", 422: "Invalid period or field",
})
TARGET_COLUMNS = ("period", "closures", "examination_closures", "updated_at", "updated_by")
SUMMARY_ANSWER = ("Every figure, as JSON; or as CSV with one row per figure, "
                  "`figure,key,value` (e.g. `received_by_month,2022-03,294`)")

PeriodQuery = Annotated[str | None, Query(max_length=16, description="YYYY, YYYY-Qn or YYYY-MM")]
FromQuery = Annotated[date | None, Query(alias="from")]
ToQuery = Annotated[date | None, Query(alias="to")]


FormatQuery = Annotated[Format | None, Query(
    description="`json` or `csv`; without it the `Accept` header decides (`text/csv` for CSV)")]
CSV_ANSWER = {"text/csv": {"schema": {"type": "string"}}}


@router.get("/summary", response_model=Summary, response_model_by_alias=True,
            responses={**PROBLEMS, 200: {"content": {"application/json": {}, **CSV_ANSWER},
                                         "description": SUMMARY_ANSWER}},
            summary="Every figure of a period (METRICS.md)")
async def get_summary(request: Request, database: DatabaseDep, zone: ZoneDep, _: Reader,
                      period: PeriodQuery = None, first: FromQuery = None,
                      last: ToQuery = None, format: FormatQuery = None) -> Any:
    wanted = negotiate(request, format)
    chosen = period_from_query(period, first, last)
    # One statement outside a transaction: one round trip, where BEGIN and COMMIT would add two.
    async with database.autocommit() as connection:
        summary = await service.document(connection, chosen, zone)
    if wanted == "json":
        # The document is ``Summary`` already, as its JSON: answered as it is, not checked again.
        return Response(json.dumps(summary, ensure_ascii=False, allow_nan=False,
                                   separators=(",", ":")).encode(),
                        media_type="application/json")
    label = chosen.label or f"{chosen.first}_{chosen.last}"
    return csv_response(SUMMARY_COLUMNS, figure_rows(summary), f"aduan-summary-{label}.csv")


@router.get("/monthly", response_model=MonthlyOut, responses={
    **PROBLEMS, 200: {"content": {"application/json": {}, **CSV_ANSWER},
                      "description": "Rows as JSON, or RFC 4180 CSV with a header row"}},
    summary="Monthly figures, grouped")
async def get_monthly(
    request: Request, session: SessionDep, _: Reader,
    first: FromQuery = None, last: ToQuery = None, period: PeriodQuery = None,
    group_by: Literal["none", "channel", "substance", "agency", "kind"] = "none",
    format: FormatQuery = None,
) -> Any:
    wanted = negotiate(request, format)
    chosen = period_from_query(period, first, last)
    rows = await service.monthly(session, chosen, group_by)
    if wanted == "csv":
        return csv_response(MONTHLY_COLUMNS, rows, "aduan-monthly.csv")
    return json_rows_response(dict(zip(MONTHLY_COLUMNS, row, strict=True)) for row in rows)


PeriodPath = Annotated[str, Path(pattern=PERIOD.pattern, description="YYYY, YYYY-Qn or YYYY-MM")]


@router.put("/targets/{period}", response_model=TargetOut, responses=PROBLEMS,
            summary="Set (replace) the closure targets of a period")
async def put_target(period: PeriodPath, body: TargetIn, session: SessionDep,
                     actor: TargetSetter) -> TargetOut:
    parse_period(period, "/path/period")
    await repository.put_target(session, period, body.closures, body.examination_closures,
                                actor.name)
    return await _target(session, period)


@router.get("/targets/{period}", response_model=TargetOut, responses={
    **PROBLEMS, 200: {"content": {"application/json": {}, **CSV_ANSWER},
                      "description": "The targets, as JSON or as one CSV row"}},
    summary="The closure targets of a period")
async def get_target(request: Request, period: PeriodPath, session: SessionDep, _: Reader,
                     format: FormatQuery = None) -> Any:
    wanted = negotiate(request, format)
    found = await _target(session, period)
    if wanted == "json":
        return found
    return csv_response(TARGET_COLUMNS, [[getattr(found, c) for c in TARGET_COLUMNS]],
                        f"aduan-targets-{period}.csv")


async def _target(session: AsyncSession, period: str) -> TargetOut:
    target = await repository.get_target(session, period)
    if target is None:
        raise not_found(f"target for {period}")
    await session.refresh(target)
    return TargetOut(period=target.period, closures=target.closures,
                     examination_closures=target.examination_closures,
                     updated_at=target.updated_at, updated_by=target.updated_by)
