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

from shared.events import Event
from shared.kafka_client import KafkaPublisher, Record
from shared.outbox import OutboxRelay, append, sequence
from tests.shared.probe import (
    PROBE_EVENTS,
    PROBE_TOPIC,
    DatabaseBus,
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


async def test_writers_do_not_wait_for_one_another(probe: Probe) -> None:
    """A transaction holding an outbox row open does not hold up the next writer's commit."""
    async with probe.database.transaction() as session:
        await append(session, PROBE_EVENTS, PROBE_TOPIC, probe_event("case-0", 0))
        async with asyncio.timeout(5):
            await probe.append(probe_event("case-1", 0))  # commits while the first is open


async def test_a_database_log_follower_never_skips_an_event_that_commits_late(
        probe: Probe) -> None:
    """Long transactions write first and commit last; short ones commit around them meanwhile.

    The follower applies the short ones while the long ones are still open (it is not stuck
    behind them), and then every long one too: each event exactly once, each key in order.
    """
    follower = DatabaseBus(probe)
    await follower.start()
    try:
        holds = {f"long-{n}": asyncio.Event() for n in range(3)}
        long_events = [probe_event(key, 0) for key in holds]
        opened = asyncio.Event()
        open_count = 0

        async def long_writer(event: Event) -> None:
            nonlocal open_count
            async with probe.database.transaction() as session:
                await append(session, PROBE_EVENTS, PROBE_TOPIC, event)
                await session.flush()
                open_count += 1
                if open_count == len(holds):
                    opened.set()
                await holds[event.subject].wait()

        writers = [asyncio.create_task(long_writer(event)) for event in long_events]
        await opened.wait()
        short_events = [probe_event(f"short-{n % 4}", n // 4) for n in range(40)]
        for start in range(0, len(short_events), 4):  # some transactions hold several events
            await probe.append(*short_events[start:start + 4])
            if start == 20:
                holds["long-1"].set()  # one long one commits in the middle of the short ones
                await writers[1]

        async def shorts_applied() -> None:
            follower.background.check()
            done = applied_ids(await probe.effects())
            assert all(done[e.id] == 1 for e in short_events), f"{len(done)} applied"

        await eventually(shorts_applied, timeout=30, interval=0.05)
        pending = {e.id for e in long_events if e.subject != "long-1"}
        assert not pending & set(applied_ids(await probe.effects())), "applied before commit"

        holds["long-2"].set()
        await writers[2]
        await probe.append(probe_event("short-0", 10))  # written after long-0 drew its id
        holds["long-0"].set()
        await writers[0]
        everything = [*short_events, *long_events]
        effects = await applied(follower, len(everything) + 1)
    finally:
        await follower.close()

    counted = applied_ids(effects)
    assert all(counted[e.id] == 1 for e in everything), "an event was skipped or doubled"
    assert len(effects) == len(everything) + 1
    for key in {e.subject for e in short_events}:
        seqs = [effect.seq for effect in effects if effect.key == key]
        assert seqs == sorted(seqs), (key, seqs)


async def test_positions_follow_commit_order_without_gaps(probe: Probe) -> None:
    early, late = probe_event("case-0", 0), probe_event("case-1", 0)
    async with probe.database.transaction() as session:
        await append(session, PROBE_EVENTS, PROBE_TOPIC, early)
        await session.flush()
        await probe.append(late)
        async with probe.database.transaction() as reader:
            assert await sequence(reader, PROBE_EVENTS) == 1
    async with probe.database.transaction() as reader:
        assert await sequence(reader, PROBE_EVENTS) == 1

    outbox = PROBE_EVENTS.outbox
    async with probe.database.transaction() as session:
        order = (await session.execute(select(outbox.c.event_id, outbox.c.position)
                                       .order_by(outbox.c.position))).all()
    assert [tuple(row) for row in order] == [(late.id, 1), (early.id, 2)]


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

    async def publish_many(self, records: Sequence[Record]) -> None:
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
