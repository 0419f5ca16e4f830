"""Reading and steering topics and consumer groups on the real broker, as an operator would."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def partitions_of(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions ([] while it does not exist; asking does not create it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        [described] = await admin.describe_topics([topic])
        return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])
    finally:
        await admin.close()


async def read_topic(bootstrap_servers: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from offset 0 to its end, partition by partition."""
    partitions = await partitions_of(bootstrap_servers, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {
            p: [] for p in partitions}
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for partition, batch in (await consumer.getmany(timeout_ms=500)).items():
                records[partition].extend(batch)
        return [record for p in partitions for record in records[p]]
    finally:
        await consumer.stop()


async def group_offsets(bootstrap_servers: str, group: str,
                        topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset (0 where none) and the end offset, per partition."""
    partitions = await partitions_of(bootstrap_servers, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions) if partitions else {}
        committed = {p.partition: int(await consumer.committed(p) or 0) for p in partitions}
        return committed, {p.partition: int(offset) for p, offset in ends.items()}
    finally:
        await consumer.stop()


async def commit_offsets(bootstrap_servers: str, group: str, topic: str, *, offset: int) -> None:
    """Commits ``offset`` on every partition of ``topic`` for ``group`` (which must be idle)."""
    partitions = await partitions_of(bootstrap_servers, topic)
    assert partitions, f"topic {topic} does not exist"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, offset))
    finally:
        await consumer.stop()
