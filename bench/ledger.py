"""After a run, straight from the stack's own database: did any order take effect twice?

Counted in the card processor's ledger and the warehouse's reservations, which is where a
doubled order would show: a second approved authorization of one order, a second capture of
one parcel, a second committed reservation of one line.
"""

from sqlalchemy import create_engine, text

CHECKS = {
    "orders_authorized_twice": """
        SELECT COUNT(*) FROM (SELECT order_id FROM paymenttransaction
          WHERE kind = 'authorize' AND status = 'approved'
          GROUP BY order_id HAVING COUNT(*) > 1) AS doubled""",
    "parcels_captured_twice": """
        SELECT COUNT(*) FROM (SELECT order_id, shipment_id FROM paymenttransaction
          WHERE kind = 'capture' AND status = 'approved'
          GROUP BY order_id, shipment_id HAVING COUNT(*) > 1) AS doubled""",
    "lines_committed_twice": """
        SELECT COUNT(*) FROM (SELECT order_id, sku, warehouse FROM stockreservation
          WHERE status = 'committed'
          GROUP BY order_id, sku, warehouse HAVING COUNT(*) > 1) AS doubled""",
}


def double_effects(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                name: int(connection.execute(text(sql)).scalar_one())
                for name, sql in CHECKS.items()
            }
    finally:
        engine.dispose()
