"""Intake without a queue of one: per-year tracking sequences, outbox positions given after commit.

- ``intake.tracking_counters`` (one hot row per year, locked until each intake commit) becomes one
  sequence per year, ``intake.tracking_<year>``, made on first use by
  ``intake.next_tracking_number(year)``. ``nextval`` takes no lock that lasts to the commit.
- Every outbox gets ``id`` (the order rows were written in) as its key; ``position`` (the log
  order database-log consumers follow) is given after commit by ``shared.outbox.sequence``
  instead of under an advisory lock held by every writer until its commit.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

EVENT_SCHEMAS = ("cases", "intake", "metrics")

NEXT_TRACKING_NUMBER = """
CREATE FUNCTION intake.next_tracking_number(year integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('intake.%I', 'tracking_' || year);
BEGIN
    IF to_regclass(name) IS NULL THEN
        -- First number of a year: the creators of one year's sequence take turns.
        PERFORM pg_advisory_xact_lock(hashtext(name));
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS bigint', name);
    END IF;
    RETURN nextval(name);
END
$$
"""


def upgrade() -> None:
    op.execute(NEXT_TRACKING_NUMBER)
    op.execute("""
        DO $$
        DECLARE counter record;
        BEGIN
            FOR counter IN SELECT year, last FROM intake.tracking_counters LOOP
                EXECUTE format('CREATE SEQUENCE intake.%I AS bigint', 'tracking_' || counter.year);
                PERFORM setval(format('intake.%I', 'tracking_' || counter.year), counter.last);
            END LOOP;
        END $$
    """)
    op.drop_table("tracking_counters", schema="intake")
    for schema in EVENT_SCHEMAS:
        op.drop_index(f"ix_{schema}_outbox_unpublished", table_name="outbox", schema=schema)
        op.drop_constraint("pk_outbox", "outbox", schema=schema, type_="primary")
        op.execute(f"ALTER TABLE {schema}.outbox ALTER COLUMN position DROP IDENTITY")
        op.alter_column("outbox", "position", nullable=True, schema=schema)
        op.add_column("outbox", sa.Column("id", sa.BigInteger(), sa.Identity(always=True),
                                          nullable=False), schema=schema)
        op.create_primary_key("pk_outbox", "outbox", ["id"], schema=schema)
        op.create_unique_constraint("uq_outbox_position", "outbox", ["position"], schema=schema)
        op.create_index(f"ix_{schema}_outbox_unpublished", "outbox", ["id"], schema=schema,
                        postgresql_where=sa.text("published_at IS NULL"))
        op.create_index(f"ix_{schema}_outbox_unsequenced", "outbox", ["id"], schema=schema,
                        postgresql_where=sa.text("position IS NULL"))


def downgrade() -> None:
    for schema in EVENT_SCHEMAS:
        op.drop_index(f"ix_{schema}_outbox_unsequenced", table_name="outbox", schema=schema)
        op.drop_index(f"ix_{schema}_outbox_unpublished", table_name="outbox", schema=schema)
        op.drop_constraint("uq_outbox_position", "outbox", schema=schema, type_="unique")
        op.drop_constraint("pk_outbox", "outbox", schema=schema, type_="primary")
        # Rows not given a position yet take theirs in the order they were written.
        op.execute(f"""
            UPDATE {schema}.outbox o SET position = numbered.position
            FROM (SELECT id, coalesce((SELECT max(position) FROM {schema}.outbox), 0)
                             + row_number() OVER (ORDER BY id) AS position
                  FROM {schema}.outbox WHERE position IS NULL) numbered
            WHERE o.id = numbered.id
        """)
        op.drop_column("outbox", "id", schema=schema)
        op.alter_column("outbox", "position", nullable=False, schema=schema)
        op.execute(f"ALTER TABLE {schema}.outbox ALTER COLUMN position ADD GENERATED ALWAYS "
                   "AS IDENTITY")
        op.execute(f"SELECT setval(pg_get_serial_sequence('{schema}.outbox', 'position'), "
                   f"coalesce((SELECT max(position) FROM {schema}.outbox), 0) + 1, false)")
        op.create_primary_key("pk_outbox", "outbox", ["position"], schema=schema)
        op.create_index(f"ix_{schema}_outbox_unpublished", "outbox", ["position"],
                        schema=schema, postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "tracking_counters",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_tracking_counters")),
        schema="intake",
    )
    op.execute("""
        DO $$
        DECLARE sequence record;
        BEGIN
            FOR sequence IN SELECT sequencename, last_value FROM pg_sequences
                            WHERE schemaname = 'intake' AND sequencename ~ '^tracking_[0-9]+$'
            LOOP
                INSERT INTO intake.tracking_counters (year, last) VALUES (
                    substring(sequence.sequencename FROM 10)::integer,
                    coalesce(sequence.last_value, 0));
                EXECUTE format('DROP SEQUENCE intake.%I', sequence.sequencename);
            END LOOP;
        END $$
    """)
    op.execute("DROP FUNCTION intake.next_tracking_number(integer)")
