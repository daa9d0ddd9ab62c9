"""ordermill's schema is Alembic's: migrations give exactly the models' tables, a database is
brought to head once by `python database.py`, and the API refuses any other.

Each test gets an empty database of its own: SQLite, and PostgreSQL when TEST_POSTGRES_URL is
set (a database created for the test and dropped after it).
"""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import BigInteger, Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

import database
from api.main import create_app
from database import (
    SchemaNotCurrent,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    open_database,
)
from models.tables import Customer, Product
from settings import Settings
from tests.conftest import fresh_postgres_database

MONEY_COLUMNS = {
    "product": ["price"],
    "paymenttransaction": ["amount"],
    "orderrecord": ["total", "captured", "refunded"],
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database("ordermill_migrations") as url:
        yield url


@pytest.fixture
def empty(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list[object]:
    """What autogenerate would change to make the database match the models: nothing, at head."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def test_the_migrations_give_exactly_the_models_schema(empty: Engine) -> None:
    assert current_revision(empty) is None
    assert migrate(empty) == head_revision()
    assert current_revision(empty) == head_revision()
    assert differences(empty) == []
    assert set(inspect(empty).get_table_names()) == set(SQLModel.metadata.tables) | {
        "alembic_version"
    }
    migrate(empty)  # at head already: nothing to do
    assert differences(empty) == []


def test_the_migrations_go_down_and_up_again(empty: Engine) -> None:
    migrate(empty)
    with empty.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(empty).get_table_names()) <= {"alembic_version"}
    assert current_revision(empty) is None
    migrate(empty)
    assert differences(empty) == []


def test_money_is_64_bit(empty: Engine) -> None:
    migrate(empty)
    inspector = inspect(empty)
    for table, names in MONEY_COLUMNS.items():
        types = {c["name"]: c["type"] for c in inspector.get_columns(table)}
        for name in names:
            assert isinstance(types[name], BigInteger), (table, name, types[name])
    with Session(empty) as session:  # past 2**31 minor units: a 32-bit column overflows
        session.add(Product(sku="YACHT", name="A yacht", price=5_000_000_000_00))
        session.commit()
        assert session.get(Product, "YACHT").price == 5_000_000_000_00  # type: ignore[union-attr]


async def test_the_api_refuses_to_start_on_a_database_not_at_head(
    empty: Engine, empty_url: str
) -> None:
    with pytest.raises(SchemaNotCurrent, match=r"python database\.py"):
        open_database(empty_url)
    settings = Settings(_env_file=None, database_url=empty_url)
    app = create_app(settings)
    with pytest.raises(SchemaNotCurrent, match="has no ordermill schema yet"):
        async with app.router.lifespan_context(app):
            pass

    migrate(empty)
    open_database(empty_url).dispose()  # at head: opens


def test_a_database_behind_head_is_refused_naming_its_revision(empty: Engine) -> None:
    migrate(empty)
    with empty.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'behind'"))
    with pytest.raises(
        SchemaNotCurrent, match=f"is at behind, not at the latest migration {head_revision()}"
    ):
        database.require_current_schema(empty)


def test_a_database_made_before_migrations_is_refused_with_what_to_do(empty: Engine) -> None:
    SQLModel.metadata.create_all(empty)  # how ordermill made its tables before Alembic
    with empty.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    with pytest.raises(SchemaNotCurrent, match="created before ordermill used migrations"):
        migrate(empty)


def test_database_py_migrates_and_seeds_no_demo_customers_in_production(
    empty: Engine, empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_url)
    monkeypatch.setenv("APP_ENV", "production")
    assert database.main() == 0
    assert current_revision(empty) == head_revision()
    with Session(empty) as session:
        assert session.exec(select(Customer)).all() == []
        assert session.get(Product, "BOOK-DUNE") is not None

    monkeypatch.setenv("APP_ENV", "development")
    assert database.main() == 0  # again, in development: the shared demo customers too
    with Session(empty) as session:
        customers = session.exec(select(Customer)).all()
    assert {c.id for c in customers} == {"cus_ada", "cus_grace", "cus_blocked", "cus_newbie"}
    assert {c.owner for c in customers} == {None}


def test_a_failed_statement_never_shows_its_values(
    empty: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500's log line carries the SQL, never the customer's name or email bound to it."""
    migrate(empty)
    with Session(empty) as session:
        session.add(Customer(id="cus_x", name="Ada Secretname", email="ada.secret@example.com"))
        session.commit()
    with Session(empty) as session, pytest.raises(IntegrityError) as failed:
        session.add(Customer(id="cus_x", name="Ada Secretname", email="ada.secret@example.com"))
        session.commit()
    logging.getLogger("test").exception("boom", exc_info=failed.value)
    assert "INSERT INTO customer" in str(failed.value)
    for secret in ("Secretname", "ada.secret"):
        assert secret not in str(failed.value)
        assert secret not in caplog.text
