"""What a generated service costs per request, against bare FastAPI on the same machine.

Run it from the template repository, with the suite's environment (it imports
tests/harness.py to render and install the services):

    uv run python benchmarks/bench_service.py                 # the full run, ~21 min
    uv run python benchmarks/bench_service.py --quick         # a smoke run, ~2 min
    uv run python benchmarks/bench_service.py --runs 5 --duration 8 --connections 4 --json out.json
    uv run python benchmarks/bench_service.py --profile on-memory:list-pg
    uv run python benchmarks/bench_service.py --runs 3 --targets bare,on-memory,on-redis \
        --patch fix=/tmp/fix.patch --endpoints live,item,list-pg
    uv run python benchmarks/bench_service.py --runs 3 --targets bare,on-memory,on-noauth-memory \
        --endpoints list-sqlite,list-pg                        # what a token costs

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379,
as the template suite does, and wrk (`apt-get install wrk`; without it a small asyncio
client in this file is used, which is slower than the servers it loads). Everything runs
on loopback; every load is bounded by a duration or a request count.

What it does:

1. Renders a service with every feature on and one with every feature off (the
   template's working tree, as the suite does), installs each with `uv sync --no-dev
   --compile-bytecode` (bytecode compiled at install, as the generated Dockerfile does),
   and takes benchmarks/bare_app.py, bare FastAPI with the same items routes, as the
   reference. "on" runs twice: with the rate limiter in memory (no REDIS_URL) and on
   Redis (REDIS_URL set), so there are four targets: bare, off, on-memory, on-redis.
   A fifth, on-noauth-memory, is the all-on service rendered with use_auth=false: what
   on-memory is measured against for the cost of authentication.
2. Makes a SQLite file and a PostgreSQL database of its own (`cfs_bench`, with
   --seed-rows items) with the services' migrations. Each server start gets a fresh
   copy of the SQLite file; rows added by POST runs are deleted from PostgreSQL.
3. For each round (--runs), first on SQLite, then on PostgreSQL: starts each target's
   server under uvicorn with one worker, one at a time, timing its cold start (process
   start until the first 200 from /api/v1/items/1); warms each up and reads its RSS;
   then loads each endpoint for --duration seconds with --connections connections on
   one server after the other (the others sit idle), so that a target and bare are
   measured seconds apart. The order of the targets rotates from round to round.
4. Prints medians over the rounds: req/s, p50 and p99 per endpoint, each target's
   ratio to bare (the median of the per-round ratios), cold start and RSS; then the
   Redis commands per request of the rate limiter (INFO commandstats before and after a
   fixed number of requests, and MONITOR to tell the round trips from the commands
   that Lua scripts run inside Redis), and the targets of docs/performance.md, met or
   missed.

Authentication (use_auth): staging refuses to start without an issuer, and the API
answers 401 without a token. So the benchmark runs benchmarks/bench_issuer.py with the
all-on service's interpreter (PyJWT and cryptography are in its environment, not
necessarily in the suite's): an OpenID Connect issuer on 127.0.0.1 (discovery and a
JWKS of one RSA key) that mints one RS256 token, valid for 30 days, with sub "bench" and
the write scope. Every all-on target (on-*, the patch targets) starts with AUTH_ISSUER
set to it and AUTH_AUDIENCE=orders-service, and every request to it (the load, the
warm-up, the cold-start probe, the Redis counts) carries `Authorization: Bearer
<token>`: one token, so after the first request each verification is a hit in the
service's cache of verified tokens. The report gives each such target's req/s over that
of the same service without use_auth (on-memory / on-noauth-memory, median of the
per-round ratios) and checks the goal: at most 10% fewer req/s on the lists.

Options beyond the default targets: `--targets on-sentry` adds on-memory with Sentry
started (SENTRY_DSN pointing at a sink in this process); `--targets on-noauth-redis`
adds the service without use_auth with its limiter on Redis (on-redis is then compared
with it); `--targets on-uncached-memory` adds on-memory with AUTH_TOKEN_CACHE_SIZE=0,
so that every request verifies the token's signature; `--patch NAME=FILE` adds the
all-features service with a patch applied to a rendered copy of its own, as targets
NAME-memory and NAME-redis, to measure a fix before it goes into template/; `--profile TARGET:ENDPOINT`
profiles one target under load with py-spy instead (benchmarks/profile_service.py).

Settings of every service run (stated again in the output):

* ENVIRONMENT=staging with LOG_FORMAT=json, LOG_LEVEL=INFO and stdout to a file, on
  SQLite and on PostgreSQL alike: production refuses SQLite, and it refuses the job
  queue without REDIS_URL, which the memory-limiter run must not set. Staging differs
  from production per request only by the HSTS header; DOCS_ENABLED=false as in
  production. Sentry is rendered in but SENTRY_DSN is unset, so the SDK is not started.
* RATE_LIMIT_DEFAULT=1000000/minute;100000000/hour: two limits, the shape of the
  default (60/minute;1000/hour), high enough that the runs measure the limiter's cost
  and never a 429; RATE_LIMIT_AUTHENTICATED the same, for the callers with a token.
* POST /api/v1/items has the default limits only. A service rendered before the
  features plugged in had its own `rate_limit("10/minute")` on it, written in the router;
  for such a render (a `--patch` base or an older checkout), the benchmark rewrites it
  to 1000000/minute in its own copy (never in template/), so that POST measures the
  route limit's cost rather than 429s, and says so.

The servers are started with their console script (`orders-service serve --workers 1`)
or `python -m uvicorn` straight from the project's virtual environment, not through
`uv run`, which would add its own start-up to the cold start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402  (tests/harness.py: render, project_env, run, uv_executable)

SLUG = harness.DEFAULT_SLUG
PACKAGE = harness.DEFAULT_PACKAGE
HOST = "127.0.0.1"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "cfs_bench"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
KEY_PREFIX = "cfs-bench"
RATE_LIMIT = "1000000/minute;100000000/hour"
ROUTE_LIMIT_IN_TEMPLATE = 'rate_limit("10/minute")'
ROUTE_LIMIT_FOR_BENCH = 'rate_limit("1000000/minute")'
WRK_SCRIPT = BENCH_DIR / "wrk_report.lua"
ISSUER_SCRIPT = BENCH_DIR / "bench_issuer.py"
AUTH_AUDIENCE = SLUG

TARGETS = ("bare", "off", "on-memory", "on-redis", "on-noauth-memory")
# Not run unless named in --targets: the memory-limiter service with Sentry started,
# sending to a sink on loopback in this process (SENTRY_DSN set, default sampling);
# the all-on service without authentication with its limiter on Redis; and on-memory
# with AUTH_TOKEN_CACHE_SIZE=0, so that every request verifies the token's signature.
OPTIONAL_TARGETS = ("on-sentry", "on-noauth-redis", "on-uncached-memory")
# What each target is measured against besides bare (the ratio of its req/s to that
# target's, per round): what authentication costs.
COMPARED_TO = {
    "on-memory": "on-noauth-memory",
    "on-redis": "on-noauth-redis",
    "on-uncached-memory": "on-noauth-memory",
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    database: str  # "sqlite" or "pg": which server process serves it
    method: str
    path: str
    needs_health: bool = False

    def describe(self) -> str:
        return f"{self.method} {self.path} ({'PostgreSQL' if self.database == 'pg' else 'SQLite'})"


ENDPOINTS = (
    Endpoint("live", "sqlite", "GET", "/health/live", needs_health=True),
    Endpoint("item", "sqlite", "GET", "/api/v1/items/1"),
    Endpoint("list-sqlite", "sqlite", "GET", "/api/v1/items?limit=20"),
    Endpoint("post-sqlite", "sqlite", "POST", "/api/v1/items"),
    Endpoint("list-pg", "pg", "GET", "/api/v1/items?limit=20"),
    Endpoint("post-pg", "pg", "POST", "/api/v1/items"),
)
COLD_START_PATH = "/api/v1/items/1"
SELECTED = {e.name for e in ENDPOINTS}  # --endpoints


class BenchError(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------
# The services: render, install, configure
# ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    project: Path  # the rendered project whose virtual environment runs it
    has_health: bool
    env: dict[str, str] = field(default_factory=dict)
    # Sent with every request (the bearer token of the services with authentication).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.project / ".venv" / "bin" / "python"

    def command(self, port: int) -> list[str]:
        if self.name == "bare":
            return [
                str(self.python), "-m", "uvicorn", "bare_app:app", "--app-dir", str(BENCH_DIR),
                "--host", HOST, "--port", str(port), "--workers", "1",
                "--no-access-log", "--no-server-header", "--log-level", "info",
            ]  # fmt: skip
        script = self.project / ".venv" / "bin" / SLUG
        return [str(script), "serve", "--host", HOST, "--port", str(port), "--workers", "1"]

    def endpoints(self) -> list[Endpoint]:
        return [e for e in ENDPOINTS if (self.has_health or not e.needs_health) and e.name in SELECTED]


def toggles(on: bool, **overrides: bool) -> dict[str, bool]:
    """Every feature on (or off), but those overridden (when the template has them)."""
    answers = {toggle: on for toggle in harness.feature_toggles()}
    answers.update((name, value) for name, value in overrides.items() if name in answers)
    return answers


def prepare_project(work: Path, name: str, answers: dict[str, bool], *, rebuild: bool) -> Path:
    project = work / name
    marker = project / ".venv" / "bin" / SLUG
    compiled = project / ".venv" / ".compiled"  # holds the answers it was rendered with
    wanted = json.dumps(answers, sort_keys=True)
    if marker.exists() and compiled.exists() and compiled.read_text() == wanted and not rebuild:
        say(f"  {name}: reusing {project}")
        return project
    if project.exists():
        shutil.rmtree(project)
    started = time.monotonic()
    harness.render(project, answers)
    router = project / "src" / PACKAGE / "items" / "router.py"
    text = router.read_text()
    if ROUTE_LIMIT_IN_TEMPLATE in text:
        router.write_text(text.replace(ROUTE_LIMIT_IN_TEMPLATE, ROUTE_LIMIT_FOR_BENCH))
        say(f"  {name}: POST /api/v1/items limit rewritten to 1000000/minute in this copy")
    # Bytecode compiled at install, as the generated Dockerfile does (UV_COMPILE_BYTECODE=1):
    # with PYTHONDONTWRITEBYTECODE=1 (set on this machine, and in the image) a start
    # would otherwise compile every module it imports, every time.
    result = harness.run(["uv", "sync", "--no-dev", "--compile-bytecode"], project, check=False, timeout=600)
    if result.returncode != 0:
        raise BenchError(f"uv sync failed in {project}:\n{result.output[-3000:]}")
    compiled.write_text(wanted)
    say(f"  {name}: rendered and installed in {time.monotonic() - started:.1f}s ({project})")
    return project


VERSIONS_CODE = """
import sys
from importlib import metadata
names = ("fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn", "uvloop", "httptools",
         "asyncpg", "aiosqlite", "structlog", "limits", "redis")
found = []
for name in names:
    try:
        found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
print("Python " + sys.version.split()[0] + ", " + ", ".join(found))
"""


def versions(python: Path) -> str:
    out = subprocess.run([str(python), "-c", VERSIONS_CODE], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


# ---------------------------------------------------------------------------
# Databases and Redis
# ---------------------------------------------------------------------------


def psql(sql: str, database: str = "postgres") -> str:
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    proc = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"psql failed: {sql}\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def pg_url(database: str = PG_DATABASE) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


def migrate(project: Path, database_url: str, extra_env: dict[str, str]) -> None:
    env = harness.project_env(project, {"ENVIRONMENT": "staging", "DATABASE_URL": database_url, **extra_env})
    script = project / ".venv" / "bin" / SLUG
    # Run outside the project, as the servers are: its .env (written for development,
    # with AUTH_DEVELOPMENT_KEY, which staging refuses) is not read.
    result = harness.run([str(script), "migrate"], project.parent, env=env, check=False, timeout=300)
    if result.returncode != 0:
        raise BenchError(f"migrate failed for {database_url}:\n{result.output[-3000:]}")


def prepare_databases(work: Path, schema_project: Path, seed_rows: int, env: dict[str, str]) -> Path:
    """A seeded SQLite file (copied fresh for every server) and the PostgreSQL database.

    `env`: what the schema project needs to start in staging (its issuer).
    """
    seed = work / "seed.db"
    seed.unlink(missing_ok=True)
    migrate(schema_project, f"sqlite+aiosqlite:///{seed}", env)
    stamp = "2026-01-01 00:00:00.000000"
    with contextlib.closing(sqlite3.connect(seed)) as db:
        db.executemany(
            "INSERT INTO items (name, description, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [(f"seed-{i}", f"Seed item number {i}", stamp, stamp) for i in range(1, seed_rows + 1)],
        )
        db.commit()

    psql(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{PG_DATABASE}"')
    migrate(schema_project, pg_url(), env)
    psql(
        "INSERT INTO items (name, description, created_at, updated_at) "
        f"SELECT 'seed-' || g, 'Seed item number ' || g, now(), now() "
        f"FROM generate_series(1, {seed_rows}) g",
        PG_DATABASE,
    )
    psql("VACUUM ANALYZE items", PG_DATABASE)
    return seed


def reset_pg(seed_rows: int) -> None:
    psql(f"DELETE FROM items WHERE id > {seed_rows}", PG_DATABASE)
    psql("VACUUM ANALYZE items", PG_DATABASE)


def redis_command(*args: str | int, db: int = 0) -> Any:
    """A minimal RESP client: one command, one reply (enough for INFO, SCAN and DEL)."""
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as sock:
        stream = sock.makefile("rwb")

        def send(*parts: str | int) -> None:
            encoded = [str(p).encode() for p in parts]
            stream.write(b"*%d\r\n" % len(encoded))
            for part in encoded:
                stream.write(b"$%d\r\n%s\r\n" % (len(part), part))
            stream.flush()

        def read() -> Any:
            line = stream.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b":"):
                return int(rest) if kind == b":" else rest.decode()
            if kind == b"-":
                raise BenchError(f"Redis: {rest.decode()}")
            if kind == b"$":
                size = int(rest)
                if size < 0:
                    return None
                data = stream.read(size + 2)[:-2]
                return data.decode()
            if kind == b"*":
                return [read() for _ in range(int(rest))]
            raise BenchError(f"Redis: unexpected reply {line!r}")

        if db:
            send("SELECT", db)
            read()
        send(*args)
        return read()


def command_stats() -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    text = redis_command("INFO", "commandstats")
    stats = {}
    for match in re.finditer(r"^cmdstat_([^:]+):calls=(\d+)", text, re.M):
        stats[match.group(1)] = int(match.group(2))
    return stats


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return {name: count for name, count in delta.items() if count}


class RedisMonitor:
    """Count the commands clients send to one Redis database (MONITOR), apart from the
    ones Lua scripts run inside the server: the round trips, which INFO commandstats
    cannot tell from the commands inside scripts. Only for short, bounded counts."""

    def __init__(self, db: int) -> None:
        self.db = db
        self.sent: dict[str, int] = {}
        self.in_scripts: dict[str, int] = {}
        self._sock = socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5)
        self._sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self._stream = self._sock.makefile("rb")
        if not self._stream.readline().startswith(b"+OK"):
            raise BenchError("Redis refused MONITOR")
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pattern = re.compile(rb'^\+[0-9.]+ \[(\d+) ([^\]]+)\] "([^"]+)"')
        with contextlib.suppress(OSError, ValueError):
            for line in self._stream:
                match = pattern.match(line)
                if not match or int(match.group(1)) != self.db:
                    continue
                name = match.group(3).decode().lower()
                table = self.in_scripts if match.group(2) == b"lua" else self.sent
                table[name] = table.get(name, 0) + 1

    def close(self) -> None:
        time.sleep(0.2)  # Let the last lines arrive.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


class SentrySink:
    """An HTTP server on loopback that takes Sentry envelopes and answers 200, counting them."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.envelopes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.envelopes += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Issuer:
    """benchmarks/bench_issuer.py in a process of its own, run by `python` (a rendered
    service's, which has PyJWT and cryptography): an OpenID Connect issuer on loopback,
    and the one token it minted for the benchmark."""

    def __init__(self, python: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(python), str(ISSUER_SCRIPT), "--audience", AUTH_AUDIENCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=15)
            raise BenchError(f"bench_issuer.py exited {self.proc.returncode}:\n{log_path.read_text()}")
        started = json.loads(line)
        self.url: str = started["issuer"]
        self.token: str = started["token"]
        self.requests: dict[str, int] = {}

    def env(self) -> dict[str, str]:
        return {"AUTH_ISSUER": self.url, "AUTH_AUDIENCE": AUTH_AUDIENCE}

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def close(self) -> None:
        """Stop it (stdin closed) and read how often each path was asked for."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._log.close()
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                self.requests = json.loads(line).get("requests", self.requests)


def clean_redis(db: int) -> int:
    """Delete this benchmark's keys (and only them) from its Redis database."""
    deleted = 0
    cursor = "0"
    while True:
        cursor, keys = redis_command("SCAN", cursor, "MATCH", f"{KEY_PREFIX}*", "COUNT", 1000, db=db)
        if keys:
            deleted += redis_command("DEL", *keys, db=db)
        if cursor == "0":
            return deleted


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def header_lines(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    timeout: float = 5,
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a new connection: (status, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        headers = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        headers += header_lines(extra_headers or {})
        if body:
            headers += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        sock.sendall(headers.encode() + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for {pid}")


@dataclass
class Server:
    target: Target
    database: str
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    cold_start: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.port = free_port()
        log = self.log_path.open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.target.command(self.port),
            cwd=self.log_path.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = started + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, IndexError, ValueError):
                status, _ = http_request(
                    self.port, "GET", COLD_START_PATH, timeout=2, extra_headers=self.target.headers
                )
                if status == 200:
                    self.cold_start = time.monotonic() - started
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"{self.label} gave no 200 within 60 s:\n{self.log_tail()}")
            time.sleep(0.01)

    @property
    def label(self) -> str:
        return f"{self.target.name}/{self.database}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, int]:
        """Counts of the log lines that would make a run suspect."""
        counts = {"lines": 0, "error": 0, "warning": 0, "rate_limit_redis_unavailable": 0}
        with self.log_path.open("rb") as log:
            for line in log:
                counts["lines"] += 1
                if b'"level": "error"' in line or b'"level":"error"' in line:
                    counts["error"] += 1
                elif b'"level": "warning"' in line or b'"level":"warning"' in line:
                    counts["warning"] += 1
                if b"rate_limit_redis_unavailable" in line:
                    counts["rate_limit_redis_unavailable"] += 1
        return counts


@contextlib.contextmanager
def running(server: Server, env: dict[str, str]) -> Iterator[Server]:
    try:
        server.start(env)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    bad_status: int  # responses >= 400

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_load(
    port: int, endpoint: Endpoint, seconds: float, connections: int, headers: dict[str, str] | None = None
) -> Load:
    url = f"http://{HOST}:{port}{endpoint.path}"
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
    ]
    for name, value in (headers or {}).items():  # wrk.format() sends them with every request
        args += ["-H", f"{name}: {value}"]
    args.append(url)
    if endpoint.method == "POST":
        args += ["--", "post", uuid.uuid4().hex[:10]]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"^WRKJSON (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(match.group(1))
    return Load(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
        bad_status=data["status_errors"],
    )


async def _asyncio_load(
    port: int,
    endpoint: Endpoint,
    connections: int,
    seconds: float | None,
    count: int | None,
    headers: dict[str, str] | None = None,
) -> Load:
    """Keep-alive HTTP/1.1 on `connections` connections until `seconds` or `count` is reached."""
    extra = header_lines(headers or {})
    latencies: list[float] = []
    state = {"sent": 0, "errors": 0, "bad": 0}
    run_id = uuid.uuid4().hex[:10]
    stop_at = time.monotonic() + seconds if seconds else None

    def next_request() -> bytes | None:
        if count is not None and state["sent"] >= count:
            return None
        if stop_at is not None and time.monotonic() >= stop_at:
            return None
        state["sent"] += 1
        head = f"{endpoint.method} {endpoint.path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}"
        if endpoint.method != "POST":
            return (head + "\r\n").encode()
        body = json.dumps({"name": f"bench-{run_id}-{state['sent']}", "description": "bench"}).encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (request := next_request()) is not None:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length is None:
                    raise BenchError("response without Content-Length")
                await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - started)
                if status >= 400:
                    state["bad"] += 1
        except (OSError, asyncio.IncompleteReadError):
            state["errors"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000

    return Load(len(latencies), elapsed, percentile(50), percentile(99), state["errors"], state["bad"])


def asyncio_load(
    port: int,
    endpoint: Endpoint,
    connections: int,
    seconds: float | None = None,
    count: int | None = None,
    headers: dict[str, str] | None = None,
) -> Load:
    return asyncio.run(_asyncio_load(port, endpoint, connections, seconds, count, headers))


# load(port, endpoint, seconds, connections, headers)
Loader = Callable[[int, Endpoint, float, int, dict[str, str] | None], Load]


def make_loader(use_wrk: bool) -> Loader:
    if use_wrk:
        return wrk_load
    return lambda port, endpoint, seconds, connections, headers=None: asyncio_load(
        port, endpoint, connections, seconds, headers=headers
    )


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


@dataclass
class Results:
    """Every sample, keyed by target and endpoint; one sample per round."""

    loads: dict[tuple[str, str], list[Load]] = field(default_factory=dict)
    cold_starts: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    rss: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    ratios: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    redis: dict[str, Any] = field(default_factory=dict)

    def add(self, table: dict[tuple[str, str], list[Any]], key: tuple[str, str], value: Any) -> None:
        table.setdefault(key, []).append(value)


def server_env(target: Target, database: str, database_url: str) -> dict[str, str]:
    if target.name == "bare":
        return harness.project_env(target.project, {"DATABASE_URL": database_url})
    extra = {
        "ENVIRONMENT": "staging",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DOCS_ENABLED": "false",
        "DATABASE_URL": database_url,
        **target.env,
    }
    return harness.project_env(target.project, extra)


def run_round(
    round_number: int,
    order: Sequence[Target],
    work: Path,
    seed: Path,
    args: argparse.Namespace,
    results: Results,
    load: Loader,
) -> None:
    """One round: for each database, every target's server, loaded one after another.

    The servers of a database are started one at a time (each cold start is timed
    while the others sit idle), then each endpoint is loaded on one server after the
    other, so that a target and bare are measured seconds apart, not minutes: on shared
    hardware the machine's speed drifts, and the ratio should not.
    """
    for database in ("sqlite", "pg"):
        servers: list[Server] = []
        completed = False
        try:
            for target in order:
                if not any(e.database == database for e in target.endpoints()):
                    continue
                if database == "sqlite":
                    db_file = work / f"run-{target.name}.db"
                    shutil.copyfile(seed, db_file)
                    url = f"sqlite+aiosqlite:///{db_file}"
                else:
                    url = pg_url()
                log_path = work / "logs" / f"{target.name}-{database}-r{round_number}.log"
                server = Server(target, database, log_path)
                servers.append(server)
                server.start(server_env(target, database, url))
                results.add(results.cold_starts, (target.name, database), server.cold_start)
            for server in servers:
                for endpoint in server.target.endpoints():  # Warm-up: pools, caches, code paths.
                    if endpoint.database == database:
                        load(server.port, endpoint, args.warmup, args.connections, server.target.headers)
                results.add(results.rss, (server.target.name, database), rss_mib(server.pid))
            say(
                f"  round {round_number} {database}: cold start, RSS: "
                + ", ".join(f"{s.target.name} {s.cold_start:.2f}s {rss_mib(s.pid):.0f} MiB" for s in servers)
            )
            for endpoint in ENDPOINTS:
                if endpoint.database != database or endpoint.name not in SELECTED:
                    continue
                cells = []
                for server in servers:
                    if endpoint not in server.target.endpoints():
                        continue
                    if server.proc is not None and server.proc.poll() is not None:
                        args.keep_logs = True
                        raise BenchError(f"{server.label} died (exit {server.proc.returncode}):\n"
                                         f"{server.log_tail()}")  # fmt: skip
                    sample = load(
                        server.port, endpoint, args.duration, args.connections, server.target.headers
                    )
                    results.add(results.loads, (server.target.name, endpoint.name), sample)
                    cells.append(f"{server.target.name} {sample.rps:,.0f}/s")
                    if sample.errors or sample.bad_status:
                        results.log_problems.append(
                            f"round {round_number} {server.label} {endpoint.name}: "
                            f"{sample.bad_status} responses >= 400, {sample.errors} socket errors"
                        )
                say(f"  round {round_number} {endpoint.name:<12} " + ", ".join(cells))
            completed = True
        finally:
            for server in servers:
                server.stop()
            for server in servers:
                if not server.log_path.exists():
                    continue
                problems = server.log_problems()
                if problems["error"] or problems["rate_limit_redis_unavailable"]:
                    results.log_problems.append(f"round {round_number} {server.label}: log {problems}")
                    shutil.copyfile(server.log_path, server.log_path.with_suffix(".kept.log"))
                if completed and not args.keep_logs:
                    server.log_path.unlink(missing_ok=True)
            if database == "pg":
                reset_pg(args.seed_rows)


# Commands a Redis client sends for its connection, not for the rate limiter.
HOUSEKEEPING_COMMANDS = {"select", "ping", "hello", "info", "client|setinfo", "client|setname"}


def redis_round_trips(on_redis: Target, work: Path, seed: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Redis commands per request: INFO commandstats around a fixed number of requests.

    INFO commandstats counts the whole server's commands, so a quiet interval is
    measured first and its rate subtracted (it is ~0 when nothing else uses Redis).
    """
    db_file = work / "run-redis-trips.db"
    shutil.copyfile(seed, db_file)
    server = Server(on_redis, "sqlite", work / "logs" / f"redis-round-trips-{on_redis.name}.log")
    report: dict[str, Any] = {}
    count = args.redis_requests
    with running(server, server_env(on_redis, "sqlite", f"sqlite+aiosqlite:///{db_file}")):
        # Connections and scripts are set up by the first requests: leave them out.
        headers = on_redis.headers
        asyncio_load(server.port, ENDPOINTS[1], connections=4, count=50, headers=headers)
        started = time.monotonic()
        before = command_stats()
        time.sleep(2)
        idle = stats_delta(before, command_stats())
        idle.pop("info", None)
        idle_seconds = time.monotonic() - started
        for endpoint in (ENDPOINTS[0], ENDPOINTS[1], ENDPOINTS[3]):  # live, item, post (SQLite)
            started = time.monotonic()
            before = command_stats()
            sample = asyncio_load(server.port, endpoint, connections=4, count=count, headers=headers)
            delta = stats_delta(before, command_stats())
            delta.pop("info", None)
            elapsed = time.monotonic() - started
            background = {name: calls * elapsed / idle_seconds for name, calls in idle.items()}
            limiter = {
                name: round(max(0.0, calls - background.get(name, 0.0)))
                for name, calls in delta.items()
                if name not in HOUSEKEEPING_COMMANDS
            }
            report[endpoint.name] = {
                "requests": sample.requests,
                "bad_status": sample.bad_status,
                "commands_raw": delta,
                "commands": {name: calls for name, calls in limiter.items() if calls},
                "per_request": round(sum(limiter.values()) / max(sample.requests, 1), 3),
            }
        report["idle"] = {"seconds": round(idle_seconds, 2), "commands": idle}
        # The same requests again, watched with MONITOR: round trips vs commands in scripts.
        for endpoint in (ENDPOINTS[1], ENDPOINTS[3]):
            monitor = RedisMonitor(args.redis_db)
            try:
                sample = asyncio_load(
                    server.port, endpoint, connections=4, count=min(count, 200), headers=headers
                )
            finally:
                monitor.close()
            sent = {k: v for k, v in monitor.sent.items() if k not in HOUSEKEEPING_COMMANDS}
            report[endpoint.name]["monitor"] = {
                "requests": sample.requests,
                "round_trips": sent,
                "in_scripts": monitor.in_scripts,
                "round_trips_per_request": round(sum(sent.values()) / max(sample.requests, 1), 3),
                "in_scripts_per_request": round(
                    sum(monitor.in_scripts.values()) / max(sample.requests, 1), 3
                ),
            }
    problems = server.log_problems()
    report["log"] = problems
    if not args.keep_logs:
        server.log_path.unlink(missing_ok=True)
    return report


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: Results, targets: Sequence[Target]) -> dict[str, Any]:
    summary: dict[str, Any] = {"endpoints": {}, "cold_start_s": {}, "rss_mib": {}}
    for endpoint in ENDPOINTS:
        rows = {}
        bare_samples = results.loads.get(("bare", endpoint.name), [])
        for target in targets:
            samples = results.loads.get((target.name, endpoint.name))
            if not samples:
                continue
            row = {
                "rps": median([s.rps for s in samples]),
                "p50_ms": median([s.p50_ms for s in samples]),
                "p99_ms": median([s.p99_ms for s in samples]),
                "rps_runs": [round(s.rps) for s in samples],
            }
            if target.name != "bare" and len(bare_samples) == len(samples):
                ratios = [s.rps / b.rps for s, b in zip(samples, bare_samples, strict=True) if b.rps]
                row["ratio_to_bare"] = median(ratios)
                row["ratio_runs"] = [round(r, 3) for r in ratios]
            base = COMPARED_TO.get(target.name)
            base_samples = results.loads.get((base, endpoint.name), []) if base else []
            if base_samples and len(base_samples) == len(samples):
                ratios = [s.rps / b.rps for s, b in zip(samples, base_samples, strict=True) if b.rps]
                row["compared_to"] = base
                row["ratio_to_compared"] = median(ratios)
                row["ratio_to_compared_runs"] = [round(r, 3) for r in ratios]
            rows[target.name] = row
        summary["endpoints"][endpoint.name] = rows
    for (name, database), values in results.cold_starts.items():
        summary["cold_start_s"].setdefault(name, {})[database] = {
            "median": median(values),
            "max": max(values),
            "runs": [round(v, 3) for v in values],
        }
    for (name, database), values in results.rss.items():
        summary["rss_mib"].setdefault(name, {})[database] = median(values)
    return summary


def print_summary(summary: dict[str, Any], targets: Sequence[Target], args: argparse.Namespace) -> None:
    say()
    say(
        f"Medians over {args.runs} round(s) of {args.duration:g}s per endpoint, {args.connections} "
        f"connections, load by {'wrk -t1' if args.use_wrk else 'the asyncio client'}; "
        "ratio = median of each round's req/s over bare's in the same round."
    )
    for endpoint in ENDPOINTS:
        rows = summary["endpoints"].get(endpoint.name)
        if not rows:
            continue
        say()
        say(f"{endpoint.name}: {endpoint.describe()}")
        say(
            f"  {'target':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7} {'x noauth':>8}"
            "   req/s per round"
        )
        for target in targets:
            row = rows.get(target.name)
            if row is None:
                say(f"  {target.name:<18} {'(no such route)':>9}")
                continue
            ratio = f"{row['ratio_to_bare']:.2f}" if "ratio_to_bare" in row else "-"
            versus = f"{row['ratio_to_compared']:.3f}" if "ratio_to_compared" in row else "-"
            say(
                f"  {target.name:<18} {row['rps']:>9,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{ratio:>7} {versus:>8}   {row['rps_runs']}"
            )
    say()
    say("Cold start (process start until the first 200 from GET /api/v1/items/1), median [max], and")
    say("RSS after warm-up, median:")
    for target in targets:
        cold = summary["cold_start_s"].get(target.name, {})
        rss = summary["rss_mib"].get(target.name, {})
        cells = [
            f"{db}: {cold[db]['median']:.2f}s [{cold[db]['max']:.2f}s], {rss.get(db, 0):.0f} MiB"
            for db in ("sqlite", "pg")
            if db in cold
        ]
        say(f"  {target.name:<18} " + "; ".join(cells))


def print_auth(summary: dict[str, Any], targets: Sequence[Target]) -> None:
    """What authentication costs: each target with a token against the same service
    rendered without use_auth (COMPARED_TO), per endpoint."""
    pairs = [(t.name, COMPARED_TO[t.name]) for t in targets if t.name in COMPARED_TO]
    lines = []
    for name, base in pairs:
        for endpoint in ENDPOINTS:
            rows = summary["endpoints"].get(endpoint.name, {})
            row, other = rows.get(name), rows.get(base)
            if not row or not other or "ratio_to_compared" not in row:
                continue
            lines.append(
                f"  {endpoint.name:<12} {name} / {base}: {row['ratio_to_compared']:.3f} "
                f"(per round {row['ratio_to_compared_runs']}); req/s {row['rps']:,.0f} vs "
                f"{other['rps']:,.0f}; p50 {row['p50_ms']:.2f} vs {other['p50_ms']:.2f} ms; "
                f"p99 {row['p99_ms']:.2f} vs {other['p99_ms']:.2f} ms"
            )
    if lines:
        say()
        say("Authentication: req/s with a bearer token over req/s of the service rendered without")
        say("use_auth, median of the per-round ratios:")
        for line in lines:
            say(line)


def print_redis(name: str, report: dict[str, Any]) -> None:
    say()
    say(f"Redis commands per request of {name} (INFO commandstats around a fixed request count,")
    say("less the background rate and connection housekeeping), and the round trips among them")
    say("(MONITOR: the commands clients sent, apart from those that Lua scripts ran):")
    for name in ("live", "item", "post-sqlite"):
        row = report.get(name)
        if row:
            commands = ", ".join(f"{k} {v}" for k, v in sorted(row["commands"].items())) or "none"
            say(
                f"  {name:<12} {row['per_request']:.2f} commands per request over {row['requests']} "
                f"requests ({row['bad_status']} >= 400): {commands}"
            )
            watched = row.get("monitor")
            if watched:
                trips = ", ".join(f"{k} {v}" for k, v in sorted(watched["round_trips"].items()))
                inner = ", ".join(f"{k} {v}" for k, v in sorted(watched["in_scripts"].items()))
                say(
                    f"  {'':<12} MONITOR over {watched['requests']} requests: "
                    f"{watched['round_trips_per_request']:.2f} round trips per request ({trips}); "
                    f"{watched['in_scripts_per_request']:.2f} commands inside scripts ({inner})"
                )
    idle = report.get("idle", {})
    say(f"  background over {idle.get('seconds')} s: {idle.get('commands') or 'no commands'}")
    say(f"  server log: {report.get('log')}")


def check_targets(summary: dict[str, Any], redis: dict[str, Any]) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    endpoints = summary["endpoints"]

    def ratio(endpoint: str, target: str) -> float | None:
        row = endpoints.get(endpoint, {}).get(target)
        return row.get("ratio_to_bare") if row else None

    live = ratio("live", "on-memory")
    if live is not None:
        checks.append(("on-memory >= 0.80x bare on /health/live", live >= 0.80, f"{live:.2f}x"))
    for name in ("list-sqlite", "list-pg"):
        value = ratio(name, "on-memory")
        if value is not None:
            checks.append((f"on-memory >= 0.75x bare on {name}", value >= 0.75, f"{value:.2f}x"))
    for name in ("item", "list-sqlite", "list-pg", "post-sqlite", "post-pg"):
        memory = endpoints.get(name, {}).get("on-memory")
        on_redis = endpoints.get(name, {}).get("on-redis")
        if memory and on_redis:
            loss = 1 - on_redis["rps"] / memory["rps"]
            checks.append(
                (f"on-redis at most 10% below on-memory on {name}", loss <= 0.10, f"{loss:.0%} fewer req/s")
            )
    for name in ("list-sqlite", "list-pg"):
        for target, base in COMPARED_TO.items():
            row = endpoints.get(name, {}).get(target)
            if row and "ratio_to_compared" in row:
                loss = 1 - row["ratio_to_compared"]
                checks.append(
                    (f"{target} (a token) at most 10% below {base} on {name}", loss <= 0.10,
                     f"{loss:.1%} fewer req/s (median of the per-round ratios)")
                )  # fmt: skip
    item = redis.get("item")
    if item:
        trips = item.get("monitor", {}).get("round_trips_per_request", item["per_request"])
        checks.append(
            ("rate limiter: one Redis round trip per request", trips <= 1.0,
             f"{trips:.2f} round trips per GET ({item['per_request']:.2f} commands with those in scripts)")
        )  # fmt: skip
    for target, by_db in summary["cold_start_s"].items():
        if target not in TARGETS:
            continue
        worst = max(v["median"] for v in by_db.values())
        checks.append((f"cold start of {target} <= 1.5 s", worst <= 1.5, f"{worst:.2f}s (median)"))
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds; every figure is a median (5)")
    parser.add_argument("--duration", type=float, default=8, help="seconds of load per endpoint (8)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per endpoint (2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="concurrent connections (4: enough to keep one worker busy; with 16 on 2 cores, "
        "16 PostgreSQL backends or aiosqlite threads fight the server for the CPU and measure that)",
    )
    parser.add_argument("--seed-rows", type=int, default=1000, help="items in the databases (1000)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database number (13)")
    parser.add_argument("--redis-requests", type=int, default=2000, help="requests per Redis count")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    parser.add_argument(
        "--endpoints",
        default=",".join(e.name for e in ENDPOINTS),
        help="comma-separated subset of " + ", ".join(e.name for e in ENDPOINTS),
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cfs-bench"), help="renders, logs")
    parser.add_argument("--rebuild", action="store_true", help="render and install again")
    parser.add_argument("--no-wrk", dest="use_wrk", action="store_false", help="use the asyncio client")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' log files")
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument(
        "--patch",
        metavar="NAME=FILE",
        action="append",
        default=[],
        help="also run the all-on service with FILE (a patch -p1 diff) applied to a rendered copy of "
        "its own (never to template/), as targets NAME-memory and NAME-redis: to try a fix",
    )
    parser.add_argument(
        "--profile",
        metavar="TARGET:ENDPOINT",
        action="append",
        default=[],
        help="instead of the benchmark, profile one target under load with py-spy (repeatable)",
    )
    args = parser.parse_args(argv)
    # On SIGTERM, unwind through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.runs, args.duration, args.warmup, args.redis_requests = 1, 2, 1, 300
    if args.use_wrk and shutil.which("wrk") is None:
        say("wrk is not installed (apt-get install wrk): using the asyncio client")
        args.use_wrk = False
    SELECTED.intersection_update(e.strip() for e in args.endpoints.split(","))
    if not SELECTED:
        parser.error(f"--endpoints: choose from {[e.name for e in ENDPOINTS]}")
    patches = dict(spec.split("=", 1) for spec in args.patch if "=" in spec)
    if len(patches) != len(args.patch):
        parser.error("--patch takes NAME=FILE")
    known = [
        *TARGETS,
        *OPTIONAL_TARGETS,
        *(f"{name}-{limiter}" for name in patches for limiter in ("memory", "redis")),
    ]
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    for name in patches:  # A patch none of whose targets is named runs both.
        variants = [f"{name}-memory", f"{name}-redis"]
        if not set(variants) & set(wanted):
            wanted += variants
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {known}")

    work: Path = args.workdir
    (work / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"Preparing in {work}")
    off = prepare_project(work, "off", toggles(False), rebuild=args.rebuild)
    on = prepare_project(work, "on", toggles(True), rebuild=args.rebuild)
    noauth = None
    if any(name.startswith("on-noauth-") for name in [*wanted, *args.profile]):
        noauth = prepare_project(work, "on-noauth", toggles(True, use_auth=False), rebuild=args.rebuild)
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{args.redis_db}"
    common_on = {
        "RATE_LIMIT_DEFAULT": RATE_LIMIT,
        "RATE_LIMIT_AUTHENTICATED": RATE_LIMIT,  # callers with a token are counted by these
        "RATE_LIMIT_KEY_PREFIX": f"{KEY_PREFIX}:rate-limit",
        "JOB_QUEUE_NAME": f"{KEY_PREFIX}:jobs",
    }
    # With authentication, staging needs an issuer, and the API a token: a loopback
    # issuer (its own process) for every service rendered all-on.
    issuer = None
    auth_env: dict[str, str] = {}
    auth_headers: dict[str, str] = {}
    if (on / "src" / PACKAGE / "identity").is_dir():
        issuer = Issuer(on / ".venv" / "bin" / "python", work / "logs" / "issuer.log")
        auth_env, auth_headers = issuer.env(), issuer.headers()
        say(
            f"  issuer: {issuer.url} (benchmarks/bench_issuer.py, RS256, one key); one token, sub "
            f"bench, scope items:write, aud {AUTH_AUDIENCE}, sent as Authorization: Bearer to the "
            "all-on targets"
        )

    def all_on(name: str, project: Path, **env: str) -> Target:
        return Target(name, project, has_health=True, env={**common_on, **auth_env, **env},
                      headers=dict(auth_headers))  # fmt: skip

    all_targets = {
        "bare": Target("bare", off, has_health=True),
        "off": Target("off", off, has_health=False),
        "on-memory": all_on("on-memory", on),
        "on-redis": all_on("on-redis", on, REDIS_URL=redis_url),
        "on-uncached-memory": all_on("on-uncached-memory", on, AUTH_TOKEN_CACHE_SIZE="0"),
    }
    if noauth is not None:
        all_targets["on-noauth-memory"] = Target(
            "on-noauth-memory", noauth, has_health=True, env=dict(common_on)
        )
        all_targets["on-noauth-redis"] = Target(
            "on-noauth-redis", noauth, has_health=True, env={**common_on, "REDIS_URL": redis_url}
        )
    sink = None
    if "on-sentry" in wanted:
        sink = SentrySink()
        dsn = f"http://public@{HOST}:{sink.port}/1"
        all_targets["on-sentry"] = all_on("on-sentry", on, SENTRY_DSN=dsn)
        say(f"  on-sentry: SENTRY_DSN={dsn} (a sink in this process that answers 200)")
    for name, patch_file in patches.items():
        project = prepare_project(work, f"on-{name}", toggles(True), rebuild=True)
        applied = subprocess.run(
            ["patch", "-p1", "--forward", "-d", str(project), "-i", str(Path(patch_file).resolve())],
            capture_output=True,
            text=True,
            check=False,
        )
        if applied.returncode != 0:
            raise BenchError(f"patch {patch_file} does not apply:\n{applied.stdout}{applied.stderr}")
        say(f"  on-{name}: {patch_file} applied to the rendered copy")
        all_targets[f"{name}-memory"] = all_on(f"{name}-memory", project)
        all_targets[f"{name}-redis"] = all_on(f"{name}-redis", project, REDIS_URL=redis_url)
    targets = [all_targets[name] for name in known if name in wanted]
    say(f"  versions: {versions(on / '.venv' / 'bin' / 'python')}")
    seed = prepare_databases(work, on, args.seed_rows, auth_env)
    say(f"  databases: {seed} and {pg_url()}, {args.seed_rows} items each")
    say(
        "  settings: ENVIRONMENT=staging LOG_FORMAT=json LOG_LEVEL=INFO DOCS_ENABLED=false, stdout to a "
        f"file; RATE_LIMIT_DEFAULT={RATE_LIMIT}; SENTRY_DSN unset; on-redis: REDIS_URL={redis_url}"
    )
    if issuer is not None:
        say(
            f"  auth (all-on targets): AUTH_ISSUER={issuer.url} AUTH_AUDIENCE={AUTH_AUDIENCE} "
            f"RATE_LIMIT_AUTHENTICATED={RATE_LIMIT}, AUTH_TOKEN_CACHE_SIZE default (10000; 0 for "
            "on-uncached-memory); on-noauth-*: rendered with use_auth=false, no token"
        )
    load = make_loader(args.use_wrk)

    try:
        if args.profile:
            from profile_service import profile_target  # benchmarks/profile_service.py

            for spec in args.profile:
                name, _, endpoint_name = spec.partition(":")
                endpoint = next((e for e in ENDPOINTS if e.name == endpoint_name), None)
                if name not in all_targets or endpoint is None:
                    parser.error(f"--profile {spec}: TARGET is one of {known}, ENDPOINT one of "
                                 f"{[e.name for e in ENDPOINTS]}")  # fmt: skip
                target = all_targets[name]
                url = pg_url() if endpoint.database == "pg" else f"sqlite+aiosqlite:///{work / 'profile.db'}"
                if endpoint.database == "sqlite":
                    shutil.copyfile(seed, work / "profile.db")
                server = Server(target, endpoint.database, work / "logs" / f"profile-{name}.log")
                with running(server, server_env(target, endpoint.database, url)):
                    with_headers = functools.partial(load, headers=target.headers)
                    profile_target(server.pid, server.port, endpoint, args, with_headers, work, label=name)
                if endpoint.database == "pg":
                    reset_pg(args.seed_rows)
            return 0

        results = Results()
        for round_number in range(1, args.runs + 1):
            shift = (round_number - 1) % len(targets)
            order = targets[shift:] + targets[:shift]
            say(f"Round {round_number}/{args.runs}: {', '.join(t.name for t in order)}")
            run_round(round_number, order, work, seed, args, results, load)
        for target in targets:
            if target.name.endswith("-redis"):
                results.redis[target.name] = redis_round_trips(target, work, seed, args)
    finally:
        removed = clean_redis(args.redis_db)
        if removed:
            say(f"  removed {removed} benchmark keys from Redis db {args.redis_db}")
        if issuer is not None:
            issuer.close()

    summary = summarize(results, targets)
    print_summary(summary, targets, args)
    print_auth(summary, targets)
    if issuer is not None:
        say(f"\nThe issuer was asked (by path, all servers of the run): {issuer.requests}")
    for name, report in results.redis.items():
        print_redis(name, report)
    if sink is not None:
        say(f"\nThe Sentry sink received {sink.envelopes} envelopes from on-sentry.")
    say()
    say("Targets:")
    checks = check_targets(summary, results.redis.get("on-redis", {}))
    for name, ok, value in checks:
        say(f"  [{'met   ' if ok else 'MISSED'}] {name}: {value}")
    if results.log_problems:
        say()
        say("Suspect runs (kept logs end in .kept.log):")
        for line in results.log_problems:
            say(f"  {line}")
    say()
    say(f"Done in {(time.monotonic() - started) / 60:.1f} min.")
    if args.json:
        payload = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "summary": summary,
            "redis": results.redis,
            "issuer_requests": issuer.requests if issuer is not None else None,
            "targets": [{"name": n, "met": ok, "value": v} for n, ok, v in checks],
            "suspect": results.log_problems,
            "samples": {
                f"{t}|{e}": [s.__dict__ | {"rps": s.rps} for s in v] for (t, e), v in results.loads.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        say(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench_service: {error}", file=sys.stderr)
        sys.exit(1)
    except harness.pytest.fail.Exception as error:  # a harness helper gave up
        print(f"bench_service: {error}", file=sys.stderr)
        sys.exit(1)
