"""The expiry of ``awaiting_completion`` cases past their due date, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from case_api.scheduler import expire_once
from shared.clock import ShiftedClock
from shared.runtime import Runtime
from tests.case_api.helpers import (
    Tokens,
    case_at,
    cases_at,
    get_case,
    ok,
    open_case,
    parse_time,
    transitioned_events,
)
from tests.support import BackingServices, ServiceProcess, bearer, eventually, query, running_app


def later_runtime(services: BackingServices, days: float) -> Runtime:
    """A runtime of its own (own connection pool) whose clock is ``days`` ahead."""
    return Runtime.create(services.settings(), clock=ShiftedClock(timedelta(days=days)))


async def dispose(runtime: Runtime) -> None:
    """Closes both of the runtime's pools (requests', background work's)."""
    await runtime.database.dispose()
    await runtime.work_database.dispose()


async def expire_entries(database_url: str, case_id: str) -> list[Any]:
    return await query(database_url,
                       "SELECT actor, role, at, reason FROM cases.transitions "
                       "WHERE case_id = $1 AND action = 'expire'", uuid.UUID(case_id))


async def assert_expired_once(services: BackingServices, case: dict[str, Any],
                              client: Any, token: str) -> None:
    closed = await get_case(client, token, case["id"])
    assert closed["status"] == "closed"
    assert closed["closure_reason"] == "incomplete"
    assert closed["closure_stage"] == "verification"
    assert closed["due_at"] is None
    entry = closed["history"][-1]
    assert (entry["action"], entry["from_status"], entry["to_status"]) == (
        "expire", "awaiting_completion", "closed")
    assert (entry["actor"], entry["role"], entry["reason"]) == ("system", "system", "incomplete")
    assert entry["at"] == case["due_at"]  # effective at the deadline, not when noticed
    assert len(await expire_entries(services.database_url, case["id"])) == 1
    events = [e for e in await transitioned_events(services.database_url, case["id"])
              if e["data"]["action"] == "expire"]
    assert len(events) == 1
    data = events[0]["data"]
    assert (data["actor"], data["reason"], data["closure_stage"], data["to_status"]) == (
        "system", "incomplete", "verification", "closed")


async def test_a_case_past_its_completion_deadline_is_closed(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        due = await cases_at(client, tokens, "awaiting_completion", 2)
        extended = await case_at(client, tokens, "received")
        extended = await ok(client, tokens.assistant, extended["id"], "request_completion",
                            note="Lengkapi",
                            due_at=(datetime.now(UTC) + timedelta(days=60)).isoformat())
        completed = await case_at(client, tokens, "awaiting_completion")
        await ok(client, tokens.assistant, completed["id"], "complete", note="Lengkap")
        waiting = await case_at(client, tokens, "awaiting_agency")

        early = later_runtime(services, 29)
        try:
            assert await expire_once(early) == 0
        finally:
            await dispose(early)
        runtime = later_runtime(services, 31)
        try:
            assert await expire_once(runtime) == 2
            assert await expire_once(runtime) == 0
        finally:
            await dispose(runtime)

        for case in due:
            await assert_expired_once(services, case, client, tokens.assistant)
        assert (await get_case(client, tokens.assistant, extended["id"]))["status"] == \
            "awaiting_completion"
        assert (await get_case(client, tokens.assistant, completed["id"]))["status"] == "received"
        # Overdue, but only awaiting_completion expires.
        assert (await get_case(client, tokens.assistant, waiting["id"]))["status"] == \
            "awaiting_agency"
        # After the expiry a person can do nothing more with it.
        gone = await client.post(f"/v1/cases/{due[0]['id']}/transitions",
                                 json={"action": "complete", "note": "terlambat"},
                                 headers=bearer(tokens.assistant))
        assert gone.status_code == 409


async def test_concurrent_expiry_passes_close_each_case_once(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        cases = await cases_at(client, tokens, "awaiting_completion", 16)
        runtimes = [later_runtime(services, 31) for _ in range(4)]
        try:
            closed = await asyncio.gather(*(expire_once(r) for r in runtimes))
            assert sum(closed) == len(cases), closed
            assert sum(await asyncio.gather(*(expire_once(r) for r in runtimes))) == 0
        finally:
            for runtime in runtimes:
                await dispose(runtime)
        rows = await query(services.database_url,
                           "SELECT case_id, count(*) AS n FROM cases.transitions "
                           "WHERE action = 'expire' GROUP BY case_id")
        assert sorted(str(r["case_id"]) for r in rows) == sorted(c["id"] for c in cases)
        assert {r["n"] for r in rows} == {1}
        outbox = await query(
            services.database_url,
            "SELECT key, count(*) AS n FROM cases.outbox "
            "WHERE envelope->'data'->>'action' = 'expire' GROUP BY key")
        assert {r["key"]: r["n"] for r in outbox} == {c["id"]: 1 for c in cases}
        await assert_expired_once(services, cases[0], client, tokens.assistant)


async def test_two_case_processes_expire_each_case_once(services: BackingServices,
                                                       tmp_path: Path) -> None:
    """Two real ``aduan serve case`` processes, each running its expiry every 0.2 s.

    They start while the cases are being made overdue, so their passes race each other (and the
    cases' own transitions) from the first back-dated deadline on.
    """
    tokens = await Tokens.create(services)
    now = datetime.now(UTC)
    env = services.env(ADUAN_EXPIRY_INTERVAL_SECONDS="0.2")
    processes = [ServiceProcess("case", env, tmp_path / f"case-{i}.log").start()
                 for i in range(2)]
    try:
        async with running_app(services, expiry_interval_seconds=3600) as client:
            cases = []
            for _ in range(8):
                case = await open_case(client, tokens,
                                       received_at=(now - timedelta(days=40)).isoformat())
                # Back-dated by the admin: the 30-day deadline passed five days ago.
                waiting = await ok(client, tokens.admin, case["id"], "request_completion",
                                   note="Lengkapi",
                                   effective_at=(now - timedelta(days=35)).isoformat())
                assert waiting["overdue"] is True
                cases.append(waiting)
            explicit = await open_case(client, tokens,
                                       received_at=(now - timedelta(days=3)).isoformat())
            explicit = await ok(client, tokens.admin, explicit["id"], "request_completion",
                                note="Lengkapi",
                                effective_at=(now - timedelta(days=2)).isoformat(),
                                due_at=(now - timedelta(days=1)).isoformat())
            cases.append(explicit)
            assert parse_time(explicit["due_at"]) < datetime.now(UTC)
            await asyncio.gather(*(p.wait_ready() for p in processes))

            async def all_closed() -> None:
                for case in cases:
                    seen = await get_case(client, tokens.assistant, case["id"])
                    assert seen["status"] == "closed", seen["status"]

            await eventually(all_closed, timeout=30, interval=0.2)
            await asyncio.sleep(1.0)  # several more passes of both processes
            for case in cases:
                await assert_expired_once(services, case, client, tokens.assistant)
        logs = "".join(p.log_tail(200) for p in processes)
        assert "past their completion deadline" in logs  # a process did the work
    finally:
        for process in processes:
            process.stop()
