"""Typed dependencies: the process's one Temporal client, DB engine and settings.

The lifespan (api.main) puts them on `app.state`; routes ask for them by type.
Database work is blocking, so routes that use `SessionDep` are plain `def` (FastAPI runs them on
its thread pool); async routes take `EngineDep` and hop to a thread for their queries.
The three getters are `async def` because they only read `app.state`: FastAPI runs a plain
`def` dependency on its thread pool, a hop each per request (about a fifth of a GET's CPU).
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal_client(request: Request) -> Client:
    client: Client = request.app.state.temporal_client
    return client


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalClientDep = Annotated[Client, Depends(get_temporal_client)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
