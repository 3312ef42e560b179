"""A generated service against a real OpenID Connect provider, both run for real.

panva's oidc-provider (tests/oidc/provider.mjs, on Node) is the issuer: it issues JWT
access tokens (RFC 9068, RS256) by the client credentials grant, for two resource
servers whose resource indicators are their tokens' audiences, this service's and
another's. A project with every default (authentication on) is served on SQLite in
development, with AUTH_ISSUER the provider and AUTH_AUDIENCE this service's indicator,
and is driven over HTTP with tokens from the provider's token endpoint, never made by
the test: a token with items:write creates and lists items; one without lists but
gets 403 insufficient_scope on a write; a token for the other audience, an expired one,
a tampered one and none at all get 401; and the health report has the issuer up.

Needs node and the provider's packages: `npm ci --prefix tests/oidc` (.ci/run does it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import DEFAULT_SLUG, ROOT, env_file_keys, project_env, render, run
from served import RAISED_RATE_LIMIT, free_port, read_log, started, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("oidc")]

PROVIDER_DIR = ROOT / "tests" / "oidc"
INSTALL = f"run `npm ci --prefix {PROVIDER_DIR.relative_to(ROOT)}`"
PROVIDER_START_TIMEOUT = 30
MINIMUM_NODE = (20, 18)
# What provider.mjs serves: its resource servers, clients and scopes.
AUDIENCE = "urn:orders-service"
OTHER_AUDIENCE = "urn:billing-service"
CLIENT = "orders-client"
SHORT_LIVED_CLIENT = "short-lived-client"  # its tokens live SHORT_TOKEN_TTL seconds
READ, WRITE = "items:read", "items:write"
SHORT_TOKEN_TTL = 3
# The service's clock skew allowance, shortened from its default (30 s) so that the
# expiry test waits seconds.
LEEWAY = 1
SLACK = 10.0  # what a loaded CI machine may add to a wait
ITEMS = "/api/v1/items"


@dataclass(frozen=True)
class Provider:
    issuer: str
    token_endpoint: str
    log: Path

    def output(self) -> str:
        return read_log(self.log)


def node() -> str:
    """The machine's node, if new enough for oidc-provider 9 (its URL.parse came in 20.18)."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: the OpenID Connect provider runs on it", pytrace=False)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if tuple(int(part) for part in version.lstrip("v").split(".")[:2]) < MINIMUM_NODE:
        pytest.fail(f"node {version} is too old for oidc-provider: it needs 20.18 or later", pytrace=False)
    return path


def check_provider_installed() -> None:
    """oidc-provider in tests/oidc/node_modules, at the version package.json pins."""
    pinned = json.loads((PROVIDER_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    installed = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not installed.is_file():
        pytest.fail(f"oidc-provider is not installed in {PROVIDER_DIR}: {INSTALL}", pytrace=False)
    version = json.loads(installed.read_text(encoding="utf-8"))["version"]
    if version != pinned["oidc-provider"]:
        pytest.fail(
            f"oidc-provider {version} is installed, package.json pins {pinned['oidc-provider']}: {INSTALL}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """provider.mjs as a real process on a free port, ready once it says so."""
    executable = node()
    check_provider_installed()
    port = free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    env = {**os.environ, "SHORT_TOKEN_TTL": str(SHORT_TOKEN_TTL)}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [executable, "provider.mjs", str(port)],
            cwd=PROVIDER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        issuer = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + PROVIDER_START_TIMEOUT
        while f"ready {issuer}\n" not in read_log(log):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the provider did not start (exit {process.poll()}):\n{read_log(log)}", pytrace=False
                )
            time.sleep(0.1)
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=SLACK).json()
        yield Provider(issuer, discovery["token_endpoint"], log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("oidc-service") / DEFAULT_SLUG)
    run(["uv", "sync"], project, timeout=900, what="uv sync")
    return project


@pytest.fixture(scope="module")
def service(project: Path, provider: Provider) -> Iterator[httpx.Client]:
    """The project served in development on SQLite, trusting the provider's tokens."""
    settings = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{project.parent / 'oidc.db'}",
        "AUTH_ISSUER": provider.issuer,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_LEEWAY_SECONDS": str(LEEWAY),
        "RATE_LIMIT_ANONYMOUS": RAISED_RATE_LIMIT,
        "RATE_LIMIT_AUTHENTICATED": RAISED_RATE_LIMIT,
    }
    unknown = set(settings) - set(env_file_keys(project / ".env.example"))
    assert not unknown, f"the service has no such settings: {sorted(unknown)}; update {Path(__file__).name}"
    port = free_port()
    log = project.parent / "serve.log"
    with started(
        project, [DEFAULT_SLUG, "serve", "--port", str(port)], project_env(project, settings), log
    ) as server:
        wait_until_serving(server, f"http://127.0.0.1:{port}/health/live", log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=SLACK) as client:
            yield client


def access_token(provider: Provider, scope: str, *, audience: str = AUDIENCE, client: str = CLIENT) -> str:
    """A token from the provider's token endpoint (client credentials, client_secret_basic)."""
    response = httpx.post(
        provider.token_endpoint,
        data={"grant_type": "client_credentials", "resource": audience, "scope": scope},
        auth=(client, f"{client}-secret-of-the-interop-test"),
        timeout=SLACK,
    )
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{provider.output()}"
    body = response.json()
    assert body["token_type"] == "Bearer", body
    return str(body["access_token"])


def claims(token: str) -> dict[str, Any]:
    """The token's claims, read, not verified: the test only needs to know them."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_item(name: str) -> dict[str, str]:
    return {"name": name, "description": "made with a token from oidc-provider"}


def test_the_provider_issues_jwts_for_the_audience_with_the_scopes_asked(provider: Provider) -> None:
    token = claims(access_token(provider, f"{READ} {WRITE}"))
    assert token["iss"] == provider.issuer
    assert token["aud"] == AUDIENCE
    assert token["scope"].split() == [READ, WRITE]


def test_a_token_with_items_write_creates_an_item_and_lists_it(
    service: httpx.Client, provider: Provider
) -> None:
    headers = bearer(access_token(provider, f"{READ} {WRITE}"))
    created = service.post(ITEMS, json=new_item("created with items:write"), headers=headers)
    assert created.status_code == 201, created.text
    listed = service.get(ITEMS, params={"limit": 100}, headers=headers)
    assert listed.status_code == 200, listed.text
    assert created.json()["id"] in [item["id"] for item in listed.json()["items"]]


def test_a_token_without_items_write_lists_but_cannot_create(
    service: httpx.Client, provider: Provider
) -> None:
    headers = bearer(access_token(provider, READ))
    listed = service.get(ITEMS, headers=headers)
    assert listed.status_code == 200, listed.text
    refused = service.post(ITEMS, json=new_item("created without items:write"), headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith("Bearer "), challenge
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="items:write"' in challenge


def test_a_token_for_another_audience_is_refused(service: httpx.Client, provider: Provider) -> None:
    token = access_token(provider, f"{READ} {WRITE}", audience=OTHER_AUDIENCE)
    response = service.get(ITEMS, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_an_expired_token_is_refused(service: httpx.Client, provider: Provider) -> None:
    token = access_token(provider, f"{READ} {WRITE}", client=SHORT_LIVED_CLIENT)
    expires = claims(token)["exp"]
    fresh = service.get(ITEMS, headers=bearer(token))
    assert fresh.status_code == 200, fresh.text
    # Accepted until exp plus the leeway, then refused: poll until then, and a little more.
    deadline = expires + LEEWAY + SLACK
    while (response := service.get(ITEMS, headers=bearer(token))).status_code == 200:
        assert time.time() < deadline, f"still accepted {time.time() - expires:.1f} s after its exp"
        time.sleep(0.2)
    assert time.time() >= expires + LEEWAY, "refused before it expired"
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_with_a_changed_signature_byte_is_refused(service: httpx.Client, provider: Provider) -> None:
    header, payload, signature = access_token(provider, f"{READ} {WRITE}").split(".")
    signed = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    signed[len(signed) // 2] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(signed)).rstrip(b"=").decode()
    response = service.get(ITEMS, headers=bearer(f"{header}.{payload}.{tampered}"))
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_request_without_a_token_gets_a_bearer_challenge(service: httpx.Client) -> None:
    response = service.get(ITEMS)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.split()[0] == "Bearer", challenge
    assert "error=" not in challenge


def test_the_health_report_has_the_issuer_up(service: httpx.Client) -> None:
    ready = service.get("/health/ready")
    assert ready.status_code == 200, ready.text
    issuer = service.get("/health").json()["checks"]["issuer"]
    assert issuer["status"] == "up", issuer
    assert issuer["details"]["keys"] >= 1, issuer
