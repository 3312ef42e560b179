"""Authentication as a feature: the middleware, the API's guard, the issuer's keys,
their health check and the ``token`` command."""

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, params
from fastapi.security import OpenIdConnect
from starlette.datastructures import State
from starlette.middleware import Middleware

from ..feature import Commands, Feature, HealthCheck, Service, echo
from ..problems import PROBLEM_MEDIA_TYPE, Problem
from ..settings import Settings
from .guard import AuthenticationMiddleware, Authorize
from .keys import IssuerKeys, discovery_url
from .settings import AuthSettings
from .tokens import TokenVerifier, local_token


async def check_issuer(state: State) -> dict[str, int]:
    """The issuer's keys are at hand, and the last fetch of them worked."""
    keys: IssuerKeys = state.issuer_keys
    return await keys.check()


def token(args: argparse.Namespace, service: Service) -> int:
    """The ``token`` command: print a development token."""
    settings = AuthSettings.of(service.settings)
    if not settings.uses_local_tokens:
        echo(
            "Development tokens work only in development and test without AUTH_ISSUER;"
            " get a token from the issuer.",
            error=True,
        )
        return 1
    echo(local_token(settings, args.sub, args.scope, args.ttl))
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


class Authentication(Feature):
    """Bearer tokens on every API route: the issuer's, or development ones."""

    settings = (AuthSettings,)
    libraries = ("httpx",)

    def middleware(self, service: Service) -> list[Middleware]:
        exempt = service.infrastructure_paths
        return [Middleware(AuthenticationMiddleware, exempt_paths=exempt)]

    def api_dependencies(self, service: Service) -> list[params.Depends]:
        settings = AuthSettings.of(service.settings)
        guard = [params.Depends(Authorize(settings.auth_write_scope))]
        if settings.auth_issuer is not None:
            # Names the issuer's discovery document in OpenAPI, for clients and
            # tools that sign in there; the token is still read by the middleware.
            discovery = discovery_url(settings.auth_issuer)
            openid = OpenIdConnect(openIdConnectUrl=discovery, auto_error=False)
            guard.append(params.Depends(openid))
        return guard

    def api_responses(self) -> dict[int | str, dict[str, Any]]:
        problem = {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
        return {
            401: problem | {"description": "No token, or a token that is refused"},
            403: problem | {"description": "The token lacks the scope"},
        }

    def install(self, app: FastAPI, service: Service) -> None:
        settings = AuthSettings.of(service.settings)
        issuer = settings.auth_issuer
        keys = None if issuer is None else IssuerKeys(issuer, settings)
        app.state.issuer_keys = keys
        app.state.token_verifier = TokenVerifier(settings, keys)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        keys: IssuerKeys | None = app.state.issuer_keys
        if keys is None:
            yield
            return
        async with keys.client:
            # The first fetch is awaited: tokens work from the first request. An
            # issuer that cannot be reached does not stop the service.
            await keys.refresh()
            refresher = asyncio.create_task(keys.keep_fresh())
            try:
                yield
            finally:
                refresher.cancel()
                with suppress(asyncio.CancelledError):
                    await refresher

    def health_checks(self, service: Service) -> list[HealthCheck]:
        if AuthSettings.of(service.settings).auth_issuer is None:
            return []
        # Soft: cached keys keep working while the issuer is out.
        return [HealthCheck(name="issuer", type="oidc", probe=check_issuer, hard=False)]

    def add_commands(self, commands: Commands) -> None:
        command = commands.add("token", "print a development access token", token)
        command.add_argument("--sub", required=True, help="the token's subject")
        command.add_argument(
            "--scope",
            action="append",
            default=[],
            help="a scope to grant (repeat for more), such as items:write",
        )
        command.add_argument(
            "--ttl", type=positive, default=3600, help="seconds until it expires"
        )

    def summary(self, settings: Settings) -> dict[str, object]:
        auth = AuthSettings.of(settings)
        return {
            "auth": "local" if auth.uses_local_tokens else "issuer",
            "auth_issuer": auth.auth_issuer,
            "auth_audience": auth.auth_audience,
            "auth_write_scope": auth.auth_write_scope,
        }
