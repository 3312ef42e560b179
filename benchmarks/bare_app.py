"""The reference for bench_service.py: bare FastAPI serving the same routes.

The same items table, model and request/response shapes as a generated service (the
schema comes from the service's own migrations), on the same database, with nothing
else: no middleware, no exception handlers, no settings object, no logging per
request, and SQLAlchemy's default pool (5 + 10 connections, no pre-ping). It is the
floor that a generated service is measured against.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/cfs_bench \\
        python -m uvicorn bare_app:app --app-dir benchmarks --workers 1 --no-access-log

bench_service.py runs it with a generated service's interpreter, so both have the same
FastAPI, Starlette, pydantic, SQLAlchemy, uvicorn and Python.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, String, Text, TypeDecorator, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utc_now() -> datetime:
    return datetime.now(UTC)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] | None = None


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    limit: int
    offset: int


class Liveness(BaseModel):
    status: str = "alive"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./bare.db"))
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    yield
    await engine.dispose()


app = FastAPI(title="bare", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@app.get("/health/live")
async def live() -> Liveness:
    return Liveness()


@app.post("/api/v1/items", status_code=status.HTTP_201_CREATED)
async def create_item(data: ItemCreate, session: SessionDep) -> ItemRead:
    item = Item(**data.model_dump())
    session.add(item)
    try:
        await session.flush()
    except IntegrityError:
        raise HTTPException(409, "The request conflicts with existing data.") from None
    return ItemRead.model_validate(item)


@app.get("/api/v1/items")
async def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ItemPage:
    total = await session.scalar(select(func.count()).select_from(Item))
    rows = await session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset))
    return ItemPage(
        items=[ItemRead.model_validate(item) for item in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


@app.get("/api/v1/items/{item_id}")
async def get_item(item_id: int, session: SessionDep) -> ItemRead:
    item = await session.scalar(select(Item).where(Item.id == item_id))
    if item is None:
        raise HTTPException(404, f"Item {item_id} does not exist.")
    return ItemRead.model_validate(item)
