"""What the OpenAPI document says about the intake operations, with worked examples."""

from __future__ import annotations

from shared.openapi import Guide

NEW_COMPLAINT = {
    "kind": "report", "channel": "complaint_post", "substance": "electricity",
    "reporter": {"name": "Siti Aminah", "email": "siti@example.id", "phone": "+62811000000",
                 "identity_number": "1971000000000001", "address": "Pangkalpinang",
                 "confidential": False},
    "reported_agency": {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung"},
    "summary": "Pemadaman listrik berulang tanpa pemberitahuan",
    "description": "Listrik padam tiga kali seminggu sejak Februari.",
    "incident_date": "2022-03-02", "reported_to_agency_first": True,
    "location": {"regency": "Pangkalpinang", "place": "Kantor Kelurahan Bukit Intan"},
    "external_reference": "POSKO-2022-0193",
}
OUTCOME = {"status": "received", "updated_at": "2022-03-03T02:15:00Z", "due_at": None,
           "closure_stage": None, "closure_reason": None, "resolution": None,
           "transferred_to": None, "closed_at": None}
COMPLAINT = {**NEW_COMPLAINT, "id": "0b8f6a52-3d2e-4c51-9a43-1f0e7c2d9b11",
             "tracking_number": "ADU-2022-000193", "status": "received",
             "received_at": "2022-03-03T02:15:00Z", "submitted_by": "posko-pln",
             "outcome": OUTCOME}
STATUS = {"tracking_number": "ADU-2022-000193", "kind": "report", "status": "awaiting_agency",
          "received_at": "2022-03-03T02:15:00Z", "updated_at": "2022-03-10T03:00:00Z",
          "due_at": "2022-03-24T16:59:59Z", "closure_stage": None, "closure_reason": None,
          "resolution": None}
STATUS_QUERY = {"tracking_number": "ADU-2022-000193", "access_code": "K7QM-2RXP-9WTD"}

GUIDES = {
    "POST /v1/complaints": Guide(
        "Records a complaint (or a consultation, a copied letter, a rapid response or an "
        "own-initiative investigation: `kind`) and publishes `complaint.received`; a case "
        "opens from it for reports, rapid responses and own-initiative investigations. "
        "Answers 201 with `Location`, the tracking number and the complainant's `access_code` "
        "(shown only here and in idempotent replays). Send an `Idempotency-Key` to retry "
        "safely; the same partner's `external_reference` twice is 409 with the first "
        "`complaint_id`. `received_at` (back-dating, for imports) only for admin. Roles: "
        "partner, assistant, admin (`own_initiative`: assistant and admin only).",
        {**COMPLAINT, "access_code": "K7QM-2RXP-9WTD"}, request=NEW_COMPLAINT, status="201"),
    "GET /v1/complaints": Guide(
        "Complaints, newest first, a page at a time (`limit` 1..200, `cursor` from "
        "`next_cursor`); filter by `status`, `kind` or `tracking_number`. A partner sees only "
        "the complaints it submitted; assistant and admin see all. Roles: partner, assistant, "
        "admin.\n\nExample: `GET /v1/complaints?tracking_number=ADU-2022-000193`.",
        {"items": [COMPLAINT], "next_cursor": None}),
    "GET /v1/complaints/{complaint_id}": Guide(
        "One complaint, with `outcome` following its case (eventually consistent). Another "
        "partner's complaint is 404, as is an unknown id. Roles: partner (its own), assistant, "
        "admin.",
        COMPLAINT),
    "POST /public/status": Guide(
        "The complainant's own view of a complaint, without an account: the tracking number "
        "and the access code from the 201. No personal data, no notes. JSON or an HTML form "
        "body.",
        STATUS, request=STATUS_QUERY),
    "GET /status": Guide(
        "The status page for complainants (Indonesian and English): a form asking for the "
        "tracking number and the access code. Open it in a browser: `GET /status`.",
        "<!DOCTYPE html><html lang=\"id\">...", media="text/html"),
    "POST /status": Guide(
        "The status page's form, answered as an HTML page with the complaint's status.",
        "<!DOCTYPE html><html lang=\"id\">...", request=STATUS_QUERY, media="text/html"),
}
