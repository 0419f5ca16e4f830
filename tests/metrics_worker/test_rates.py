"""Rates "rounded to 4 decimals" (METRICS.md) as a spreadsheet's ROUND gives them: an exact
half up, decided on the exact fraction, not on its float."""

from __future__ import annotations

import csv
import io

import pytest

from metrics_worker.service import rate
from tests.metrics_worker.helpers import Importer
from tests.support import bearer


@pytest.mark.parametrize(("part", "whole", "expected"), [
    (1, 32, 0.0313),      # 0.03125 exactly: half up, where round() gives 0.0312 (to even)
    (1, 160, 0.0063),     # 0.00625 exactly
    (3, 32, 0.0938),      # 0.09375 exactly
    (1, 20_000, 0.0001),  # 0.00005 exactly
    (1, 3, 0.3333), (2, 3, 0.6667), (213, 260, 0.8192), (5, 5, 1.0), (0, 7, 0.0), (3, 0, 0.0),
    (7, 4, 1.75),
])
def test_rates_round_an_exact_half_up(part: int, whole: int, expected: float) -> None:
    assert rate(part, whole) == expected


async def test_a_target_rate_on_a_half_is_rounded_up_everywhere(history: Importer) -> None:
    client, admin = history.client, history.admin
    case = await history.receive("2022-02-01T10:00:00+07:00")
    await history.opened(case)
    await history.act(case, "reject", "2022-02-02T10:00:00+07:00", reason="duplicate")
    await history.settled(1, 1)
    put = await client.put("/v1/metrics/targets/2022-Q1",
                           json={"closures": 32, "examination_closures": 160},
                           headers=bearer(admin))
    assert put.status_code == 200, put.text
    summary = await history.summary(period="2022-Q1")
    assert summary["targets"]["closures"] == {"target": 32, "actual": 1, "rate": 0.0313}
    assert summary["targets"]["examination_closures"]["rate"] == 0.0
    assert summary["closure_rate"] == 1.0
    sheet = await client.get("/v1/metrics/summary", params={"period": "2022-Q1", "format": "csv"},
                             headers=bearer(admin))
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert ["targets.closures", "rate", "0.0313"] in rows
    page = await client.get("/dashboard", params={"period": "2022-Q1"}, headers=bearer(admin))
    assert page.status_code == 200
    assert "3.13 %" in page.text
