"""The outbox: written with the change, relayed to Kafka, marked sent only once acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy import select

from shared.kafka_client import KafkaPublisher
from shared.outbox import OutboxRelay, append
from tests.shared.probe import (
    PROBE_EVENTS,
    PROBE_TOPIC,
    KafkaBus,
    Probe,
    append_concurrently,
    applied,
    applied_ids,
    ids,
    probe_event,
    read_topic,
)
from tests.support import eventually, free_port


async def test_an_event_is_kept_only_if_the_change_it_describes_is(probe: Probe) -> None:
    async def change_that_fails() -> None:
        async with probe.database.transaction() as session:
            await append(session, PROBE_EVENTS, PROBE_TOPIC, probe_event("case-0", 0))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()

    assert await probe.last_position() == 0


async def test_a_later_writer_never_becomes_visible_before_an_earlier_one(probe: Probe) -> None:
    """A follower reading ``position > last`` would otherwise skip the earlier, slower one."""
    early, late = probe_event("case-0", 0), probe_event("case-1", 0)
    async with probe.database.transaction() as session:
        await append(session, PROBE_EVENTS, PROBE_TOPIC, early)
        later_writer = asyncio.create_task(probe.append(late))
        await asyncio.sleep(0.3)
        assert await probe.last_position() == 0, "a follower would move past the early event"
    await later_writer

    outbox = PROBE_EVENTS.outbox
    async with probe.database.transaction() as session:
        order = (await session.execute(select(outbox.c.event_id)
                                       .order_by(outbox.c.position))).scalars().all()
    assert order == [early.id, late.id]


async def test_the_relay_sends_every_row_keyed_in_order_and_marks_it_sent(
        kafka_bus: KafkaBus) -> None:
    events = await append_concurrently(kafka_bus.probe, per_key=50)
    relay = kafka_bus.relay
    relay.batch_size = 100

    while await relay.publish_batch():
        pass

    assert await kafka_bus.probe.unpublished() == 0
    records = await read_topic(kafka_bus.bootstrap_servers, kafka_bus.topic)
    sent = [json.loads(r.value) for r in records]
    assert Counter(e["id"] for e in sent) == ids(events)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record, envelope in zip(records, sent, strict=True):
        assert record.key.decode() == envelope["subject"] == envelope["partitionkey"]
        partitions[envelope["subject"]].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    for key in partitions:
        assert [e["data"]["seq"] for e in sent if e["subject"] == key] == list(range(50))


async def test_two_relays_on_one_outbox_keep_each_keys_order(kafka_bus: KafkaBus) -> None:
    """Two instances of a service, each with its relay, as when the service is scaled out."""
    events = await append_concurrently(kafka_bus.probe, per_key=40)
    publishers = [KafkaPublisher(kafka_bus.bootstrap_servers, topic_prefix=kafka_bus.prefix)
                  for _ in range(2)]
    relays = [OutboxRelay(kafka_bus.probe.database, PROBE_EVENTS, publisher, batch_size=10)
              for publisher in publishers]

    async def relay_until_empty(relay: OutboxRelay) -> None:
        while await kafka_bus.probe.unpublished():
            if not await relay.publish_batch():
                await asyncio.sleep(0.01)  # the other relay's turn

    try:
        await asyncio.gather(*(relay_until_empty(relay) for relay in relays))
    finally:
        for publisher in publishers:
            await publisher.close()

    sent = [json.loads(r.value) for r in
            await read_topic(kafka_bus.bootstrap_servers, kafka_bus.topic)]
    assert Counter(e["id"] for e in sent) == ids(events)
    for key in {e["subject"] for e in sent}:
        assert [e["data"]["seq"] for e in sent if e["subject"] == key] == list(range(40)), key


class LosesAcknowledgements(KafkaPublisher):
    """The broker stores the batch, but its answer is lost (as in a timeout after sending)."""

    def __init__(self, *args: Any, losses: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.losses = losses

    async def publish_many(self, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        await super().publish_many(records)
        if self.losses:
            self.losses -= 1
            raise KafkaTimeoutError("acknowledgement lost")


async def test_a_batch_whose_acknowledgement_is_lost_is_sent_again_and_applied_once(
        kafka_bus: KafkaBus) -> None:
    events = await append_concurrently(kafka_bus.probe, per_key=10)
    publisher = LosesAcknowledgements(kafka_bus.bootstrap_servers, topic_prefix=kafka_bus.prefix,
                                      losses=1)
    relay = OutboxRelay(kafka_bus.probe.database, PROBE_EVENTS, publisher)
    try:
        with pytest.raises(KafkaTimeoutError):
            await relay.publish_batch()
        assert await kafka_bus.probe.unpublished() == len(events)
        assert await relay.publish_batch() == len(events)
    finally:
        await publisher.close()
    assert len(await read_topic(kafka_bus.bootstrap_servers, kafka_bus.topic)) == 2 * len(events)

    await kafka_bus.start()
    effects = await applied(kafka_bus, len(events))

    assert applied_ids(effects) == ids(events)


async def test_while_the_broker_is_unreachable_nothing_is_marked_sent_and_all_goes_out_later(
        kafka_bus: KafkaBus) -> None:
    probe = kafka_bus.probe
    unreachable = f"127.0.0.1:{free_port()}"
    publisher = KafkaPublisher(unreachable, topic_prefix=kafka_bus.prefix)
    relay = OutboxRelay(probe.database, PROBE_EVENTS, publisher, poll_seconds=0.05)
    first = await append_concurrently(probe, per_key=5)

    with pytest.raises(KafkaConnectionError):
        await relay.publish_batch()
    assert await probe.unpublished() == len(first)

    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)
        more = await append_concurrently(probe, per_key=2)  # writers are not held up
        assert await probe.unpublished() == len(first) + len(more)

        publisher.bootstrap_servers = kafka_bus.bootstrap_servers  # the broker is back

        async def all_sent() -> None:
            assert await probe.unpublished() == 0

        await eventually(all_sent, timeout=30)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await publisher.close()

    records = await read_topic(kafka_bus.bootstrap_servers, kafka_bus.topic)
    assert Counter(json.loads(r.value)["id"] for r in records) == ids(first + more)
