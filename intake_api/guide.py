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
        "`next_cursor`); filter by `status` (a case status, or `recorded`), `kind` or "
        "`tracking_number`; an unknown status or kind is 422. A partner sees only "
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

ATTACHMENT = {"id": "5d7c1e0a-8f51-4f0e-b8a2-4b1b6f3e2c90", "filename": "tagihan-maret.pdf",
              "content_type": "application/pdf", "size": 182344,
              "sha256": "9f2b5c0e1d4a7b3c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f",
              "confidential": False, "uploaded_at": "2022-03-03T02:20:00Z",
              "uploaded_by": "posko-pln"}
OPEN311_SERVICE = {"service_code": "electricity", "service_name": "Electricity",
                   "description": "Electricity supply and billing (PLN)", "metadata": False,
                   "type": "realtime", "keywords": "listrik,pln", "group": "utilities"}
OPEN311_REQUEST = {"service_request_id": "ADU-2022-000193", "status": "open",
                   "status_notes": "Awaiting the agency's clarification",
                   "service_name": "Electricity", "service_code": "electricity",
                   "description": "Listrik padam tiga kali seminggu sejak Februari.",
                   "agency_responsible": "PT PLN (Persero) UIW Bangka Belitung",
                   "requested_datetime": "2022-03-03T09:15:00+07:00",
                   "updated_datetime": "2022-03-10T10:00:00+07:00",
                   "expected_datetime": "2022-03-24T23:59:59+07:00",
                   "address": "Kantor Kelurahan Bukit Intan", "lat": None, "long": None}
OPEN311_NEW = {"api_key": "adu_...", "service_code": "electricity",
               "description": "Listrik padam tiga kali seminggu sejak Februari.",
               "address_string": "Kantor Kelurahan Bukit Intan", "first_name": "Siti",
               "last_name": "Aminah", "email": "siti@example.id",
               "attribute[agency]": "pln-uiw-babel",
               "attribute[agency_name]": "PT PLN (Persero) UIW Bangka Belitung"}
OPEN311 = ("Open311 GeoReport v2 for partner systems that speak it: `{fmt}` is `json` or `xml`; "
           "the partner's token goes in `api_key`. Errors are the standard's error lists.")

GUIDES.update({
    "POST /v1/complaints/{complaint_id}/attachments": Guide(
        "Attaches one file of evidence (`multipart/form-data`, part `file`, optional part "
        "`confidential=true` to hide it from liaison officers). The type is decided from the "
        "bytes: PDF, JPEG, PNG or WebP (else 415); over 10 MiB is refused while it streams "
        "(413); at most 20 per complaint (409). Roles: partner (its own complaints), "
        "assistant, admin.",
        ATTACHMENT, request={"file": "(the file's bytes)", "confidential": "false"},
        status="201"),
    "GET /v1/complaints/{complaint_id}/attachments": Guide(
        "A complaint's attachments, oldest first (metadata only), a page at a time as every "
        "list (`limit` 1..200, `cursor` from `next_cursor`). Liaison officers of the "
        "case's agency see those not marked confidential. Roles: partner (its own "
        "complaints), assistant, admin, liaison.",
        {"items": [ATTACHMENT], "next_cursor": None}),
    "GET /v1/complaints/{complaint_id}/attachments/{attachment_id}": Guide(
        "The bytes of one attachment, always as a download (`Content-Disposition: "
        "attachment`), with its `ETag` (the SHA-256) for `If-None-Match`. Roles: as for the "
        "list.",
        "%PDF-1.7 ... (the file's bytes)", media="application/pdf"),
    "GET /open311/v2/services.{fmt}": Guide(
        OPEN311 + " The services: one per substance. Example: `GET "
        "/open311/v2/services.json`.", [OPEN311_SERVICE]),
    "POST /open311/v2/requests.{fmt}": Guide(
        OPEN311 + " Reports a problem: a complaint of kind report, channel website, against "
        "the agency named in `attribute[agency]`. Answers the new request's id, which is the "
        "complaint's tracking number.",
        [{"service_request_id": "ADU-2022-000193",
          "service_notice": "Recorded by the Ombudsman RI, Bangka Belitung.",
          "account_id": None}], request=OPEN311_NEW, status="201"),
    "GET /open311/v2/requests.{fmt}": Guide(
        OPEN311 + " Example: `GET /open311/v2/requests.json?api_key=...&status=open`.",
        [OPEN311_REQUEST]),
    "GET /open311/v2/requests/{service_request_id}.{fmt}": Guide(
        OPEN311 + " Example: `GET /open311/v2/requests/ADU-2022-000193.json?api_key=...`.",
        [OPEN311_REQUEST]),
})

SUBSCRIPTION = {"id": "7a1f0c3e-2b4d-4e6f-8a9b-0c1d2e3f4a5b",
                "url": "https://posko.example.id/aduan/webhooks",
                "events": ["complaint.status_changed"], "description": "Posko PLN status feed",
                "active": True, "disabled_reason": None, "created_at": "2022-03-01T01:00:00Z"}
DELIVERY = {"id": "3c9e5d1a-6b7f-4a2c-9d8e-1f0a2b3c4d5e", "event_type": "complaint.status_changed",
            "status": "delivered", "attempts": 1, "last_status_code": 200, "last_error": None,
            "next_attempt_at": None, "created_at": "2022-03-10T03:00:01Z",
            "delivered_at": "2022-03-10T03:00:02Z"}
WEBHOOK_ROLES = "Roles: partner (its complaints), liaison (its agency's cases), admin (all)."

GUIDES.update({
    "POST /v1/webhooks": Guide(
        "Subscribes an HTTPS URL to events; each delivery is signed (Standard Webhooks: "
        "`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the `secret` shown only "
        "in this answer, and retried with back-off until the receiver answers 2xx. "
        + WEBHOOK_ROLES + " A liaison hears each step of a case taken while its agency had "
        "the case: for a report filed `unassigned`, from the step that gave the case its agency "
        "(`assign_agency`, a `complaint.status_changed`) on. One receiving server (scheme, "
        "host and port, however the URL spells them: `https://h`, `https://H.:443`) is one "
        "origin, with one share of the attempts in flight.",
        {**SUBSCRIPTION, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        request={"url": "https://posko.example.id/aduan/webhooks",
                 "events": ["complaint.status_changed"],
                 "description": "Posko PLN status feed"}, status="201"),
    "GET /v1/webhooks": Guide(
        "The caller's subscriptions, newest first, a page at a time. " + WEBHOOK_ROLES,
        {"items": [SUBSCRIPTION], "next_cursor": None}),
    "GET /v1/webhooks/{subscription_id}": Guide(
        "One of the caller's subscriptions (never its secret); another caller's is 404. "
        + WEBHOOK_ROLES, SUBSCRIPTION),
    "DELETE /v1/webhooks/{subscription_id}": Guide(
        "Stops a subscription; its pending deliveries are dropped. Answers 204 with no body. "
        + WEBHOOK_ROLES, None, status="204"),
    "GET /v1/webhooks/{subscription_id}/secret": Guide(
        "Always 410 Gone: the secret is shown once, in the answer that created the "
        "subscription; to change it, delete the subscription and create another. "
        + WEBHOOK_ROLES, None, status="410"),
    "GET /v1/webhooks/{subscription_id}/deliveries": Guide(
        "The subscription's deliveries, newest first, with their attempts and the last "
        "answer. " + WEBHOOK_ROLES, {"items": [DELIVERY], "next_cursor": None}),
    "POST /v1/webhooks/{subscription_id}/deliveries/{delivery_id}/retry": Guide(
        "Sends a pending or failed delivery again now, with a fresh retry period; 202. "
        + WEBHOOK_ROLES,
        {**DELIVERY, "status": "pending", "attempts": 3, "last_status_code": 503,
         "last_error": "503 Service Unavailable", "next_attempt_at": "2022-03-10T03:05:00Z",
         "delivered_at": None}, status="202"),
})
