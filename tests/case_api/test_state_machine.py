"""Random actions by random roles against the live service, checked against a reference model.

The model below is written from API.md's table, independently of ``case_api.workflow``. The app
runs in-process on the test's event loop; the hypothesis state machine runs in a worker thread
and sends each request to that loop with ``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.case_api.helpers import Tokens, due_after, parse_time, post_complaint, wait_case
from tests.support import BackingServices, bearer, running_app

T = TypeVar("T")
pytestmark = pytest.mark.timeout(240)

# --- the reference model: API.md, "Cases" ----------------------------------------------------

OPEN = ("received", "awaiting_completion", "registered", "in_examination", "awaiting_agency",
        "agency_responded", "corrective_action")
REJECT = ("incomplete", "not_reported_to_agency", "out_of_jurisdiction", "in_court", "expired",
          "duplicate", "already_resolved")
CLOSE_EXAMINATION = ("resolved_by_agency", "no_maladministration", "examination_stopped")
CLOSE_RESOLUTION = ("corrective_action_completed", "recommendation_issued")
EVERY_REASON = (*REJECT, *CLOSE_EXAMINATION, *CLOSE_RESOLUTION, "transferred", "withdrawn")
STAFF = frozenset({"assistant"})


@dataclass(frozen=True)
class Row:
    sources: tuple[str, ...]
    target: str
    roles: frozenset[str]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fixed_reason: str | None = None
    due_days: int | None = None


TABLE: dict[str, Row] = {
    "request_completion": Row(("received",), "awaiting_completion", STAFF, ("note",),
                              ("due_at",), due_days=30),
    "complete": Row(("awaiting_completion",), "received", STAFF, ("note",)),
    "register": Row(("received",), "registered", STAFF, (), ("complexity",)),
    "reject": Row(("received", "awaiting_completion"), "closed", STAFF, ("reason",),
                  reasons={"received": REJECT, "awaiting_completion": REJECT}),
    "transfer": Row(("received", "registered"), "closed", STAFF, ("transferred_to",),
                    fixed_reason="transferred"),
    "start_examination": Row(("registered",), "in_examination", STAFF, ("assignee",)),
    "request_clarification": Row(("in_examination", "agency_responded"), "awaiting_agency",
                                 STAFF, ("note",), ("due_at",), due_days=14),
    "respond": Row(("awaiting_agency", "corrective_action"), "agency_responded",
                   frozenset({"assistant", "liaison"}), ("note", "resolution")),
    "find_maladministration": Row(("in_examination", "agency_responded"), "corrective_action",
                                  STAFF, ("maladministration",), ("due_at",), due_days=30),
    "close": Row(("in_examination", "agency_responded", "corrective_action"), "closed", STAFF,
                 ("reason",), reasons={"in_examination": CLOSE_EXAMINATION,
                                       "agency_responded": CLOSE_EXAMINATION,
                                       "corrective_action": (*CLOSE_EXAMINATION,
                                                             *CLOSE_RESOLUTION)}),
    "withdraw": Row(OPEN, "closed", STAFF, fixed_reason="withdrawn"),
}
STAGE = {"received": "verification", "awaiting_completion": "verification",
         "registered": "verification", "in_examination": "examination",
         "awaiting_agency": "examination", "agency_responded": "examination",
         "corrective_action": "resolution"}
VALUES = {"note": "catatan", "assignee": "asisten.pemeriksaan.2", "resolution": "explained",
          "maladministration": "procedural_deviation", "transferred_to": "Komnas HAM",
          "complexity": "medium"}

# Who acts: the test's tokens by role name.
ROLES = ("assistant", "liaison", "other_liaison", "analyst", "admin", "partner")
FLAVOURS: dict[str, dict[str, Any]] = {
    "report": {},
    "confidential": {"reporter": {"name": "Rahasia", "confidential": True}},
    "not_first": {"reported_to_agency_first": False},
    "rapid": {"kind": "rapid_response", "reported_to_agency_first": False},
    "own": {"kind": "own_initiative", "reporter": None},
}


@dataclass
class Model:
    kind: str
    formal_ok: bool
    reporter: dict[str, Any] | None
    status: str
    version: int = 1
    closure_stage: str | None = None
    closure_reason: str | None = None
    history: int = 0

    def allowed(self, role: str) -> list[str]:
        if role not in ("assistant", "admin", "liaison"):
            return []
        return sorted(
            name for name, row in TABLE.items()
            if self.status in row.sources
            and (role == "admin" or role in row.roles)
            and not (name == "register" and not self.formal_ok and role != "admin")
        )

    def expect(self, role: str, action: str, body: dict[str, Any],
               if_match: int | None) -> tuple[int, str | None]:
        """The status code the service must answer, and the field a 422 must name."""
        row = TABLE[action]
        if role in ("partner", "analyst"):
            return 403, None
        if role == "other_liaison":
            return 404, None
        if role == "liaison" and "liaison" not in row.roles:
            return 403, None
        if if_match is not None and if_match != self.version:
            return 412, None
        if self.status not in row.sources:
            return 409, None
        for name in row.required:
            if name not in body:
                return 422, f"/{name}"
        if row.reasons and body["reason"] not in row.reasons[self.status]:
            return 422, "/reason"
        if "effective_at" in body:  # always in the future here; admins only anyway
            return 422, "/effective_at"
        if action == "register" and not self.formal_ok and role != "admin":
            return 409, None
        return 200, None

    def take(self, action: str, body: dict[str, Any]) -> None:
        row = TABLE[action]
        if row.target == "closed":
            self.closure_stage = STAGE[self.status]
            self.closure_reason = row.fixed_reason or body["reason"]
        if action == "complete":  # the completion round supplied the missing requirement
            self.formal_ok = True
        self.status = row.target
        self.version += 1
        self.history += 1


# --- driving the live app from the hypothesis thread --------------------------------------------

@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    tokens: Tokens

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def token(self, role: str) -> str:
        value: str = getattr(self.tokens, role)
        return value

    def get(self, role: str, case_id: str) -> httpx.Response:
        return self.run(self.client.get(f"/v1/cases/{case_id}",
                                        headers=bearer(self.token(role))))

    def post(self, role: str, case_id: str, body: dict[str, Any],
             if_match: int | None) -> httpx.Response:
        headers = bearer(self.token(role))
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        return self.run(self.client.post(f"/v1/cases/{case_id}/transitions", json=body,
                                         headers=headers))

    def open(self, flavour: str) -> dict[str, Any]:
        async def opened() -> dict[str, Any]:
            case_id = await post_complaint(self.client, self.tokens, **FLAVOURS[flavour])
            return await wait_case(self.client, self.tokens.assistant, case_id)
        return self.run(opened())


class CaseMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        self.case_id = ""
        self.model = Model("report", True, None, "received")

    @initialize(flavour=st.sampled_from(sorted(FLAVOURS)))
    def open_case(self, flavour: str) -> None:
        case = self.harness.open(flavour)
        self.case_id = case["id"]
        overrides = FLAVOURS[flavour]
        self.model = Model(
            kind=case["kind"],
            formal_ok=not (overrides.get("kind", "report") == "report"
                           and overrides.get("reported_to_agency_first") is False),
            reporter=case["reporter"],
            status="registered" if case["kind"] == "own_initiative" else "received",
        )
        assert case["kind"] == overrides.get("kind", "report")

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """An action the table allows now, by a role that may take it, mostly well-formed."""
        possible = self.model.allowed("admin")
        if not possible:
            return
        onward = [a for a in possible if TABLE[a].target != "closed"]
        action = data.draw(st.sampled_from(sorted(onward * 6 + possible)), label="action")
        roles = ["liaison", "assistant", "admin"] if action == "respond" else [
            "assistant", "assistant", "admin"]
        self.attempt(data, action, data.draw(st.sampled_from(roles), label="role"),
                     data.draw(st.sampled_from(["valid", "valid", "valid", "due_at"]),
                               label="variant"),
                     data.draw(st.sampled_from(["none", "current"]), label="if_match"))

    @rule(data=st.data(), action=st.sampled_from(sorted(TABLE)), role=st.sampled_from(ROLES),
          variant=st.sampled_from(("valid", "missing", "bad_reason", "effective_at",
                                   "due_at")),
          version=st.sampled_from(("none", "current", "stale")))
    def anything(self, data: st.DataObject, action: str, role: str, variant: str,
                 version: str) -> None:
        """Any action by any role, well-formed or not, with any If-Match."""
        self.attempt(data, action, role, variant, version)

    def attempt(self, data: st.DataObject, action: str, role: str, variant: str,
                version: str) -> None:
        model = self.model
        row = TABLE[action]
        body: dict[str, Any] = {"action": action}
        for name in row.required:
            if name != "reason":
                body[name] = VALUES[name]
        if "reason" in row.required:
            allowed = row.reasons.get(model.status) or row.reasons[row.sources[0]]
            pool = [r for r in EVERY_REASON if r not in allowed] if variant == "bad_reason" \
                else list(allowed)
            body["reason"] = data.draw(st.sampled_from(pool), label="reason")
        if variant == "missing" and row.required:
            del body[data.draw(st.sampled_from(row.required), label="missing")]
        if variant == "effective_at":
            body["effective_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        due_at = None
        if variant == "due_at" and "due_at" in row.optional:
            due_at = datetime.now(UTC).replace(microsecond=0) + timedelta(
                days=data.draw(st.integers(1, 90), label="due in days"))
            body["due_at"] = due_at.isoformat()
        if "complexity" in row.optional and data.draw(st.booleans(), label="complexity"):
            body["complexity"] = VALUES["complexity"]
        if_match = {"none": None, "current": model.version,
                    "stale": max(model.version - 1, 0)}[version]

        expected, field_ = model.expect(role, action, body, if_match)
        response = self.harness.post(role, self.case_id, body, if_match)
        assert response.status_code == expected, (
            model, role, body, if_match, response.status_code, response.text)
        problem = response.json()
        if expected == 422:
            assert problem["errors"][0]["field"] == field_, (body, problem)
        if expected == 409:
            assert sorted(problem["allowed_actions"]) == model.allowed(role), (model, problem)
        if expected != 200:
            assert response.headers["content-type"] == "application/problem+json"
            return

        source = model.status
        model.take(action, body)
        assert response.headers["etag"] == f'"{model.version}"'
        case = response.json()
        entry = case["history"][-1]
        assert (entry["action"], entry["from_status"], entry["to_status"]) == (
            action, source, model.status)
        assert entry["role"] == role
        if model.status == "closed":
            assert entry["reason"] == model.closure_reason
        if row.due_days is not None:
            expected_due = due_at or due_after(parse_time(entry["at"]), row.due_days)
            assert parse_time(case["due_at"]) == expected_due
        else:
            assert case["due_at"] is None
        self.check(case, role)

    def check(self, case: dict[str, Any], role: str) -> None:
        model = self.model
        assert case["status"] == model.status
        assert case["version"] == model.version
        assert case["closure_stage"] == model.closure_stage
        assert case["closure_reason"] == model.closure_reason
        assert case["overdue"] is False
        assert len(case["history"]) == model.history
        assert sorted(case["allowed_actions"]) == model.allowed(role)

    @invariant()
    def the_assistant_sees_the_model(self) -> None:
        if not self.case_id:
            return
        seen = self.harness.get("assistant", self.case_id)
        assert seen.status_code == 200
        assert seen.headers["etag"] == f'"{self.model.version}"'
        self.check(seen.json(), "assistant")

    @rule()
    def liaisons_look(self) -> None:
        """The case's liaison sees what it may do and no confidential reporter; others, 404."""
        liaison = self.harness.get("liaison", self.case_id)
        assert liaison.status_code == 200
        self.check(liaison.json(), "liaison")
        reporter = self.model.reporter
        if reporter is not None and reporter.get("confidential"):
            assert liaison.json()["reporter"] == {"confidential": True}
        else:
            assert liaison.json()["reporter"] == reporter
        assert self.harness.get("other_liaison", self.case_id).status_code == 404

async def test_random_actions_follow_the_table(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        CaseMachine.harness = Harness(asyncio.get_running_loop(), client, tokens)
        await asyncio.to_thread(
            run_state_machine_as_test, CaseMachine,
            settings=settings(max_examples=20, stateful_step_count=12, deadline=None,
                              suppress_health_check=list(HealthCheck), database=None,
                              # Every example opens a case through the pipeline, which makes
                              # shrinking take minutes; a failure is reported unshrunk, with
                              # its steps and the model's state in the assertion message.
                              phases=[Phase.explicit, Phase.reuse, Phase.generate]))
