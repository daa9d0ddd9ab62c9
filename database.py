"""Database engine, schema migrations and the demo bookstore.

The schema is Alembic's (`migrations/`): every change to models/tables.py is a new migration,
created with `.venv/bin/alembic revision --autogenerate --rev-id <next number> -m "..."` and
reviewed by hand. A database is brought to the latest migration (head) once, before anything
serves from it: by `python database.py` (which `make run` and compose's `db-init` job run).
Serving processes open it with `open_database`, which refuses a database that is not at head;
`init_database` (migrate, then seed) is for `python database.py`, tests and tools.

Only processes (worker, API, tests, tools) call these; nothing a workflow imports does.
"""

from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, inspect, text
from sqlmodel import Session, SQLModel, create_engine

from models.tables import Customer, Product, Stock, Warehouse

ROOT = Path(__file__).resolve().parent
MIGRATIONS = ROOT / "migrations"
VERSION_TABLE = "alembic_version"


def make_engine(url: str) -> Engine:
    """One engine per process. SQLite gets WAL and a busy timeout so worker and API share it.

    `hide_parameters`: a failed statement's error (and so its log line) shows the SQL, never
    the values bound to it, which are customers' names, emails and addresses.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

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
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True
    )


_READ_ONLY = "ordermill_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, for work that only reads.

    On SQLite its transactions begin DEFERRED: in WAL mode a reader then neither waits for the
    write lock nor holds it, so reading an order never queues behind the worker's writes.
    """
    return engine.execution_options(**{_READ_ONLY: True})


# ---- migrations ------------------------------------------------------------------------------


class SchemaNotCurrent(RuntimeError):
    """The database is not at the latest migration: the process must not use it."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for ordermill; `connection` is the database to act on (the
    `alembic` command line reads DATABASE_URL instead: migrations/env.py)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no migration"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at; None for a database never migrated."""
    with read_only(engine).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _unversioned_tables(connection: Connection) -> list[str]:
    """ordermill's tables in a database without migration history (made before migrations)."""
    inspector = inspect(connection)
    if inspector.has_table(VERSION_TABLE):
        return []
    return sorted(set(inspector.get_table_names()) & set(SQLModel.metadata.tables))


def migrate(engine: Engine) -> str:
    """Bring the database to head; returns the revision it is at.

    Meant to run once per deploy, before the API and the workers start (`python database.py`).
    On PostgreSQL a transaction-scoped advisory lock makes two runs at once take turns.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('ordermill schema'))"))
        if stale := _unversioned_tables(connection):
            raise SchemaNotCurrent(
                f"the database has ordermill's tables ({', '.join(stale[:3])}, ...) but no "
                "migration history: it was created before ordermill used migrations. ordermill "
                "is unreleased, so start it afresh: `rm -rf .data` for make run's SQLite file, "
                "or drop and recreate the PostgreSQL database"
            )
        command.upgrade(alembic_config(connection), "head")
    return head_revision()


def require_current_schema(engine: Engine) -> None:
    """Refuse, saying what to do, unless the database is at the latest migration."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except Exception as err:  # unreachable, wrong credentials, ...: say so, not a traceback
        raise SchemaNotCurrent(
            f"cannot read the database's schema revision ({type(err).__name__}); is "
            "DATABASE_URL right and the database up?"
        ) from err
    if current != head:
        where = "has no ordermill schema yet" if current is None else f"is at {current}"
        raise SchemaNotCurrent(
            f"the database {where}, not at the latest migration {head}. Bring it to head "
            "first with `python database.py` (make run and compose's db-init job do this), "
            "then start the API and the workers"
        )


def create_schema(engine: Engine) -> None:
    """The latest schema, by migration (kept under this name for tests and tools)."""
    migrate(engine)


@event.listens_for(SQLModel.metadata, "after_drop")
def _forget_revision(_metadata: Any, connection: Connection, **_kw: Any) -> None:
    """`SQLModel.metadata.drop_all` (tests) leaves no schema, so no revision either: the next
    migration then starts from the beginning rather than believing it is at head."""
    connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))


# ---- the demo bookstore ----------------------------------------------------------------------

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
    Customer(
        id="cus_newbie",
        name="Nell Newbie",
        email="nell@example.com",
        address_line1="2 Fresh Start Row",
        city="Springfield",
        postal_code="62703",
        country="US",
        review_required=True,  # every order of hers waits for an operator's risk review
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
    # $1,200: any order of it waits for a risk review (RISK_REVIEW_THRESHOLD, $500).
    Product(sku="BOOK-FIRST-EDITION", name="Dune, first edition (1965)", price=120000),
    # Not out yet: orders wait in the backorder queue until POST /products/{sku}/stock.
    Product(sku="BOOK-PREORDER", name="Dune: the lost chapters", price=2499, backorderable=True),
]

# Dune in both warehouses (any order fits one parcel); Neuromancer only east and Earthsea only
# west, so ordering both ships two parcels; the last copy is the race the tests run.
DEMO_STOCK = [
    Stock(sku="BOOK-DUNE", warehouse="WH-EAST", on_hand=500_000),
    Stock(sku="BOOK-DUNE", warehouse="WH-WEST", on_hand=500_000),
    Stock(sku="BOOK-NEUROMANCER", warehouse="WH-EAST", on_hand=500),
    Stock(sku="BOOK-EARTHSEA", warehouse="WH-WEST", on_hand=200),
    Stock(sku="BOOK-LASTCOPY", warehouse="WH-EAST", on_hand=1),
    Stock(sku="BOOK-FIRST-EDITION", warehouse="WH-EAST", on_hand=3),
]


def seed_demo_data(engine: Engine, *, customers: bool = True) -> None:
    """Insert the demo bookstore's rows that are missing; never touches existing rows.

    The demo customers have no owner: in development every client may order for them. A
    production database gets the catalog and stock only (`customers=False`).
    """
    with Session(engine) as session:
        for customer in DEMO_CUSTOMERS if customers else []:
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
                # Its opening balance, which the reconciliation counts from.
                session.add(Stock.model_validate({**stock.model_dump(), "seeded": stock.on_hand}))
        session.commit()


def init_database(url: str, *, seed: bool = True, demo_customers: bool = True) -> Engine:
    """Migrate the database to head and seed what is missing: `python database.py`, tests and
    tools. The API and the worker use `open_database`, which never changes the schema."""
    engine = make_engine(url)
    migrate(engine)
    if seed:
        seed_demo_data(engine, customers=demo_customers)
    return engine


def open_database(url: str) -> Engine:
    """The engine of a process that serves (API, worker): refuses a database not at head."""
    engine = make_engine(url)
    try:
        require_current_schema(engine)
    except SchemaNotCurrent:
        engine.dispose()
        raise
    return engine


def main() -> int:
    """`python database.py`: migrate to head and seed, once per deploy or `make run`."""
    import sys

    from settings import Settings

    settings = Settings()
    engine = make_engine(settings.effective_database_url)
    try:
        revision = migrate(engine)
        seed_demo_data(engine, customers=not settings.is_production)
    except SchemaNotCurrent as err:
        print(f"database: {err}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    seeded = "catalog and stock" if settings.is_production else "catalog, stock and customers"
    print(f"database: at migration {revision}; demo {seeded} present")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
