"""retention's latest score of each customer keeps the customer's own latest event

Revision ID: 6d1f3b8a2e47
Revises: 4c7a2e9d1b36
Create Date: 2026-12-08 01:00:00.000000

last_event_at: the customer's own latest interaction, complaint or survey as scoring knew it (score.updated
carries it); NULL until a score that carries it arrives. POST /alerts/evaluate leaves a customer whose own
latest event lies beyond the alert history horizon to win-back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6d1f3b8a2e47"
down_revision: str | None = "4c7a2e9d1b36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer_scores", sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("customer_scores", "last_event_at")
