"""What an idle all-in-one server costs, with its PostgreSQL: CPU and memory (PSS).

The server (``aduan serve``, database event log) is started, given time to settle, then
sampled over a quiet window: CPU time of the server process and of every PostgreSQL process
(postmaster and backends, read from ``/proc``), and their summed proportional set size.
The reference, in the same run, is PostgreSQL alone before the server starts.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from bench.server import Backing, Server, backing

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, CPU ticks used) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _postgres_pids(back: Backing) -> list[int]:
    postmaster = int((back.pg.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _stat(int(entry.name))[0] == postmaster:
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return pids


def _ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += _stat(pid)[1]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _pss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return round(total_kb / 1024, 1)


async def _sample(pids_of: Any, seconds: float) -> tuple[float, float]:
    """(percent of one core, PSS in MB) over ``seconds``."""
    before = _ticks(pids_of())
    await asyncio.sleep(seconds)
    pids = pids_of()
    used = _ticks(pids) - before
    return round(100 * used / TICKS / seconds, 2), _pss_mb(pids)


async def run(seconds: float = 10.0, settle: float = 5.0) -> dict[str, Any]:
    async with backing() as back:
        await asyncio.sleep(settle)
        pg_cpu, pg_pss = await _sample(lambda: _postgres_pids(back), seconds)
        async with Server("all", back.env()) as server:
            await asyncio.sleep(settle)
            cpu, pss = await _sample(lambda: [*server.pids(), *_postgres_pids(back)],
                                    seconds)
            commits_before = await back.count(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            await asyncio.sleep(seconds)
            commits_after = await back.count(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return {
        "benchmark": "idle",
        "seconds": seconds,
        "allinone_with_postgres_cpu_percent_of_a_core": cpu,
        "allinone_with_postgres_pss_mb": pss,
        "postgres_alone_cpu_percent_of_a_core": pg_cpu,
        "postgres_alone_pss_mb": pg_pss,
        "commits_per_second_idle": round((commits_after - commits_before) / seconds, 2),
    }
