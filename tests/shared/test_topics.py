"""Topics exist before the consumers join, so a first start logs no "topic not found"."""

from __future__ import annotations

import logging
import re

import pytest

from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC
from tests.shared.probe import partitions_of
from tests.support import BackingServices, bearer, complaint, eventually, running_app


async def test_first_start_creates_the_topics_before_consuming(
        kafka_services: BackingServices, caplog: pytest.LogCaptureFixture) -> None:
    assert kafka_services.kafka is not None
    partner = await kafka_services.token("partner")
    assistant = await kafka_services.token("assistant")
    with caplog.at_level(logging.INFO):
        async with running_app(kafka_services) as client:
            created = await client.post("/v1/complaints", json=complaint(),
                                        headers=bearer(partner))
            assert created.status_code == 201

            async def opened() -> None:
                case = await client.get(f"/v1/cases/{created.json()['id']}",
                                        headers=bearer(assistant))
                assert case.status_code == 200

            await eventually(opened)

            # Kafka mode's figures: the relay's backlog and each group's lag per partition.
            async def scraped() -> None:
                figures = (await client.get("/metrics")).text
                assert 'aduan_outbox_backlog{schema="intake"} 0.0' in figures
                assert re.search(
                    rf'aduan_consumer_lag{{group="{kafka_services.prefix}aduan-case",'
                    rf'partition="\d+",topic="{kafka_services.prefix}aduan.complaints.v1"}} 0.0',
                    figures), figures

            await eventually(scraped)
    for topic in (COMPLAINTS_TOPIC, CASES_TOPIC):
        assert await partitions_of(kafka_services.kafka, kafka_services.prefix + topic)
    complaints = [r.getMessage() for r in caplog.records
                  if r.levelno >= logging.WARNING and r.name.startswith("aiokafka")]
    assert not [m for m in complaints if "not found" in m.lower()
                or "not available" in m.lower() or "unknown_topic" in m.lower()], complaints
