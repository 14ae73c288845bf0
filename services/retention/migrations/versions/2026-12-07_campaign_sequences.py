"""campaigns as sequences: a campaign's sequence, an enrolment's offer context, touches sent per member

Revision ID: 8e3a1b6d2f90
Revises: 7d2f9a4c1e85
Create Date: 2026-12-07 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_column("campaign_members", "touches")
    op.drop_column("enrolments", "context")
    op.drop_column("campaigns", "sequence")
