"""campaigns: the offer catalogue, win-back campaigns and their members

Revision ID: 8d41c6b2e7f3
Revises: 5e2b7c9d1a40
Create Date: 2026-12-06 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "8d41c6b2e7f3"
down_revision: str | None = "5e2b7c9d1a40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_AT = servicekit.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", _S(length=36), nullable=False),
        sa.Column("code", _S(length=60), nullable=False),
        sa.Column("name", _S(length=200), nullable=False),
        sa.Column("kind", _S(length=30), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("cost_per_touch", sa.Float(), nullable=False),
        sa.Column("cost_per_redemption", sa.Float(), nullable=False),
        sa.Column("valid_days", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _AT(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", _S(length=36), nullable=False),
        sa.Column("name", _S(length=200), nullable=False),
        sa.Column("offer_id", _S(length=36), nullable=False),
        sa.Column("channel", _S(length=20), nullable=False),
        sa.Column("template", _S(length=100), nullable=False),
        sa.Column("segment_id", _S(length=60), nullable=False),
        sa.Column("member_tiers", sa.JSON(), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("starts_at", _AT(timezone=True), nullable=False),
        sa.Column("measure_days", sa.Float(), nullable=False),
        sa.Column("status", _S(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("treated", sa.Integer(), nullable=False),
        sa.Column("holdout", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Integer(), nullable=False),
        sa.Column("blocked_by", sa.JSON(), nullable=False),
        sa.Column("launched_at", _AT(timezone=True), nullable=True),
        sa.Column("created_at", _AT(timezone=True), nullable=False),
        sa.Column("updated_at", _AT(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaigns_status_starts", "campaigns", ["status", "starts_at"], unique=False)
    op.create_table(
        "campaign_members",
        sa.Column("id", _S(length=36), nullable=False),
        sa.Column("campaign_id", _S(length=36), nullable=False),
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("arm", _S(length=10), nullable=False),
        sa.Column("verdict", _S(length=30), nullable=True),
        sa.Column("touch_id", _S(length=36), nullable=True),
        sa.Column("enrolled_at", _AT(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_members_customer"),
    )
    op.create_index("ix_campaign_members_customer", "campaign_members", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_campaign_members_customer", table_name="campaign_members")
    op.drop_table("campaign_members")
    op.drop_index("ix_campaigns_status_starts", table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_table("offers")
