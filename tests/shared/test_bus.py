"""The event bus contract, written once and run on both buses (the ``bus`` fixture).

Kafka: the outbox relay publishes to a real broker and ``KafkaConsumerRunner`` applies.
Database: ``DatabaseLogRunner`` follows the outbox table itself. Either way the probe's handler
records one effect per applied event (see ``tests.shared.probe``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.bus import KafkaConsumerRunner
from shared.events import CONTENT_TYPE, TYPE_PREFIX, Event, new_event
from tests.shared.buses import Bus, KafkaBus, applied
from tests.shared.kafka_topics import group_offsets
from tests.shared.probe import KEYS, SOURCE, append_concurrently, applied_ids, ids, probe_event
from tests.support import eventually

# --- no event lost, no effect doubled, order per key -------------------------------------------

async def test_every_event_is_applied_exactly_once(bus: Bus) -> None:
    await bus.start()
    events = await append_concurrently(bus.probe, per_key=50)

    effects = await applied(bus, len(events))

    assert len(events) == 300
    assert applied_ids(effects) == ids(events)


async def test_events_of_one_key_are_applied_in_the_order_they_were_written(bus: Bus) -> None:
    events = await append_concurrently(bus.probe, per_key=40)
    await bus.start()

    effects = await applied(bus, len(events))

    for key in KEYS:
        assert [e.seq for e in effects if e.key == key] == list(range(40)), key


async def test_redelivery_from_the_start_applies_nothing_twice(bus: Bus) -> None:
    events = await append_concurrently(bus.probe, per_key=20)
    await bus.start()
    await applied(bus, len(events))
    await bus.stop()

    await bus.rewind()
    with pytest.raises(AssertionError):
        await bus.caught_up()  # really back at the start of the log
    await bus.start()
    later = [probe_event("case-0", 20)]
    await bus.probe.append(*later)
    effects = await applied(bus, len(events) + 1)

    assert applied_ids(effects) == ids(events + later)
    assert [e.seq for e in effects if e.key == "case-0"] == list(range(21))


async def test_a_consumer_stopped_anywhere_resumes_without_losing_or_doubling(bus: Bus) -> None:
    events = await append_concurrently(bus.probe, per_key=50)
    seen = 0
    for _ in range(3):
        # Stopped wherever it happens to be: mid-batch, between the commit and the offset...
        await bus.start()

        async def progressed(before: int = seen) -> int:
            count = len(await bus.probe.effects())
            assert count > before or count == len(events)
            return count

        seen = await eventually(progressed, timeout=30, interval=0.005)
        await bus.stop()

    await bus.start()
    effects = await applied(bus, len(events))

    assert applied_ids(effects) == ids(events)


async def test_two_instances_of_a_consumer_apply_each_event_once_and_in_order(bus: Bus) -> None:
    await bus.start()
    writing = asyncio.create_task(append_concurrently(bus.probe, per_key=50))

    async def under_way() -> None:
        assert await bus.probe.effects()

    await eventually(under_way, timeout=30, interval=0.01)
    await bus.start()  # a second instance joins, as when the service is scaled out
    events = await writing
    effects = await applied(bus, len(events))

    assert applied_ids(effects) == ids(events)
    for key in KEYS:
        assert [e.seq for e in effects if e.key == key] == list(range(50)), key


async def test_an_event_that_cannot_be_applied_yet_is_retried_not_dropped(bus: Bus) -> None:
    await bus.start()
    waiting = probe_event("case-0", 0, after="case-0 is known")
    behind = probe_event("case-0", 1)
    await bus.probe.append(waiting)
    await bus.probe.append(behind)

    async def retried() -> None:
        assert bus.probe.attempts[waiting.id] >= 3

    await eventually(retried, timeout=30)
    assert await bus.probe.effects() == []  # its successor waits behind it
    await bus.probe.open_gate("case-0 is known")
    effects = await applied(bus, 2)

    assert [e.event_id for e in effects] == [waiting.id, behind.id]
    assert await bus.dead_letters() == []


# --- poison: dead-lettered once, and the log moves on -------------------------------------------

async def test_an_event_that_always_fails_is_dead_lettered_and_later_events_flow(
        bus: Bus) -> None:
    await bus.start()
    before = probe_event("case-0", 0)
    poison = probe_event("case-0", 1, fail=True)
    after = probe_event("case-0", 2)
    await bus.probe.append(before, poison)
    await bus.probe.append(after)

    effects = await applied(bus, 2)

    assert [e.event_id for e in effects] == [before.id, after.id]
    dead = await bus.dead_letters()
    assert [d.event_id for d in dead] == [poison.id]
    assert "always fails" in dead[0].error
    assert bus.probe.attempts[poison.id] >= 3  # retried before it was given up


async def test_an_event_of_a_type_the_consumer_does_not_know_is_dead_lettered(bus: Bus) -> None:
    await bus.start()
    unknown = new_event(TYPE_PREFIX + "probe.unheard-of.v1", source=SOURCE, subject="case-0",
                        data={"seq": 0})
    known = probe_event("case-0", 1)
    await bus.probe.append(unknown, known)

    effects = await applied(bus, 1)

    assert [e.event_id for e in effects] == [known.id]
    dead = await bus.dead_letters()
    assert [d.event_id for d in dead] == [unknown.id]
    assert "unknown event type" in dead[0].error


def envelope_without(attribute: str) -> bytes:
    envelope = probe_event("case-9", 0).envelope()
    del envelope[attribute]
    return json.dumps(envelope).encode()


async def test_records_that_are_not_our_cloudevents_are_dead_lettered(bus: Bus) -> None:
    """Written by some other producer, straight onto the log."""
    await bus.start()
    foreign = ce_kafka.to_structured(CloudEvent(
        {"type": "org.example.unheard-of", "source": "/elsewhere", "subject": "case-0",
         "id": "foreign-1", "time": datetime.now(UTC)}, {"seq": 0}), JSONFormat())
    malformed = [b'{"hello": "world"}', envelope_without("id"), envelope_without("time"),
                 envelope_without("subject"), foreign.value]
    for raw in malformed:
        await bus.inject(raw)
    good = probe_event("case-0", 1)
    await bus.probe.append(good)

    effects = await applied(bus, 1)

    assert [e.event_id for e in effects] == [good.id]
    dead = await bus.dead_letters()
    assert len(dead) == len(malformed)
    assert dead[-1].event_id == "foreign-1"
    assert "unknown event type" in dead[-1].error
    assert all("CloudEvent" in d.error or "lacks" in d.error for d in dead[:-1]), dead


# --- Kafka only: what a dead-letter topic holds -------------------------------------------------

async def test_unreadable_records_go_to_the_dead_letter_topic_with_their_headers(
        kafka_bus: KafkaBus) -> None:
    await kafka_bus.start()
    headers = [("content-type", CONTENT_TYPE.encode()), ("traceparent", b"00-4bf92f-00f067-01")]
    unknown = new_event(TYPE_PREFIX + "probe.unheard-of.v1", source=SOURCE, subject="case-0",
                        data={"seq": 0})
    bad: list[bytes | None] = [b"\xff\xfe\x00 not even text", b"[1, 2, 3]",
                               b'{"specversion": "1.0"}', None, unknown.to_json()]
    for value in bad:
        await kafka_bus.produce(value, key=b"case-0", headers=headers)
    good = probe_event("case-0", 1)
    await kafka_bus.probe.append(good)

    effects = await applied(kafka_bus, 1)

    assert [e.event_id for e in effects] == [good.id]
    assert kafka_bus.dead_letter_topic == f"{kafka_bus.prefix}aduan.probe.v1.dlq.aduan-probe"
    records = await kafka_bus.dead_letter_records()
    assert [r.value for r in records] == bad  # one key, one partition: in order
    for record in records:
        assert record.key == b"case-0"
        assert list(record.headers[:2]) == headers
        extra = dict(record.headers[2:])
        assert extra["error"]
        assert extra["original-topic"] == kafka_bus.topic.encode()
        assert extra["consumer"] == b"aduan-probe"
    assert b"unknown event type" in dict(records[-1].headers)["error"]



async def test_one_event_twice_in_one_fetch_is_applied_once(kafka_bus: KafkaBus) -> None:
    """A relay that lost an acknowledgement sends a batch again: both copies can arrive in
    the batch a consumer applies in one transaction, beside other events."""
    first, again, after = (probe_event("case-0", n) for n in range(3))
    for event in (first, again, again, first, after):
        await kafka_bus.produce(event.to_json(), key=b"case-0")
    await kafka_bus.start()

    effects = await applied(kafka_bus, 3)

    assert [(e.event_id, e.seq) for e in effects] == [(first.id, 0), (again.id, 1),
                                                      (after.id, 2)]
    assert kafka_bus.probe.attempts == {first.id: 1, again.id: 1, after.id: 1}


async def test_a_waiting_partition_does_not_hold_up_the_others(kafka_bus: Bus) -> None:
    """Out of order across partitions: the event waited for arrives on another partition."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    partitions = [0, 1, 2]
    keys = [f"case-{i}" for i in range(50)]
    first = keys[0]
    other = next(k for k in keys
                 if partitioner(k.encode(), partitions, partitions)
                 != partitioner(first.encode(), partitions, partitions))
    await kafka_bus.start()
    waiting = probe_event(first, 0, after="opened")
    opener = probe_event(other, 0, opens="opened")
    await kafka_bus.probe.append(waiting)
    await kafka_bus.probe.append(opener)
    effects = await applied(kafka_bus, 2)

    assert [e.event_id for e in effects] == [opener.id, waiting.id]
    assert await kafka_bus.dead_letters() == []


# --- Kafka only: offsets committed every interval, not after every batch ------------------------

HELD_BACK_MS = 3_600_000  # longer than any test: nothing is committed by the clock


async def _offsets_behind(kafka_bus: KafkaBus) -> bool:
    committed, ends = await group_offsets(kafka_bus.bootstrap_servers, kafka_bus.group,
                                          kafka_bus.topic)
    return sum(committed.values()) < sum(ends.values())


async def _applied_with_offsets_held_back(kafka_bus: KafkaBus, *, per_key: int
                                          ) -> tuple[KafkaConsumerRunner, list[Event]]:
    """A consumer committing every ``HELD_BACK_MS``, once it has applied the events appended
    (``per_key`` of each key) and before it has committed their offsets."""
    events = await append_concurrently(kafka_bus.probe, per_key=per_key)
    runner = kafka_bus.runner()
    runner.commit_interval = HELD_BACK_MS / 1000
    kafka_bus.background.spawn("relay", kafka_bus.relay.run)
    kafka_bus.background.spawn("consumer", runner.run)

    async def all_applied() -> None:
        kafka_bus.background.check()
        assert len(await kafka_bus.probe.effects()) == len(events)

    await eventually(all_applied, timeout=60, interval=0.05)
    assert await _offsets_behind(kafka_bus), "the offsets were committed before the interval"
    return runner, events


async def test_a_consumer_killed_between_commits_leaves_its_successor_nothing_to_apply_twice(
        kafka_bus: KafkaBus) -> None:
    """Applied records whose offsets were not committed yet are read again by the next consumer
    of the group, and the processed-event table keeps every effect single."""
    runner, events = await _applied_with_offsets_held_back(kafka_bus, per_key=20)
    runner.pending.clear()  # killed: the offsets it held in memory die with it
    await kafka_bus.stop()
    assert await _offsets_behind(kafka_bus)

    await kafka_bus.start()  # its successor, reading from the last commit
    later = probe_event("case-0", 20)
    await kafka_bus.probe.append(later)
    effects = await applied(kafka_bus, len(events) + 1)

    assert applied_ids(effects) == ids([*events, later])
    assert set(kafka_bus.probe.attempts.values()) == {1}  # nothing reached the handler twice
    assert [e.seq for e in effects if e.key == "case-0"] == list(range(21))


async def test_a_dead_letter_commits_its_offset_at_once(kafka_bus: KafkaBus) -> None:
    """Were a dead-lettered record read again after a crash, it would be dead-lettered again:
    its offset is committed at once, whatever the interval."""
    runner = kafka_bus.runner()
    runner.commit_interval = HELD_BACK_MS / 1000
    kafka_bus.background.spawn("consumer", runner.run)
    await kafka_bus.produce(b"[1, 2, 3]", key=b"case-0")

    async def committed() -> None:
        kafka_bus.background.check()
        assert len(await kafka_bus.dead_letters()) == 1
        assert not await _offsets_behind(kafka_bus)

    await eventually(committed, timeout=60, interval=0.1)


async def test_a_consumer_stopping_commits_what_it_applied(kafka_bus: KafkaBus) -> None:
    await _applied_with_offsets_held_back(kafka_bus, per_key=5)
    await kafka_bus.stop()

    assert not await _offsets_behind(kafka_bus)


async def test_a_partition_taken_away_does_not_hold_back_the_commits_of_the_others(
        kafka_bus: KafkaBus) -> None:
    """A batch applied while a rebalance took one of its partitions away leaves that one to its
    next owner; the offsets of the partitions still held are committed all the same."""
    runner, _ = await _applied_with_offsets_held_back(kafka_bus, per_key=5)
    runner.pending[TopicPartition(kafka_bus.topic, 99)] = 1  # no longer (never) assigned here
    await runner.commit_pending()

    assert not await _offsets_behind(kafka_bus)
    await kafka_bus.stop()
