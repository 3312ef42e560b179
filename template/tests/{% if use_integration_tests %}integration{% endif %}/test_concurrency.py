"""Racing writes to one item on PostgreSQL: settled as 404 or 409, never a 500.

Each request runs on a connection of its own, so the races are PostgreSQL's: row
locks and the unique index decide them (tests/test_input_bounds.py has the same
on SQLite).
"""

import asyncio

import httpx

from ..helpers import ITEMS, create_item

RACERS = 5


async def test_of_racing_deletes_one_succeeds_and_the_rest_are_404(
    client: httpx.AsyncClient,
) -> None:
    url = f"{ITEMS}/{await create_item(client, 'Widget')}"
    responses = await asyncio.gather(*(client.delete(url) for _ in range(RACERS)))
    assert sorted(r.status_code for r in responses) == [204] + [404] * (RACERS - 1)


async def test_updates_racing_a_delete_apply_first_or_are_404(
    client: httpx.AsyncClient,
) -> None:
    url = f"{ITEMS}/{await create_item(client, 'Widget')}"
    updates = [client.patch(url, json={"description": f"v{n}"}) for n in range(4)]
    deleted, *updated = await asyncio.gather(client.delete(url), *updates)
    assert deleted.status_code == 204
    assert {r.status_code for r in updated} <= {200, 404}
    assert (await client.get(url)).status_code == 404


async def test_of_racing_renames_to_one_name_one_succeeds_and_the_rest_are_409(
    client: httpx.AsyncClient,
) -> None:
    ids = [await create_item(client, f"Item {n}") for n in range(RACERS)]
    responses = await asyncio.gather(
        *(client.patch(f"{ITEMS}/{i}", json={"name": "Gizmo"}) for i in ids)
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * (RACERS - 1)
    names = [item["name"] for item in (await client.get(ITEMS)).json()["items"]]
    assert names.count("Gizmo") == 1


async def test_a_rename_racing_a_create_of_the_same_name_admits_one(
    client: httpx.AsyncClient,
) -> None:
    url = f"{ITEMS}/{await create_item(client, 'Widget')}"
    renamed, created = await asyncio.gather(
        client.patch(url, json={"name": "Gizmo"}),
        client.post(ITEMS, json={"name": "Gizmo"}),
    )
    statuses = {renamed.status_code, created.status_code}
    assert statuses in ({200, 409}, {201, 409})


async def test_renames_updates_and_deletes_of_one_item_never_fail(
    client: httpx.AsyncClient,
) -> None:
    """Every kind of write to one item at once, a few rounds over."""
    await create_item(client, "Taken")
    for round_ in range(3):
        url = f"{ITEMS}/{await create_item(client, f'Widget {round_}')}"
        responses = await asyncio.gather(
            client.patch(url, json={"name": "Taken"}),
            client.patch(url, json={"name": f"Gadget {round_}"}),
            client.patch(url, json={"description": "Blue"}),
            client.delete(url),
            client.delete(url),
        )
        onto_taken, renamed, described, *deleted = [r.status_code for r in responses]
        assert onto_taken in {404, 409}
        assert {renamed, described} <= {200, 404}
        assert sorted(deleted) == [204, 404]
