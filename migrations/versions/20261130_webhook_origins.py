"""Each webhook subscription stores the origin its URL reaches, ``scheme://host:port``.

The dispatcher shares its slots out by origin. It used to cut the origin from each pending
delivery's URL in the due-deliveries query, case-folded but otherwise as written, so
``https://h``, ``https://h:443`` and ``https://h.`` were three servers with three shares. The
origin is now computed once, when the URL is stored (``intake_api.webhooks.targets.origin_of``:
lower-cased IDNA host without the trailing dot, the port always written). The backfill below
is a copy of that function as it stands today, so that this step keeps doing what it did
whatever the code becomes.
"""

from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "20261130_webhook_origins"
down_revision = "20261130_bi_no_temporary"

DEFAULT_PORTS = {"https": 443, "http": 80}
BATCH = 1000


def origin_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        scheme, hostname = parts.scheme.lower(), parts.hostname
        port = parts.port or DEFAULT_PORTS.get(scheme)
        if not hostname or port is None:
            raise ValueError("no host or no port")
        host = hostname.rstrip(".")
        host = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        return url.lower()
    return f"{scheme}://{host}:{port}"


def upgrade() -> None:
    op.add_column("webhook_subscriptions", sa.Column("origin", sa.Text(), nullable=True),
                  schema="intake")
    connection = op.get_bind()
    subscriptions = sa.table("webhook_subscriptions", sa.column("id"), sa.column("url"),
                             sa.column("origin"), schema="intake")
    last = None
    while True:
        query = sa.select(subscriptions.c.id, subscriptions.c.url).order_by(
            subscriptions.c.id).limit(BATCH)
        if last is not None:
            query = query.where(subscriptions.c.id > last)
        rows = connection.execute(query).all()
        if not rows:
            break
        connection.execute(
            subscriptions.update().where(subscriptions.c.id == sa.bindparam("row_id"))
            .values(origin=sa.bindparam("row_origin")),
            [{"row_id": row.id, "row_origin": origin_of(row.url)} for row in rows])
        last = rows[-1].id
    op.alter_column("webhook_subscriptions", "origin", nullable=False, schema="intake")


def downgrade() -> None:
    op.drop_column("webhook_subscriptions", "origin", schema="intake")
