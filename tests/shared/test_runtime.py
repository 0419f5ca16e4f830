"""What a running service holds: which fetch settings each Kafka consumer is given."""

from __future__ import annotations

from case_api.consumer import SUBSCRIPTION as CASE_OPENING
from intake_api.consumer import SUBSCRIPTION as INTAKE_STATUS
from intake_api.webhooks.consumer import SUBSCRIPTION as WEBHOOKS
from metrics_worker.consumer import SUBSCRIPTION as METRICS
from shared.bus import KafkaConsumerRunner
from shared.runtime import Runtime
from shared.settings import Settings


async def test_consumers_whose_effects_may_lag_fetch_larger_batches() -> None:
    # Nothing is reached: the consumers are stopped before they reach the broker.
    settings = Settings(database_url="postgresql://u@127.0.0.1:1/aduan",
                        kafka_bootstrap_servers="127.0.0.1:1",
                        kafka_fetch_max_wait_ms=100, kafka_fetch_min_bytes=16_384,
                        kafka_patient_fetch_max_wait_ms=500,
                        kafka_patient_fetch_min_bytes=65_536)
    runtime = Runtime.create(settings)
    try:
        for subscription in (CASE_OPENING, INTAKE_STATUS, WEBHOOKS, METRICS):
            runtime.consume(subscription)
    finally:
        await runtime.stop()
    fetches = {runner.subscription.consumer: (runner.fetch_max_wait_ms, runner.fetch_min_bytes)
               for runner in runtime.consumers if isinstance(runner, KafkaConsumerRunner)}
    # The case service opens a complaint's case at once: it is on the way to case.opened.
    assert fetches == {CASE_OPENING.consumer: (100, 16_384),
                       INTAKE_STATUS.consumer: (500, 65_536),
                       WEBHOOKS.consumer: (500, 65_536),
                       METRICS.consumer: (500, 65_536)}
