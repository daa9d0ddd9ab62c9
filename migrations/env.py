"""Alembic's entry point for ordermill's migrations.

`database.migrate` hands in the connection to migrate (inside its transaction). From the
`alembic` command line, the database is the one ordermill's settings name (DATABASE_URL, or
the SQLite file in DATA_DIR), and logging follows alembic.ini.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it: later migrations' ALTERs work there too.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    """`alembic upgrade head --sql`: the SQL, for a DBA to read or run."""
    from settings import Settings

    context.configure(
        url=Settings().effective_database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    handed_in: Connection | None = config.attributes.get("connection")
    if handed_in is not None:
        _configure(handed_in)
        with context.begin_transaction():
            context.run_migrations()
        return

    from database import make_engine
    from settings import Settings

    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    engine = make_engine(Settings().effective_database_url)
    try:
        with engine.begin() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
