"""Serving a generated project for real, for the suite's tests of a running service.

A project runs as real processes (`uv run SLUG serve`, `uv run SLUG worker`) started with
`started`, waited for with `wait_until_serving`; psql and redis-cli (`tool`) reach the
machine's servers, whose URLs come from TEST_DATABASE_URL and TEST_REDIS_URL
(`required_env`), in databases and under Redis keys of their own (`temporary_database`,
`redis_key_prefix`). A service with authentication takes the tokens of its own
`token` command (`development_token`). Used by tests/test_backup.py, test_loadtest.py, test_fuzz.py and
test_rolling_restart.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from harness import run, uv_executable

# What loadtests/README.md tells a load test to set on the service under test; the
# fuzzer sets it too, so that it meets no 429.
RAISED_RATE_LIMIT = "1000000/minute;100000000/hour"
RAISED_RATE_LIMITS = {
    "RATE_LIMIT_ANONYMOUS": RAISED_RATE_LIMIT,
    "RATE_LIMIT_AUTHENTICATED": RAISED_RATE_LIMIT,
}
STARTUP_TIMEOUT = 300  # the first start compiles the project's bytecode


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: the test serves the project on it (see .ci/run)", pytrace=False)
    return value


def tool(*args: str) -> str:
    """Run a client of the machine's servers (psql, redis-cli); its output."""
    return run(list(args), Path.cwd(), env=dict(os.environ), timeout=60, what=args[0]).output


def psql(url: str, *commands: str) -> str:
    """Run SQL commands on a libpq URL; their output, one value a line."""
    options = ["--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1"]
    return tool("psql", *options, url, *(f"--command={command}" for command in commands))


@contextmanager
def temporary_database(name: str) -> Iterator[str]:
    """A new database on TEST_DATABASE_URL's server, named ``name``; its URL. Dropped at the end."""
    base = urlsplit(required_env("TEST_DATABASE_URL"))
    admin = urlunsplit((base.scheme.split("+")[0], base.netloc, base.path, "", ""))
    psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((base.scheme, base.netloc, f"/{name}", base.query, ""))
    finally:
        psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_key_prefix(label: str) -> Iterator[str]:
    """A key prefix of its own on TEST_REDIS_URL's server; its keys are deleted at the end."""
    prefix = f"{label}-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        url = required_env("TEST_REDIS_URL")
        if keys := tool("redis-cli", "-u", url, "--scan", "--pattern", f"*{prefix}*").split():
            tool("redis-cli", "-u", url, "DEL", *keys)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


@contextmanager
def started(
    project: Path, args: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`uv run ARGS` in the project as a real process, its output in log; killed at the end."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [uv_executable(), "run", *args],
            cwd=project,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def development_token(project: Path, env: Mapping[str, str], slug: str, *, subject: str = "suite") -> str:
    """A token from the project's own `token` command, with the write scope.

    The service accepts it when it runs with the same settings: in development or test,
    without AUTH_ISSUER, with the AUTH_DEVELOPMENT_KEY of the project's .env.
    """
    command = ["uv", "run", slug, "token", "--sub", subject, "--scope", "items:write"]
    result = run(command, project, env=env, timeout=300, what="token")
    return result.output.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_until_serving(
    server: subprocess.Popen[bytes], url: str, log: Path, headers: Mapping[str, str] | None = None
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.poll() is not None:
            pytest.fail(f"serve exited {server.returncode}:\n{read_log(log)}", pytrace=False)
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"no 200 from {url} within {STARTUP_TIMEOUT}s:\n{read_log(log)}", pytrace=False)
        time.sleep(0.5)


def haproxy() -> str:
    path = shutil.which("haproxy")
    if path is None:
        pytest.fail("haproxy is not installed: .ci/run installs it (apt-get install haproxy)", pytrace=False)
    return path


@contextmanager
def running_haproxy(config: str, directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The real haproxy on ``config``, written to ``directory``; the process and its log."""
    (directory / "haproxy.cfg").write_text(config, encoding="utf-8")
    log = directory / "haproxy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [haproxy(), "-db", "-f", "haproxy.cfg"],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
