"""Access tokens: verified with PyJWT, kept once verified until they expire.

A signature check costs far more than the rest of a request, so each verified token is
kept, in a bounded cache (least recently used out first), until it expires.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.authentication import BaseUser

from .. import DISTRIBUTION
from .keys import IssuerKeys, SigningKey
from .settings import LOCAL_ALGORITHM, AuthSettings

# The issuer of development tokens (AUTH_DEVELOPMENT_KEY), and their audience when
# AUTH_AUDIENCE is not set.
LOCAL_ISSUER = f"{DISTRIBUTION}-development"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]

# Why a token is refused, as the error_description of WWW-Authenticate (RFC 6750).
# Fixed phrases: nothing of the token itself goes back or into the logs.
REASONS: dict[type[jwt.PyJWTError], str] = {
    jwt.ExpiredSignatureError: "The token has expired",
    jwt.ImmatureSignatureError: "The token is not valid yet",
    jwt.InvalidIssuerError: "The token is from another issuer",
    jwt.InvalidAudienceError: "The token is for another audience",
    jwt.InvalidSignatureError: "The token's signature is invalid",
    jwt.InvalidAlgorithmError: "The token's algorithm is not allowed",
    jwt.MissingRequiredClaimError: "The token lacks a required claim",
    jwt.DecodeError: "The token is malformed",
}


class InvalidTokenError(Exception):
    """The token is refused; ``reason`` is one of REASONS' phrases."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity(BaseUser):
    """The caller a valid token names: its subject and the scopes it was granted."""

    subject: str
    scopes: frozenset[str]

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.subject

    @property
    def identity(self) -> str:
        return self.subject


def scopes_of(claims: dict[str, object]) -> frozenset[str]:
    """The scopes of a token: ``scope`` (RFC 9068) or ``scp`` (Entra ID, Okta)."""
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, str):
        return frozenset(granted.split())
    if isinstance(granted, list):
        return frozenset(str(scope) for scope in granted)
    return frozenset()


def reason_for(error: jwt.PyJWTError) -> str:
    for kind in type(error).__mro__:
        if kind in REASONS:
            return REASONS[kind]
    return "The token is invalid"


class TokenVerifier:
    """Verifies access tokens: the issuer's (``keys``), or development ones."""

    def __init__(self, settings: AuthSettings, keys: IssuerKeys | None) -> None:
        self.keys = keys
        self.leeway = settings.auth_leeway_seconds
        self.cache_size = settings.auth_token_cache_size
        # Token -> who it names, until when, and the key that signed it (None: a
        # development token).
        self._cache: OrderedDict[str, tuple[Identity, float, SigningKey | None]] = (
            OrderedDict()
        )
        if keys is None:
            self.issuer = LOCAL_ISSUER
            self.audience = settings.auth_audience or DISTRIBUTION
            self.algorithms = [LOCAL_ALGORITHM]
            self.development_key = settings.development_key
        else:
            self.issuer = keys.issuer
            self.audience = settings.auth_audience or ""
            self.algorithms = list(settings.auth_algorithms)

    async def verify(self, token: str) -> Identity:
        """The identity a token names; InvalidTokenError when it is refused.

        Raises IssuerUnavailableError when the key it needs cannot be fetched.
        """
        cached = self._cache.get(token)
        if cached is not None:
            identity, expires, key = cached
            if time.time() < expires and self._still_published(key):
                self._cache.move_to_end(token)
                return identity
            del self._cache[token]
        try:
            claims, key = await self._decode(token)
        except jwt.PyJWTError as error:
            raise InvalidTokenError(reason_for(error)) from None
        identity = Identity(str(claims["sub"]), scopes_of(claims))
        if self.cache_size:
            # Whole seconds, as PyJWT compares them; a NumericDate may have a fraction.
            expires = int(float(str(claims["exp"]))) + self.leeway
            self._cache[token] = (identity, expires, key)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return identity

    def _still_published(self, key: SigningKey | None) -> bool:
        """A key the issuer has withdrawn no longer vouches for the tokens it signed."""
        return key is None or self.keys is None or self.keys.holds(key)

    async def _decode(self, token: str) -> tuple[dict[str, object], SigningKey | None]:
        """The token's claims, once verified, and the issuer's key that signed it."""
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise jwt.InvalidAlgorithmError(algorithm)
        signing_key = None
        if self.keys is None:
            key: Any = self.development_key
        else:
            signing_key = await self.keys.get(header.get("kid"))
            if signing_key is None:
                raise InvalidTokenError("The token's signing key is unknown")
            # A key that names its algorithm is used with that one alone (RFC 8725).
            if signing_key.algorithm not in (None, algorithm):
                raise jwt.InvalidAlgorithmError(algorithm)
            key = signing_key.key
        claims: dict[str, object] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=self.audience,
            # Auth0 names itself with a trailing slash, which the settings drop.
            issuer=[self.issuer, self.issuer + "/"],
            leeway=self.leeway,
            options={"require": REQUIRED_CLAIMS},
        )
        return claims, signing_key


def local_token(
    settings: AuthSettings, subject: str, scopes: list[str], ttl_seconds: int
) -> str:
    """A development token, as an issuer would make one (see the ``token`` command)."""
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": settings.auth_audience or DISTRIBUTION,
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, settings.development_key, algorithm=LOCAL_ALGORITHM)
