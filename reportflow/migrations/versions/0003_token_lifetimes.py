"""Token lifetimes: when a token expires, was revoked, was last used.

A NULL `expires_at` (a token minted before) means created_at plus its kind's
default lifetime (USER_TOKEN_DAYS, ADMIN_TOKEN_DAYS).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("expires_at", "revoked_at", "last_used_at")


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
