"""The generated HAProxy config in front of a generated service, both run for real.

A project with every feature on is served (development settings, SQLite, JSON logs)
with FORWARDED_ALLOW_IPS in its `.env` naming the proxy's address only, and the
real `haproxy` runs its `deploy/haproxy/haproxy.cfg` in front of it, with the
addresses moved to loopback ports and the two client timeouts shortened to 1 second,
so that the test waits for them in seconds. Through the proxy: a request passes with
the client's address (from X-Forwarded-For, whatever the client claimed) reaching the
service; headers over 16 KiB get the proxy's 431; a client that sends its headers
slowly, one that sends nothing and an idle keep-alive connection are all closed.

Needs `haproxy` on PATH (.ci/run installs Debian's package).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import DEFAULT_SLUG, feature_toggles, project_env, render, run
from served import (
    bearer,
    development_token,
    free_port,
    haproxy,
    read_log,
    running_haproxy,
    started,
    wait_until_serving,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("edge")]

ALL_ON = {toggle: True for toggle in feature_toggles()}
CONFIG = Path("deploy/haproxy/haproxy.cfg")
# Clients connect from one loopback address, the proxy reaches the service from
# another: the service must see the first, and trust only the second.
CLIENT, PROXY = "127.0.0.2", "127.0.0.3"
CUT_OFF = 1.0  # seconds: the shortened http-request and http-keep-alive timeouts
SLACK = 3.0  # what a loaded CI machine may add to a timeout
PROXY_START_TIMEOUT = 30
HEADER_LIMIT = 16_384


def replaced(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced, which must be there: the test relies on it."""
    assert old in text, f"{CONFIG} no longer has {old!r}: update tests/test_edge_proxy.py"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("edge") / DEFAULT_SLUG, ALL_ON)
    run(["uv", "sync"], project, timeout=900, what="uv sync")
    return project


@pytest.fixture(scope="module")
def app_port(project: Path) -> Iterator[int]:
    """The project served on SQLite in development, trusting X-Forwarded-For from PROXY."""
    # In .env, not the environment: uvicorn reads only the environment, so the proxy is
    # trusted only if the settings pass FORWARDED_ALLOW_IPS on to it.
    with (project / ".env").open("a", encoding="utf-8") as env_file:
        env_file.write(f"\nFORWARDED_ALLOW_IPS={PROXY}\nALLOWED_HOSTS=localhost\n")
    env = project_env(project, {"LOG_FORMAT": "json"})
    for name in ("FORWARDED_ALLOW_IPS", "ALLOWED_HOSTS"):
        env.pop(name, None)
    port = free_port()
    log = project.parent / "serve.log"
    with started(project, [DEFAULT_SLUG, "serve", "--port", str(port)], env, log) as server:
        wait_until_serving(server, f"http://127.0.0.1:{port}/health/live", log)
        yield port


@pytest.fixture(scope="module")
def proxy_url(project: Path, app_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real haproxy on the generated config, in front of the service; its URL."""
    config = (project / CONFIG).read_text(encoding="utf-8")
    port = free_port()
    config = replaced(config, "bind :8000", f"bind 127.0.0.1:{port}")
    config = replaced(config, "server api api:8000 ", f"server api 127.0.0.1:{app_port} source {PROXY} ")
    config = replaced(config, "timeout http-request 10s", f"timeout http-request {CUT_OFF:g}s")
    config = replaced(config, "timeout http-keep-alive 10s", f"timeout http-keep-alive {CUT_OFF:g}s")
    url = f"http://127.0.0.1:{port}"
    with running_haproxy(config, tmp_path_factory.mktemp("haproxy")) as (process, log):
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                output = read_log(log)
                pytest.fail(f"no 200 through haproxy (exit {process.poll()}):\n{output}", pytrace=False)
            time.sleep(0.2)
        yield url


@pytest.fixture(scope="module")
def token(project: Path) -> str:
    """A development token the served project accepts (the key is in its .env)."""
    return development_token(project, project_env(project), DEFAULT_SLUG)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", headers={"Host": "localhost"}, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def client_socket(proxy_url: str) -> socket.socket:
    """A raw connection to the proxy from CLIENT; every read on it waits at most SLACK s."""
    port = int(proxy_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=SLACK, source_address=(CLIENT, 0))
    return sock


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """How long the proxy takes to close the connection (reading whatever it sends)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    pytest.fail(f"the connection was still open after {limit:g} s")


def access_lines(project: Path, request_id: str) -> list[dict[str, object]]:
    log = read_log(project.parent / "serve.log")
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request" and line.get("request_id") == request_id]


def test_the_generated_config_passes_haproxy_check(project: Path) -> None:
    result = run([haproxy(), "-c", "-f", str(CONFIG)], project, env=dict(os.environ), timeout=60, check=False)
    assert result.returncode == 0, result.describe()
    assert "Configuration file is valid" in result.output, result.describe()


def test_a_request_reaches_the_service_with_the_clients_address(
    project: Path, proxy_url: str, token: str
) -> None:
    transport = httpx.HTTPTransport(local_address=CLIENT)
    with httpx.Client(transport=transport, base_url=proxy_url, timeout=SLACK) as client:
        headers = {"Host": "localhost", "X-Request-ID": "edge-xff", "X-Forwarded-For": "6.6.6.6"}
        response = client.get("/api/v1/items", headers=headers | bearer(token))
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + SLACK
    while not (lines := access_lines(project, "edge-xff")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [line["client"] for line in lines] == [CLIENT]


def test_headers_over_the_limit_get_431_from_the_proxy(project: Path, proxy_url: str) -> None:
    headers = {"Host": "localhost", "X-Request-ID": "edge-431", "X-Big": "x" * HEADER_LIMIT}
    response = httpx.get(f"{proxy_url}/api/v1/items", headers=headers, timeout=SLACK)
    assert response.status_code == 431
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 431
    assert access_lines(project, "edge-431") == [], "the service saw the request"


def test_a_client_slow_to_send_its_headers_is_cut_off(proxy_url: str) -> None:
    request = b"GET /api/v1/items HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: 1\r\n" * 100
    start = time.monotonic()
    with client_socket(proxy_url) as sock:
        try:
            for byte in request:  # one byte every 50 ms: the headers would take 60 s
                sock.send(bytes([byte]))
                time.sleep(0.05)
                assert time.monotonic() - start < CUT_OFF + SLACK, "still sending"
        except OSError:  # the proxy closed the connection: a send fails
            pass
        else:
            pytest.fail("the whole request was sent")
    assert time.monotonic() - start >= CUT_OFF


def test_a_connection_that_sends_nothing_is_closed(proxy_url: str) -> None:
    with client_socket(proxy_url) as sock:
        assert seconds_until_closed(sock, CUT_OFF + SLACK) >= CUT_OFF * 0.9


def test_an_idle_keep_alive_connection_is_closed(proxy_url: str) -> None:
    with client_socket(proxy_url) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = b""
        while b"alive" not in response:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the response ended: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response
        assert seconds_until_closed(sock, CUT_OFF + SLACK) >= CUT_OFF * 0.9
