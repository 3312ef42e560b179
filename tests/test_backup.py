"""Backups on real PostgreSQL: what `backup` wrote, `restore` brings back.

One project with every feature on is rendered and synced. Its service gets a database
of its own on TEST_DATABASE_URL's server (Redis at TEST_REDIS_URL), is migrated and
served as a real process, and items are created, and one deleted, through the API;
then `backup` writes a pg_dump archive of that database. From that backup:

* the database is dropped and restored under its own name, and the service, served
  again, lists the same items (ids, names, times) and numbers new ones after them;
* it is restored into another database, which the service then serves the same way;
* `restore` refuses the live database without its flag, and a database that has tables
  without --clean, each in one line and with exit status 1;
* `backup` of a server that refuses connections is one line and exit status 1 too.

The tests share the project and the backup (one xdist worker) but not their order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from harness import DEFAULT_SLUG, ROOT, Result, feature_toggles, project_env, render, run
from served import bearer, development_token, free_port, started, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backup")]

ITEMS = "/api/v1/items"
COMMAND_TIMEOUT = 300


@dataclass(frozen=True)
class Postgres:
    """The server of TEST_DATABASE_URL, where the tests create and drop databases."""

    url: str

    def url_of(self, database: str) -> str:
        """The service's DATABASE_URL for ``database`` on this server."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", "", ""))

    def execute(self, *statements: str) -> None:
        """Run SQL with psql, as TEST_DATABASE_URL's user, in its database."""
        psql = shutil.which("psql")
        if psql is None:
            pytest.fail("psql is not on PATH: the backup tests create databases with it", pytrace=False)
        parts = urlsplit(self.url)
        libpq_url = urlunsplit((parts.scheme.split("+")[0], parts.netloc, parts.path, "", ""))
        commands = [argument for statement in statements for argument in ("-c", statement)]
        run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", libpq_url, *commands], ROOT, env=dict(os.environ))

    def create(self, database: str) -> None:
        self.drop(database)
        self.execute(f'CREATE DATABASE "{database}"')

    def drop(self, database: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@dataclass(frozen=True)
class Backup:
    file: Path
    database: str  # the database it was taken of, which the service served
    items: list[dict[str, Any]]  # what the API listed when it was taken


@pytest.fixture(scope="module")
def postgres() -> Postgres:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.fail("the backup tests need PostgreSQL: set TEST_DATABASE_URL (.ci/run does)", pytrace=False)
    return Postgres(url)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    every_feature = dict.fromkeys(feature_toggles(), True)
    project = render(tmp_path_factory.mktemp("backup") / DEFAULT_SLUG, every_feature)
    run(["uv", "sync"], project, timeout=900, what="uv sync")
    return project


def service_env(project: Path, postgres: Postgres, database: str) -> dict[str, str]:
    """The service's environment: ``database`` on the suite's server, and its Redis."""
    settings = {"DATABASE_URL": postgres.url_of(database)}
    if redis_url := os.environ.get("TEST_REDIS_URL"):
        settings["REDIS_URL"] = redis_url
    return project_env(project, settings)


def command(project: Path, env: dict[str, str], *args: str, check: bool = True) -> Result:
    """The service's command line, from its environment's console script."""
    script = project / ".venv" / "bin" / DEFAULT_SLUG
    return run([str(script), *args], project, env=env, timeout=COMMAND_TIMEOUT, check=check, what=args[0])


@contextmanager
def serving(project: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    """`serve` as a real process, and a client of it once GET /api/v1/items is 200."""
    port = free_port()
    log = project.parent / f"serve-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    headers = bearer(development_token(project, env, DEFAULT_SLUG))
    with started(project, [DEFAULT_SLUG, "serve", "--port", str(port)], env, log) as server:
        wait_until_serving(server, base_url + ITEMS, log, headers)
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
            yield client


def listed_items(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get(ITEMS, params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def create_item(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.post(ITEMS, json={"name": name, "description": f"The {name} item."})
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


def error_line(result: Result) -> str:
    """The one line a refused command printed."""
    assert result.returncode == 1, result.describe()
    lines = result.output.splitlines()
    assert len(lines) == 1, result.describe()
    return lines[0]


@pytest.fixture(scope="module")
def backup(
    project: Path, postgres: Postgres, worker_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backup]:
    """A backup of a served database with three items created and the second deleted.

    The databases the tests restore into are the live one and its "_copy" and "_clean"
    siblings, all dropped at the end.
    """
    database = f"backup_suite_{worker_id}"
    postgres.create(database)
    try:
        env = service_env(project, postgres, database)
        command(project, env, "migrate")
        with serving(project, env) as client:
            second = [create_item(client, name) for name in ("first", "second", "third")][1]
            assert client.delete(f"{ITEMS}/{second['id']}").status_code == 204
            items = listed_items(client)
        file = tmp_path_factory.mktemp("backups") / f"{database}.dump"
        written = command(project, env, "backup", "--output", str(file))
        assert f"Backed up {database} to {file} (" in written.output, written.describe()
        yield Backup(file, database, items)
    finally:
        for name in (database, f"{database}_copy", f"{database}_clean"):
            postgres.drop(name)


def test_a_dropped_database_is_restored_under_its_own_name(
    project: Path, postgres: Postgres, backup: Backup
) -> None:
    postgres.drop(backup.database)
    env = service_env(project, postgres, backup.database)
    command(project, env, "restore", str(backup.file), "--database", backup.database, "--into-live-database")
    with serving(project, env) as client:
        assert listed_items(client) == backup.items
        added = create_item(client, "after the restore")
    # The id sequence came back with the rows.
    assert added["id"] > max(item["id"] for item in backup.items)


def test_a_backup_restores_into_another_database(project: Path, postgres: Postgres, backup: Backup) -> None:
    copy = f"{backup.database}_copy"
    env = service_env(project, postgres, backup.database)
    restored = command(project, env, "restore", str(backup.file), "--database", copy)
    assert f"into {copy}" in restored.output, restored.describe()
    with serving(project, service_env(project, postgres, copy)) as client:
        assert listed_items(client) == backup.items


def test_restore_refuses_the_live_database_without_its_flag(
    project: Path, postgres: Postgres, backup: Backup
) -> None:
    env = service_env(project, postgres, backup.database)
    refused = command(project, env, "restore", str(backup.file), "--database", backup.database, check=False)
    assert "--into-live-database" in error_line(refused)


def test_restore_replaces_a_database_that_has_tables_only_with_clean(
    project: Path, postgres: Postgres, backup: Backup
) -> None:
    target = f"{backup.database}_clean"
    env = service_env(project, postgres, backup.database)
    restore = ["restore", str(backup.file), "--database", target]
    command(project, env, *restore)
    refused = command(project, env, *restore, check=False)
    assert "--clean" in error_line(refused)
    command(project, env, *restore, "--clean")


def test_backup_of_a_server_that_refuses_connections_is_one_line(project: Path, tmp_path: Path) -> None:
    nothing_listens = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/app"
    env = project_env(project, {"DATABASE_URL": nothing_listens})
    output = tmp_path / "app.dump"
    refused = command(project, env, "backup", "--output", str(output), check=False)
    assert "Connection refused" in error_line(refused)
    assert list(tmp_path.iterdir()) == []  # Nothing that could pass for a backup.
