"""The whole schema as ordermill was before its first release.

ordermill has not been released, so this one migration creates today's tables as they are;
every later change to models/tables.py is a migration of its own, after this one.

Revision ID: 0001
Revises:
Created: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = sa.DateTime(timezone=True)
# Tables with their indexed columns (non-unique indexes, named as SQLModel names them).
INDEXES = {
    "customer": ["owner"],
    "stockreservation": ["order_id"],
    "paymenttransaction": ["order_id", "authorization_id"],
    "shipment": ["order_id"],
    "shipmentevent": ["tracking_number"],
    "sentemail": ["order_id"],
    "orderrecord": ["customer_id", "placed_by", "status", "placed_at"],
    "orderevent": ["order_id"],
    "idempotencykey": ["created_at"],
    "carrierwebhookreceipt": ["order_id"],
    "restock": ["order_id"],
}


def upgrade() -> None:
    # ---- the catalog, warehouses and stock
    op.create_table(
        "product",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("digital", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "warehouse",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False, unique=True),
    )
    op.create_table(
        "stock",
        sa.Column("sku", sa.String(), sa.ForeignKey("product.sku"), primary_key=True),
        sa.Column("warehouse", sa.String(), sa.ForeignKey("warehouse.code"), primary_key=True),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
    )
    op.create_table(
        "stockreservation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("sku", sa.String(), sa.ForeignKey("product.sku"), nullable=False),
        sa.Column("warehouse", sa.String(), sa.ForeignKey("warehouse.code"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.UniqueConstraint("order_id", "sku", "warehouse"),
    )
    op.create_table(
        "restock",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("return_id", sa.String(), nullable=False),
        sa.Column("sku", sa.String(), sa.ForeignKey("product.sku"), nullable=False),
        sa.Column("warehouse", sa.String(), sa.ForeignKey("warehouse.code"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.UniqueConstraint("order_id", "return_id", "sku", "warehouse"),
    )

    # ---- customers
    op.create_table(
        "customer",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("address_line1", sa.String(), nullable=True),
        sa.Column("address_line2", sa.String(), nullable=True),
        sa.Column("city", sa.String(), nullable=True),
        sa.Column("postal_code", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
    )

    # ---- the simulated outside systems: card processor, carrier, mail
    op.create_table(
        "paymenttransaction",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("idempotency_key", sa.String(), nullable=False, unique=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("authorization_id", sa.String(), nullable=True),
        sa.Column("token", sa.String(), nullable=True),
        sa.Column("shipment_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
    )
    op.create_table(
        "shipment",
        sa.Column("tracking_number", sa.String(), primary_key=True),
        sa.Column("idempotency_key", sa.String(), nullable=False, unique=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("carrier", sa.String(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
    )
    op.create_table(
        "shipmentevent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tracking_number", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("occurred_at", MOMENT, nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.UniqueConstraint("tracking_number", "event_id"),
    )
    op.create_table(
        "sentemail",
        sa.Column("idempotency_key", sa.String(), primary_key=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("recorded_at", MOMENT, nullable=False),
        sa.Column("sent_at", MOMENT, nullable=True),
    )
    op.create_table(
        "revokeddownload",
        sa.Column("order_id", sa.String(), primary_key=True),
        sa.Column("sku", sa.String(), primary_key=True),
        sa.Column("revoked_at", MOMENT, nullable=False),
    )

    # ---- the read model
    op.create_table(
        "orderrecord",
        sa.Column("order_id", sa.String(), primary_key=True),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("placed_by", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason_code", sa.String(), nullable=True),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("captured", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("tracking_numbers", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("placed_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.Column("view_json", sa.Text(), nullable=False),
    )
    op.create_table(
        "orderevent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", MOMENT, nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.UniqueConstraint("order_id", "seq"),
    )

    # ---- the API's own bookkeeping
    op.create_table(
        "idempotencykey",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
    )
    op.create_table(
        "carrierwebhookreceipt",
        sa.Column("carrier", sa.String(100), primary_key=True),
        sa.Column("tracking_number", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("occurred_at", MOMENT, nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("received_at", MOMENT, nullable=False),
    )

    for table, columns in INDEXES.items():
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table in (
        "carrierwebhookreceipt",
        "idempotencykey",
        "orderevent",
        "orderrecord",
        "revokeddownload",
        "sentemail",
        "shipmentevent",
        "shipment",
        "paymenttransaction",
        "customer",
        "restock",
        "stockreservation",
        "stock",
        "warehouse",
        "product",
    ):
        op.drop_table(table)
