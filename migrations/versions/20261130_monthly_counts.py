"""The monthly figures by group from the daily counts, not from the fact rows.

New measures in ``metrics.daily_counts`` and ``metrics.period_counts`` (see
``metrics_worker.counts``): ``contacts_channel``, ``contacts_substance``, ``contacts_agency``
(contacts of any kind), ``registered_<grouping>`` and ``closed_<grouping>`` (register and close
steps by the kind, channel, substance and agency of their case), filled by day, month and year
from the fact rows already there (``aduan metrics rebuild`` fills them from the log too).
"""

from alembic import op

revision = "20261130_monthly_counts"
down_revision = "20261130_webhook_origins"

GROUPINGS = ("kind", "channel", "substance", "agency")
MEASURES = ("contacts_channel", "contacts_substance", "contacts_agency",
            *(f"registered_{g}" for g in GROUPINGS), *(f"closed_{g}" for g in GROUPINGS))


def _keyed(measures: dict[str, str], alias: str) -> tuple[str, str]:
    keys = " ".join(f"WHEN '{m}' THEN {alias}.{g}" for g, m in measures.items())
    values = ", ".join(f"('{m}')" for m in measures.values())
    return f"m.measure, CASE m.measure {keys} END AS key", f"(VALUES {values}) AS m (measure)"


_CONTACTS = {g: f"contacts_{g}" for g in GROUPINGS[1:]}
_REGISTERED = {g: f"registered_{g}" for g in GROUPINGS}
_CLOSED = {g: f"closed_{g}" for g in GROUPINGS}
# metrics_worker.counts.MONTHLY_INCREMENTS as of this revision.
INCREMENTS = f"""
  SELECT a.received_at AS at, {_keyed(_CONTACTS, "a")[0]}
  FROM metrics.contacts a CROSS JOIN {_keyed(_CONTACTS, "a")[1]}
  UNION ALL
  SELECT t.at, {_keyed(_REGISTERED, "c")[0]}
  FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
  CROSS JOIN {_keyed(_REGISTERED, "c")[1]} WHERE t.action = 'register'
  UNION ALL
  SELECT t.at, {_keyed(_CLOSED, "c")[0]}
  FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
  CROSS JOIN {_keyed(_CLOSED, "c")[1]} WHERE t.to_status = 'closed'"""


def upgrade() -> None:
    op.execute(f"""
        INSERT INTO metrics.daily_counts (day, measure, key, n)
        SELECT (i.at AT TIME ZONE metrics.office_timezone())::date, i.measure, i.key, count(*)
        FROM ({INCREMENTS}) AS i GROUP BY 1, 2, 3""")
    op.execute(f"""
        INSERT INTO metrics.period_counts (grain, start, measure, key, n)
        SELECT g.grain, date_trunc(g.unit, d.day)::date, d.measure, d.key, sum(d.n)
        FROM metrics.daily_counts d
        CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        WHERE d.measure IN {MEASURES}
        GROUP BY 1, 2, 3, 4""")


def downgrade() -> None:
    for table in ("period_counts", "daily_counts"):
        op.execute(f"DELETE FROM metrics.{table} WHERE measure IN {MEASURES}")
