"""Fixtures and hooks of the template suite (helpers are in harness.py).

* `render_project`: render the template into a fresh temporary directory.
* `service_urls`: TEST_DATABASE_URL / TEST_REDIS_URL for a generated project's own
  tests, isolated per xdist worker so that two generated test suites running at the same
  time never share a database.
* A timing table, one line per feature combination, printed at the end of the run. With
  xdist the workers attach the timings to their test reports (user properties), which
  travel to the controller that prints the table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import TIMED_STEPS, TIMING_PROPERTY, render

RenderProject = Callable[..., Path]


@pytest.fixture
def render_project(tmp_path: Path) -> RenderProject:
    """render_project(data=None, *, skip_tasks=False, name="orders-service") -> project dir."""
    counter = iter(range(1_000))

    def _render(
        data: dict[str, Any] | None = None, *, skip_tasks: bool = False, name: str | None = None
    ) -> Path:
        dst = tmp_path / (name or f"project-{next(counter)}")
        return render(dst, data, skip_tasks=skip_tasks)

    return _render


@pytest.fixture(scope="session")
def mypy_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A mypy cache shared by the combinations one worker runs (one writer at a time).

    The combinations share most of their modules (FastAPI, SQLAlchemy, pydantic, ...),
    and mypy re-checks whatever differs by content hash, so the result is the same as a
    cold run in a fraction of the time. TEMPLATE_TEST_COLD_MYPY=1 turns sharing off.
    """
    if os.environ.get("TEMPLATE_TEST_COLD_MYPY") == "1":
        return None
    return tmp_path_factory.mktemp("mypy-cache")


# ---------------------------------------------------------------------------
# Databases for the generated projects' own tests
# ---------------------------------------------------------------------------


def _worker_number(worker_id: str) -> int:
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return int(match.group(1)) + 1 if match else 0


def _isolated_database_url(base: str, worker_id: str) -> str:
    """Recreate a database of this worker's own and return base's URL pointing to it.

    Without psql (or when the server refuses), the base URL is returned unchanged.
    """
    if worker_id == "master":
        return base
    parts = urlsplit(base)
    name = f"template_suite_{worker_id}"
    admin_url = urlunsplit((parts.scheme.split("+")[0], parts.netloc, parts.path, "", ""))
    psql = shutil.which("psql")
    if psql is None:
        return base
    proc = subprocess.run(
        [
            psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            admin_url,
            "-c",
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            "-c",
            f'CREATE DATABASE "{name}"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"could not create test database {name}:\n{proc.stdout}{proc.stderr}", pytrace=False)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _isolated_redis_url(base: str, worker_id: str) -> str:
    """base's URL with a Redis database number of this worker's own (0 without xdist)."""
    parts = urlsplit(base)
    number = _worker_number(worker_id) % 16
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, parts.fragment))


@pytest.fixture
def service_urls(worker_id: str) -> dict[str, str]:
    urls: dict[str, str] = {}
    if database_url := os.environ.get("TEST_DATABASE_URL"):
        urls["TEST_DATABASE_URL"] = _isolated_database_url(database_url, worker_id)
    if redis_url := os.environ.get("TEST_REDIS_URL"):
        urls["TEST_REDIS_URL"] = _isolated_redis_url(redis_url, worker_id)
    return urls


# ---------------------------------------------------------------------------
# Ordering: the long tests first, so the two workers finish together
# ---------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # On an xdist worker with --dist loadgroup, xdist has suffixed "@group" to the node
    # id of every grouped test by now; if it has not, grouping is broken (it was with
    # pytest 9.2 and xdist 3.8) and shared projects would be rendered once per worker.
    if getattr(config.option, "loadgroup", False):
        ungrouped = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not apply xdist_group to {ungrouped[:3]}")

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("matrix"):
            return 0
        if item.get_closest_marker("slow"):
            return 1
        return 2

    items.sort(key=weight)  # stable: file order within each weight


# ---------------------------------------------------------------------------
# Timing table
# ---------------------------------------------------------------------------

_timings: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == TIMING_PROPERTY and isinstance(value, dict):
            _timings.append(value)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _timings:
        return
    width = max(len("combination"), *(len(t["label"]) for t in _timings))
    header = f"{'combination':<{width}} " + " ".join(f"{s:>7}" for s in (*TIMED_STEPS, "total"))
    terminalreporter.write_sep("-", "template matrix: seconds per step (! = step failed)")
    terminalreporter.write_line(header)
    for timing in sorted(_timings, key=lambda t: t["label"]):
        seconds: dict[str, float] = timing["seconds"]
        cells = []
        for step in TIMED_STEPS:
            if step in seconds:
                mark = "!" if step in timing.get("failed", ()) else ""
                cells.append(f"{mark}{seconds[step]:.1f}".rjust(7))
            else:
                cells.append("-".rjust(7))
        cells.append(f"{sum(seconds.values()):.1f}".rjust(7))
        terminalreporter.write_line(f"{timing['label']:<{width}} " + " ".join(cells))
