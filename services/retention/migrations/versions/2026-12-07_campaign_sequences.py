"""campaigns as sequences (a campaign's sequence, an enrolment's offer context, touches sent per member) and
exact offer redemptions (orders carrying an offer's code)

Revision ID: 8e3a1b6d2f90
Revises: 7d2f9a4c1e85
Create Date: 2026-12-07 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "8e3a1b6d2f90"
down_revision: str | None = "7d2f9a4c1e85"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("sequence", sa.JSON(), nullable=True))
    op.add_column("enrolments", sa.Column("context", sa.JSON(), nullable=True))
    op.add_column("campaign_members", sa.Column("touches", sa.Integer(), nullable=False, server_default="0"))
    # a one-touch campaign's reached member was sent exactly one touch
    op.execute("UPDATE campaign_members SET touches = 1 WHERE verdict = 'allowed'")
    op.create_table(
        "offer_redemptions",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("offer_code", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_offer_redemptions_customer_code", "offer_redemptions", ["customer_id", "offer_code", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_offer_redemptions_customer_code", table_name="offer_redemptions")
    op.drop_table("offer_redemptions")
    op.drop_column("campaign_members", "touches")
    op.drop_column("enrolments", "context")
    op.drop_column("campaigns", "sequence")
