"""What the load test's users share: the API's paths, how a response is judged, and
the catalogue of items that every run starts with.

Locust runs every file of this folder as a locustfile, except those whose names start
with an underscore: this one is imported by the others.
"""

import logging
import os
import random
import uuid
from http import HTTPStatus
from typing import Any

import gevent
import requests
from locust import events
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

ITEMS = "/api/v1/items"
# Every request's headers: the bearer token in LOADTEST_TOKEN, if the API needs one.
TOKEN = os.environ.get("LOADTEST_TOKEN")
HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
# The report's name for every item's URL; ITEM.format(item_id=42) is the URL itself.
ITEM = ITEMS + "/{item_id}"
PAGE_SIZE = 20
# Items that every run starts with, so that pages are full and reads find items from
# the first second. Users remove only the items they add themselves.
CATALOGUE_SIZE = 200
SEED_PAGE_SIZE = 100  # the API's largest page
SEED_TIMEOUT_SECONDS = 10

log = logging.getLogger(__name__)
# Where users choose pages and items: nothing secret depends on it.
rng = random.Random()  # noqa: S311

# The ids of the catalogue's items, known once the run has started.
catalogue: list[int] = []


def new_item() -> dict[str, str]:
    """The body of a new item, with a unique name as the API requires."""
    return {
        "name": f"load test item {uuid.uuid4().hex}",
        "description": "Added by the load test, to be read, changed and removed.",
    }


def expect(
    response: ResponseContextManager, status: int, *, missing_ok: bool = False
) -> bool:
    """Mark a response caught with ``catch_response``; True if it has ``status``.

    With ``missing_ok`` a 404 is a success too, though there is then nothing to go on
    with: another user deleted the item meanwhile, as happens in any real run. Every
    other status is a failure.
    """
    if response.status_code == status:
        response.success()
        return True
    if missing_ok and response.status_code == HTTPStatus.NOT_FOUND:
        response.success()
    else:
        response.failure(describe(response))
    return False


def describe(response: ResponseContextManager) -> str:
    """A failure as the report groups it: by status, not by body (which names ids)."""
    if not response.status_code:
        return f"no response: {response.error!r}"
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = "(unknown status)"
    return f"unexpected {response.status_code} {phrase}"


@events.init.add_listener
def set_the_clock(**kwargs: Any) -> None:
    """Bring gevent's clock up to date before Locust times the run.

    gevent reads the time when its loop runs, and it has not run yet while Locust
    starts up; without this, a --run-time would count from before the start-up and
    the run would end early by however long that took (seconds on a busy machine).
    """
    gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def seed_catalogue(environment: Environment, **kwargs: Any) -> None:
    """Top the service up to CATALOGUE_SIZE items and learn their ids.

    These requests are not part of the load, so they go through a session of their own
    and stay out of the report. If the service refuses them, the run stops here.
    """
    with requests.Session() as session:
        session.headers.update(HEADERS)
        try:
            catalogue[:] = catalogue_ids(session, f"{environment.host}{ITEMS}")
        except requests.RequestException as error:
            log.error("Could not seed the catalogue of items: %s", error)
            environment.process_exit_code = 1
            if environment.runner is not None:
                # Once the runner is done starting: quitting from within its start
                # would leave the run going.
                gevent.spawn(environment.runner.quit)


def catalogue_ids(session: requests.Session, url: str) -> list[int]:
    """The first CATALOGUE_SIZE items' ids, adding items while there are fewer."""
    ids: list[int] = []
    while len(ids) < CATALOGUE_SIZE:
        params = {"limit": SEED_PAGE_SIZE, "offset": len(ids)}
        response = session.get(url, params=params, timeout=SEED_TIMEOUT_SECONDS)
        response.raise_for_status()
        page = [item["id"] for item in response.json()["items"]]
        ids += page
        if len(page) < SEED_PAGE_SIZE:
            break
    while len(ids) < CATALOGUE_SIZE:
        response = session.post(url, json=new_item(), timeout=SEED_TIMEOUT_SECONDS)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids[:CATALOGUE_SIZE]
