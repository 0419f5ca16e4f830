"""``GET /dashboard``: a period's figures as charts, for people in a browser.

Signed in like every other reader: a bearer token, or HTTP Basic with the token as the
password, which a browser asks for itself (any user name) when the page answers 401.
"""

from __future__ import annotations

from datetime import date, datetime
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from metrics_worker import page, service
from metrics_worker.endpoints import PROBLEMS, FromQuery, PeriodQuery, Reader, ToQuery
from metrics_worker.periods import period_from_query
from shared.db import SessionDep

router = APIRouter(tags=["dashboard"])

# The page is whole in itself: no script at all, styles inline, charts inline SVG.
POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
          "frame-ancestors 'self'; base-uri 'none'")


def current_quarter(today: date) -> str:
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def choices(today: date) -> list[str]:
    """Periods offered by the picker: the last eight quarters, this year and the last two."""
    quarters = []
    year, quarter = today.year, (today.month - 1) // 3 + 1
    for _ in range(8):
        quarters.append(f"{year}-Q{quarter}")
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
    return [*quarters, *(str(today.year - n) for n in range(3))]


def picker(current: str, today: date) -> str:
    options = "".join(f'<option value="{escape(p)}">' for p in choices(today))
    return ('<form class="picker" method="get" action="/dashboard">'
            '<label>Period (YYYY, YYYY-Qn or YYYY-MM)<input name="period" '
            f'value="{escape(current)}" list="periods" pattern="[0-9]{{4}}(-(Q[1-4]|[0-9]{{2}}))?"'
            f' required size="10"></label><datalist id="periods">{options}</datalist>'
            '<button type="submit">Show</button>'
            '<a href="/v1/metrics/summary?period=' + escape(current) + '&amp;format=csv">'
            "CSV</a></form>")


@router.get(
    "/dashboard", response_class=HTMLResponse,
    summary="The figures of a period as charts (for a browser)",
    description=(
        "An HTML page with the summary of a period drawn as charts: received by month, by "
        "channel and subject, closures against target by stage, backlog by status, the top "
        "agencies, liaison response times and median days to close, then every figure as a "
        "table. Every number is the one `GET /v1/metrics/summary` answers. Roles: analyst, "
        "assistant, admin. In a browser, sign in through the password prompt with the token "
        "as the password (any user name). Without a period: the current quarter. The page "
        "loads nothing from anywhere (no script, inline styles and SVG) and prints on A4."),
    responses={**PROBLEMS, 200: {"content": {"text/html": {"example": "<!DOCTYPE html>..."}},
                                 "description": "The page"}},
)
async def get_dashboard(request: Request, session: SessionDep, _: Reader,
                        period: PeriodQuery = None, first: FromQuery = None,
                        last: ToQuery = None) -> HTMLResponse:
    settings = request.app.state.runtime.settings
    today = datetime.now(settings.zone).date()
    if period is None and first is None and last is None:
        period = current_quarter(today)
    chosen = period_from_query(period, first, last)
    summary = await service.summary(session, chosen, settings.zone)
    label = chosen.label or f"{chosen.first.isoformat()} to {chosen.last.isoformat()}"
    html = page.render(summary, label, picker=picker(chosen.label or "", today),
                       footer="aduan · definitions: METRICS.md · the same figures as JSON or "
                              "CSV at /v1/metrics/summary")
    headers: dict[str, Any] = {"Content-Security-Policy": POLICY, "Cache-Control": "no-store"}
    return HTMLResponse(html, headers=headers)
