"""A saturated service answers 503 with Retry-After at once, and loses nothing it answered 201."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from shared.admission import ARRIVED, Admission, Verdict
from tests.support import BackingServices, ServiceProcess, bearer, complaint, query, running_app


async def _burst(client: httpx.AsyncClient, token: str, count: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(
        client.post("/v1/complaints", json=complaint(summary=f"keluhan {n}"),
                    headers=bearer(token))
        for n in range(count))))


async def _stored_ids(client: httpx.AsyncClient, token: str) -> set[str]:
    listed = await client.get("/v1/complaints", params={"limit": 200}, headers=bearer(token))
    assert listed.status_code == 200, listed.text
    return {item["id"] for item in listed.json()["items"]}


def _check_answers(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    """Only 201 or 503 problem JSON with Retry-After; returns the bodies of the 201s."""
    assert Counter(r.status_code for r in responses).keys() <= {201, 503}, \
        Counter(r.status_code for r in responses)
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["status"] == 503
    return [r.json() for r in responses if r.status_code == 201]


async def test_requests_beyond_the_admission_limit_are_refused_with_retry_after(
        services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=2, admission_queue=0) as client:
        responses, health = await asyncio.gather(_burst(client, token, 40),
                                                 client.get("/healthz"))
        created = _check_answers(responses)
        assert any(r.status_code == 503 for r in responses), "nothing was refused"
        assert created, "nothing was admitted"
        assert health.status_code == 200
        assert {c["id"] for c in created} == await _stored_ids(client, token)


async def test_waiting_requests_are_admitted_when_a_slot_frees_in_time(
        services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=2, admission_queue=100,
                           admission_wait_seconds=30,
                           admission_queue_delay_seconds=30) as client:
        responses = await _burst(client, token, 20)
        assert [r.status_code for r in responses] == [201] * 20
        assert len(await _stored_ids(client, token)) == 20


async def test_an_exhausted_connection_pool_is_a_503_not_a_500(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=0, database_pool_size=1,
                           database_max_overflow=0, database_pool_timeout_seconds=0.05) as client:
        responses = await _burst(client, token, 30)
        created = _check_answers(responses)
        assert any(r.status_code == 503 for r in responses), "the pool was never exhausted"
        async with asyncio.timeout(30):
            while True:  # the consumers share the one connection; the list may wait its turn
                try:
                    stored = await _stored_ids(client, token)
                    break
                except AssertionError:
                    await asyncio.sleep(0.1)
        assert {c["id"] for c in created} == stored


class Held:
    """An app whose requests run until released, recording the order in which they started.
    A request waits for the ``release`` current when it started: replacing it holds the
    requests that start after, while those before are let go."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started.append(scope["path"])
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


async def _call(admission: Admission, path: str, *, age: float = 0.0) -> list[Message]:
    """What ``admission`` sends for a request to ``path`` that arrived ``age`` seconds ago."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [],
             ARRIVED: asyncio.get_running_loop().time() - age}
    await admission(scope, receive, send)
    return sent


def _refused(sent: list[Message]) -> bool:
    start = sent[0]
    headers = dict(start["headers"])
    return bool(start["status"] == 503 and int(headers[b"retry-after"]) >= 1
            and headers[b"content-type"] == b"application/problem+json")


async def test_a_request_older_than_its_budget_is_refused_without_running() -> None:
    app = Held()
    admission = Admission(app, limit=4, queue=10, wait=1.0)
    assert _refused(await _call(admission, "/v1/complaints", age=2.0))
    assert app.started == []
    assert admission.running == 0


async def test_a_standing_queue_refuses_newcomers_at_once_while_the_slots_stay_busy() -> None:
    app = Held()
    admission = Admission(app, limit=1, queue=10, wait=30.0, queue_delay=0.25)
    first = asyncio.create_task(_call(admission, "/first"))
    await asyncio.sleep(0)  # the task runs until the app holds it
    assert app.started == ["/first"]
    # The one slot is busy; a request waits for it, since a second ago.
    second = asyncio.create_task(_call(admission, "/second", age=1.0))
    await asyncio.sleep(0)
    assert len(admission.waiting) == 1
    # Looked at a whole interval ago, it had waited over the target already: the queue stands.
    before = asyncio.get_running_loop().time() - admission.interval
    assert admission.verdict(before, before) is Verdict.WAIT
    # Refused while the first request still holds the only slot: not after waiting for it.
    assert _refused(await _call(admission, "/third"))
    probe = asyncio.create_task(_call(admission, "/healthz"))
    await asyncio.sleep(0)
    assert app.started == ["/first", "/healthz"]  # not held back by the busy slot
    app.release.set()
    answers = await asyncio.gather(first, second, probe)
    assert [sent[0]["status"] for sent in answers] == [200] * 3
    assert app.started == ["/first", "/healthz", "/second"]
    assert admission.running == 0
    assert not admission.waiting
    assert admission.refused == 1


async def test_the_rule_refuses_by_the_age_of_the_oldest_waiting_request() -> None:
    app = Held()
    admission = Admission(app, limit=1, queue=2, wait=30.0, queue_delay=0.25)
    now = asyncio.get_running_loop().time
    assert admission.verdict(now(), now()) is Verdict.RUN  # a slot free, nobody waiting
    first = asyncio.create_task(_call(admission, "/first"))
    await asyncio.sleep(0)
    assert admission.verdict(now(), now()) is Verdict.WAIT  # a slot busy, nobody waiting
    # Too late to wait: it would start after 29.97 s and run the typical 0.05 s.
    assert admission.verdict(now() - 29.97, now()) is Verdict.REFUSE
    waiting = [asyncio.create_task(_call(admission, "/second"))]
    await asyncio.sleep(0)
    arrived = admission.waiting[0].arrived
    # The same queue, judged at later times: moving while its oldest has waited 0.2 s; at
    # 0.3 s above the target, but not yet for an interval (``test_..._a_whole_interval``).
    # Its length alone (one of two places) refuses nobody.
    assert admission.verdict(arrived + 0.2, arrived + 0.2) is Verdict.WAIT
    assert admission.verdict(arrived + 0.3, arrived + 0.3) is Verdict.WAIT
    assert not admission.full()
    waiting.append(asyncio.create_task(_call(admission, "/third")))
    await asyncio.sleep(0)
    assert admission.full()  # both places taken, however young
    assert admission.verdict(now() - 30.0, now()) is Verdict.REFUSE  # older than its budget
    app.release.set()
    answers = await asyncio.gather(first, *waiting)
    assert [sent[0]["status"] for sent in answers] == [200] * 3
    assert admission.verdict(now() - 29.97, now()) is Verdict.RUN  # a free slot: no wait


async def test_a_burst_of_completions_after_a_stall_reopens_admission_at_once() -> None:
    """A stalled group commit holds every slot while requests queue behind it: newcomers are
    refused. When it ends, finishing its requests together after a long run, the queue moves
    into the freed slots and the next newcomer is taken; no estimate is left to decay."""
    app = Held()
    admission = Admission(app, limit=4, queue=100, wait=30.0, queue_delay=0.25, interval=0.05)
    stalled = [asyncio.create_task(_call(admission, f"/stalled/{n}")) for n in range(4)]
    await asyncio.sleep(0)
    queued = [asyncio.create_task(_call(admission, f"/queued/{n}", age=0.2)) for n in range(4)]
    await asyncio.sleep(0)
    assert len(admission.waiting) == 4
    await asyncio.sleep(0.1)  # the oldest has now waited over the quarter second
    assert not admission.full()  # over the target, not yet for an interval
    await asyncio.sleep(0.1)
    assert admission.full()
    assert _refused(await _call(admission, "/refused"))
    # The stall ends: the four finish at once; the four queued start and are held in turn.
    ended, app.release = app.release, asyncio.Event()
    ended.set()
    assert [sent[0]["status"] for sent in await asyncio.gather(*stalled)] == [200] * 4
    assert admission.running == 4
    assert not admission.waiting
    assert not admission.full()
    taken = asyncio.create_task(_call(admission, "/taken"))
    await asyncio.sleep(0)
    assert len(admission.waiting) == 1  # waiting for a slot, not refused
    app.release.set()
    answers = await asyncio.gather(*queued, taken)
    assert [sent[0]["status"] for sent in answers] == [200] * 5
    assert admission.refused == 1
    assert admission.running == 0


async def test_a_queue_stands_once_above_the_target_for_a_whole_interval() -> None:
    """A stall shorter than the interval refuses nobody; one that outlasts it refuses
    newcomers; and a queue above the target again soon after is the same overload, refused at
    once. Judged on a controlled clock: ``t`` seconds after the waiting request arrived."""
    app = Held()
    admission = Admission(app, limit=1, queue=10, wait=30.0, queue_delay=0.1, interval=0.5,
                          remember=1.0)
    first = asyncio.create_task(_call(admission, "/first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(_call(admission, "/second"))
    await asyncio.sleep(0)
    arrived = admission.waiting[0].arrived

    def at(t: float) -> Verdict:
        return admission.verdict(arrived + t, arrived + t)

    assert at(0.05) is Verdict.WAIT  # under the target
    assert at(0.2) is Verdict.WAIT  # over it from here on...
    assert at(0.6) is Verdict.WAIT  # ...for 0.4 s: a stall, not yet a standing queue
    assert at(0.7) is Verdict.REFUSE  # over it for the whole interval
    assert at(0.8) is Verdict.REFUSE
    app.release.set()
    await asyncio.gather(first, second)
    assert not admission.waiting
    # The queue emptied; another forms behind a busy slot, and is over the target again
    # 0.3 s after the last refusal: refused at once.
    app.release = asyncio.Event()
    third = asyncio.create_task(_call(admission, "/third"))
    await asyncio.sleep(0)
    fourth = asyncio.create_task(_call(admission, "/fourth"))
    await asyncio.sleep(0)
    arrived = admission.waiting[0].arrived
    assert at(1.1) is Verdict.REFUSE
    # Over it again more than an interval but less than ``remember`` after the last refusal:
    # still the same overload, refused at once.
    assert at(0.05) is Verdict.WAIT  # (the queue below the target meanwhile)
    assert at(1.7) is Verdict.REFUSE
    # Over the target again only ``remember`` after the last refusal: a stall of its own.
    assert at(0.05) is Verdict.WAIT
    assert at(2.8) is Verdict.WAIT
    assert at(3.2) is Verdict.WAIT
    assert at(3.35) is Verdict.REFUSE
    app.release.set()
    answers = await asyncio.gather(third, fourth)
    assert [sent[0]["status"] for sent in answers] == [200, 200]
    assert admission.running == 0


def test_one_burst_of_long_runs_does_not_move_the_typical_run() -> None:
    """The typical run (the median of the last runs) resizes the slots: a burst of completions
    as long as a stall, one per slot, leaves it where it was; runs that stay long move it."""
    admission = Admission(Held(), limit=8, queue=10, wait=1.0, queue_delay=0.25)
    now = 100.0
    for _ in range(admission.runs.maxlen or 0):
        now += 0.05
        admission.finished(now - 0.05, now)
    assert admission.typical_run == pytest.approx(0.05)
    now += 2.0
    for _ in range(admission.limit):  # a stalled group commit's requests, all at once
        admission.finished(now - 2.0, now)
    now += 0.05
    admission.finished(now - 0.05, now)
    assert admission.typical_run == pytest.approx(0.05)
    assert admission.slots == 8
    for _ in range(admission.limit * 8):  # the machine stays slow
        now += 2.0
        admission.finished(now - 2.0, now)
    assert admission.typical_run == pytest.approx(2.0)
    assert admission.slots == 2  # a quarter of the limit: groups still form


async def test_a_waiting_request_not_started_in_time_is_refused_and_never_runs() -> None:
    app = Held()
    admission = Admission(app, limit=1, queue=10, wait=0.3, queue_delay=0.25)
    first = asyncio.create_task(_call(admission, "/first"))
    await asyncio.sleep(0)
    assert _refused(await _call(admission, "/late"))  # waited for the slot until too late
    app.release.set()
    assert (await first)[0]["status"] == 200
    assert app.started == ["/first"]
    assert admission.running == 0
    assert not admission.waiting


async def test_waiting_requests_take_the_freed_slots_in_their_order_of_arrival() -> None:
    app = Held()
    admission = Admission(app, limit=1, queue=10, wait=30.0, queue_delay=30.0)
    first = asyncio.create_task(_call(admission, "/first"))
    await asyncio.sleep(0)  # the task runs until the app holds it
    assert app.started == ["/first"]
    waiting = [asyncio.create_task(_call(admission, f"/{n}")) for n in range(3)]
    await asyncio.sleep(0)
    assert len(admission.waiting) == 3
    app.release.set()
    answers = await asyncio.gather(first, *waiting)
    assert [sent[0]["status"] for sent in answers] == [200] * 4
    assert app.started == ["/first", "/0", "/1", "/2"]
    assert admission.running == 0
    assert not admission.waiting


@pytest.mark.timeout(120)
async def test_a_server_driven_past_its_bound_answers_201_or_503_and_loses_nothing(
        services: BackingServices, tmp_path: Path) -> None:
    """``aduan serve`` as deployed (its HTTP server and admission), a burst over 64 connections
    far beyond what it admits, probes asked meanwhile."""
    token = await services.token("partner")
    server = ServiceProcess("intake", services.env(
        ADUAN_HTTP_WORKERS="1", ADUAN_MAX_REQUESTS_IN_FLIGHT="2", ADUAN_ADMISSION_QUEUE="4",
        ADUAN_ADMISSION_WAIT_SECONDS="1"), tmp_path / "intake.log").start()
    tag = uuid.uuid4().hex
    try:
        await server.wait_ready()
        # Under the bound on connections per client address (its own 429 is not this test's);
        # a connection each, so that no request races the server's keep-alive time-out on a
        # connection left idle while the machine is busy.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            burst = asyncio.gather(*(
                client.post("/v1/complaints", json=complaint(summary=f"{tag} {n}"),
                            headers=bearer(token))
                for n in range(160)))
            probes = asyncio.gather(*(client.get(path) for path in ("/healthz", "/readyz")))
            try:
                responses, answered_probes = await asyncio.gather(burst, probes)
            except httpx.TransportError as exc:  # a connection dropped: what did the server say?
                raise AssertionError(f"{exc!r}; the server's log:\n"
                                     f"{server.log_tail(200)}") from exc
            # Served as the burst ends.
            after = await client.post("/v1/complaints", json=complaint(summary=f"{tag} after"),
                                      headers=bearer(token))
    finally:
        server.stop()
    created = _check_answers(responses)
    assert any(r.status_code == 503 for r in responses), "the bound was never reached"
    assert created, "nothing was admitted"
    assert [r.status_code for r in answered_probes] == [200, 200]
    assert all(r.json()["type"].endswith("/overloaded") for r in responses
               if r.status_code == 503)
    assert after.status_code in (201, 503)
    if after.status_code == 201:
        created.append(after.json())
    stored = await query(services.database_url,
                         "SELECT id::text, tracking_number FROM intake.complaints "
                         "WHERE summary LIKE $1", f"{tag} %")
    assert {(c["id"], c["tracking_number"]) for c in created} == \
        {(row["id"], row["tracking_number"]) for row in stored}


async def test_fewer_slots_are_used_while_requests_run_long_and_more_once_quick() -> None:
    app = Held()
    admission = Admission(app, limit=4, queue=10, wait=1.0, queue_delay=0.25)
    now = 100.0
    admission.finished(now - 5.0, now)  # a request held its slot for seconds
    assert admission.slots == 3
    running = [asyncio.create_task(_call(admission, f"/{n}")) for n in range(3)]
    await asyncio.sleep(0)
    assert admission.running == 3  # every slot in use busy: room to grow once runs are quick
    for _ in range(admission.runs.maxlen or 0):
        now += 0.01
        admission.finished(now - 0.01, now)
    assert admission.slots == 4
    app.release.set()
    await asyncio.gather(*running)
    assert admission.running == 0
