"""one running job per kind: a partial unique index on jobs(kind) where status = 'running'

Revision ID: 7a4e2c9b1d05
Revises: 5c1d7a2e9f30
Create Date: 2026-12-04 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a4e2c9b1d05"
down_revision: str | None = "5c1d7a2e9f30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    # Jobs that ran side by side before the limit: all but the newest of each kind are marked failed
    # (their worker's result still lands; the row just no longer blocks the index).
    op.execute(
        "UPDATE jobs SET status = 'failed', message = 'stopped: one job per kind runs at a time; run it again' "
        "WHERE status = 'running' AND id NOT IN (SELECT MAX(id) FROM jobs WHERE status = 'running' GROUP BY kind)"
    )
    op.create_index(
        "uq_jobs_running_kind", "jobs", ["kind"], unique=True, sqlite_where=RUNNING, postgresql_where=RUNNING
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_running_kind", table_name="jobs")
