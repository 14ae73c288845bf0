"""customer value: counters for the cost to serve, referrals and wallet estimate; tier history; saved segments

Revision ID: 3f8b6d2a7c41
Revises: 7a4e2c9b1d05
Create Date: 2026-12-06 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.types

revision: str = "3f8b6d2a7c41"
down_revision: str | None = "7a4e2c9b1d05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The tier history so far, from the score history: each customer's first score and every score whose tier
# differs from the one before it (NULL-safe on both databases).
BACKFILL_TIER_CHANGES = """
INSERT INTO tier_changes (customer_id, tier, as_of)
SELECT customer_id, value_tier, as_of FROM (
    SELECT id, customer_id, value_tier, as_of,
           lag(value_tier) OVER (PARTITION BY customer_id ORDER BY id) AS before,
           row_number() OVER (PARTITION BY customer_id ORDER BY id) AS n
    FROM scores
) s
WHERE n = 1 OR (before IS NULL) <> (value_tier IS NULL) OR before <> value_tier
ORDER BY id
"""


def upgrade() -> None:
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contacts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("referrals", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("referral_amount", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("referrals_with_amount", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("wallet_estimate", sa.Float(), nullable=True))
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=True),
        sa.Column("as_of", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tier_changes_customer_id_id", "tier_changes", ["customer_id", "id"], unique=False)
    op.create_index(op.f("ix_tier_changes_as_of"), "tier_changes", ["as_of"], unique=False)
    op.execute(BACKFILL_TIER_CHANGES)


def downgrade() -> None:
    op.drop_table("tier_changes")
    op.drop_table("segments")
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        for name in ("wallet_estimate", "referrals_with_amount", "referral_amount", "referrals", "contacts"):
            batch_op.drop_column(name)
