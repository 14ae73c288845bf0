"""churn reasons: the full taxonomy; the retired code service_quality becomes poor_service

Revision ID: 8c41d2a7e5b3
Revises: 3b8e5d1c9f27
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c41d2a7e5b3"
down_revision: str | None = "3b8e5d1c9f27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Renamed codes (services.customer.status.lifecycle.LEGACY_REASONS); the API still accepts the old one.
RENAMED = {"service_quality": "poor_service"}


def upgrade() -> None:
    for old, new in RENAMED.items():
        for table, column in (("customers", "churn_reason"), ("status_changes", "reason")):
            op.execute(
                sa.text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old").bindparams(old=old, new=new)
            )


def downgrade() -> None:
    # poor_service did not exist before; it maps back to the one code that covered it.
    for old, new in RENAMED.items():
        for table, column in (("customers", "churn_reason"), ("status_changes", "reason")):
            op.execute(
                sa.text(f"UPDATE {table} SET {column} = :old WHERE {column} = :new").bindparams(old=old, new=new)
            )
