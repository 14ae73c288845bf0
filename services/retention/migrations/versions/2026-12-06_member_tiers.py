"""member tiers: retention's replica of loyalty.tier_changed, for campaigns that target member tiers

Revision ID: 6a3d8e1f4b27
Revises: 2b9f5e7a3c18
Create Date: 2026-12-06 22:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "6a3d8e1f4b27"
down_revision: str | None = "2b9f5e7a3c18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_tiers",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("benefits", sa.JSON(), nullable=False),
        sa.Column("changed_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_index("ix_member_tiers_tier", "member_tiers", ["tier"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_member_tiers_tier", table_name="member_tiers")
    op.drop_table("member_tiers")
