"""bulk replies: the report of a bulk request, kept under its Idempotency-Key

Revision ID: 5e2f7a91c4d8
Revises: 5d2e7a1c4b90
Create Date: 2026-12-06 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "5e2f7a91c4d8"
down_revision: str | None = "5d2e7a1c4b90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_replies",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("route", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_bulk_replies_created_at", "bulk_replies", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_bulk_replies_created_at", table_name="bulk_replies")
    op.drop_table("bulk_replies")
