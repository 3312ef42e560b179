"""The command line: serve, check-config, migrate, backup and restore.

Each feature adds commands of its own (``Feature.add_commands``).
"""

import argparse
from collections.abc import Sequence
from importlib.metadata import metadata
from typing import Any

from . import DISTRIBUTION, backup
from .feature import Commands, Service, echo
from .service import FEATURES, load_settings
from .settings import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=DISTRIBUTION, description=metadata(DISTRIBUTION)["Summary"]
    )
    commands = Commands(parser)
    serve = commands.add("serve", "run the API server (uvicorn)", run_server)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    check = "validate the settings for the current ENVIRONMENT"
    check_command = commands.add("check-config", check, check_config)
    check_command.add_argument(
        "--show",
        action="store_true",
        help="then print the effective configuration, secrets masked",
    )
    commands.add("migrate", "apply pending database migrations", migrate)
    backup.add_commands(commands)
    for feature in FEATURES:
        feature.add_commands(commands)

    args = parser.parse_args(argv)
    service = load_checked_service()
    if service is None:
        return 1
    status: int = args.run(args, service)
    return status


def load_checked_service() -> Service | None:
    """The service with its settings; print every problem and return None if invalid."""
    try:
        settings = load_settings()
        problems = settings.startup_problems()
    except ConfigError as error:
        problems = error.problems
    if problems:
        echo("Configuration is invalid:", error=True)
        for problem in problems:
            echo(f"  {problem}", error=True)
        return None
    return Service(settings, FEATURES)


def check_config(args: argparse.Namespace, service: Service) -> int:
    for warning in service.settings.startup_warnings():
        echo(f"warning: {warning}", error=True)
    echo(f"Configuration is valid for {service.settings.environment}.")
    if args.show:
        for key, value in service.summary().items():
            echo(f"{key}: {shown(value)}")
    return 0


def shown(value: object) -> str:
    """A value of the configuration summary as ``check-config --show`` prints it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def migrate(args: argparse.Namespace, service: Service) -> int:
    from .logs import configure_logging
    from .migrations import upgrade

    configure_logging(service.settings)
    upgrade(service.settings.database_url)
    return 0


def run_server(args: argparse.Namespace, service: Service) -> int:
    import uvicorn

    from .logs import configure_logging
    from .migrations import upgrade
    from .server import DrainingServer

    settings = service.settings
    configure_logging(settings)
    if settings.environment == "development" and settings.uses_sqlite:
        upgrade(settings.database_url)  # The one-command local start needs a schema.
    for feature in service.features:
        feature.prepare_server(args.workers)
    app = f"{__package__}.main:create_app"
    options: dict[str, Any] = {
        "factory": True,
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # The client address and scheme come from X-Forwarded-For and -Proto only when
        # the peer is one of these: the proxy (docs/DEPLOYMENT.md#behind-a-proxy).
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": settings.graceful_timeout_seconds,
    }
    if args.workers > 1 or args.reload:
        # uvicorn's supervisors run a server of their own in each process, which
        # stops at once on SIGTERM: no drain period (docs/DEPLOYMENT.md).
        uvicorn.run(app, workers=args.workers, reload=args.reload, **options)
        return 0
    server = DrainingServer(uvicorn.Config(app, **options), settings.drain_seconds)
    server.run()
    # A failure to start (a port in use, a lifespan error) has been logged.
    return 0 if server.started else 1
