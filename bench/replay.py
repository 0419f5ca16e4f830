"""``aduan metrics rebuild`` from Kafka, beside a plain aiokafka consumer of the same topics.

A real Kafka broker (``services.kafka``) and an embedded PostgreSQL; N events of a synthetic
but untidy history (``tests.fixtures.event_log``: intakes over two years, every workflow path,
liaison requests and responses, duplicates) are produced to the two topics the metrics service
reads. Then, in the same run:

- the reference: a plain ``AIOKafkaConsumer`` assigned every partition, reading from offset 0
  to the end in large fetches and ``json.loads``-ing every record, timed twice (before and after
  the rebuild) and averaged;
- ``aduan metrics rebuild`` as a user runs it (a process, its own output): records/s as the
  command reports it (reading, folding, writing the read model, committing), the wall time
  of the whole command (interpreter start and migration check included) and its CPU time
  (PostgreSQL's is not counted: it runs in its own processes).

The read model is then checked against the history (contacts, cases, steps), so a fast but
wrong rebuild cannot pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.server import backing
from services.kafka import KafkaBroker, start_kafka
from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC
from tests.fixtures.event_log import generate, to_kafka

PREFIX = "bench."
TOPICS = [PREFIX + COMPLAINTS_TOPIC, PREFIX + CASES_TOPIC]
EVENTS_PER_COMPLAINT = 3.3  # what ``generate`` makes on average
TARGETS = {"ratio_to_raw": 0.25, "events_per_s": 20_000}


@contextlib.asynccontextmanager
async def _kafka(workdir: Path) -> AsyncIterator[KafkaBroker]:
    broker = await asyncio.to_thread(start_kafka, workdir / "kafka")
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def _partitions(bootstrap: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(TopicPartition(described["topic"], p["partition"])
                      for described in await admin.describe_topics(TOPICS)
                      for p in described["partitions"])
    finally:
        await admin.close()


async def raw_consumer(bootstrap: str) -> dict[str, Any]:
    """Every record of ``TOPICS`` from offset 0, parsed as JSON: records/s and CPU/record."""
    partitions = await _partitions(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        started, cpu = time.perf_counter(), _cpu_seconds()
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        records = 0
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=20_000)
            for records_of_partition in batches.values():
                for record in records_of_partition:
                    json.loads(record.value or b"null")
                    records += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
    finally:
        await consumer.stop()
    return {"records": records, "seconds": round(seconds, 3),
            "per_s": round(records / seconds), "cpu_us_per_record": round(cpu / records * 1e6, 1)}


async def rebuild_command(env: dict[str, str]) -> dict[str, Any]:
    """``aduan metrics rebuild`` as a process; its own figures and the command's wall time."""
    started = time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "metrics", "rebuild", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    wall = time.perf_counter() - started
    # The command's own CPU (interpreter start included): what load on the machine moves least.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if process.returncode != 0:
        raise RuntimeError(f"aduan metrics rebuild failed: {err.decode()[-2000:]}")
    found = re.search(r"(\d+) records in ([\d.]+)s \((\d+) records/s; reading ([\d.]+)s, "
                      r"writing ([\d.]+)s\)", out.decode())
    if found is None:
        raise RuntimeError(f"unexpected output of aduan metrics rebuild: {out.decode()}")
    records, seconds = int(found[1]), float(found[2])
    return {"records": records, "seconds": seconds, "per_s": round(records / seconds),
            "reading_s": float(found[4]), "writing_s": float(found[5]),
            "command_wall_seconds": round(wall, 2), "command_cpu_seconds": round(cpu, 2),
            "cpu_us_per_event": round(cpu / records * 1e6, 1)}


async def run(events: int = 200_000) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="aduan-bench-replay-"))
    log = generate(max(1, round(events / EVENTS_PER_COMPLAINT)), seed=2026, faults=False)
    async with _kafka(workdir) as broker, backing() as back:
        started = time.perf_counter()
        await to_kafka(log, broker.bootstrap_servers, PREFIX)
        produced_s = time.perf_counter() - started
        env = back.env(ADUAN_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
                       ADUAN_TOPIC_PREFIX=PREFIX, ADUAN_GROUP_PREFIX=PREFIX)
        first = await raw_consumer(broker.bootstrap_servers)
        load = os.getloadavg()
        rebuilt = await rebuild_command(env)
        second = await raw_consumer(broker.bootstrap_servers)
        stored = (await back.count("SELECT count(*) FROM metrics.contacts"),
                  await back.count("SELECT count(*) FROM metrics.cases"),
                  await back.count("SELECT count(*) FROM metrics.transitions"))
    if stored != (log.complaints, log.cases, log.transitions):
        raise RuntimeError(f"the rebuilt read model holds {stored}, the history "
                           f"{(log.complaints, log.cases, log.transitions)}")
    raw_per_s = (first["per_s"] + second["per_s"]) / 2
    ratio = round(rebuilt["per_s"] / raw_per_s, 3)
    return {
        "events": len(log.records), "produced_in_s": round(produced_s, 1),
        "read_model": {"contacts": stored[0], "cases": stored[1], "transitions": stored[2]},
        "rebuild": rebuilt, "raw_consumer": [first, second],
        "raw_consumer_per_s": round(raw_per_s), "ratio_to_raw": ratio,
        "targets": TARGETS,
        "meets": {"ratio_to_raw": ratio >= TARGETS["ratio_to_raw"],
                  "events_per_s": rebuilt["per_s"] >= TARGETS["events_per_s"]},
        "load_average": [round(x, 2) for x in load],
    }
