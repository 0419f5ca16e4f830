"""Intake throughput and overload, each beside a reference measured in the same run.

1. The all-in-one server (``aduan serve`` as configured by default: HTTP worker processes, one
   per core, beside the main process running the consumers; database event log) at 64
   concurrent clients, against ``pgbench`` on the same PostgreSQL running (a) the app's own
   per-complaint SQL (tracking number, complaint row, outbox row; one transaction) and (b) the
   ceiling script: one complaint row and one outbox row, no shared counter. The same server as
   one process (``ADUAN_HTTP_WORKERS=1``) beside it.
2. ``aduan serve intake`` alone, single processes: one, and then two side by side (clients
   split between them): does a second instance add throughput?
3. Overload: requests offered at twice the rate the all-in-one server sustained in (1), open
   loop. Every answer must be 201 or 503 with ``Retry-After``; every 201 must be stored.

Each load also reports the server's CPU time per request (main process and workers, from
``/proc``), a figure that holds on a machine shared with other work, unlike requests per second.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import uuid
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.idle import TICKS, _ticks
from bench.load import Results, closed_loop, open_loop, percentile_ms, post_request
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
    # The caller's token is not looked up: the app keeps the callers of tokens it saw
    # (shared/token_cache.py), so a steady client costs no look-up.
    # A complaint written alone, as the app writes it (intake_api/repository.py): one
    # statement that commits on its own (no BEGIN/COMMIT), drawing the year's next number,
    # hashing the access code with it, writing the complaint and its event with the number.
    app = "\n".join([
        "WITH drawn AS (SELECT format('PGB-2026-%s', lpad(intake.next_tracking_number(2026)"
        "::text, 6, '0')) AS number), "
        f"complaint AS (INSERT INTO intake.complaints (id, tracking_number, access_code_hash, "
        f"{columns}) SELECT gen_random_uuid(), number, encode(sha256(convert_to("
        f"number || ':' || 'K7QM2RXP9WTD', 'UTF8')), 'hex'), {values} FROM drawn "
        "RETURNING id, tracking_number) "
        "INSERT INTO intake.outbox (event_id, topic, key, envelope) "
        "SELECT gen_random_uuid()::text, 'aduan.complaints.v1', id::text, "
        f"jsonb_set({_literal(envelope)}::jsonb, '{{data,tracking_number}}', "
        "to_jsonb(tracking_number)) FROM complaint;", ""])
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


def _load_figures(results: Results, cpu_ticks: int | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "accepted_per_s": round(results.per_second(201), 1),
        "p50_ms": results.percentile_ms(0.50), "p99_ms": results.percentile_ms(0.99),
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "client_errors": dict(results.errors)}
    if cpu_ticks is not None:
        # The server's own CPU time (main process and HTTP workers, from /proc) per answer:
        # unlike requests per second, it survives a machine shared with other work.
        answered = max(len(results.answers), 1)
        accepted = max(results.statuses[201], 1)
        figures["cpu_ms_per_request"] = round(1000 * cpu_ticks / TICKS / answered, 2)
        figures["cpu_ms_per_accepted"] = round(1000 * cpu_ticks / TICKS / accepted, 2)
    return figures


def _is_problem(body: bytes, status: int) -> bool:
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("status") == status


def overload_figures(results: Results, cpu_ticks: int, *, offered: float, sustained: float,
                     stored: int, load_average: list[float]) -> dict[str, Any]:
    """What the overload target asks: only 201, or 503 problem JSON with ``Retry-After``;
    accepted p99 under 2 s; every 201 stored. The 503s' own p99 says how soon a refusal came,
    and the share of the ``sustained`` rate still accepted how much overload costs."""
    statuses = results.statuses
    refused = [a for a in results.answers if a.status == 503]
    proper = sum(1 for a in refused if a.retry_after and _is_problem(a.body, 503))
    other = {str(k): v for k, v in sorted(statuses.items()) if k not in (201, 503)}
    p99_201 = results.percentile_ms(0.99, 201)
    lost = max(statuses[201] - stored, 0)
    return {
        "offered_per_s": round(offered, 1),
        "load_average": load_average,
        **_load_figures(results, cpu_ticks),
        "answered_201": statuses[201],
        "accepted_share_of_sustained": round(results.per_second(201) / sustained, 3)
        if sustained else None,
        "p50_201_ms": results.percentile_ms(0.50, 201),
        "p99_201_ms": p99_201,
        "answered_503": len(refused),
        "refused_503_with_retry_after": proper,
        "p50_503_ms": results.percentile_ms(0.50, 503),
        "p99_503_ms": results.percentile_ms(0.99, 503),
        "other_statuses": other,
        # Where a request's time went outside the server, and the generator's own lag (see
        # bench/load.py ``Results``): not subtracted from anything, shown beside it.
        "new_connections": sum(1 for a in results.answers if a.connecting),
        "p99_connecting_ms": percentile_ms(
            [a.connecting for a in results.answers if a.connecting], 0.99),
        "client_started_late_p50_p99_ms": [percentile_ms(results.late, 0.5),
                                           percentile_ms(results.late, 0.99)],
        "client_loop_lag_p50_p99_ms": [percentile_ms(results.loop_lag, 0.5),
                                       percentile_ms(results.loop_lag, 0.99)],
        "stored": stored,
        "lost": lost,
        "meets": {
            "only_201_or_503_with_retry_after": (not other and not results.errors
                                                 and proper == len(refused)),
            "accepted_p99_under_2_s": p99_201 is not None and p99_201 < 2000,
            "nothing_lost": lost == 0,
        },
    }


async def measured(servers: Sequence[Server], load: Awaitable[Results]) -> tuple[Results, int]:
    """The load's results and the CPU ticks the servers' processes used meanwhile."""
    before = _ticks([pid for server in servers for pid in server.pids()])
    results = await load
    after = _ticks([pid for server in servers for pid in server.pids()])
    return results, after - before


async def _stored(back: Backing, tag: str) -> int:
    return await back.count(
        "SELECT count(*) FROM intake.complaints WHERE summary LIKE $1", f"{tag} %")


async def run(seconds: int = 10) -> dict[str, Any]:
    load_average = [round(os.getloadavg()[0], 2)]
    async with backing() as back:
        env = back.env()
        async with Server("all", env) as server:
            await closed_loop("127.0.0.1", server.port, requests(server.port, back.token, "warm"),
                              clients=8, seconds=2)
            allinone, allinone_cpu = await measured([server], closed_loop(
                "127.0.0.1", server.port, requests(server.port, back.token, "allinone"),
                clients=CLIENTS, seconds=seconds))
            sustained = allinone.per_second(201)
            overload_rate = max(2 * sustained, 20)
            overload_load = [round(os.getloadavg()[0], 2)]
            overload, overload_cpu = await measured([server], open_loop(
                "127.0.0.1", server.port, requests(server.port, back.token, "overload"),
                rate=overload_rate, seconds=seconds))
            overload_load.append(round(os.getloadavg()[0], 2))
            workers = len(server.pids()) - 1
        # The same all-in-one as one process (no HTTP workers): what the workers add.
        async with Server("all", back.env(ADUAN_HTTP_WORKERS="1")) as alone:
            await closed_loop("127.0.0.1", alone.port, requests(alone.port, back.token, "warm1"),
                              clients=8, seconds=2)
            one, one_cpu = await measured([alone], closed_loop(
                "127.0.0.1", alone.port, requests(alone.port, back.token, "one"),
                clients=CLIENTS, seconds=seconds))
        stored = {tag: await _stored(back, tag) for tag in ("allinone", "overload", "one")}

        await back.execute("CREATE TABLE bench_tracking_counters "
                           "(year integer PRIMARY KEY, last integer NOT NULL)")
        paths = scripts(back.workdir)
        tps = {name: pgbench(back, path, seconds) for name, path in paths.items()}

        # Instances side by side, each a single process: does a second instance add throughput?
        single_env = back.env(ADUAN_HTTP_WORKERS="1")
        async with Server("intake", single_env) as first:
            single, single_cpu = await measured([first], closed_loop(
                "127.0.0.1", first.port, requests(first.port, back.token, "single"),
                clients=CLIENTS, seconds=seconds))
        async with Server("intake", single_env) as first, Server("intake", single_env) as second:
            pair_runs = asyncio.gather(*(
                closed_loop("127.0.0.1", s.port, requests(s.port, back.token, "pair"),
                            clients=CLIENTS // 2, seconds=seconds) for s in (first, second)))

            async def both() -> Results:
                merged = Results()
                for r in await pair_runs:
                    merged.answers += r.answers
                    merged.seconds = max(merged.seconds, r.seconds)
                return merged

            pair, pair_cpu = await measured([first, second], both())
    load_average.append(round(os.getloadavg()[0], 2))

    return {
        "benchmark": "intake",
        "seconds_per_run": seconds,
        "clients": CLIENTS,
        "load_average": load_average,
        "http_workers": workers,
        "allinone": {**_load_figures(allinone, allinone_cpu), "stored": stored["allinone"],
                     "answered_201": allinone.statuses[201]},
        "allinone_one_process": {**_load_figures(one, one_cpu), "stored": stored["one"],
                                 "answered_201": one.statuses[201]},
        "pgbench_app_sql_tps": round(tps["app"], 1),
        "pgbench_ceiling_tps": round(tps["ceiling"], 1),
        "pgbench_previous_design_sql_tps": round(tps["before"], 1),
        "ratio_to_app_sql": round(sustained / tps["app"], 3),
        "ratio_to_ceiling": round(sustained / tps["ceiling"], 3),
        "intake_one_process_per_s": round(single.per_second(201), 1),
        "intake_two_processes_per_s": round(pair.per_second(201), 1),
        "intake_one_process": _load_figures(single, single_cpu),
        "intake_two_processes": _load_figures(pair, pair_cpu),
        "overload": overload_figures(overload, overload_cpu, offered=overload_rate,
                                     sustained=sustained, stored=stored["overload"],
                                     load_average=overload_load),
    }
