"""consent records, contact profiles and the consent audit trail

Revision ID: 5d2e7a1c4b90
Revises: 8c41d2a7e5b3
Create Date: 2026-12-06 18:20:11.250781

consent.changed carries the state; the tables hold codes and timestamps (docs/consent.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types


revision: str = "5d2e7a1c4b90"
down_revision: str | None = "8c41d2a7e5b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_import_keys",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("consent_import_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_import_keys_created_at"), ["created_at"], unique=False)

    op.create_table(
        "consent_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=True),
        sa.Column("previous_status", sa.String(length=10), nullable=True),
        sa.Column("legal_basis", sa.String(length=30), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recorded_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_changes_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "consents",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("legal_basis", sa.String(length=30), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("customer_id", "channel"),
    )
    op.create_table(
        "contact_profiles",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("cap_max_touches", sa.Integer(), nullable=True),
        sa.Column("cap_window_days", sa.Float(), nullable=True),
        sa.Column("quiet_start", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("quiet_end", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", servicekit.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("contact_profiles")
    op.drop_table("consents")
    with op.batch_alter_table("consent_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_changes_customer_id"))

    op.drop_table("consent_changes")
    with op.batch_alter_table("consent_import_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_import_keys_created_at"))

    op.drop_table("consent_import_keys")
