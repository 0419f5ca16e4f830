"""``aduan infra up`` / ``down``: PostgreSQL and a Kafka broker left running for development.

``up`` is safe to repeat: what already runs is reported, not started twice. When one of the two
cannot start, what this ``up`` started is stopped again, so a failure leaves nothing running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.kafka import detached_broker, java_executable, start_kafka, stop_detached
from services.postgres import DETACHED, EmbeddedPostgres, running_owner, start_postgres, stop_server


@dataclass
class Infra:
    database_url: str
    bootstrap_servers: str
    already_running: list[str] = field(default_factory=list)

    def exports(self) -> list[str]:
        return [f"export ADUAN_DATABASE_URL='{self.database_url}'",
                f"export ADUAN_KAFKA_BOOTSTRAP_SERVERS='{self.bootstrap_servers}'"]


def up(root: Path) -> Infra:
    """Starts what is not running yet under ``root``; raises with nothing new left running."""
    java_executable()  # before anything starts: the usual reason Kafka cannot
    root.mkdir(parents=True, exist_ok=True)
    already: list[str] = []
    pg_running = running_owner(root / "pg") == DETACHED
    pg: EmbeddedPostgres = start_postgres(root / "pg")
    if pg_running:
        already.append("PostgreSQL")
    try:
        bootstrap = detached_broker(root / "kafka")
        if bootstrap is not None:
            already.append("Kafka")
        else:
            bootstrap = start_kafka(root / "kafka", detach=True).bootstrap_servers
    except BaseException:
        if pg.owned:
            pg.stop()
        raise
    pg.detach()
    return Infra(pg.url(), bootstrap, already)


def down(root: Path) -> list[str]:
    """Stops what ``up`` started; one line per service saying what happened."""
    return ["PostgreSQL stopped" if stop_server(root / "pg") else "PostgreSQL was not running",
            "Kafka stopped" if stop_detached(root / "kafka") else "Kafka was not running"]
