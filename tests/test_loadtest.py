"""The load test of a generated service, run for real.

A project with every feature on is rendered and installed with its `load` dependency
group. It is served on PostgreSQL and Redis as two real processes, `serve` and the job
`worker`: on a database of this module's own (created, migrated, and dropped at the
end) and under Redis keys of its own (the rate limiter's and the job queue's prefixes,
deleted at the end), with the rate limit raised as loadtests/README.md says. The command
the README documents then runs for a few seconds with a handful of users, and its
reports must show no failure and every kind of request the users make, the worker must
have run the jobs they queued, and the HTML report must be there.

Needs TEST_DATABASE_URL and TEST_REDIS_URL (as .ci/run sets them), and psql and
redis-cli.
"""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import DEFAULT_SLUG, Result, feature_toggles, project_env, render, run
from served import (
    RAISED_RATE_LIMITS,
    bearer,
    development_token,
    free_port,
    psql,
    read_log,
    required_env,
    started,
    tool,
    wait_until_serving,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("loadtest")]

ALL_ON = {toggle: True for toggle in feature_toggles()}
# The command of loadtests/README.md; each test run adds --host and a short run.
LOAD_TEST = ["uv", "run", "--group", "load", "locust", "--config", "loadtests/locust.conf"]
RUN_SECONDS = 5
# All spawned in the first second: four readers, an editor and a job processor (Locust
# hands out users by their weights, 4:1:1), each with time for a few requests.
USERS = 6
# Every request the users make, as the report names them (method, route).
REQUESTS = {
    ("GET", "/api/v1/items"),
    ("POST", "/api/v1/items"),
    ("GET", "/api/v1/items/{item_id}"),
    ("PATCH", "/api/v1/items/{item_id}"),
    ("DELETE", "/api/v1/items/{item_id}"),
    ("POST", "/api/v1/items/{item_id}/process"),
    ("GET", "/api/v1/jobs/{job_id}"),
}
REPORTS = Path("loadtests/reports")
JOBS_TIMEOUT = 30


@dataclass(frozen=True)
class Service:
    project: Path
    base_url: str
    database_url: str  # libpq's form, for psql
    logs: tuple[Path, ...]
    token: str  # the users' bearer token, LOADTEST_TOKEN

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{read_log(log)}" for log in self.logs)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("loadtest") / DEFAULT_SLUG, ALL_ON)
    run(["uv", "sync", "--group", "load"], project, timeout=900, what="uv sync --group load")
    return project


@pytest.fixture(scope="module")
def database(worker_id: str) -> Iterator[tuple[str, str]]:
    """A new PostgreSQL database: its URL for the service and for psql. Dropped at the end."""
    base = urlsplit(required_env("TEST_DATABASE_URL"))
    name = f"template_loadtest_{worker_id}"
    admin = urlunsplit((base.scheme.split("+")[0], base.netloc, base.path, "", ""))
    psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    try:
        yield (
            urlunsplit((base.scheme, base.netloc, f"/{name}", base.query, "")),
            urlunsplit((base.scheme.split("+")[0], base.netloc, f"/{name}", "", "")),
        )
    finally:
        psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[tuple[str, str]]:
    """Redis's URL and a key prefix of this run's own; its keys are deleted at the end."""
    url = required_env("TEST_REDIS_URL")
    prefix = f"template-loadtest-{uuid.uuid4().hex[:12]}"
    try:
        yield url, prefix
    finally:
        if keys := tool("redis-cli", "-u", url, "--scan", "--pattern", f"*{prefix}*").split():
            tool("redis-cli", "-u", url, "DEL", *keys)


@pytest.fixture(scope="module")
def service(project: Path, database: tuple[str, str], redis_prefix: tuple[str, str]) -> Iterator[Service]:
    """The project migrated, then served and its worker started, as real processes."""
    database_url, psql_url = database
    redis_url, prefix = redis_prefix
    env = project_env(
        project,
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            **RAISED_RATE_LIMITS,
            "RATE_LIMIT_KEY_PREFIX": f"{prefix}:rate-limit",
            "JOB_QUEUE_NAME": f"{prefix}:jobs",
        },
    )
    run(["uv", "run", DEFAULT_SLUG, "migrate"], project, env=env, timeout=600, what="migrate")
    port = free_port()
    serve_log, worker_log = project.parent / "serve.log", project.parent / "worker.log"
    with (
        started(project, [DEFAULT_SLUG, "serve", "--port", str(port)], env, serve_log) as server,
        started(project, [DEFAULT_SLUG, "worker"], env, worker_log),
    ):
        base_url = f"http://127.0.0.1:{port}"
        token = development_token(project, env, DEFAULT_SLUG, subject="loadtest")
        wait_until_serving(server, f"{base_url}/api/v1/items", serve_log, bearer(token))
        yield Service(project, base_url, psql_url, (serve_log, worker_log), token)


@pytest.fixture(scope="module")
def load_run(service: Service) -> Result:
    """The documented command, for RUN_SECONDS with USERS users."""
    options = ["--host", service.base_url, "--run-time", f"{RUN_SECONDS}s"]
    users = ["--users", str(USERS), "--spawn-rate", str(USERS)]
    env = project_env(service.project, {"LOADTEST_TOKEN": service.token})
    return run([*LOAD_TEST, *options, *users], service.project, env=env, timeout=300, check=False)


def report(project: Path, name: str) -> list[dict[str, str]]:
    with (project / REPORTS / name).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_run_has_no_failures(load_run: Result, service: Service) -> None:
    failures = report(service.project, "run_failures.csv")
    assert failures == [], f"{failures}\n{load_run.describe()}"
    # The exit status counts every request, the last second's too, which the CSV
    # files (rewritten every second) may miss.
    assert load_run.returncode == 0, f"{load_run.describe()}\n{service.output()}"


def test_the_users_make_every_kind_of_request(load_run: Result, service: Service) -> None:
    counts = {
        (row["Type"], row["Name"]): int(row["Request Count"])
        for row in report(service.project, "run_stats.csv")
        if row["Name"] != "Aggregated"
    }
    assert set(counts) == REQUESTS, load_run.describe()
    assert all(counts.values()), counts


def test_the_worker_runs_the_jobs_the_users_queue(load_run: Result, service: Service) -> None:
    deadline = time.monotonic() + JOBS_TIMEOUT
    while int(psql(service.database_url, "SELECT count(*) FROM item_results")) == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no job ran within {JOBS_TIMEOUT}s of the run:\n{service.output()}", pytrace=False)
        time.sleep(1)


def test_the_run_writes_an_html_report(load_run: Result, service: Service) -> None:
    html = (service.project / REPORTS / "report.html").read_text(encoding="utf-8")
    assert "/api/v1/items/{item_id}" in html, load_run.describe()
