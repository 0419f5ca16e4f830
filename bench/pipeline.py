"""Kafka mode end to end at a ladder of offered rates, beside the broker's own round trip.

Three ``aduan serve`` processes (intake, case, metrics) on an embedded PostgreSQL and a real
Kafka broker started by ``services.kafka``. At each offered rate complaints are posted open loop
for a fixed time (``bench/load.py``) and, per rate, the benchmark measures:

- what the client saw: achieved rate, status counts, POST p50/p99;
- 201 → ``case.opened``: from the 201 answer to the moment the benchmark's own consumer of the
  cases topic reads the ``case.opened`` of that complaint (the case id is the complaint id);
  the path crosses the intake outbox and relay, the broker, the case consumer's transaction,
  the case outbox and relay, and the broker again;
- counted: from the last 201 until ``GET /v1/metrics/summary`` counts every accepted complaint
  among its ``contacts``;
- CPU time per accepted complaint of each process (``/proc``), and the load average.

The reference in the same run: a plain aiokafka producer (idempotent, ``acks=all``, the same
linger as the services) and a plain consumer on the same broker, at the same rate with records
of the same size; produce → consume latency. The pipeline's 201 → ``case.opened`` crosses the
broker twice, so the ratio to twice the raw round trip is given too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.idle import TICKS, _postgres_pids, _ticks
from bench.intake import complaint, requests
from bench.load import Results, open_loop
from bench.server import Backing, Server, backing
from services.kafka import KafkaBroker, start_kafka
from shared.events import CASE_OPENED, CASES_TOPIC
from shared.kafka_client import ensure_topics

RATES = (50, 100, 200, 300)
# How long the pipeline may take to catch up after a step before what is missing is counted lost.
CATCH_UP_SECONDS = 120.0
COUNT_POLL_SECONDS = 0.2
TARGETS = {"rate": 300, "post_p99_ms": 250, "opened_p99_ms": 1000, "counted_within_s": 2.0}


def percentile_ms(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 1)


async def until(check: Callable[[], Awaitable[bool]], timeout: float,
                interval: float = 0.05) -> float | None:
    """``time.perf_counter()`` when ``check`` first held, or None after ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await check():
            return time.perf_counter()
        await asyncio.sleep(interval)
    return None


@dataclass
class TopicWatch:
    """Reads a topic from its start, noting when each ``case.opened`` arrived here."""

    bootstrap: str
    topic: str
    seen: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await consumer.start()
        await until(lambda: _assigned(consumer), 30)
        self._task = asyncio.create_task(self._read(consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        envelope = json.loads(record.value or b"{}")
                        if envelope.get("type") == CASE_OPENED:
                            self.seen.setdefault(envelope["data"]["case_id"], now)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def broker_round_trip(bootstrap: str, rate: float, seconds: float,
                            size: int) -> dict[str, Any]:
    """The reference: produce → consume latency of plain aiokafka clients at ``rate``."""
    topic = f"bench.roundtrip.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic])
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        await until(lambda: _assigned(consumer), 30)

        async def read() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        received[int(record.key or b"0")] = now

        reader = asyncio.create_task(read())
        padding = b"x" * size
        began = time.perf_counter()
        total = int(rate * seconds)
        acks = []
        for n in range(total):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[n] = time.perf_counter()
            acks.append(await producer.send(topic, value=padding, key=str(n).encode()))
        await asyncio.gather(*acks)
        await until(lambda: _all_in(sent, received), 30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    finally:
        await producer.stop()
        await consumer.stop()
    latencies = [received[n] - t for n, t in sent.items() if n in received]
    return {"offered_per_s": rate, "records": total, "received": len(latencies),
            "p50_ms": percentile_ms(latencies, 0.50), "p99_ms": percentile_ms(latencies, 0.99)}


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    return bool(consumer.assignment())


async def _all_in(wanted: dict[Any, float], seen: dict[Any, float]) -> bool:
    return len(seen) >= len(wanted) and all(k in seen for k in wanted)


@dataclass
class Pipeline:
    back: Backing
    broker: KafkaBroker
    intake: Server
    case: Server
    metrics: Server
    watch: TopicWatch
    http: httpx.AsyncClient

    def pids(self) -> dict[str, list[int]]:
        return {"intake": self.intake.pids(), "case": self.case.pids(),
                "metrics": self.metrics.pids(), "postgres": _postgres_pids(self.back),
                "kafka": [self.broker.process.pid]}

    async def contacts(self) -> int:
        today = date.today()
        response = await self.http.get(
            f"http://127.0.0.1:{self.metrics.port}/v1/metrics/summary",
            params={"from": str(today - timedelta(days=2)), "to": str(today + timedelta(days=2))},
            headers={"Authorization": f"Bearer {self.back.token}"})
        response.raise_for_status()
        return int(response.json()["contacts"])

    async def step(self, rate: float, seconds: float, tag: str) -> dict[str, Any]:
        base = await self.contacts()
        pids = self.pids()
        cpu_before = {name: _ticks(p) for name, p in pids.items()}
        load_before = os.getloadavg()[0]
        results = await open_loop("127.0.0.1", self.intake.port,
                                  requests(self.intake.port, self.back.token, tag),
                                  rate=rate, seconds=seconds, timeout=30)
        accepted = {json.loads(a.body)["id"]: a.at for a in results.accepted()}
        last = max(accepted.values(), default=time.perf_counter())

        async def counted() -> bool:
            return await self.contacts() >= base + len(accepted)

        # A summary costs the metrics service ~20 ms of CPU: asked every 50 ms it would take
        # a fifth of a core from the worker it waits for.
        counted_at = await until(counted, CATCH_UP_SECONDS, interval=COUNT_POLL_SECONDS)
        await until(lambda: _all_in(accepted, self.watch.seen), CATCH_UP_SECONDS)
        load_after = os.getloadavg()[0]
        cpu = {name: _ticks(p) - cpu_before[name] for name, p in pids.items()}
        opened = [self.watch.seen[i] - at for i, at in accepted.items() if i in self.watch.seen]
        return {
            "offered_per_s": rate,
            **_client_figures(results),
            "case_opened_seen": len(opened),
            "case_opened_missing": len(accepted) - len(opened),
            "opened_p50_ms": percentile_ms(opened, 0.50),
            "opened_p99_ms": percentile_ms(opened, 0.99),
            "counted_after_last_post_s": round(counted_at - last, 2) if counted_at else None,
            "cpu_ms_per_complaint": {
                name: round(1000 * ticks / TICKS / max(len(accepted), 1), 2)
                for name, ticks in cpu.items()},
            "load_average": [round(load_before, 2), round(load_after, 2)],
        }


def _client_figures(results: Results) -> dict[str, Any]:
    times = [a.seconds for a in results.answers]
    return {
        "achieved_per_s": round(results.per_second(201), 1),
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        "client_errors": dict(results.errors),
        "post_p50_ms": percentile_ms(times, 0.50),
        "post_p99_ms": percentile_ms(times, 0.99),
    }


@contextlib.asynccontextmanager
async def _kafka(workdir: Path) -> Any:
    broker = await asyncio.to_thread(start_kafka, workdir / "kafka")
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def _verdict(step: dict[str, Any]) -> dict[str, bool]:
    counted = step["counted_after_last_post_s"]
    return {
        "no_errors": set(step["statuses"]) == {"201"} and not step["client_errors"]
        and step["case_opened_missing"] == 0,
        "post_p99": (step["post_p99_ms"] or 1e9) < TARGETS["post_p99_ms"],
        "opened_p99": (step["opened_p99_ms"] or 1e9) < TARGETS["opened_p99_ms"],
        "counted": counted is not None and counted <= TARGETS["counted_within_s"],
    }


async def run(seconds: float = 60.0, reference_seconds: float = 10.0,
              rates: tuple[int, ...] = RATES) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="aduan-bench-kafka-"))
    record_size = len(json.dumps(complaint("size", 0))) + 400  # the envelope's attributes
    async with _kafka(workdir) as broker, backing() as back:
        references = [await broker_round_trip(broker.bootstrap_servers, rate,
                                              reference_seconds, record_size)
                      for rate in rates]
        env = back.env(ADUAN_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        await ensure_topics(broker.bootstrap_servers, [CASES_TOPIC])
        watch = TopicWatch(broker.bootstrap_servers, CASES_TOPIC)
        await watch.start()
        try:
            async with Server("intake", env) as intake, Server("case", env) as case, \
                    Server("metrics", env) as metrics, httpx.AsyncClient(timeout=30) as http:
                pipeline = Pipeline(back, broker, intake, case, metrics, watch, http)
                warm = await pipeline.step(20, 2, "warm")  # groups joined, caches warm
                steps = [await pipeline.step(rate, seconds, f"rate{rate}") for rate in rates]
        finally:
            await watch.stop()
    for step, reference in zip(steps, references, strict=True):
        step["reference_round_trip_p99_ms"] = reference["p99_ms"]
        if step["opened_p99_ms"] and reference["p99_ms"]:
            step["opened_p99_over_two_round_trips"] = round(
                step["opened_p99_ms"] / (2 * reference["p99_ms"]), 1)
        step["meets"] = _verdict(step)
    return {
        "benchmark": "pipeline",
        "seconds_per_rate": seconds,
        "reference_seconds_per_rate": reference_seconds,
        "targets": TARGETS,
        "warm_up": warm,
        "steps": steps,
        "broker_round_trip": references,
    }
