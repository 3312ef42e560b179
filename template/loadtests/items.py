"""Users of the items API: readers page through the list and open items, editors add
an item, change it and remove it again."""

from _api import CATALOGUE_SIZE, HEADERS, ITEM, ITEMS, PAGE_SIZE, expect, new_item, rng
from locust import FastHttpUser, between, task


class ItemReader(FastHttpUser):
    """Opens a page of the list, then one or two of the items on it."""

    weight = 4
    wait_time = between(0.5, 1.5)
    default_headers = HEADERS
    # Items in the list when this user last looked: the pages it can choose from.
    total = CATALOGUE_SIZE

    @task
    def browse(self) -> None:
        offset = rng.randrange(0, max(self.total, 1), PAGE_SIZE)
        params = {"limit": PAGE_SIZE, "offset": offset}
        with self.client.get(
            ITEMS, params=params, name=ITEMS, catch_response=True
        ) as response:
            if not expect(response, 200):
                return
            page = response.json()
        self.total = page["total"]
        item_ids = [item["id"] for item in page["items"]]
        for item_id in rng.sample(item_ids, min(len(item_ids), rng.randint(1, 2))):
            self.wait()
            url = ITEM.format(item_id=item_id)
            with self.client.get(url, name=ITEM, catch_response=True) as response:
                # An editor may have removed the item since the page was read.
                expect(response, 200, missing_ok=True)


class ItemEditor(FastHttpUser):
    """Adds an item, corrects its description, then removes it."""

    weight = 1
    wait_time = between(0.5, 1.5)
    default_headers = HEADERS

    @task
    def edit(self) -> None:
        with self.client.post(
            ITEMS, json=new_item(), name=ITEMS, catch_response=True
        ) as response:
            if not expect(response, 201):
                return
            url = ITEM.format(item_id=response.json()["id"])
        self.wait()
        change = {"description": "Corrected by the load test."}
        with self.client.patch(
            url, json=change, name=ITEM, catch_response=True
        ) as response:
            expect(response, 200)
        self.wait()
        with self.client.delete(url, name=ITEM, catch_response=True) as response:
            expect(response, 204)
