"""The status page's rendering on its own: both languages, local times, deadlines, escaping."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from intake_api.schemas import PublicStatus
from intake_api.status_page import render

JAKARTA = ZoneInfo("Asia/Jakarta")


def test_an_answer_shows_local_times_and_the_deadline_as_the_end_of_its_day() -> None:
    answer = PublicStatus(
        tracking_number="ADU-2022-000193", kind="report", status="awaiting_agency",
        received_at=datetime(2022, 3, 3, 2, 15, tzinfo=UTC),
        updated_at=datetime(2022, 3, 10, 4, 0, tzinfo=UTC),
        due_at=datetime(2022, 3, 24, 17, 0, tzinfo=UTC),
        closure_stage=None, closure_reason=None, resolution=None)
    page = render(zone=JAKARTA, tracking_number="ADU-2022-000193", answer=answer)
    assert "Menunggu tanggapan instansi" in page
    assert "Awaiting the agency&#x27;s answer" in page
    assert "2022-03-03 09:15 (WIB)" in page
    assert "2022-03-24 24:00 (WIB)" in page


def test_what_the_visitor_typed_is_escaped() -> None:
    page = render(zone=JAKARTA, tracking_number='"><script>alert(1)</script>',
                  notice=("Tidak cocok.", "No match."))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'role="alert"' in page
