"""The items API on PostgreSQL: CRUD, pagination and validation."""

from datetime import datetime, timedelta

import httpx

from ..helpers import ITEMS, create_item


async def test_a_created_item_can_be_read_back(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget", description="Blue")
    body = (await client.get(f"{ITEMS}/{item_id}")).json()
    assert (body["name"], body["description"]) == ("Widget", "Blue")


async def test_timestamps_come_back_in_utc(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget")
    body = (await client.get(f"{ITEMS}/{item_id}")).json()
    assert datetime.fromisoformat(body["created_at"]).utcoffset() == timedelta(0)


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget", description="Blue")
    response = await client.patch(f"{ITEMS}/{item_id}", json={"name": "Gadget"})
    assert response.status_code == 200
    stored = (await client.get(f"{ITEMS}/{item_id}")).json()
    assert (stored["name"], stored["description"]) == ("Gadget", "Blue")
    assert stored["updated_at"] > stored["created_at"]


async def test_delete_removes_the_item(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget")
    assert (await client.delete(f"{ITEMS}/{item_id}")).status_code == 204
    assert (await client.get(f"{ITEMS}/{item_id}")).status_code == 404


async def test_list_pages_through_items_in_id_order(client: httpx.AsyncClient) -> None:
    for number in range(5):
        await create_item(client, f"item {number}")
    page = (await client.get(ITEMS, params={"limit": 2, "offset": 2})).json()
    assert [item["name"] for item in page["items"]] == ["item 2", "item 3"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)


async def test_a_name_too_long_for_the_column_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    """Validation stops it before PostgreSQL would refuse it with an error."""
    response = await client.post(ITEMS, json={"name": "x" * 201})
    assert response.status_code == 422
    assert (await client.get(ITEMS)).json()["total"] == 0
