"""The API of a generated service, fuzzed for server errors.

A project with every feature on is served on PostgreSQL and Redis as a real process:
on a database of this module's own (created, migrated, and dropped at the end), under
Redis keys of its own, with the rate limit raised and the docs (and so /openapi.json)
on. Schemathesis then sends it requests made from that schema, with a development
token of the service's own, valid and invalid ones in every phase (examples, coverage,
fuzzing, stateful sequences), a bounded number of each and within a time limit, and no
response may be a 5xx.

Needs TEST_DATABASE_URL and TEST_REDIS_URL (as .ci/run sets them), and psql and
redis-cli.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import DEFAULT_SLUG, feature_toggles, project_env, render, run
from served import (
    RAISED_RATE_LIMITS,
    development_token,
    free_port,
    redis_key_prefix,
    required_env,
    started,
    temporary_database,
    wait_until_serving,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fuzz")]

ALL_ON = {toggle: True for toggle in feature_toggles()}
# Deterministic generation: the same cases on every run, so a failure reproduces.
FUZZ_OPTIONS = [
    "--checks=not_a_server_error",
    "--max-examples=50",
    "--max-time=45",
    "--generation-deterministic",
    "--workers=1",
    "--no-color",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("fuzz") / DEFAULT_SLUG, ALL_ON)
    run(["uv", "sync"], project, timeout=900, what="uv sync")
    return project


@pytest.fixture(scope="module")
def database_url(worker_id: str) -> Iterator[str]:
    """A new PostgreSQL database's URL. Dropped at the end."""
    with temporary_database(f"template_fuzz_{worker_id}") as url:
        yield url


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own; its keys are deleted at the end."""
    with redis_key_prefix("template-fuzz") as prefix:
        yield prefix


@pytest.fixture(scope="module")
def served(project: Path, database_url: str, redis_prefix: str) -> Iterator[tuple[str, str]]:
    """The project migrated and served, its docs on; its URL, and a token it accepts."""
    prefix = redis_prefix
    env = project_env(
        project,
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": required_env("TEST_REDIS_URL"),
            **RAISED_RATE_LIMITS,
            "RATE_LIMIT_KEY_PREFIX": f"{prefix}:rate-limit",
            "JOB_QUEUE_NAME": f"{prefix}:jobs",
            "DOCS_ENABLED": "true",
        },
    )
    run(["uv", "run", DEFAULT_SLUG, "migrate"], project, env=env, timeout=600, what="migrate")
    port = free_port()
    log = project.parent / "serve.log"
    with started(project, [DEFAULT_SLUG, "serve", "--port", str(port)], env, log) as server:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, f"{url}/openapi.json", log)
        yield url, development_token(project, env, DEFAULT_SLUG, subject="fuzzer")


def test_no_request_gets_a_server_error(served: tuple[str, str], tmp_path: Path) -> None:
    base_url, token = served
    schemathesis = shutil.which("st", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is not installed: uv sync"
    # With a valid token, the requests reach the routes rather than stop at the guard.
    authorization = ["--header", f"Authorization: Bearer {token}"]
    command = [schemathesis, "run", f"{base_url}/openapi.json", *FUZZ_OPTIONS, *authorization]
    result = run(command, tmp_path, env=dict(os.environ), timeout=180, check=False)
    assert result.returncode == 0, result.describe()
