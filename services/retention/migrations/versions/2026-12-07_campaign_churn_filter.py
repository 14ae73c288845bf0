"""a campaign's churn conditions (reasons, when, value lost), applied to its audience at launch

Revision ID: 9b4c2e7a1d53
Revises: 5e1d7c3a9b20
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b4c2e7a1d53"
down_revision: str | None = "5e1d7c3a9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("churn", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("campaigns", "churn")
