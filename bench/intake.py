"""Intake throughput and overload, each beside a reference measured in the same run.

1. The all-in-one server (``aduan serve``, database event log, its consumers running) at 64
   concurrent clients, against ``pgbench`` on the same PostgreSQL running (a) the app's own
   per-complaint SQL (token lookup, tracking number, complaint row, outbox row; one transaction)
   and (b) the ceiling script: one complaint row and one outbox row, no shared counter.
2. ``aduan serve intake`` alone, one process and then two side by side (clients split between
   them): do two processes add throughput?
3. Overload: requests offered at twice the rate the all-in-one server sustained in (1), open
   loop. Every answer must be 201 or 503 with ``Retry-After``; every 201 must be stored.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import Results, closed_loop, open_loop, post_request
from bench.server import Backing, Server, backing
from services.postgres import wheel_binaries

CLIENTS = 64


def complaint(tag: str, n: int) -> dict[str, Any]:
    return {
        "kind": "report", "channel": "partner_api", "substance": "electricity",
        "reporter": {"name": "Siti Aminah", "email": "siti@example.id", "phone": "+62811000",
                     "identity_number": "1971000000000001", "address": "Pangkalpinang",
                     "confidential": False},
        "reported_agency": {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Babel"},
        "summary": f"{tag} {n}",
        "description": "Listrik padam tiga kali seminggu tanpa pemberitahuan.",
        "incident_date": "2026-11-01", "reported_to_agency_first": True,
        "location": {"regency": "Pangkalpinang", "place": "Kantor Kelurahan Bukit Intan"},
    }


def requests(port: int, token: str, tag: str, count: int = 4096) -> list[bytes]:
    return [post_request("127.0.0.1", port, "/v1/complaints", token, complaint(tag, n))
            for n in range(count)]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scripts(workdir: Path) -> dict[str, Path]:
    """The two pgbench scripts: the app's SQL and the ceiling."""
    body = complaint("pgbench", 0)
    envelope = json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()),
                           "source": "/aduan/intake", "type": "complaint.received",
                           "time": datetime.now(UTC).isoformat(), "data": body})
    columns = ("kind, channel, substance, reporter, reported_agency_code, reported_agency_name, "
               "summary, description, incident_date, reported_to_agency_first, location, "
               "received_at, submitted_by, status")
    values = (f"'report', 'partner_api', 'electricity', {_literal(json.dumps(body['reporter']))}"
              f"::jsonb, 'pln-uiw-babel', 'PT PLN', 'pgbench', 'pgbench', '2026-11-01', true, "
              f"{_literal(json.dumps(body['location']))}::jsonb, now(), 'bench', 'received'")
    outbox = ("INSERT INTO intake.outbox (event_id, topic, key, envelope) VALUES "
              f"(gen_random_uuid()::text, 'aduan.complaints.v1', gen_random_uuid()::text, "
              f"{_literal(envelope)}::jsonb);")
    app = "\n".join([
        "BEGIN;",
        "SELECT name FROM auth.tokens WHERE token_hash = 'no such token';",
        "SELECT intake.next_tracking_number(2026) AS number \\gset",
        f"INSERT INTO intake.complaints (id, tracking_number, {columns}) VALUES "
        f"(gen_random_uuid(), 'PGB-2026-' || :number, {values});",
        outbox, "COMMIT;", ""])
    ceiling = "\n".join([
        "BEGIN;",
        f"INSERT INTO intake.complaints (id, tracking_number, {columns}) VALUES "
        f"(gen_random_uuid(), 'PGC-' || left(md5(random()::text), 26), {values});",
        outbox, "COMMIT;", ""])
    # The intake transaction as it was before this design: a counter row per year updated,
    # and a per-schema advisory lock taken before the outbox insert, both held to the commit.
    before = "\n".join([
        "BEGIN;",
        "SELECT name FROM auth.tokens WHERE token_hash = 'no such token';",
        "INSERT INTO bench_tracking_counters (year, last) VALUES (2026, 1) ON CONFLICT (year) "
        "DO UPDATE SET last = bench_tracking_counters.last + 1 RETURNING last AS number \\gset",
        f"INSERT INTO intake.complaints (id, tracking_number, {columns}) VALUES "
        f"(gen_random_uuid(), 'PGO-2026-' || :number, {values});",
        "SELECT pg_advisory_xact_lock(hashtext('aduan.outbox.intake'));",
        outbox, "COMMIT;", ""])
    paths = {"app": workdir / "app.sql", "ceiling": workdir / "ceiling.sql",
             "before": workdir / "before.sql"}
    paths["app"].write_text(app)
    paths["ceiling"].write_text(ceiling)
    paths["before"].write_text(before)
    for path in paths.values():
        path.chmod(0o644)
    return paths


def pgbench(back: Backing, script: Path, seconds: int) -> float:
    """Transactions per second of ``script`` at ``CLIENTS`` connections."""
    result = subprocess.run(
        [str(wheel_binaries() / "pgbench"), "-n", "-c", str(CLIENTS), "-j", "2",
         "-T", str(seconds), "-f", str(script), "-h", back.pg.socket_dir, "-p", str(back.pg.port),
         "-U", "postgres",
         "aduan"],
        capture_output=True, text=True, check=True, timeout=seconds + 120)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if match is None:
        raise RuntimeError(f"pgbench said: {result.stdout}\n{result.stderr}")
    return float(match.group(1))


def _load_figures(results: Results) -> dict[str, Any]:
    return {"accepted_per_s": round(results.per_second(201), 1),
            "p50_ms": results.percentile_ms(0.50), "p99_ms": results.percentile_ms(0.99),
            "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
            "client_errors": dict(results.errors)}


async def _stored(back: Backing, tag: str) -> int:
    return await back.count(
        "SELECT count(*) FROM intake.complaints WHERE summary LIKE $1", f"{tag} %")


async def run(seconds: int = 10) -> dict[str, Any]:
    async with backing() as back:
        env = back.env()
        async with Server("all", env) as server:
            await closed_loop("127.0.0.1", server.port, requests(server.port, back.token, "warm"),
                              clients=8, seconds=2)
            allinone = await closed_loop("127.0.0.1", server.port,
                                         requests(server.port, back.token, "allinone"),
                                         clients=CLIENTS, seconds=seconds)
            sustained = allinone.per_second(201)
            overload = await open_loop("127.0.0.1", server.port,
                                       requests(server.port, back.token, "overload"),
                                       rate=max(2 * sustained, 20), seconds=seconds)
        stored = {tag: await _stored(back, tag) for tag in ("allinone", "overload")}

        await back.execute("CREATE TABLE bench_tracking_counters "
                           "(year integer PRIMARY KEY, last integer NOT NULL)")
        paths = scripts(back.workdir)
        tps = {name: pgbench(back, path, seconds) for name, path in paths.items()}

        async with Server("intake", env) as one:
            single = await closed_loop("127.0.0.1", one.port,
                                       requests(one.port, back.token, "single"),
                                       clients=CLIENTS, seconds=seconds)
        async with Server("intake", env) as first, Server("intake", env) as second:
            pair = await asyncio.gather(*(
                closed_loop("127.0.0.1", s.port, requests(s.port, back.token, "pair"),
                            clients=CLIENTS // 2, seconds=seconds) for s in (first, second)))

    refused = [a for a in overload.answers if a.status == 503]
    return {
        "benchmark": "intake",
        "seconds_per_run": seconds,
        "clients": CLIENTS,
        "allinone": {**_load_figures(allinone), "stored": stored["allinone"],
                     "answered_201": allinone.statuses[201]},
        "pgbench_app_sql_tps": round(tps["app"], 1),
        "pgbench_ceiling_tps": round(tps["ceiling"], 1),
        "pgbench_previous_design_sql_tps": round(tps["before"], 1),
        "ratio_to_app_sql": round(sustained / tps["app"], 3),
        "ratio_to_ceiling": round(sustained / tps["ceiling"], 3),
        "intake_one_process_per_s": round(single.per_second(201), 1),
        "intake_two_processes_per_s": round(sum(r.per_second(201) for r in pair), 1),
        "overload": {
            "offered_per_s": round(max(2 * sustained, 20), 1),
            **_load_figures(overload),
            "refused_503_with_retry_after": sum(1 for a in refused if a.retry_after),
            "p99_503_ms": overload.percentile_ms(0.99, 503),
            "answered_201": overload.statuses[201], "stored": stored["overload"],
            "other_statuses": sum(n for s, n in overload.statuses.items() if s not in (201, 503)),
        },
    }
