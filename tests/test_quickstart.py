"""The README's quick start, for real.

    uvx copier copy --trust --defaults --data project_name="My Service" path/to/template my-service
    uv run --directory my-service my-service serve
    uv run --directory my-service my-service token --sub alice --scope items:write

The project is rendered with the copier command line (tasks on, default answers, project
name "My Service"), the service is started as a real process with none of its settings
in the environment (so it runs on SQLite), and it is driven over HTTP with a token of
its `token` command: list, create, read back, and without a token, refused; and SIGTERM
must stop it cleanly. `check-config` is checked on the same project. The tests share
one project and one server (one xdist worker) but do not depend on each other's order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness import ROOT, project_env, run, uv_executable

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("quickstart")]

SLUG = "my-service"
ITEMS = "/api/v1/items"
STARTUP_TIMEOUT = 300  # the first `uv run` creates the environment
STOP_TIMEOUT = 30
CLEAN_EXIT_CODES = {0, 128 + signal.SIGTERM, -signal.SIGTERM}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("quickstart")
    copier = str(Path(sys.executable).parent / "copier")
    run(
        [
            copier,
            "copy",
            "--trust",
            "--defaults",
            "--data",
            "project_name=My Service",
            # The suite checks this working tree, not the newest tag.
            "--vcs-ref",
            "HEAD",
            str(ROOT),
            SLUG,
        ],
        workdir,
        env=dict(os.environ),
        timeout=300,
        what="copier copy",
    )
    return workdir / SLUG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    headers: dict[str, str]  # the README's development token

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(project: Path) -> Iterator[Server]:
    """`uv run --directory my-service my-service serve --port N` as a real process.

    It is ready once GET /api/v1/items answers 200, with the token of the README's
    `token` command.
    """
    token_command = ["uv", "run", "--directory", SLUG, SLUG, "token"]
    token_command += ["--sub", "alice", "--scope", "items:write"]
    issued = run(token_command, project.parent, env=project_env(project), timeout=600, what="token")
    headers = {"Authorization": f"Bearer {issued.output.strip().splitlines()[-1]}"}
    port = free_port()
    log = project.parent / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [uv_executable(), "run", "--directory", SLUG, SLUG, "serve", "--port", str(port)],
            cwd=project.parent,
            env=project_env(project),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log, headers)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"`uv run {SLUG} serve` exited {process.returncode}:\n{server.output()}", pytrace=False
                )
            try:
                if httpx.get(server.base_url + ITEMS, headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no 200 from GET {ITEMS} within {STARTUP_TIMEOUT}s:\n{server.output()}", pytrace=False
                )
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    with serving(project) as running:
        yield running


def create_item(server: Server, name: str) -> httpx.Response:
    return httpx.post(server.base_url + ITEMS, json={"name": name}, headers=server.headers, timeout=10)


def test_the_api_refuses_a_request_without_a_token(server: Server) -> None:
    response = httpx.get(server.base_url + ITEMS, timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_service_lists_items_on_a_fresh_database(server: Server) -> None:
    response = httpx.get(server.base_url + ITEMS, headers=server.headers, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"items", "total", "limit", "offset"}, body
    assert isinstance(body["items"], list)


def test_posting_an_item_creates_it_with_201(server: Server) -> None:
    response = create_item(server, "quick start widget")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "quick start widget"


def test_a_created_item_is_listed(server: Server) -> None:
    assert create_item(server, "listed widget").status_code == 201
    body = httpx.get(
        server.base_url + ITEMS, params={"limit": 100}, headers=server.headers, timeout=10
    ).json()
    assert "listed widget" in [item["name"] for item in body["items"]], body
    assert body["total"] >= 1


def test_service_stops_cleanly_on_sigterm(project: Path) -> None:
    with serving(project) as server:
        assert create_item(server, "before shutdown").status_code == 201
        # `uv run` forwards SIGTERM to the service.
        server.process.send_signal(signal.SIGTERM)
        try:
            returncode = server.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT}s after SIGTERM:\n{server.output()}", pytrace=False)
        output = server.output()
    # Uvicorn shuts down gracefully, then re-raises the signal so that the exit status
    # tells a supervisor it was terminated: 0 and 128 + SIGTERM both count as clean.
    assert returncode in CLEAN_EXIT_CODES, f"exit status {returncode}:\n{output}"
    assert "Application shutdown complete" in output, output
    assert "Traceback" not in output, output


def test_check_config_passes_with_the_generated_env(project: Path) -> None:
    result = run(["uv", "run", SLUG, "check-config"], project, check=False, timeout=600)
    assert result.returncode == 0, result.describe()


def test_check_config_rejects_a_weak_secret_key_in_production(project: Path) -> None:
    env = project_env(project, {"ENVIRONMENT": "production", "SECRET_KEY": "short"})
    result = run(["uv", "run", SLUG, "check-config"], project, env=env, check=False, timeout=600)
    assert result.returncode == 1, result.describe()
    assert "SECRET_KEY" in result.output, result.describe()
