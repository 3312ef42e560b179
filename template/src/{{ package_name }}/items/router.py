"""HTTP routes of the items API."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from ..db import SessionDep
from ..problems import PROBLEM_RESPONSES
from . import service
from .models import MAX_ID
from .schemas import ItemCreate, ItemId, ItemPage, ItemRead, ItemUpdate

router = APIRouter(prefix="/items", tags=["items"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an item")
async def create_item(data: ItemCreate, session: SessionDep) -> ItemRead:
    """Create an item. Names are unique: a duplicate is a 409."""
    return ItemRead.model_validate(await service.create_item(session, data))


@router.get("", summary="List items")
async def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> ItemPage:
    """List items by id, a page at a time."""
    items, total = await service.list_items(session, limit, offset)
    return ItemPage(
        items=[ItemRead.model_validate(item) for item in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{item_id}", summary="Get an item")
async def get_item(item_id: ItemId, session: SessionDep) -> ItemRead:
    return ItemRead.model_validate(await service.get_item(session, item_id))


@router.patch("/{item_id}", summary="Update an item")
async def update_item(
    item_id: ItemId, data: ItemUpdate, session: SessionDep
) -> ItemRead:
    """Change the fields sent; the others keep their values."""
    return ItemRead.model_validate(await service.update_item(session, item_id, data))


@router.delete(
    "/{item_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an item"
)
async def delete_item(item_id: ItemId, session: SessionDep) -> None:
    await service.delete_item(session, item_id)
