"""complaints by opening time: a partial index for the complaint reports' period

Revision ID: 5e7a3c1b9d28
Revises: 3f8b1d6e2c57
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e7a3c1b9d28"
down_revision: str | None = "3f8b1d6e2c57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_interactions_complaints_opened",
        "interactions",
        ["occurred_at"],
        unique=False,
        postgresql_where=sa.text("type = 'complaint'"),
        sqlite_where=sa.text("type = 'complaint'"),
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_complaints_opened", table_name="interactions")
