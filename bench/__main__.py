"""``python -m bench [--quick] [--only NAME ...]``: runs the benchmarks, writes
bench/results/<name>.json and prints one table per benchmark (see docs/benchmarks.md).

The servers it starts ignore the caller's ``ADUAN_*`` settings, so that a run measures the
defaults; ``BENCH_ADUAN_X=value`` runs them with ``ADUAN_X=value`` instead, to measure a
setting against the defaults (``BENCH_ADUAN_ADMISSION_INTERVAL_SECONDS=0.25``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import consumers, idle, intake, pipeline, replay, summary

RESULTS = Path(__file__).with_name("results")
NAMES = ("intake", "pipeline", "consumers", "replay", "idle", "summary")


def _table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title)
    for column in ("figure", "aduan", "reference in the same run"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def intake_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    a, o, one = r["allinone"], r["overload"], r["allinone_one_process"]
    single, pair = r["intake_one_process"], r["intake_two_processes"]
    return [
        (f"all-in-one ({r['http_workers']} HTTP workers), {r['clients']} clients: accepted/s",
         f"{a['accepted_per_s']} (p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms; "
         f"server CPU {a['cpu_ms_per_request']} ms/request)",
         f"pgbench app SQL {r['pgbench_app_sql_tps']} TPS (x{r['ratio_to_app_sql']}); "
         f"ceiling {r['pgbench_ceiling_tps']} TPS (x{r['ratio_to_ceiling']}); "
         f"previous design's SQL {r['pgbench_previous_design_sql_tps']} TPS"),
        ("all-in-one as one process (ADUAN_HTTP_WORKERS=1)",
         f"{one['accepted_per_s']}/s (p99 {one['p99_ms']} ms; "
         f"CPU {one['cpu_ms_per_request']} ms/request)", "-"),
        ("intake alone: one process vs two side by side",
         f"{r['intake_two_processes_per_s']}/s with two "
         f"(CPU {pair['cpu_ms_per_request']} ms/request)",
         f"{r['intake_one_process_per_s']}/s (CPU {single['cpu_ms_per_request']} ms/request)"),
        (f"overload at {o['offered_per_s']}/s offered (2x sustained), open loop",
         f"201: {o['answered_201']} ({o['accepted_share_of_sustained']} of the sustained "
         f"rate; p50 {o['p50_201_ms']} ms, p99 {o['p99_201_ms']} ms); 503: {o['answered_503']}, "
         f"{o['refused_503_with_retry_after']} problem JSON with Retry-After (p50 "
         f"{o['p50_503_ms']} ms, p99 {o['p99_503_ms']} ms); other statuses "
         f"{o['other_statuses'] or 0}, client errors {o['client_errors'] or 0}; lost "
         f"{o['lost']}; server CPU {o['cpu_ms_per_request']} ms/request; "
         f"{o['new_connections']} new connections (set-up p99 {o['p99_connecting_ms']} ms); "
         f"load generator: requests started late p50/p99 "
         f"{o['client_started_late_p50_p99_ms']} ms, its loop lag p50/p99 "
         f"{o['client_loop_lag_p50_p99_ms']} ms; load {o['load_average']}; "
         + ("meets the targets" if all(o["meets"].values())
            else "misses " + ", ".join(k for k, ok in o["meets"].items() if not ok)),
         f"stored {o['stored']} of {o['answered_201']} answered 201"),
        ("load average (1 min) before, after", str(r["load_average"]), "-"),
    ]


def pipeline_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for step, ref in zip(r["steps"], r["broker_round_trip"], strict=True):
        missed = [name for name, ok in step["meets"].items() if not ok]
        cpu = step["cpu_ms_per_complaint"]
        rows.append((
            f"Kafka mode, {step['offered_per_s']}/s offered for {r['seconds_per_rate']:g} s",
            f"{step['achieved_per_s']}/s, statuses {step['statuses']}, "
            f"client errors {step['client_errors'] or 0}; POST p50 {step['post_p50_ms']} / p99 "
            f"{step['post_p99_ms']} ms; 201 -> case.opened p50 {step['opened_p50_ms']} / p99 "
            f"{step['opened_p99_ms']} ms ({step['case_opened_missing']} missing); counted "
            f"{step['counted_after_last_post_s']} s after the last POST; CPU ms per complaint "
            + ", ".join(f"{k} {v}" for k, v in cpu.items())
            + f"; load {step['load_average']}; "
            + ("meets the targets" if not missed else "misses " + ", ".join(missed)),
            f"aiokafka produce -> consume p50 {ref['p50_ms']} / p99 {ref['p99_ms']} ms "
            f"(case.opened p99 = x{step.get('opened_p99_over_two_round_trips')} two round "
            "trips)"))
    return rows


def consumers_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f"{c['consumer']}: {c['events']:,} events of {r['complaints']:,} complaints, "
             f"batches of {r['batch']}",
             f"{c['batches']['per_s']:,} events/s; CPU ms per event: consumer "
             f"{c['batches']['cpu_ms_per_event']}, PostgreSQL "
             f"{c['batches']['postgres_cpu_ms_per_event']} (x{c['cpu_ratio']} less consumer "
             f"CPU); {'same' if c['same_result'] else 'NOT the same'} result; load "
             f"{r['load_average']}",
             f"the same batches event by event: {c['event_by_event']['per_s']:,} events/s; CPU "
             f"ms per event: consumer {c['event_by_event']['cpu_ms_per_event']}, PostgreSQL "
             f"{c['event_by_event']['postgres_cpu_ms_per_event']}")
            for c in r["consumers"]]


def replay_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rebuilt, raw = r["rebuild"], r["raw_consumer"]
    missed = [name for name, ok in r["meets"].items() if not ok]
    return [(f"aduan metrics rebuild from Kafka, {r['events']:,} events",
             f"{rebuilt['per_s']:,} events/s ({rebuilt['seconds']} s: reading and folding "
             f"{rebuilt['reading_s']} s, then writing {rebuilt['writing_s']} s; the command "
             f"{rebuilt['command_wall_seconds']} s, {rebuilt['command_cpu_seconds']} s of CPU, "
             f"{rebuilt['cpu_us_per_event']} us/event); x{r['ratio_to_raw']} the raw consumer; "
             + ("meets the targets" if not missed else "misses " + ", ".join(missed))
             + f"; load {r['load_average']}",
             f"aiokafka consumer + json.loads: {r['raw_consumer_per_s']:,} records/s ("
             + ", ".join(f"{run['per_s']:,}" for run in raw) + "; CPU us/record "
             + ", ".join(f"{run['cpu_us_per_record']}" for run in raw) + ")")]


def idle_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [("idle all-in-one + PostgreSQL: CPU % of a core",
             str(r["allinone_with_postgres_cpu_percent_of_a_core"]),
             f"PostgreSQL alone {r['postgres_alone_cpu_percent_of_a_core']}"),
            ("idle all-in-one + PostgreSQL: PSS MB", str(r["allinone_with_postgres_pss_mb"]),
             f"PostgreSQL alone {r['postgres_alone_pss_mb']}"),
            ("idle commits/s", str(r["commits_per_second_idle"]), "-")]


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f"summary over {r['cases']:,} cases: {row['period']}",
             f"median {row['summary_ms']} ms, p99 {row['p99_ms']} ms; CPU per summary: "
             f"app {row['app_cpu_ms']} ms, PostgreSQL {row['postgres_cpu_ms']} ms "
             f"(load average {r['load_average'][0]}-{r['load_average'][1]})",
             f"one scan of metrics.cases {row['reference_ms']} ms (x{row['ratio']})")
            for row in r["results"]] + [
            (f"monthly over {r['cases']:,} cases: {row['period']}",
             f"median {row['monthly_ms']} ms, p99 {row['p99_ms']} ms; CPU per answer: "
             f"app {row['app_cpu_ms']} ms, PostgreSQL {row['postgres_cpu_ms']} ms",
             f"one scan of metrics.cases {row['reference_ms']} ms (x{row['ratio']})")
            for row in r.get("monthly", [])]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (5 s per load, 10 s per pipeline rate, 50,000 events to "
                             "replay, 200,000 cases)")
    parser.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    parser.add_argument("--cases", type=int)
    args = parser.parse_args()
    cases = args.cases or (200_000 if args.quick else 1_000_000)
    runs: dict[str, tuple[Callable[[], Any], Callable[[dict[str, Any]], Any]]] = {
        "intake": (lambda: intake.run(seconds=5 if args.quick else 15), intake_rows),
        "pipeline": (lambda: pipeline.run(seconds=10 if args.quick else 60,
                                          reference_seconds=5 if args.quick else 10),
                     pipeline_rows),
        "consumers": (lambda: consumers.run(500 if args.quick else 2_000), consumers_rows),
        "replay": (lambda: replay.run(50_000 if args.quick else 200_000), replay_rows),
        "idle": (lambda: idle.run(seconds=5 if args.quick else 10), idle_rows),
        "summary": (lambda: summary.run(cases, 30, os.environ.get("ADUAN_BENCH_DATABASE_URL")),
                    summary_rows),
    }
    RESULTS.mkdir(exist_ok=True)
    console = Console()
    for name in args.only:
        run, rows = runs[name]
        result = asyncio.run(run())
        result["mode"] = "quick" if args.quick else "full"
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        console.print(_table(name, rows(result)))


if __name__ == "__main__":
    main()
