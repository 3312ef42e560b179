"""Database operations on items, kept apart from HTTP concerns."""

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..problems import NotFoundError
from .models import MAX_ID, Item
from .schemas import ItemCreate, ItemUpdate


async def create_item(session: AsyncSession, data: ItemCreate) -> Item:
    item = Item(**data.model_dump())
    session.add(item)
    await session.flush()  # Surface a duplicate name here, as a 409.
    return item


async def list_items(
    session: AsyncSession, limit: int, offset: int
) -> tuple[list[Item], int]:
    total = await session.scalar(select(func.count()).select_from(Item))
    rows = await session.scalars(
        select(Item).order_by(Item.id).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def get_item(session: AsyncSession, item_id: int, *, lock: bool = False) -> Item:
    """Fetch an item, locking its row for the transaction when ``lock`` is set.

    An id the column cannot hold is a 404 without a query: the database would
    refuse it as a parameter.
    """
    if not 1 <= item_id <= MAX_ID:
        raise _not_found(item_id)
    query = select(Item).where(Item.id == item_id)
    if lock:
        query = query.with_for_update()
    item = await session.scalar(query)
    if item is None:
        raise _not_found(item_id)
    return item


async def update_item(session: AsyncSession, item_id: int, data: ItemUpdate) -> Item:
    item = await get_item(session, item_id, lock=True)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    try:
        await session.flush()
    except StaleDataError:
        # Deleted since it was read: SQLite has no row lock to make us wait.
        raise _not_found(item_id) from None
    await session.refresh(item)
    return item


async def delete_item(session: AsyncSession, item_id: int) -> None:
    """Delete an item; of two racing deletes, the second finds nothing, a 404."""
    if not 1 <= item_id <= MAX_ID:
        raise _not_found(item_id)
    statement = delete(Item).where(Item.id == item_id).returning(Item.id)
    if await session.scalar(statement) is None:
        raise _not_found(item_id)


def _not_found(item_id: int) -> NotFoundError:
    return NotFoundError(f"Item {item_id} does not exist.")
