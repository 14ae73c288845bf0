"""a follow-up's survey question (nps or csat) per schedule, trigger and pending follow-up

Revision ID: 2f6d8a1c4e97
Revises: 9b4c2e7a1d53
Create Date: 2026-12-07 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "2f6d8a1c4e97"
down_revision: str | None = "9b4c2e7a1d53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("followup_schedules", "followup_triggers", "followup_pending")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("survey", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "survey")
