"""The access log, request ids and ``GET /metrics`` of a real ``aduan serve`` process."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx

from shared.access_log import new_request_id
from tests.support import BackingServices, ServiceProcess, bearer, complaint

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def assert_uuid4_hex(request_id: str) -> None:
    """32 lowercase hex digits that read as a random (version 4, RFC variant) UUID."""
    parsed = uuid.UUID(hex=request_id)
    assert parsed.hex == request_id, request_id  # no dashes, no braces, lowercase
    assert parsed.version == 4, request_id
    assert parsed.variant == uuid.RFC_4122, request_id


def test_generated_request_ids_are_random_uuid4_hex() -> None:
    generated = [new_request_id() for _ in range(2000)]
    for request_id in generated:
        assert_uuid4_hex(request_id)
    assert len(set(generated)) == len(generated)
    # The 122 random bits vary: every hex digit but the version's (fixed) and the variant's
    # (two random bits) takes many values, as a constant or counter-like id would not.
    for position in (*range(12), *range(13, 16), *range(17, 32)):
        assert len({r[position] for r in generated}) > 8, position
    assert {r[16] for r in generated} == set("89ab")


def access_lines(log: str) -> dict[str, dict[str, Any]]:
    """The access-log lines by request id (other lines are not JSON with a route)."""
    lines: dict[str, dict[str, Any]] = {}
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "route" in record:
            assert record["request_id"] not in lines, f"two lines for one request: {line}"
            lines[record["request_id"]] = record
    return lines


async def test_one_json_line_per_request_with_its_request_id(services: BackingServices) -> None:
    token = await services.token("partner", "posko-pln")
    env = services.env(ADUAN_LOG_FORMAT="json", ADUAN_METRICS_TOKEN="scrape-secret")
    server = ServiceProcess("all", env, services.workdir / "serve.log").start()
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            created = await client.post("/v1/complaints", json=complaint(), headers={
                **bearer(token), "X-Request-ID": "pos-7781",
                "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
            assert created.status_code == 201, created.text
            assert created.headers["x-request-id"] == "pos-7781"
            read = await client.get(f"/v1/complaints/{created.json()['id']}",
                                    params={"api_key": "partner-secret", "page": "2"},
                                    headers=bearer(token))
            assert read.status_code == 200
            generated = read.headers["x-request-id"]
            assert_uuid4_hex(generated)
            # HEAD as GET through the real server: the same head, no body (RFC 9110).
            head = await client.head(f"/v1/complaints/{created.json()['id']}",
                                     headers={**bearer(token), "X-Request-ID": "head-1"})
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(read.content))
            # A complainant's link to the status page carries its access code.
            linked = await client.get("/status", params={
                "tracking_number": "ADU-2026-000001", "access_code": "K5HV-E9FP-HVX2"},
                headers={"X-Request-ID": "linked-1"})
            assert linked.status_code == 200
            looked_up = await client.post("/public/status", params={
                "access_code": "K5HV-E9FP-HVX3", "password": "Rahasia-99"},
                                          json={"tracking_number": "ADU-2026-000001",
                                                "access_code": "K5HV-E9FP-HVX3"})
            assert looked_up.status_code == 404
            hostile = await client.get("/nowhere", headers={"X-Request-ID": "a\tb" * 100})
            assert hostile.status_code == 404
            assert_uuid4_hex(hostile.headers["x-request-id"])

            refused = await client.get("/metrics")
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            scraped = await client.get("/metrics", headers=bearer("scrape-secret"))
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=")
        figures = scraped.text
        assert ('aduan_http_requests_total{method="POST",route="/v1/complaints",'
                'status="201"} 1.0') in figures
        assert ('aduan_http_request_duration_seconds_count{method="GET",'
                'route="/v1/complaints/{complaint_id}",status="200"} 1.0') in figures
        assert 'route="<unmatched>",status="404"} 1.0' in figures
        assert 'aduan_db_pool_connections{state="checked_out"}' in figures
        assert re.search(r'aduan_consumer_lag\{group="aduan-case",partition="0",'
                         r'topic="aduan.complaints.v1"\} [01]\.0', figures)
        assert "aduan_database_up 1.0" in figures
    finally:
        server.stop()

    log = server.log_tail(lines=10_000)
    lines = access_lines(log)
    posted = lines["pos-7781"]
    assert {k: posted[k] for k in ("method", "route", "status", "caller", "trace_id")} == {
        "method": "POST", "route": "/v1/complaints", "status": 201, "caller": "posko-pln",
        "trace_id": TRACE_ID}
    assert posted["duration_ms"] > 0
    assert lines[generated]["route"] == "/v1/complaints/{complaint_id}"
    assert {k: lines["head-1"][k] for k in ("method", "route", "status", "caller")} == {
        "method": "HEAD", "route": "/v1/complaints/{complaint_id}", "status": 200,
        "caller": "posko-pln"}
    assert lines[generated]["query"] == "api_key=REDACTED&page=2"
    assert lines[hostile.headers["x-request-id"]]["route"] == "<unmatched>"
    assert lines[hostile.headers["x-request-id"]]["caller"] is None
    assert lines["linked-1"]["query"] == (
        "tracking_number=ADU-2026-000001&access_code=REDACTED")
    for secret in (token, "partner-secret", "scrape-secret", "Siti Aminah", "siti@example.id",
                   "K5HV-E9FP-HVX2", "K5HV-E9FP-HVX3", "Rahasia-99"):
        assert secret not in log
