"""customer value: counters for the cost to serve, referrals and wallet estimate; saved segments

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


def downgrade() -> None:
    op.drop_table("segments")
    with op.batch_alter_table("customer_features", schema=None) as batch_op:
        for name in ("wallet_estimate", "referrals_with_amount", "referral_amount", "referrals", "contacts"):
            batch_op.drop_column(name)
