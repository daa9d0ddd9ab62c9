"""Database engine, schema and the demo bookstore.

Only processes (worker, API, tests) call these; nothing a workflow imports does.
"""

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, text
from sqlmodel import Session, SQLModel, create_engine

from models.tables import Customer, Product, Stock, Warehouse


def make_engine(url: str) -> Engine:
    """One engine per process. SQLite gets WAL and a busy timeout so worker and API share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN (below) take the write lock up front: two racing writers
            # then queue on busy_timeout instead of deadlocking on a lock upgrade.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_READ_ONLY = "ordermill_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, for work that only reads.

    On SQLite its transactions begin DEFERRED: in WAL mode a reader then neither waits for the
    write lock nor holds it, so reading an order never queues behind the worker's writes.
    """
    return engine.execution_options(**{_READ_ONLY: True})


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)


# Columns added to existing tables since their first release: create_all adds no column to a
# table that already exists, so a database from an earlier version gets them here.
_ADDED_COLUMNS = {"orderrecord": {"placed_by": "VARCHAR"}}


def _add_missing_columns(engine: Engine) -> None:
    with engine.begin() as connection:
        inspector = inspect(connection)
        for table, columns in _ADDED_COLUMNS.items():
            present = {column["name"] for column in inspector.get_columns(table)}
            for name, sql_type in columns.items():
                if name not in present:
                    connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


DEMO_CUSTOMERS = [
    Customer(
        id="cus_ada",
        name="Ada Lovelace",
        email="ada@example.com",
        address_line1="12 Analytical Way",
        city="Springfield",
        postal_code="62701",
        country="US",
    ),
    Customer(
        id="cus_grace",
        name="Grace Hopper",
        email="grace@example.com",
        address_line1="1 Compiler Court",
        city="Arlington",
        postal_code="22201",
        country="US",
    ),
    Customer(
        id="cus_blocked",
        name="Mallory Blocked",
        email="mallory@example.com",
        address_line1="13 Chargeback Lane",
        city="Springfield",
        postal_code="62702",
        country="US",
        blocked=True,
    ),
]

DEMO_WAREHOUSES = [
    Warehouse(code="WH-EAST", name="East coast fulfilment centre", rank=1),
    Warehouse(code="WH-WEST", name="West coast fulfilment centre", rank=2),
]

DEMO_PRODUCTS = [
    Product(sku="BOOK-DUNE", name="Dune (paperback)", price=1899),
    Product(sku="BOOK-NEUROMANCER", name="Neuromancer (paperback)", price=1599),
    Product(sku="BOOK-EARTHSEA", name="A Wizard of Earthsea (paperback)", price=1299),
    Product(sku="BOOK-LASTCOPY", name="Signed first edition", price=25000),
    Product(sku="BOOK-SOLDOUT", name="Out-of-print atlas", price=4999),  # stocked nowhere
    Product(sku="EBOOK-DUNE", name="Dune (e-book)", price=999, digital=True),
]

# Dune in both warehouses (any order fits one parcel); Neuromancer only east and Earthsea only
# west, so ordering both ships two parcels; the last copy is the race the tests run.
DEMO_STOCK = [
    Stock(sku="BOOK-DUNE", warehouse="WH-EAST", on_hand=500_000),
    Stock(sku="BOOK-DUNE", warehouse="WH-WEST", on_hand=500_000),
    Stock(sku="BOOK-NEUROMANCER", warehouse="WH-EAST", on_hand=500),
    Stock(sku="BOOK-EARTHSEA", warehouse="WH-WEST", on_hand=200),
    Stock(sku="BOOK-LASTCOPY", warehouse="WH-EAST", on_hand=1),
]


def seed_demo_data(engine: Engine) -> None:
    """Insert the demo bookstore's rows that are missing; never touches existing rows."""
    with Session(engine) as session:
        for customer in DEMO_CUSTOMERS:
            if session.get(Customer, customer.id) is None:
                session.add(Customer.model_validate(customer.model_dump()))
        for warehouse in DEMO_WAREHOUSES:
            if session.get(Warehouse, warehouse.code) is None:
                session.add(Warehouse.model_validate(warehouse.model_dump()))
        for product in DEMO_PRODUCTS:
            if session.get(Product, product.sku) is None:
                session.add(Product.model_validate(product.model_dump()))
        session.flush()  # the stock rows below refer to these
        for stock in DEMO_STOCK:
            if session.get(Stock, (stock.sku, stock.warehouse)) is None:
                session.add(Stock.model_validate(stock.model_dump()))
        session.commit()


def init_database(url: str, *, seed: bool = True) -> Engine:
    engine = make_engine(url)
    create_schema(engine)
    if seed:
        seed_demo_data(engine)
    return engine


if __name__ == "__main__":
    # `python database.py`: create the schema and seed the demo data, e.g. before the first start.
    from settings import Settings

    init_database(Settings().effective_database_url).dispose()
