"""The Kafka side of the event bus: an idempotent producer and its health check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from shared.events import CONTENT_TYPE

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
# A topic, a partition key, an envelope as the JSON bytes it is sent as, and headers besides
# the content type (the trace context).
Record = tuple[str, bytes, bytes, Headers]


class KafkaPublisher:
    """An idempotent producer (``acks=all``) started on first use and restarted after failures."""

    def __init__(self, bootstrap_servers: str, *, topic_prefix: str = "",
                 client_id: str = "aduan", linger_ms: int = 5) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=self.linger_ms,
                    request_timeout_ms=15000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:
                logger.debug("producer stop failed: %s", exc)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Sends envelopes and returns only when the broker acknowledged every one of them.

        Each ``send`` only queues its record (it waits only while the producer's buffer is
        full); the producer batches them per partition, so a batch costs a request or two to
        the broker, not one per record.
        """
        producer = await self._ready()
        content_type = ("content-type", CONTENT_TYPE.encode())
        try:
            futures = [
                await producer.send(self.topic(topic), value=value, key=key,
                                    headers=[content_type, *headers])
                for topic, key, value, headers in records
            ]
            await asyncio.gather(*futures)
        except Exception:
            await self._reset()
            raise

    async def publish_raw(self, topic: str, *, value: bytes | None, key: bytes | None,
                          headers: Headers) -> None:
        producer = await self._ready()
        try:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except Exception:
            await self._reset()
            raise

    async def check(self, within: float = 3.0) -> None:
        """Raises unless the cluster answers a metadata request within ``within`` seconds."""
        producer = await asyncio.wait_for(self._ready(), within)
        ok = await asyncio.wait_for(producer.client.fetch_all_metadata(), within)
        if ok is None:
            raise ConnectionError("no metadata from the Kafka cluster")

    async def close(self) -> None:
        await self._reset()


async def ensure_topics(bootstrap_servers: str, topics: Sequence[str], *,
                        within: float = 10.0) -> None:
    """Creates the topics that do not exist yet, with the cluster's default partitions and
    replication, so consumers joining on a first start do not log "topic not found".

    Best effort: when the cluster cannot be asked, the consumers wait for the topics as before.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                request_timeout_ms=int(within * 1000))
    try:
        async with asyncio.timeout(within):
            await admin.start()
            missing = sorted(set(topics) - set(await admin.list_topics()))
            if not missing:
                return
            partitions, replication = await _cluster_defaults(admin)
            # A topic made meanwhile by another process answers "already exists": fine.
            await admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
            # The broker learns of new topics from its controller a moment later; a consumer
            # joining before that would still be told they do not exist.
            while True:
                if await _have_leaders(admin, missing):
                    break
                await asyncio.sleep(0.1)
            logger.info("created Kafka topics %s", ", ".join(missing))
    except (KafkaError, OSError, TimeoutError) as exc:
        logger.warning("could not create Kafka topics up front (%s); consumers will wait for "
                       "them", type(exc).__name__)
    finally:
        await admin.close()


async def _have_leaders(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> bool:
    described = await admin.describe_topics(list(topics))
    return len(described) == len(topics) and all(
        topic["error_code"] == 0 and topic["partitions"]
        and all(p["leader"] >= 0 for p in topic["partitions"]) for topic in described)


async def _cluster_defaults(admin: AIOKafkaAdminClient) -> tuple[int, int]:
    node = (await admin.describe_cluster())["brokers"][0]["node_id"]
    wanted = {"num.partitions": None, "default.replication.factor": None}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, str(node), configs=wanted)])
    values = {entry[0]: entry[1] for entry in responses[0].resources[0][4]}
    return int(values.get("num.partitions") or 1), int(
        values.get("default.replication.factor") or 1)
