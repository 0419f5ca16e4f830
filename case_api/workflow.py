"""The case state machine, as one table (API.md, "Cases").

Each row says from which statuses an action may be taken, where it leads, who may take it, which
fields it requires and accepts, and which reasons it allows. The service reads this table; it
has no other knowledge of the workflow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from shared.auth import Role
from shared.vocabulary import EXAMINATION_STATUSES, UNASSIGNED_AGENCY_CODE, CaseStatus

Status = CaseStatus

class ActionName(enum.StrEnum):
    request_completion = "request_completion"
    complete = "complete"
    register = "register"
    reject = "reject"
    transfer = "transfer"
    start_examination = "start_examination"
    request_clarification = "request_clarification"
    respond = "respond"
    find_maladministration = "find_maladministration"
    close = "close"
    withdraw = "withdraw"
    assign_agency = "assign_agency"  # an addition to API.md's table (docs/cases.md)
    expire = "expire"  # taken by the system only, never through the API


class ClosureStage(enum.StrEnum):
    verification = "verification"
    examination = "examination"
    resolution = "resolution"


class Reason(enum.StrEnum):
    incomplete = "incomplete"
    not_reported_to_agency = "not_reported_to_agency"
    out_of_jurisdiction = "out_of_jurisdiction"
    in_court = "in_court"
    expired = "expired"
    duplicate = "duplicate"
    already_resolved = "already_resolved"
    resolved_by_agency = "resolved_by_agency"
    no_maladministration = "no_maladministration"
    examination_stopped = "examination_stopped"
    corrective_action_completed = "corrective_action_completed"
    recommendation_issued = "recommendation_issued"
    transferred = "transferred"
    withdrawn = "withdrawn"


class Resolution(enum.StrEnum):
    resolved = "resolved"
    explained = "explained"
    disputed = "disputed"


class Complexity(enum.StrEnum):
    simple = "simple"
    medium = "medium"
    heavy = "heavy"


S = Status
OPEN = frozenset(s for s in Status if s is not Status.closed)
EXAMINATION = EXAMINATION_STATUSES
REJECT_REASONS = frozenset({Reason.incomplete, Reason.not_reported_to_agency,
                            Reason.out_of_jurisdiction, Reason.in_court, Reason.expired,
                            Reason.duplicate, Reason.already_resolved})
EXAMINATION_CLOSE_REASONS = frozenset({Reason.resolved_by_agency, Reason.no_maladministration,
                                       Reason.examination_stopped})
RESOLUTION_CLOSE_REASONS = frozenset({Reason.corrective_action_completed,
                                      Reason.recommendation_issued})

STAFF = frozenset({Role.assistant})


@dataclass(frozen=True)
class Action:
    name: ActionName
    sources: frozenset[Status]
    # None: the case stays in the status it is in (a self-loop, not a step of the workflow).
    target: Status | None
    roles: frozenset[Role]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    # Allowed reasons by source status; a fixed reason is recorded without the caller giving it.
    reasons: dict[Status, frozenset[Reason]] | None = None
    fixed_reason: Reason | None = None
    default_due: timedelta | None = None
    # Allowed only while the case's reported agency has this code.
    while_agency: str | None = None
    # The reporter has supplied what the formal check found missing (DOMAIN.md: incomplete
    # formal requirements are completed, then the report is verified again).
    completes_formal: bool = False

    def target_from(self, source: Status) -> Status:
        return source if self.target is None else self.target


def _reasons(sources: frozenset[Status],
             allowed: frozenset[Reason]) -> dict[Status, frozenset[Reason]]:
    return dict.fromkeys(sources, allowed)


WORKFLOW: dict[ActionName, Action] = {a.name: a for a in (
    Action(ActionName.request_completion, frozenset({S.received}), S.awaiting_completion, STAFF,
           required=("note",), optional=("due_at",), default_due=timedelta(days=30)),
    Action(ActionName.complete, frozenset({S.awaiting_completion}), S.received, STAFF,
           required=("note",), completes_formal=True),
    Action(ActionName.register, frozenset({S.received}), S.registered, STAFF,
           optional=("complexity",)),
    Action(ActionName.reject, frozenset({S.received, S.awaiting_completion}), S.closed, STAFF,
           required=("reason",),
           reasons=_reasons(frozenset({S.received, S.awaiting_completion}), REJECT_REASONS)),
    Action(ActionName.transfer, frozenset({S.received, S.registered}), S.closed, STAFF,
           required=("transferred_to",), fixed_reason=Reason.transferred),
    Action(ActionName.start_examination, frozenset({S.registered}), S.in_examination, STAFF,
           required=("assignee",)),
    Action(ActionName.request_clarification, frozenset({S.in_examination, S.agency_responded}),
           S.awaiting_agency, STAFF, required=("note",), optional=("due_at",),
           default_due=timedelta(days=14)),
    Action(ActionName.respond, frozenset({S.awaiting_agency, S.corrective_action}),
           S.agency_responded, frozenset({Role.liaison, Role.assistant}),
           required=("note", "resolution")),
    Action(ActionName.find_maladministration, frozenset({S.in_examination, S.agency_responded}),
           S.corrective_action, STAFF, required=("maladministration",), optional=("due_at",),
           default_due=timedelta(days=30)),
    Action(ActionName.close, frozenset({S.in_examination, S.agency_responded,
                                        S.corrective_action}), S.closed, STAFF,
           required=("reason",),
           reasons={S.in_examination: EXAMINATION_CLOSE_REASONS,
                    S.agency_responded: EXAMINATION_CLOSE_REASONS,
                    # "and from corrective_action" (API.md): the general reasons plus two.
                    S.corrective_action: EXAMINATION_CLOSE_REASONS | RESOLUTION_CLOSE_REASONS}),
    Action(ActionName.withdraw, OPEN, S.closed, STAFF, fixed_reason=Reason.withdrawn),
    # A report filed without an agency (Open311, INTEGRATIONS.md) is given one during
    # verification; every other case keeps the agency its complaint named.
    Action(ActionName.assign_agency, frozenset({S.received, S.awaiting_completion,
                                                S.registered}), None, STAFF,
           required=("reported_agency",), optional=("note",),
           while_agency=UNASSIGNED_AGENCY_CODE),
    Action(ActionName.expire, frozenset({S.awaiting_completion}), S.closed, frozenset(),
           fixed_reason=Reason.incomplete),
)}

DETAIL_FIELDS = ("reason", "assignee", "due_at", "resolution", "maladministration",
                 "transferred_to", "complexity", "reported_agency")


def closure_stage(source: Status) -> ClosureStage:
    if source in EXAMINATION - {S.corrective_action}:
        return ClosureStage.examination
    if source is S.corrective_action:
        return ClosureStage.resolution
    return ClosureStage.verification


def allowed_actions(status: Status, role: Role, *, agency: str | None = None,
                    public_only: bool = True) -> list[str]:
    """Actions the given role may take now on a case of ``agency`` (admin: every action of
    the API)."""
    return [
        a.name.value for a in WORKFLOW.values()
        if status in a.sources
        and (role is Role.admin or role in a.roles)
        and (a.while_agency is None or a.while_agency == agency)
        and not (public_only and a.name is ActionName.expire)
    ]


PUBLIC_ACTIONS = [a for a in ActionName if a is not ActionName.expire]
