"""scored value tier: each customer's tier from score.updated (crm.scoring.v1), the reports' tier filter

Revision ID: 9b6d3f1a2c57
Revises: 7a3c9e2f1d64
Create Date: 2026-12-07 11:00:00.000000

Customers from before hold no scored tier until their next score.updated arrives; an account-managed
tier attribute (tier or value_tier) counts in the reports from the start.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.types

revision: str = "9b6d3f1a2c57"
down_revision: str | None = "7a3c9e2f1d64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scored_tier", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("scored_tier_at", servicekit.types.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("scored_tier_at")
        batch_op.drop_column("scored_tier")
