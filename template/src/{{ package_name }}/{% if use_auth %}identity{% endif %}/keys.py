"""The issuer's signing keys: read from its discovery document and JWKS, kept by id.

Keys are fetched at start-up, again every AUTH_KEYS_MAX_AGE_SECONDS, and when a token
names a key id the service does not have, at most once per
AUTH_KEYS_REFRESH_SECONDS (a flood of made-up ids costs one fetch). While the issuer
cannot be reached, the keys already fetched keep working.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from ..logs import get_logger
from ..outages import outage
from .settings import AuthSettings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """A public key of the issuer, and the algorithm its JWK names, if it names one."""

    kid: str | None
    key: Any
    algorithm: str | None
    jwk: dict[str, Any]


class IssuerUnavailableError(Exception):
    """The issuer's keys could not be fetched (and none were kept)."""


def discovery_url(issuer: str) -> str:
    """Where the issuer's discovery document is (OpenID Connect Discovery 1.0, 4)."""
    return f"{issuer}/.well-known/openid-configuration"


class IssuerKeys:
    """The public keys of ``issuer`` by id; the lifespan closes ``client``."""

    def __init__(self, issuer: str, settings: AuthSettings) -> None:
        self.issuer = issuer
        self.discovery_url = discovery_url(issuer)
        self.timeout = settings.auth_issuer_timeout_seconds
        self.refresh_seconds = settings.auth_keys_refresh_seconds
        self.max_age_seconds = settings.auth_keys_max_age_seconds
        self.client = httpx.AsyncClient(timeout=self.timeout)
        self.keys: dict[str | None, SigningKey] = {}
        self.fetched_at: float | None = None
        self.failing = False  # The last fetch failed.
        self._last_attempt = -float("inf")
        self._lock = asyncio.Lock()
        self._outage = outage("issuer")

    async def get(self, kid: str | None) -> SigningKey | None:
        """The key with this id, fetching the keys again if it is new to the service.

        Raises IssuerUnavailableError when the key is unknown and the issuer cannot be
        asked; returns None when the issuer has no such key.
        """
        key = self.keys.get(kid)
        if key is None and self._may_fetch():
            await self.refresh(kid)
            key = self.keys.get(kid)
        if key is None and (self.failing or self.fetched_at is None):
            raise IssuerUnavailableError("the issuer cannot be reached")
        return key

    async def refresh(self, kid: str | None = None) -> None:
        """Fetch the keys; one fetch at a time, the others wait for it.

        A fetch that fails keeps the keys there were. ``kid``: the key that is missing,
        for which the keys are fetched at most once per refresh interval.
        """
        async with self._lock:
            # Waiting for another fetch may have brought the key, or used up the
            # interval: a fetch for a key then stays one per interval.
            if kid is not None and (kid in self.keys or not self._may_fetch()):
                return
            self._last_attempt = time.monotonic()
            try:
                # One deadline for the whole fetch: an issuer that sends a byte at a
                # time would otherwise hold every waiting request for long.
                async with asyncio.timeout(self.timeout):
                    keys = await self._fetch()
            except (TimeoutError, httpx.TimeoutException) as error:
                self.failing = True
                self._outage.failed("timeout", error)
                return
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                self.failing = True
                self._outage.failed("unavailable", error)
                return
            self.failing = False
            self._outage.answered()
            if set(keys) != set(self.keys):
                log.info("issuer_keys", keys=sorted(str(k) for k in keys))
            self.keys = keys
            self.fetched_at = time.monotonic()

    def _may_fetch(self) -> bool:
        return time.monotonic() - self._last_attempt >= self.refresh_seconds

    async def _fetch(self) -> dict[str | None, SigningKey]:
        discovery = await self._get_json(self.discovery_url)
        if discovery.get("issuer", "").rstrip("/") != self.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the issuer must be the same.
            named = discovery.get("issuer")
            raise ValueError(f"the discovery document names the issuer {named!r}")
        jwks = await self._get_json(discovery["jwks_uri"])
        keys: dict[str | None, SigningKey] = {}
        for data in jwks["keys"]:
            if data.get("use", "sig") != "sig":
                continue
            try:
                jwk = PyJWK(data)
            except PyJWKError:
                continue  # A key type or curve the service does not use.
            kept = self.keys.get(jwk.key_id)
            if kept is not None and kept.jwk == data:
                keys[jwk.key_id] = kept  # Tokens verified with it stay verified.
            else:
                keys[jwk.key_id] = SigningKey(
                    jwk.key_id, jwk.key, data.get("alg"), data
                )
        return keys

    def holds(self, key: SigningKey) -> bool:
        """Whether the issuer still publishes ``key`` (as of the last good fetch)."""
        return self.keys.get(key.kid) is key

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self.client.get(url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} returned no JSON object")
        return document

    async def keep_fresh(self) -> None:
        """Fetch the keys again when they reach their maximum age, and every refresh
        interval while fetches fail (a task of the lifespan)."""
        while True:
            if self.failing or self.fetched_at is None:
                wait = self.refresh_seconds
            else:
                wait = max(0.0, self.max_age_seconds - self.age())
            await asyncio.sleep(wait)
            await self.refresh()

    def age(self) -> float:
        """Seconds since the keys were fetched (infinite before the first fetch)."""
        if self.fetched_at is None:
            return float("inf")
        return time.monotonic() - self.fetched_at

    async def check(self) -> dict[str, int]:
        """For readiness: the keys are there, and the last fetch worked."""
        if (self.failing or self.fetched_at is None) and self._may_fetch():
            await self.refresh()
        if self.fetched_at is None:
            raise IssuerUnavailableError("the issuer's keys have not been fetched")
        if self.failing:
            raise IssuerUnavailableError("the issuer cannot be reached; keys kept")
        return {"keys": len(self.keys), "age_seconds": int(self.age())}
