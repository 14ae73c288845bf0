"""sequences: playbooks' per-tier sequences and the enrolments (timers) the engine runs

Revision ID: 5e2b7c9d1a40
Revises: 5c2e7a1f9d43
Create Date: 2026-12-06 19:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "5e2b7c9d1a40"
down_revision: str | None = "5c2e7a1f9d43"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects: a batch copy would drop the catalog_version triggers on SQLite.
    op.add_column("playbooks", sa.Column("sequences", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "enrolments",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("alert_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("stop_reason", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("waiting_since", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("wait_began", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_task_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("due_at", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("steps_run", sa.Integer(), nullable=False),
        sa.Column("trail", sa.JSON(), nullable=False),
        sa.Column("active_slot", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("started_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", servicekit.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_slot", name="uq_enrolments_active_slot"),
    )
    op.create_index("ix_enrolments_due", "enrolments", ["due_at"], unique=False)
    op.create_index("ix_enrolments_customer", "enrolments", ["customer_id", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_enrolments_customer", table_name="enrolments")
    op.drop_index("ix_enrolments_due", table_name="enrolments")
    op.drop_table("enrolments")
    op.execute("ALTER TABLE playbooks DROP COLUMN sequences")
