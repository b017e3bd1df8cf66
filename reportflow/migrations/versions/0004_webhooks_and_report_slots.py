"""Webhook endpoints, and the per-user slots of MAX_RUNNING_REPORTS_PER_USER.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhooks_user_id", "webhooks", ["user_id"])
    op.create_table(
        "report_slots",
        sa.Column("run_key", sa.String(300), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("report_id", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_report_slots_user_id", "report_slots", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_report_slots_user_id", "report_slots")
    op.drop_table("report_slots")
    op.drop_index("ix_webhooks_user_id", "webhooks")
    op.drop_table("webhooks")
