"""The items API: CRUD, pagination and validation."""

import httpx
import pytest

from .helpers import ITEMS, create_item


async def test_create_returns_the_item(client: httpx.AsyncClient) -> None:
    response = await client.post(ITEMS, json={"name": "Widget", "description": "Blue"})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Widget"
    assert body["description"] == "Blue"
    assert body["updated_at"] >= body["created_at"]


async def test_get_returns_a_created_item(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget")
    response = await client.get(f"{ITEMS}/{item_id}")
    assert response.status_code == 200
    assert response.json()["name"] == "Widget"


async def test_list_pages_through_items(client: httpx.AsyncClient) -> None:
    for number in range(5):
        await create_item(client, f"item {number}")
    response = await client.get(ITEMS, params={"limit": 2, "offset": 2})
    assert response.status_code == 200
    page = response.json()
    assert [item["name"] for item in page["items"]] == ["item 2", "item 3"]
    assert page | {"items": None} == {
        "items": None,
        "total": 5,
        "limit": 2,
        "offset": 2,
    }


async def test_list_defaults_to_twenty(client: httpx.AsyncClient) -> None:
    page = (await client.get(ITEMS)).json()
    assert (page["limit"], page["offset"], page["total"]) == (20, 0, 0)


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}]
)
async def test_list_rejects_bad_paging(
    client: httpx.AsyncClient, params: dict[str, int | str]
) -> None:
    assert (await client.get(ITEMS, params=params)).status_code == 422


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget", description="Blue")
    response = await client.patch(f"{ITEMS}/{item_id}", json={"name": "Gadget"})
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"]) == ("Gadget", "Blue")
    assert body["updated_at"] > body["created_at"]


async def test_patch_can_clear_the_description(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget", description="Blue")
    response = await client.patch(f"{ITEMS}/{item_id}", json={"description": None})
    assert response.json()["description"] is None


async def test_patch_rejects_a_null_name(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget")
    response = await client.patch(f"{ITEMS}/{item_id}", json={"name": None})
    assert response.status_code == 422


async def test_delete_removes_the_item(client: httpx.AsyncClient) -> None:
    item_id = await create_item(client, "Widget")
    assert (await client.delete(f"{ITEMS}/{item_id}")).status_code == 204
    assert (await client.get(f"{ITEMS}/{item_id}")).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_missing_item_is_a_404_problem(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, f"{ITEMS}/999", json={"name": "x"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Item 999 does not exist."


async def test_a_duplicate_name_is_a_409_problem(client: httpx.AsyncClient) -> None:
    await create_item(client, "Widget")
    response = await client.post(ITEMS, json={"name": "Widget"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "ok", "description": "x" * 2001},
        {"name": "ok", "unknown": 1},
    ],
)
async def test_create_validates_the_body(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    assert (await client.post(ITEMS, json=body)).status_code == 422


async def test_the_limits_are_inclusive(client: httpx.AsyncClient) -> None:
    await create_item(client, "x" * 200, description="y" * 2000)
