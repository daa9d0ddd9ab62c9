"""The email outbox: the composed message, its attempts and when it is next due.

The worker's outbox sender (activities.outbox) sends what the order's records wrote, so an
order never waits for the mail server.

Revision ID: 0002
Revises: 0001
Created: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sentemail") as table:
        table.add_column(sa.Column("message", sa.Text(), nullable=True))
        # Rows written before carry no message: the outbox leaves them as they are.
        table.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        table.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("refused", sa.String(), nullable=True))
    with op.batch_alter_table("sentemail") as table:
        table.alter_column("attempts", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("sentemail") as table:
        table.drop_column("refused")
        table.drop_column("next_attempt_at")
        table.drop_column("attempts")
        table.drop_column("message")
