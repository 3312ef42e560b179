"""What a feature is: the one surface through which every optional part plugs in.

A feature is a ``Feature`` subclass in a module of its own, listed in service.py.
The code that is always there (main.py, middleware.py, cli.py) builds the app, its
lifespan, its health checks and its commands from that list, and names no feature.
Every hook below adds nothing until a feature overrides it.
"""

import argparse
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol

from fastapi import APIRouter, FastAPI, params
from pydantic import create_model
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.types import Scope
from structlog.typing import Processor

from .db import Base
from .logs import configure_logging
from .masking import mask_mapping
from .paths import DOCS_PATHS
from .settings import Settings

# A health check's probe: returns (figures for the report, or None) when the
# dependency works, raises when it does not.
Probe = Callable[[State], Awaitable[dict[str, int] | None]]
Command = Callable[[argparse.Namespace, "Service"], int]


@dataclass(frozen=True, kw_only=True)
class HealthCheck:
    """A dependency of the service, checked by ``probe(app.state)``.

    A hard dependency is one the service cannot work without: when it fails, the
    service is not ready. A soft one has a fallback: the service is only degraded.
    """

    name: str
    type: str
    probe: Probe
    hard: bool


class RequestObserver(Protocol):
    """Told of every API request as it starts and ends (infrastructure paths aside)."""

    def request_started(self, scope: Scope) -> None: ...

    def request_finished(self, scope: Scope, status: int, seconds: float) -> None: ...


class Commands:
    """The subcommands of the command line, which the core and the features add."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.subcommands = parser.add_subparsers(dest="command", required=True)

    def add(self, name: str, summary: str, run: Command) -> argparse.ArgumentParser:
        """Add ``name``; ``run(args, service)`` gets valid settings and returns the
        exit status. Returns the subcommand's parser, for its arguments."""
        command = self.subcommands.add_parser(name, help=summary)
        command.set_defaults(run=run)
        return command


def echo(message: str, *, error: bool = False) -> None:
    """Print a command's message: results to stdout, problems to stderr."""
    print(message, file=sys.stderr if error else sys.stdout)


class Feature:
    """An optional part of the service: what it adds, and where it plugs in."""

    # Settings mixins (subclasses of Settings) whose fields the feature reads.
    settings: ClassVar[tuple[type[Settings], ...]] = ()
    # Features this one cannot work without: they come before it in the service.
    requires: ClassVar[tuple[type["Feature"], ...]] = ()
    # Paths that are not the API (probes, scrapes): see paths.py.
    infrastructure_paths: ClassVar[frozenset[str]] = frozenset()
    # The feature's tables, for Base.metadata and Alembic.
    models: ClassVar[tuple[type[Base], ...]] = ()
    # Third-party libraries the feature drives, by import name: what tracing and
    # error reporting instrument.
    libraries: ClassVar[tuple[str, ...]] = ()
    # Added to the end of the log pipeline, after the masking of secrets.
    log_processors: ClassVar[tuple[Processor, ...]] = ()

    def setup(self, service: "Service") -> None:
        """Set up the process, before the app is built (again for each app)."""

    def middleware(self, service: "Service") -> list[Middleware]:
        """Middleware inside the core's, in the order of the features."""
        return []

    def request_observers(self, service: "Service") -> list[RequestObserver]:
        """Observers of each API request's status and duration (metrics, say)."""
        return []

    def install(self, app: FastAPI, service: "Service") -> None:
        """Add routes outside the API, exception handlers and state to the app."""

    def api_routers(self) -> list[APIRouter]:
        """Routers of the feature's resources, mounted in the versioned API."""
        return []

    def api_dependencies(self, service: "Service") -> list[params.Depends]:
        """Dependencies of every API route (its guard, say)."""
        return []

    def api_responses(self) -> dict[int | str, dict[str, Any]]:
        """Responses every API route may give because of the feature, for OpenAPI."""
        return {}

    def lifespan(self, app: FastAPI) -> AbstractAsyncContextManager[None]:
        """What the feature opens at start-up and closes at shutdown."""
        return nullcontext()

    def health_checks(self, service: "Service") -> list[HealthCheck]:
        """The dependencies the feature brings, for the health probes."""
        return []

    def integrations(self) -> dict[str, bool]:
        """Integrations the health report shows, each enabled or not."""
        return {}

    def add_commands(self, commands: Commands) -> None:
        """Add the feature's subcommands to the command line."""

    def summary(self, settings: Settings) -> dict[str, object]:
        """The feature's part of the configuration summary: what it is set to do.

        Plain values only (text, numbers, booleans, lists, None for unset), and nothing
        secret: the start-up log line and ``check-config --show`` print them.
        """
        return {}

    def prepare_server(self, workers: int) -> None:
        """Prepare for ``serve --workers N``, before the server starts its workers."""


@dataclass(frozen=True)
class Service:
    """The service being built: its settings, and its features in order."""

    settings: Settings
    features: tuple[Feature, ...]

    @cached_property
    def infrastructure_paths(self) -> frozenset[str]:
        """The docs and every feature's probes and scrapes: all that is not the API."""
        return DOCS_PATHS.union(*(f.infrastructure_paths for f in self.features))

    @property
    def libraries(self) -> list[str]:
        return list(dict.fromkeys(lib for f in self.features for lib in f.libraries))

    def health_checks(self) -> list[HealthCheck]:
        return [check for f in self.features for check in f.health_checks(self)]

    def integrations(self) -> dict[str, bool]:
        integrations: dict[str, bool] = {}
        for feature in self.features:
            integrations |= feature.integrations()
        return integrations

    def summary(self) -> dict[str, object]:
        """The effective configuration, secrets masked, for the start-up log line and
        ``check-config --show``: the environment, the features, then the settings of
        the core and of each feature."""
        summary: dict[str, object] = {
            "environment": self.settings.environment,
            "features": [type(feature).__name__ for feature in self.features],
        }
        summary |= self.settings.summary()
        for feature in self.features:
            summary |= feature.summary(self.settings)
        return mask_mapping(summary)

    def configure_process(self) -> None:
        """Configure the logs, then let each feature set up the process."""
        processors = [p for feature in self.features for p in feature.log_processors]
        configure_logging(self.settings, processors=processors)
        for feature in self.features:
            feature.setup(self)


def with_requirements(*features: Feature) -> tuple[Feature, ...]:
    """The features and those they require, each once, each after its requirements."""
    ordered: dict[type[Feature], Feature] = {}

    def add(feature: Feature) -> None:
        if type(feature) not in ordered:
            for required in feature.requires:
                add(required())
            ordered[type(feature)] = feature

    for feature in features:
        add(feature)
    return tuple(ordered.values())


def settings_model(features: Iterable[Feature]) -> type[Settings]:
    """One model of every setting: the core's and those of each feature's mixins."""
    mixins = list(dict.fromkeys(model for f in features for model in f.settings))
    # A mixin that another one extends comes with it (and must not precede it).
    bases = tuple(
        mixin
        for mixin in mixins
        if not any(other is not mixin and issubclass(other, mixin) for other in mixins)
    )
    if not bases:
        return Settings
    return create_model(
        "ServiceSettings",
        __base__=bases,
        __module__=__name__,
        __doc__="Every setting of the service: the core's and its features'.",
    )
