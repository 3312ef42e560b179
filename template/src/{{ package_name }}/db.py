"""Async SQLAlchemy: the engine, the session dependency and the model base."""

import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

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

from .outages import outage
from .problems import ServiceUnavailableError
from .settings import Settings

# Why a request failed because of the database rather than because of what it asked:
# the database is out or refuses service, it did not answer in time, or every
# connection of the pool is in use.
Failure = Literal["unavailable", "timeout", "busy"]

# The answer of each failure: a 503 problem, and when to try again.
FAILURE_DETAILS: dict[Failure, tuple[str, int]] = {
    "unavailable": ("The database is unavailable; try again shortly.", 5),
    "timeout": ("The database took too long to answer; try again shortly.", 5),
    "busy": ("The service is busy; try again shortly.", 2),
}

# Errors that mean "the database cannot be reached", not "the request is wrong".
# (sqlalchemy.exc.TimeoutError, the pool's, is no TimeoutError: it means "busy".)
UNAVAILABLE_ERRORS = (
    ConnectionError,
    socket.gaierror,
    exc.OperationalError,
    exc.InterfaceError,
)

# PostgreSQL's SQLSTATEs (its "Error Codes" appendix) that say the server refuses
# service for now, by class or by code: a connection exception (08), insufficient
# resources (53: too many connections, also a role's CONNECTION LIMIT, out of memory
# or disk), operator intervention (57: a shutdown or start-up, a backend terminated).
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
# A statement cancelled by statement_timeout (or a cancel request), a lock not had
# within lock_timeout.
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})
# On connecting only: the database does not accept connections (ALLOW_CONNECTIONS
# false). At any other time 55000 is a mistake of the service's, a 500.
REFUSED_CONNECTION_SQLSTATE = "55000"

# How much longer than the server's statement_timeout the client waits for an answer
# before it gives up on a connection that passes no bytes, at most: a stalled network
# or a hung server sends no error of its own.
STALL_MARGIN_SECONDS = 1.0


def database_failure(error: BaseException) -> Failure | None:
    """Why ``error`` failed the request, if the database's state is to blame.

    PostgreSQL's errors are told apart by their SQLSTATE (asyncpg's, on the error
    SQLAlchemy wraps: ``.orig.sqlstate``), not by their message. SQLAlchemy lets
    the errors of asyncpg's own set-up of a new connection (its type codecs) through
    unwrapped: a backend terminated at that moment is one.
    """
    if isinstance(error, exc.TimeoutError):  # No connection free in the pool.
        return "busy"
    if isinstance(error, TimeoutError):  # No answer: connecting, or a stalled one.
        return "timeout"
    driver_error = error.orig if isinstance(error, exc.DBAPIError) else error
    sqlstate = getattr(driver_error, "sqlstate", None)
    # A connection attempt has no statement.
    connecting = isinstance(error, exc.DBAPIError) and error.statement is None
    if isinstance(sqlstate, str):
        if sqlstate in TIMEOUT_SQLSTATES:
            return "timeout"
        if sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
            return "unavailable"
        if sqlstate == REFUSED_CONNECTION_SQLSTATE and connecting:
            return "unavailable"
    # A backend terminated while SQLAlchemy sets up its new connection (reading the
    # isolation level) can leave asyncpg's protocol in a broken state, which it
    # reports as an internal error with no SQLSTATE ("cannot switch to state").
    if connecting and isinstance(error, exc.InternalError):
        return "unavailable"
    # A connection cut while it sat in the pool (a database restart, say) fails
    # with a plain DBAPIError that SQLAlchemy marks as invalidated.
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return "unavailable"
    if isinstance(error, UNAVAILABLE_ERRORS):
        return "unavailable"
    return None


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the database's state, worth a retry, not a mistake."""
    return database_failure(error) is not None


def service_unavailable(failure: Failure) -> ServiceUnavailableError:
    """The 503 problem that answers a request that ``failure`` failed."""
    detail, retry_after = FAILURE_DETAILS[failure]
    return ServiceUnavailableError(detail, retry_after=retry_after)


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
        "connect_args": postgres_connect_args(settings),
    }
    engine = create_async_engine(settings.database_url, **options)
    if settings.db_pool_ping_idle_seconds > 0:
        ping_idle_connections(engine, settings.db_pool_ping_idle_seconds)
    return engine


def postgres_connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's options: how long to wait for a connection and for each statement.

    The server cancels a statement that runs past DB_STATEMENT_TIMEOUT, and the
    request gets a 503 at once. A connection that passes no bytes at all gets no
    such answer: asyncpg gives up on it a little later (``command_timeout``), and
    again as long on cancelling the statement, then closes it.
    """
    timeout = settings.db_statement_timeout
    return {
        "timeout": settings.db_connect_timeout,
        "command_timeout": timeout + min(timeout, STALL_MARGIN_SECONDS),
        "server_settings": {
            "statement_timeout": str(max(1, round(timeout * 1000))),  # In ms.
            # Names the service's sessions in pg_stat_activity.
            "application_name": __name__.partition(".")[0],
        },
    }


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
    """A session per request: committed on success, rolled back on error.

    A request that the database fails (see ``database_failure``) gets a 503 problem
    that says when to retry; the outage is logged when it starts and when it ends,
    not once per request (outages.py).
    """
    database: Database = request.app.state.database
    record = outage("database")
    async with database.sessions() as session:
        try:
            yield session
            used = session.in_transaction()
            await session.commit()
        except Exception as error:
            used = session.in_transaction()
            failure = database_failure(error)
            try:
                await session.rollback()
            except Exception as rollback_error:
                # After a failure of the database's own, the pool discards the
                # connection whatever the rollback did. After any other error, a
                # rollback the database fails is the request's failure.
                if failure is None:
                    failure = database_failure(rollback_error)
                    if failure is None:
                        raise
                    error = rollback_error
            if failure is None:
                if used:
                    record.answered()
                raise
            record.failed(failure, error)
            raise service_unavailable(failure) from error
    if used:
        record.answered()


# Scope "function": the session commits when the route returns, before the response
# is sent, so a client that gets a 201 can read what it wrote from any replica, and a
# commit that fails is the request's error, never a success already sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
