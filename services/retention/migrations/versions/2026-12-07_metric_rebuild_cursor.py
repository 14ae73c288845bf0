"""retention metrics' read model: a rebuild for a new look-back proceeds in chunks, its progress kept

Revision ID: 4c7a2e9d1b36
Revises: 3b8e5d1f7a29
Create Date: 2026-12-07 13:00:00.000000

rebuilt_after: while a rebuild is under way, the last customer id rebuilt so far ("" before the first
chunk); NULL when the rows are complete for lookback_seconds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "4c7a2e9d1b36"
down_revision: str | None = "3b8e5d1f7a29"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "metric_totals_state", sa.Column("rebuilt_after", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("metric_totals_state", "rebuilt_after")
