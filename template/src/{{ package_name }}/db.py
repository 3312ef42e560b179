"""Async SQLAlchemy: the engine, the session dependency and the model base."""

import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, TypeDecorator, event, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry

from .problems import ServiceUnavailableError
from .settings import Settings

# Errors that mean "the database cannot be reached", not "the request is wrong".
UNAVAILABLE_ERRORS = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
)


def is_database_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached or the connection died.

    A connection cut while it sat in the pool (a database restart, say) fails with
    a plain DBAPIError that SQLAlchemy marks ``connection_invalidated``.
    """
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, on SQLite as on Postgres."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the engine; it connects lazily, so an unreachable database is no error.

    Its error messages leave out the statement's parameters: they are request data,
    and the messages reach the logs and error reports.
    """
    if settings.uses_sqlite:
        return create_async_engine(settings.database_url, hide_parameters=True)
    options: dict[str, Any] = {
        "hide_parameters": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_ping_idle_seconds == 0,
        "connect_args": {"timeout": settings.db_connect_timeout},
    }
    engine = create_async_engine(settings.database_url, **options)
    if settings.db_pool_ping_idle_seconds > 0:
        ping_idle_connections(engine, settings.db_pool_ping_idle_seconds)
    return engine


def ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it has sat idle a while.

    A connection used moments ago is almost surely alive, and pinging it on every
    checkout (``pool_pre_ping``) costs each request a round trip. One idle for longer
    than ``idle_seconds`` may have been cut by a database restart or a proxy: if
    its ping fails, the pool replaces it before the request gets it.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def remember_checkin(connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            engine.dialect.do_ping(connection)
        except Exception as error:
            # The pool discards the connection and checks out another one.
            raise exc.DisconnectionError(str(error)) from error


class Database:
    """The engine and its session factory, created at start-up, disposed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request: committed on success, rolled back on error."""
    database: Database = request.app.state.database
    async with database.sessions() as session:
        try:
            yield session
            await session.commit()
        except Exception as error:
            await session.rollback()
            if is_database_unavailable(error):
                raise ServiceUnavailableError(
                    "The database is unavailable; try again shortly."
                ) from error
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
