"""The nightly reconciliation: its runs and discrepancies, and each stock row's opening balance.

Revision ID: 0004
Revises: 0003
Created: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = sa.DateTime(timezone=True)

# An existing row's opening balance is what its ledgers leave unexplained: from here on the
# reconciliation checks every change against them.
OPENING_BALANCE = """
UPDATE stock SET seeded = on_hand
  - COALESCE((SELECT SUM(r.quantity) FROM stockreceipt r
              WHERE r.sku = stock.sku AND r.warehouse = stock.warehouse), 0)
  + COALESCE((SELECT SUM(h.quantity) FROM stockreservation h
              WHERE h.sku = stock.sku AND h.warehouse = stock.warehouse
                AND h.status = 'committed'), 0)
  - COALESCE((SELECT SUM(x.quantity) FROM restock x
              WHERE x.sku = stock.sku AND x.warehouse = stock.warehouse), 0)
"""


def upgrade() -> None:
    with op.batch_alter_table("stock") as batch:
        batch.add_column(sa.Column("seeded", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("stock") as batch:
        batch.alter_column("seeded", server_default=None)
    op.execute(OPENING_BALANCE)
    op.create_table(
        "reconciliationrun",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=True),
        sa.Column("checked", sa.JSON(), nullable=False),
        sa.Column("found", sa.JSON(), nullable=False),
    )
    op.create_index("ix_reconciliationrun_status", "reconciliationrun", ["status"])
    op.create_index("ix_reconciliationrun_started_at", "reconciliationrun", ["started_at"])
    op.create_table(
        "reconciliationdiscrepancy",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.UniqueConstraint("run_id", "kind", "subject"),
    )
    op.create_index("ix_reconciliationdiscrepancy_run_id", "reconciliationdiscrepancy", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_reconciliationdiscrepancy_run_id", table_name="reconciliationdiscrepancy")
    op.drop_table("reconciliationdiscrepancy")
    op.drop_index("ix_reconciliationrun_started_at", table_name="reconciliationrun")
    op.drop_index("ix_reconciliationrun_status", table_name="reconciliationrun")
    op.drop_table("reconciliationrun")
    with op.batch_alter_table("stock") as batch:
        batch.drop_column("seeded")
