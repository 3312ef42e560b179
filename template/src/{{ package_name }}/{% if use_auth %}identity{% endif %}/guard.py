"""Who is calling: a middleware that reads the bearer token of each request, and the
dependency that lets into the API only the callers a token names.

The middleware identifies; it refuses nothing. It runs before the rate limiter, which
counts a request against its subject when the token is valid and against its address
otherwise, so that a flood of bad tokens is limited like any anonymous traffic. The
API's dependency (``authorize``) then answers 401, 403 or 503 as RFC 6750 says.
"""

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import DISTRIBUTION
from ..paths import route_path
from ..problems import ProblemError, ServiceUnavailableError
from .keys import IssuerUnavailableError
from .tokens import Identity, InvalidTokenError, TokenVerifier

# Where the middleware leaves why a token was refused, for authorize().
REFUSAL_STATE = "auth_refusal"
# Methods that read: any other needs the write scope.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NO_CREDENTIALS = AuthCredentials()
ANONYMOUS = UnauthenticatedUser()
# Declares the scheme in the OpenAPI document (/docs offers "Authorize"); the token
# itself is read by the middleware.
BEARER = HTTPBearer(
    auto_error=False, description="An access token from the service's issuer."
)


class AuthenticationError(ProblemError):
    """401: no token, or one that is refused."""

    status = 401

    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.error = error

    @property
    def headers(self) -> dict[str, str]:
        challenge = f'Bearer realm="{DISTRIBUTION}"'
        if self.error is not None:
            challenge += f', error="{self.error}", error_description="{self.detail}"'
        return {"WWW-Authenticate": challenge}


class InsufficientScopeError(ProblemError):
    """403: a valid token without the scope the request needs."""

    status = 403

    def __init__(self, scope: str) -> None:
        super().__init__(f"The token lacks the scope {scope}.")
        self.scope = scope

    @property
    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer realm="{DISTRIBUTION}",'
            f' error="insufficient_scope", scope="{self.scope}"'
        }


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None without one.

    Another scheme (Basic, say) is no bearer token: the request has none.
    """
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
            return None
    return None


class AuthenticationMiddleware:
    """Put the caller in ``scope["user"]`` and its scopes in ``scope["auth"]``.

    As Starlette's AuthenticationMiddleware does, so ``request.user`` works; the subject
    is bound to the request's log lines as ``user``. Exempt paths (probes, scrapes,
    docs) are not looked at.
    """

    def __init__(self, app: ASGIApp, exempt_paths: frozenset[str]) -> None:
        self.app = app
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        scope["user"], scope["auth"] = ANONYMOUS, NO_CREDENTIALS
        token = bearer_token(scope)
        if token is not None:
            verifier: TokenVerifier = scope["app"].state.token_verifier
            try:
                identity = await verifier.verify(token)
            except (InvalidTokenError, IssuerUnavailableError) as refusal:
                scope.setdefault("state", {})[REFUSAL_STATE] = refusal
            else:
                scope["user"] = identity
                scope["auth"] = AuthCredentials(list(identity.scopes))
                structlog.contextvars.bind_contextvars(user=identity.subject)
        await self.app(scope, receive, send)


class Authorize:
    """The API's dependency: a valid token to read, and the write scope to write."""

    def __init__(self, write_scope: str) -> None:
        self.write_scope = write_scope

    async def __call__(
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Identity:
        user = request.scope.get("user")
        if not isinstance(user, Identity):
            refusal = getattr(request.state, REFUSAL_STATE, None)
            if isinstance(refusal, IssuerUnavailableError):
                raise ServiceUnavailableError(
                    "The token's signing key cannot be fetched; retry soon."
                )
            if isinstance(refusal, InvalidTokenError):
                raise AuthenticationError(refusal.reason, error="invalid_token")
            raise AuthenticationError("This API needs an access token.")
        if request.method not in SAFE_METHODS and self.write_scope not in user.scopes:
            raise InsufficientScopeError(self.write_scope)
        return user
