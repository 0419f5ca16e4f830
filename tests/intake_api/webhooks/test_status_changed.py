"""A ``complaint.status_changed`` body tells the outcome as of its event's version, however late
it is rendered: never a resolution or a transfer the case reached only later."""

from __future__ import annotations

import json
import uuid
from typing import Any

from intake_api import repository as complaints
from intake_api.webhooks.events import TRIGGERS
from shared.auth import Role
from shared.db import Database
from shared.events import CASE_TRANSITIONED, Event
from tests.case_api.helpers import Tokens, ok, post_complaint, transitioned_events, wait_case
from tests.intake_api.webhooks.receiver import receiving
from tests.intake_api.webhooks.test_delivery import FAST, subscribe, verified
from tests.support import BackingServices, bearer, eventually, running_app


async def rendered_now(backing: BackingServices, case_id: str) -> dict[int, dict[str, Any]]:
    """The case's status_changed bodies as a consumer would render them now, the complaint
    having reached its last state (a late consumer, or a replay), by version."""
    (render,) = [t.render for t in TRIGGERS[CASE_TRANSITIONED]
                 if t.webhook_type.value == "complaint.status_changed"]
    envelopes = await transitioned_events(backing.database_url, case_id)
    async with Database.opened(backing.database_url) as database, \
            database.transaction() as session:
        (complaint,) = await complaints.get_many(session, [uuid.UUID(case_id)])
        bodies = [render(Event.from_json(json.dumps(e)), complaint, Role.partner)
                  for e in envelopes]
    return {b["version"]: b for b in bodies if b is not None}


def outcomes(bodies: dict[int, dict[str, Any]], *fields: str) -> dict[int, tuple[Any, ...]]:
    return {v: tuple(b["outcome"][f] for f in fields) for v, b in sorted(bodies.items())}


async def test_each_body_tells_the_outcome_as_of_its_version(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    with receiving() as hooks:
        async with running_app(services, **FAST) as client:
            mine = await subscribe(client, tokens.partner, hooks.url,
                                   ["complaint.status_changed"])
            answered = await post_complaint(client, tokens)
            await wait_case(client, tokens.assistant, answered)
            await ok(client, tokens.assistant, answered, "register")
            await ok(client, tokens.assistant, answered, "start_examination", assignee="a.1")
            await ok(client, tokens.assistant, answered, "request_clarification",
                     note="Mohon penjelasan")
            await ok(client, tokens.liaison, answered, "respond", note="Sudah diperbaiki",
                     resolution="resolved")
            await ok(client, tokens.assistant, answered, "close",
                     reason="resolved_by_agency")
            transferred = await post_complaint(client, tokens)
            await wait_case(client, tokens.assistant, transferred)
            await ok(client, tokens.assistant, transferred, "register")
            await ok(client, tokens.assistant, transferred, "transfer",
                     transferred_to="Komnas HAM")

            async def all_heard() -> None:
                assert len(hooks.requests()) == 7

            await eventually(all_heard, timeout=30)

            async def followed() -> None:  # the complaints show the cases' last state
                for case_id in (answered, transferred):
                    got = await client.get(f"/v1/complaints/{case_id}",
                                           headers=bearer(tokens.partner))
                    assert got.json()["outcome"]["status"] == "closed"

            await eventually(followed, timeout=30)
            delivered = {(b["data"]["id"], b["data"]["version"]): b["data"]
                         for b in verified(hooks, mine["secret"])}

    expected = {2: (None,), 3: (None,), 4: (None,), 5: ("resolved",), 6: ("resolved",)}
    late = await rendered_now(services, answered)
    assert outcomes(late, "resolution") == expected
    assert outcomes({v: delivered[(answered, v)] for v in expected}, "resolution") == expected
    late = await rendered_now(services, transferred)
    assert outcomes(late, "transferred_to", "status") == {
        2: (None, "registered"), 3: ("Komnas HAM", "closed")}
    assert delivered[(transferred, 2)]["outcome"]["transferred_to"] is None
