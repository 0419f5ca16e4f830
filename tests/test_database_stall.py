"""A stalled database: requests are answered within their bound, and a 503 keeps its word.

The intake service runs as its own process on a PostgreSQL server of the test's own, which the
test stalls (every server process stopped with SIGSTOP, ``tests.faults.frozen``): the server's
sockets still take what the service sends, and nothing comes back. The service gives up after
``ADUAN_DATABASE_REQUEST_TIMEOUT_SECONDS`` (``BOUND`` here); the checks only ask that answers
come well before the 30 s a statement was once allowed, within a few times the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.migrate import migrate_async
from services.postgres import EmbeddedPostgres, start_postgres
from shared.db import asyncpg_dsn
from tests.faults import frozen
from tests.support import BackingServices, ServiceProcess, bearer, complaint

pytestmark = pytest.mark.timeout(180)

BOUND = 1.5
# Answers must come within this: a functional check of the bound, not a performance target.
WITHIN = 3 * BOUND

# Statements that take seconds, for complaints whose external reference is listed: a trigger
# sleeps as the complaint is inserted (``at`` 'insert': the statement writing it is slow) or as
# it is committed (``at`` 'commit': a constraint trigger runs at COMMIT, after the statement
# was answered).
SLOW = """
CREATE TABLE public.slow_references (reference text PRIMARY KEY, at text NOT NULL);
CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  IF EXISTS (SELECT FROM public.slow_references
             WHERE reference = NEW.external_reference AND at = TG_ARGV[0]) THEN
    PERFORM pg_sleep(5);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER slow_insert BEFORE INSERT ON intake.complaints
  FOR EACH ROW EXECUTE FUNCTION public.slow('insert');
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON intake.complaints
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow('commit');
"""


@dataclass
class Stall:
    pg: EmbeddedPostgres
    client: httpx.AsyncClient
    url: str
    headers: dict[str, str]
    database: asyncpg.Connection

    async def slow(self, reference: str, at: str) -> None:
        await self.database.execute("INSERT INTO public.slow_references VALUES ($1, $2)",
                                    reference, at)

    async def stored(self, reference: str) -> int:
        found: int = await self.database.fetchval(
            "SELECT count(*) FROM intake.complaints WHERE external_reference = $1", reference)
        return found

    async def timed(self, method: str, path: str, **kwargs: object) -> tuple[httpx.Response,
                                                                              float]:
        started = time.monotonic()
        response = await self.client.request(method, f"{self.url}{path}", headers=self.headers,
                                             **kwargs)  # type: ignore[arg-type]
        return response, time.monotonic() - started


@contextlib.asynccontextmanager
async def intake_on_own_server(tmp_path: Path) -> AsyncIterator[Stall]:
    pg = await asyncio.to_thread(start_postgres, tmp_path / "pg", temporary=True)
    try:
        await migrate_async(pg.url())
        backing = BackingServices(pg.url(), None, tmp_path, prefix=f"s{uuid.uuid4().hex[:6]}.")
        env = backing.env(ADUAN_DATABASE_REQUEST_TIMEOUT_SECONDS=str(BOUND),
                          ADUAN_HTTP_WORKERS="1")
        intake = ServiceProcess("intake", env, tmp_path / "intake.log").start()
        try:
            await intake.wait_ready()
            token = await backing.token("partner")
            database = await asyncpg.connect(asyncpg_dsn(pg.url()))
            await database.execute(SLOW)
            try:
                async with httpx.AsyncClient(timeout=60) as client:
                    stall = Stall(pg, client, intake.url, bearer(token), database)
                    # The caller is known to the service from now on (shared/token_cache.py),
                    # and the pool holds connections: what follows waits only on statements.
                    warm, _ = await stall.timed("POST", "/v1/complaints",
                                                json=complaint(external_reference="WARM"))
                    assert warm.status_code == 201, warm.text
                    yield stall
            finally:
                await database.close()
        finally:
            intake.stop()
            print(f"\n{intake.log_tail(30)}")
    finally:
        pg.stop()


def assert_retry_later(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert seconds < WITHIN, f"answered after {seconds:.1f}s"


async def test_stalled_database_is_answered_in_time_and_a_503_stored_nothing(
    tmp_path: Path,
) -> None:
    async with intake_on_own_server(tmp_path) as stall:
        listed, _ = await stall.timed("GET", "/v1/complaints")
        assert listed.status_code == 200, listed.text
        one = listed.json()["items"][0]["id"]
        body = complaint(external_reference="STALL-1")
        # The server stalls while it runs the statement writing the complaint, sent inside
        # the group's transaction: the audit's case, where it committed once resumed.
        await stall.slow("STALL-1", "insert")
        posting = asyncio.create_task(stall.timed("POST", "/v1/complaints", json=body))
        await sleeping(stall.database)
        with frozen(stall.pg.data_dir):
            (posted, post_seconds), (alone, alone_seconds), (got, get_seconds) = (
                await asyncio.gather(
                    posting,
                    stall.timed("POST", "/v1/complaints", json=complaint()),
                    stall.timed("GET", f"/v1/complaints/{one}")))
        for response, seconds in ((posted, post_seconds), (alone, alone_seconds),
                                  (got, get_seconds)):
            assert_retry_later(response, seconds)
        await stall.database.execute("DELETE FROM public.slow_references")
        await sleeping(stall.database, ended=True)
        # Resumed, the server finds the service's connection gone and rolls back what it was
        # writing: the partner that obeys Retry-After records the complaint once.
        again, _ = await stall.timed("POST", "/v1/complaints", json=body)
        assert again.status_code == 201, again.text
        stored = await stall.database.fetch(
            "SELECT id, external_reference FROM intake.complaints ORDER BY seq")
        assert [(str(r["id"]), r["external_reference"]) for r in stored] == [
            (one, "WARM"), (again.json()["id"], "STALL-1")]
    print(f"stalled database: POST answered {posted.status_code} after {post_seconds:.2f}s "
          f"(another {alone_seconds:.2f}s), GET {got.status_code} after {get_seconds:.2f}s "
          f"(bound {BOUND}s)")


async def test_an_unanswered_commit_is_settled_or_said_unknown(tmp_path: Path) -> None:
    async with intake_on_own_server(tmp_path) as stall:
        await stall.slow("SLOW-1", "commit")
        await stall.slow("SLOW-2", "commit")
        # The server is alive but the commit outlasts the bound: the service ends the writer's
        # session, finds nothing committed, and says so (retry).
        posted, seconds = await stall.timed("POST", "/v1/complaints",
                                            json=complaint(external_reference="SLOW-1"))
        assert_retry_later(posted, seconds)
        assert posted.json()["type"].endswith("/unavailable"), posted.text
        assert await stall.stored("SLOW-1") == 0

        # The server stalls while it commits: nobody can tell, and the answer says so.
        body = complaint(external_reference="SLOW-2")
        posting = asyncio.create_task(stall.timed("POST", "/v1/complaints", json=body))
        await sleeping(stall.database)
        with frozen(stall.pg.data_dir):
            posted, seconds = await posting
        assert_retry_later(posted, seconds)
        assert posted.json()["type"].endswith("/outcome-unknown"), posted.text
        # Posted without a key, a new key would record it again: the advice names the
        # external reference and a look before posting again instead.
        assert "same external_reference" in posted.json()["detail"], posted.text
        assert "GET /v1/complaints" in posted.json()["detail"], posted.text
        # Once the commit it was in has ended, one way or the other, and committing is quick,
        # as the answer advises the partner posts it again with its external reference: it is
        # recorded now (201) or was then (409 naming it), and once either way.
        await stall.database.execute("DELETE FROM public.slow_references")
        await sleeping(stall.database, ended=True)
        again, _ = await stall.timed("POST", "/v1/complaints", json=body)
        assert again.status_code in (201, 409), again.text
        if again.status_code == 409:
            assert again.json()["complaint_id"], again.text
        assert await stall.stored("SLOW-2") == 1

        # A post with an Idempotency-Key commits in a transaction of the request's own: its
        # unanswered COMMIT is said unknown too, and the key makes the retry safe.
        await stall.slow("SLOW-3", "commit")
        body = complaint(external_reference="SLOW-3")
        keyed = {**stall.headers, "Idempotency-Key": "slow-3"}
        started = time.monotonic()
        posted = await stall.client.post(f"{stall.url}/v1/complaints", json=body, headers=keyed)
        assert_retry_later(posted, time.monotonic() - started)
        assert posted.json()["type"].endswith("/outcome-unknown"), posted.text
        await stall.database.execute("DELETE FROM public.slow_references")
        await sleeping(stall.database, ended=True)
        again = await stall.client.post(f"{stall.url}/v1/complaints", json=body, headers=keyed)
        assert again.status_code == 201, again.text
        assert await stall.stored("SLOW-3") == 1


async def test_a_commit_whose_connection_is_lost_is_said_unknown(tmp_path: Path) -> None:
    """The server ends a request's session while its COMMIT runs (a restart, an operator's
    pg_terminate_backend): committed or not, the service cannot tell, and says so rather than
    "retry", which could record the work twice; the same key then records it once."""
    async with intake_on_own_server(tmp_path) as stall:
        await stall.slow("LOST-1", "commit")
        body = complaint(external_reference="LOST-1")
        keyed = {**stall.headers, "Idempotency-Key": "lost-1"}
        posting = asyncio.create_task(
            stall.client.post(f"{stall.url}/v1/complaints", json=body, headers=keyed))
        await sleeping(stall.database)
        ended = await stall.database.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE wait_event = 'PgSleep'")
        assert ended == 1
        posted = await posting
        assert posted.status_code == 503, posted.text
        assert posted.json()["type"].endswith("/outcome-unknown"), posted.text
        assert "same key" in posted.json()["detail"], posted.text
        await stall.database.execute("DELETE FROM public.slow_references")
        # Its session ended before the commit, nothing was recorded: the key, claimed and
        # never answered, reads as in flight until it is taken for abandoned (a minute).
        again = await stall.client.post(f"{stall.url}/v1/complaints", json=body, headers=keyed)
        assert again.status_code == 409, again.text
        assert await stall.stored("LOST-1") == 0
        await stall.database.execute(
            "UPDATE intake.idempotency_keys SET created_at = created_at - interval '2 minutes'")
        again = await stall.client.post(f"{stall.url}/v1/complaints", json=body, headers=keyed)
        assert again.status_code == 201, again.text
        assert await stall.stored("LOST-1") == 1


async def sleeping(database: asyncpg.Connection, *, ended: bool = False) -> None:
    """Returns once a session sleeps in a slow trigger (``ended``: once none does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sleeping = await database.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
        if bool(sleeping) != ended:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the slow statement never " + ("ended" if ended else "began"))
