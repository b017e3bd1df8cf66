"""Delivery claims: the email ledger row is written before the send, with a lease.

Rows from before were written after a server accepted the message: they are
`sent`, with no claim left to honour.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("claim_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE deliveries SET status = 'sent', claim_id = '', claimed_until = sent_at")
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("status", existing_type=sa.String(16), nullable=False)
        batch.alter_column("claim_id", existing_type=sa.String(64), nullable=False)
        batch.alter_column(
            "claimed_until", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch.alter_column(
            "sent_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=True,
            server_default=None,
        )


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE status <> 'sent'")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claim_id")
        batch.drop_column("status")
        batch.alter_column(
            "sent_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        )
