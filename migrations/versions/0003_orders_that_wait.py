"""Orders that wait: risk review, the backorder queue and stock receipts, expiring authorizations.

Revision ID: 0003
Revises: 0002
Created: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = sa.DateTime(timezone=True)
INDEXES = {
    "orderhold": ["code", "placed_at"],
    "backorder": ["placed_at", "status"],
}


def _flag(table: str, column: str) -> None:
    # Existing rows get false; the default is then dropped, as the models declare none.
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table(table) as batch:
        batch.alter_column(column, server_default=None)


def upgrade() -> None:
    _flag("product", "backorderable")
    _flag("customer", "review_required")
    with op.batch_alter_table("paymenttransaction") as batch:
        batch.add_column(sa.Column("expires_at", MOMENT, nullable=True))
    with op.batch_alter_table("orderrecord") as batch:
        batch.add_column(
            sa.Column("open_holds", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("orderrecord") as batch:
        batch.alter_column("open_holds", server_default=None)
    op.create_table(
        "orderhold",
        sa.Column("order_id", sa.String(), primary_key=True),
        sa.Column("hold_id", sa.String(64), primary_key=True),
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("placed_at", MOMENT, nullable=False),
        sa.Column("resolved_at", MOMENT, nullable=True),
    )
    op.create_table(
        "backorder",
        sa.Column("order_id", sa.String(), primary_key=True),
        sa.Column("placed_at", MOMENT, nullable=False),
        sa.Column("wanted", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("receipt_id", sa.String(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
    )
    op.create_table(
        "stockreceipt",
        sa.Column("receipt_id", sa.String(200), primary_key=True),
        sa.Column("sku", sa.String(), sa.ForeignKey("product.sku"), nullable=False),
        sa.Column("warehouse", sa.String(), sa.ForeignKey("warehouse.code"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("received_by", sa.String(), nullable=True),
        sa.Column("filled", sa.JSON(), nullable=False),
        sa.Column("received_at", MOMENT, nullable=False),
    )
    for table, columns in INDEXES.items():
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table in ("stockreceipt", "backorder", "orderhold"):
        op.drop_table(table)
    with op.batch_alter_table("orderrecord") as batch:
        batch.drop_column("open_holds")
    with op.batch_alter_table("paymenttransaction") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("review_required")
    with op.batch_alter_table("product") as batch:
        batch.drop_column("backorderable")
