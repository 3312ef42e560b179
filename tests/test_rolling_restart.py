"""A rolling restart of three replicas behind HAProxy, under load, with no failed request.

A project with every feature on but authentication is served as three replicas in
production settings on one PostgreSQL database and one Redis (of this module's own),
behind the real `haproxy` running the project's `deploy/haproxy/haproxy.cfg` with its
one server replaced by the three. HAProxy checks each replica's `/health/ready`, as it would in
Compose.

Under a steady load of reads and writes (paced virtual users, each from a loopback
address of its own, so that none meets the rate limit), each replica in turn gets
SIGTERM, as a rollout sends it, and is started again once it has exited; the next one
restarts once HAProxy sends the new one traffic. On SIGTERM a replica drains: its
readiness fails while it serves on, so HAProxy takes it out before it stops accepting.

The drill passes with no failed request (every answer 2xx, or a 429 where the limit
is the point), every item created (every 201) readable afterwards, and a rate limit
that holds exactly across the replicas while they restart: one more client, from its
own address, sends more requests than its limit, spread over the whole drill, and
exactly the limit of them pass. The figures are printed: requests, failures and p99
latency, during the restarts and overall.

Needs TEST_DATABASE_URL, TEST_REDIS_URL (as .ci/run sets them), psql, redis-cli and
haproxy (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness import DEFAULT_SLUG, feature_toggles, project_env, render, run
from served import free_port, read_log, redis_key_prefix, required_env, running_haproxy, temporary_database

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rolling-restart")]

# Production accepts only an issuer's tokens, over https, which the suite cannot serve on
# loopback; the per-user limits and the tokens are tested in test_oidc_interop.py.
SERVED_FEATURES = {toggle: toggle != "use_auth" for toggle in feature_toggles()}
CONFIG = Path("deploy/haproxy/haproxy.cfg")
REPLICAS = 3
HOST = "localhost"  # the name clients use, in ALLOWED_HOSTS
DRAIN_SECONDS = 4  # above HAProxy's time to see a failing replica (fall x inter)
LIMIT = 150  # requests per minute for one client address
LIMITED_CLIENT = "127.0.0.2"
LIMITED_REQUESTS = 200  # more than LIMIT, sent over the drill
# About as long as the restarts take (drain, stop, start and back in, per replica), and
# within the limit's 60 s window.
LIMITED_SECONDS = 40
USERS = 12  # paced virtual users, each on an address of its own
USER_PAUSE = 0.2  # seconds between a user's requests: well below LIMIT per address
START_TIMEOUT = 120
STOP_TIMEOUT = DRAIN_SECONDS + 30
BACK_IN_TIMEOUT = 30  # for HAProxy to send a restarted replica traffic again
DRILL_TIMEOUT = 240


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("rolling") / DEFAULT_SLUG, SERVED_FEATURES)
    run(["uv", "sync"], project, timeout=900, what="uv sync")
    return project


@pytest.fixture(scope="module")
def service_env(project: Path, worker_id: str) -> Iterator[dict[str, str]]:
    """Production settings on a migrated database and Redis keys of the module's own."""
    with (
        temporary_database(f"template_rolling_{worker_id}") as database_url,
        redis_key_prefix("template-rolling") as prefix,
    ):
        env = project_env(
            project,
            {
                "ENVIRONMENT": "production",
                "SECRET_KEY": "rolling-drill-" + os.urandom(24).hex(),
                "DATABASE_URL": database_url,
                "REDIS_URL": required_env("TEST_REDIS_URL"),
                "ALLOWED_HOSTS": HOST,
                "FORWARDED_ALLOW_IPS": "127.0.0.1",
                "DRAIN_SECONDS": str(DRAIN_SECONDS),
                # Exact in any 60 s, whichever replica counts: see the limit test.
                "RATE_LIMIT_ANONYMOUS": f"{LIMIT}/minute",
                "RATE_LIMIT_STRATEGY": "moving-window",
                "RATE_LIMIT_KEY_PREFIX": f"{prefix}:rate-limit",
                "JOB_QUEUE_NAME": f"{prefix}:jobs",
                "LOG_FORMAT": "json",
            },
        )
        run([f".venv/bin/{DEFAULT_SLUG}", "migrate"], project, env=env, timeout=300, what="migrate")
        yield env


class Replica:
    """One `serve` process on its own port, restartable."""

    def __init__(self, project: Path, env: dict[str, str], index: int) -> None:
        self.project, self.env, self.index = project, env, index
        self.port = free_port()
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.project.parent / f"replica-{self.index}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        command = [f".venv/bin/{DEFAULT_SLUG}", "serve", "--port", str(self.port)]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=self.project, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )

    def wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        url = f"http://127.0.0.1:{self.port}/health/ready"
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"replica {self.index} exited {self.process.returncode}:\n{read_log(self.log)}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"replica {self.index} not ready within {START_TIMEOUT} s:\n{read_log(self.log)}")
            time.sleep(0.2)

    def terminate(self) -> int:
        """SIGTERM, as a rollout sends it; the exit status once it has stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def replicas(project: Path, service_env: dict[str, str]) -> Iterator[list[Replica]]:
    replicas = [Replica(project, service_env, index) for index in range(REPLICAS)]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_until_ready()
        yield replicas
    finally:
        for replica in replicas:
            replica.kill()


@pytest.fixture(scope="module")
def proxy(
    project: Path, replicas: list[Replica], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The real haproxy on the generated config, its one server replaced by the replicas."""
    config = (project / CONFIG).read_text(encoding="utf-8")
    port, stats = free_port(), free_port()
    [server] = [line for line in config.splitlines() if line.lstrip().startswith("server ")]
    servers = "\n".join(f"    server api{r.index} 127.0.0.1:{r.port} check" for r in replicas)
    assert "bind :8000" in config, f"{CONFIG} no longer binds :8000: update tests/test_rolling_restart.py"
    config = config.replace("bind :8000", f"bind 127.0.0.1:{port}").replace(server, servers)
    config += f"\nfrontend stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n"
    with running_haproxy(config, tmp_path_factory.mktemp("haproxy")) as (process, log):
        proxy = Proxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats}/stats;csv", log)
        proxy.wait_until_up([r.index for r in replicas], process)
        yield proxy


@dataclass
class Proxy:
    url: str
    stats_url: str
    log: Path

    def server_states(self) -> dict[str, str]:
        """The state of each server of the api backend, as HAProxy sees it (UP, DOWN, ...)."""
        rows = httpx.get(self.stats_url, timeout=2).text.splitlines()
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("pxname") == "api" and values.get("svname", "").startswith("api"):
                states[values["svname"]] = values["status"]
        return states

    def wait_until_up(self, indexes: list[int], process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + BACK_IN_TIMEOUT
        while True:
            if process is not None and process.poll() is not None:
                pytest.fail(f"haproxy exited {process.returncode}:\n{read_log(self.log)}")
            try:
                states = self.server_states()
            except httpx.TransportError:
                states = {}
            if all(states.get(f"api{i}") == "UP" for i in indexes):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"HAProxy does not see api{indexes} UP within {BACK_IN_TIMEOUT} s: {states}")
            time.sleep(0.2)


@dataclass
class Outcome:
    started: float
    seconds: float
    status: int | None  # None: no answer (a transport error)
    error: str = ""


@dataclass
class Load:
    """What the virtual users and the limited client saw, and the items they created."""

    outcomes: list[Outcome] = field(default_factory=list)
    created: dict[int, str] = field(default_factory=dict)
    limited: list[int] = field(default_factory=list)  # the limited client's statuses
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: object
    ) -> httpx.Response | None:
        began = time.monotonic()
        try:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as error:
            self.outcomes.append(Outcome(began, time.monotonic() - began, None, repr(error)))
            return None
        self.outcomes.append(Outcome(began, time.monotonic() - began, response.status_code))
        return response

    async def user(self, base_url: str, user: int) -> None:
        """Reads and writes, one at a time, with a pause between them."""
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{user + 1}")
        async with httpx.AsyncClient(
            base_url=base_url, transport=transport, headers={"Host": HOST}, timeout=30
        ) as client:
            turn = 0
            while not self.stop.is_set():
                turn += 1
                if turn % 3 == 0:
                    name = f"drill-{user}-{turn}"
                    response = await self.request(client, "POST", "/api/v1/items", json={"name": name})
                    if response is not None and response.status_code == 201:
                        self.created[response.json()["id"]] = name
                elif turn % 3 == 1 and self.created:
                    item_id = next(reversed(self.created))
                    await self.request(client, "GET", f"/api/v1/items/{item_id}")
                else:
                    await self.request(client, "GET", "/api/v1/items", params={"limit": 10})
                await asyncio.sleep(USER_PAUSE)

    async def limited_client(self, base_url: str, seconds: float) -> None:
        """LIMITED_REQUESTS from one address, evenly over ``seconds``."""
        transport = httpx.AsyncHTTPTransport(local_address=LIMITED_CLIENT)
        async with httpx.AsyncClient(
            base_url=base_url, transport=transport, headers={"Host": HOST}, timeout=30
        ) as client:
            began = time.monotonic()
            for sent in range(LIMITED_REQUESTS):
                await asyncio.sleep(max(0.0, began + sent * seconds / LIMITED_REQUESTS - time.monotonic()))
                response = await self.request(client, "GET", "/api/v1/items", params={"limit": 1})
                self.limited.append(response.status_code if response is not None else 0)


def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] if len(seconds) >= 2 else (seconds or [0.0])[0]


@dataclass
class Drill:
    load: Load
    restarts: tuple[float, float]  # when the first SIGTERM was sent, when the last replica was back
    exit_codes: list[int]
    limited_seconds: float


def run_drill(proxy: Proxy, replicas: list[Replica]) -> Drill:
    async def drill() -> Drill:
        load = Load()
        warm_up = 2.0
        users = [asyncio.create_task(load.user(proxy.url, user)) for user in range(USERS)]
        limited = asyncio.create_task(load.limited_client(proxy.url, LIMITED_SECONDS))
        limited_began = time.monotonic()
        await asyncio.sleep(warm_up)
        exit_codes = []
        began = time.monotonic()
        for replica in replicas:
            exit_codes.append(await asyncio.to_thread(replica.terminate))
            replica.start()
            await asyncio.to_thread(replica.wait_until_ready)
            await asyncio.to_thread(proxy.wait_until_up, [replica.index])
        ended = time.monotonic()
        await asyncio.wait_for(limited, timeout=DRILL_TIMEOUT)
        limited_seconds = time.monotonic() - limited_began
        load.stop.set()
        await asyncio.wait_for(asyncio.gather(*users), timeout=60)
        return Drill(load, (began, ended), exit_codes, limited_seconds)

    return asyncio.run(asyncio.wait_for(drill(), timeout=DRILL_TIMEOUT + 60))


@pytest.fixture(scope="module")
def drill(proxy: Proxy, replicas: list[Replica]) -> Drill:
    result = run_drill(proxy, replicas)
    load = result.load
    began, ended = result.restarts
    during = [o for o in load.outcomes if began <= o.started <= ended]
    failed = [o for o in load.outcomes if not _ok(o)]
    print(
        f"\nrolling restart of {REPLICAS} replicas in {ended - began:.1f} s:"
        f" {len(load.outcomes)} requests, {len(failed)} failed,"
        f" p99 {p99([o.seconds for o in load.outcomes]) * 1000:.0f} ms overall;"
        f" during the restarts {len(during)} requests,"
        f" {sum(not _ok(o) for o in during)} failed, p99 {p99([o.seconds for o in during]) * 1000:.0f} ms;"
        f" {len(load.created)} items created; limited client: {load.limited.count(200)} of"
        f" {len(load.limited)} passed (limit {LIMIT}) in {result.limited_seconds:.1f} s"
    )
    return result


def _ok(outcome: Outcome) -> bool:
    return outcome.status is not None and (200 <= outcome.status < 300 or outcome.status == 429)


def test_every_replica_stops_cleanly_on_sigterm(drill: Drill) -> None:
    # uvicorn re-raises the signal after its shutdown, so that the status says so.
    assert all(code in (0, -signal.SIGTERM) for code in drill.exit_codes), drill.exit_codes


def test_no_request_fails_during_the_rolling_restart(drill: Drill) -> None:
    failed = [o for o in drill.load.outcomes if not _ok(o)]
    assert not failed, f"{len(failed)} of {len(drill.load.outcomes)} failed: {failed[:10]}"


def test_the_load_ran_through_the_restarts(drill: Drill) -> None:
    began, ended = drill.restarts
    during = [o for o in drill.load.outcomes if began <= o.started <= ended]
    assert len(during) >= USERS * (ended - began) / (USER_PAUSE + 1)


def test_every_item_created_during_the_restart_is_there_afterwards(drill: Drill, proxy: Proxy) -> None:
    assert drill.load.created
    stored: dict[int, str] = {}
    # Page through the list (a few requests, from an address the load did not use).
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=proxy.url, transport=transport, headers={"Host": HOST}, timeout=10) as client:
        while True:
            response = client.get("/api/v1/items", params={"limit": 100, "offset": len(stored)})
            assert response.status_code == 200, response.text
            page = response.json()["items"]
            stored |= {item["id"]: item["name"] for item in page}
            if not page:
                break
    lost = {i: name for i, name in drill.load.created.items() if stored.get(i) != name}
    assert not lost, f"{len(lost)} of {len(drill.load.created)} created items are missing: {lost}"


def test_the_rate_limit_holds_exactly_across_restarting_replicas(drill: Drill) -> None:
    # The moving window counts every request of the last 60 s, on Redis, which all the
    # replicas share: within a minute, exactly LIMIT pass, whichever replica answers.
    assert drill.limited_seconds < 60, "the limited client's requests must fit in one window"
    assert drill.load.limited.count(200) == LIMIT
    assert drill.load.limited.count(429) == LIMITED_REQUESTS - LIMIT


def test_haproxy_saw_each_replica_go_down_and_come_back(drill: Drill, proxy: Proxy) -> None:
    log = read_log(proxy.log)
    for index in range(REPLICAS):
        assert f"Server api/api{index} is DOWN" in log, log[-3000:]
        assert f"Server api/api{index} is UP" in log, log[-3000:]


def test_a_replica_fails_readiness_while_it_drains(drill: Drill, replicas: list[Replica]) -> None:
    # Each replica's first run logged the drain, which is what took it out of HAProxy.
    for replica in replicas:
        first_run = replica.project.parent / f"replica-{replica.index}-1.log"
        assert '"event": "draining"' in read_log(first_run), read_log(first_run)[-3000:]
