"""The core settings, read from environment variables and ``.env``.

Each feature adds its own in a mixin of ``Settings`` in its module (its fields, their
validation, and what production refuses or warns about). service.py combines the
core's and every feature's into one model, read once: a bad value of any of them is
reported by its env var name with all the others.
"""

import ipaddress
import json
import re
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

Environment = Literal["development", "test", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./local.db"
# The database drivers the service ships, by backend, and a URL of each to copy.
SHIPPED_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
DATABASE_URL_FORMS = {
    "postgresql": "postgresql+asyncpg://user:password@host:5432/name",
    "sqlite": "sqlite+aiosqlite:///./local.db",
}
# A host name, an IPv4 address or a bracketed IPv6 one, or *.domain for its subdomains.
ALLOWED_HOST = re.compile(
    r"\*|(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]"
)
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_DISTINCT_CHARACTERS = 10
# Placeholders: phrases anywhere in the key, and words that stand alone in it (a
# random key may well hold "xxx" or "todo" inside a longer run of characters).
PLACEHOLDER = re.compile(
    r"change[-_ ]?me|placeholder|replace[-_ ]?me|secret[-_ ]?key|your[-_ ]secret"
    r"|your[-_ ].*[-_ ]here"
    r"|(^|[^a-z0-9])(x{3,}|todo|tbd|fixme|dummy|example)([^a-z0-9]|$)",
    re.IGNORECASE,
)
# Database passwords that come with images and tutorials, and the package's name,
# which compose.yaml used to default to.
DEFAULT_DATABASE_PASSWORDS = frozenset(
    {
        "postgres",
        "password",
        "admin",
        "root",
        "changeme",
        "change-me",
        "secret",
        "example",
        "test",
        "pass",
        "123456",
        __name__.partition(".")[0],
    }
)


class ConfigError(Exception):
    """The settings are invalid; ``problems`` names each env var at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """The settings of the core. Env names are the field names in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Environment = "development"
    debug: bool = False
    secret_key: SecretStr = SecretStr("change-me-in-development-only")

    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_ping_idle_seconds: float = Field(default=1.0, ge=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout: float = Field(default=10.0, gt=0)

    log_level: LogLevel = "INFO"
    log_format: Literal["json", "console"] | None = None

    cors_origins: Annotated[list[str], NoDecode] = []
    docs_enabled: bool | None = None
    max_request_body_bytes: int = Field(default=1_048_576, ge=1)
    max_request_header_bytes: int = Field(default=16_384, ge=1024)
    allowed_hosts: Annotated[list[str], NoDecode] = []
    # uvicorn's own variable, read here so that .env sets it too (see cli.py).
    forwarded_allow_ips: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]
    # On SIGTERM: serve on while readiness fails, then let requests in flight finish.
    drain_seconds: float = Field(default=5.0, ge=0)
    graceful_timeout_seconds: int = Field(default=30, gt=0)

    @classmethod
    def of(cls, settings: "Settings") -> Self:
        """The service's settings as this mixin: they include every feature's."""
        if not isinstance(settings, cls):
            raise TypeError(f"these settings have no {cls.__name__} fields")
        return settings

    @field_validator("database_url")
    @classmethod
    def _use_a_shipped_driver(cls, value: str) -> str:
        """Select asyncpg for plain ``postgres://`` URLs; refuse other drivers.

        The messages never quote the URL: it may hold a password.
        """
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                value = "postgresql+asyncpg://" + value.removeprefix(prefix)
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):  # ValueError: a port that is no number
            use = DATABASE_URL_FORMS["postgresql"]
            raise ValueError(f"does not parse as a database URL; use {use}") from None
        backend = url.get_backend_name()
        if url.drivername != SHIPPED_DRIVERS.get(backend):
            use = DATABASE_URL_FORMS.get(backend, DATABASE_URL_FORMS["postgresql"])
            raise ValueError(
                f"the service does not ship the driver {url.drivername}; use {use}"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "cors_origins", "allowed_hosts", "forwarded_allow_ips", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        """Names as in the Host header, without a port; compared in lower case."""
        for host in hosts:
            if not ALLOWED_HOST.fullmatch(host):
                raise ValueError(
                    f"{host!r} is no host name; list names such as api.example.com"
                    " or *.example.com, without scheme, port or path"
                )
        return [host.lower() for host in hosts]

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            if address != "*":
                try:
                    ipaddress.ip_network(address, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{address!r} is no IP address or network; use 10.0.0.5,"
                        " 10.0.0.0/8 or *"
                    ) from None
        return addresses

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def database_location(self) -> str:
        """The database as driver://host:port/name, without credentials or options."""
        url = make_url(self.database_url)
        location = URL.create(
            url.drivername, host=url.host, port=url.port, database=url.database
        )
        return location.render_as_string()

    @property
    def json_logs(self) -> bool:
        if self.log_format is None:
            return self.environment != "development"
        return self.log_format == "json"

    @property
    def docs_are_enabled(self) -> bool:
        if self.docs_enabled is None:
            return not self.is_production
        return self.docs_enabled

    def startup_problems(self) -> list[str]:
        """Problems that stop the service from starting in this environment.

        A feature's mixin extends the list: ``[*super().startup_problems(), ...]``.
        """
        if not self.is_production:
            return []
        problems = []
        if secret_problem := secret_key_problem(self.secret_key.get_secret_value()):
            problems.append(f"SECRET_KEY: {secret_problem}")
        if self.debug:
            problems.append("DEBUG: must be false in production")
        if "*" in self.cors_origins:
            problems.append("CORS_ORIGINS: must list origins, not '*', in production")
        if "null" in self.cors_origins:
            problems.append(
                "CORS_ORIGINS: 'null' lets in sandboxed pages and local files;"
                " list the origins"
            )
        if plain := [o for o in self.cors_origins if o.startswith("http://")]:
            problems.append(
                f"CORS_ORIGINS: {', '.join(plain)} must use https:// in production"
            )
        if not self.allowed_hosts:
            problems.append(
                "ALLOWED_HOSTS: list the host names clients use to reach the service"
            )
        elif "*" in self.allowed_hosts:
            problems.append(
                "ALLOWED_HOSTS: must list host names, not '*', in production"
            )
        if self.uses_sqlite:
            problems.append("DATABASE_URL: SQLite is not allowed in production")
        elif is_default_password(make_url(self.database_url)):
            problems.append(
                "DATABASE_URL: the password is a well-known default; set a strong one"
            )
        return problems

    def startup_warnings(self) -> list[str]:
        """Settings that work but are unwise in this environment (extended likewise)."""
        if not self.is_production:
            return []
        warnings = []
        if self.log_level == "DEBUG":
            warnings.append("LOG_LEVEL: DEBUG in production is verbose and costly")
        if not self.json_logs:
            warnings.append("LOG_FORMAT: use json in production")
        return warnings

    def summary(self) -> dict[str, object]:
        """The core's effective settings, without secrets (see Service.summary)."""
        summary: dict[str, object] = {
            "debug": self.debug,
            "database": self.database_location,
        }
        if not self.uses_sqlite:
            summary["db_pool_size"] = self.db_pool_size
            summary["db_max_overflow"] = self.db_max_overflow
            summary["db_statement_timeout"] = self.db_statement_timeout
        return summary | {
            "log_level": self.log_level,
            "log_format": "json" if self.json_logs else "console",
            "docs": self.docs_are_enabled,
            "cors_origins": self.cors_origins,
            "max_request_body_bytes": self.max_request_body_bytes,
            "max_request_header_bytes": self.max_request_header_bytes,
            "allowed_hosts": self.allowed_hosts,
            "forwarded_allow_ips": self.forwarded_allow_ips,
            "drain_seconds": self.drain_seconds,
            "graceful_timeout_seconds": self.graceful_timeout_seconds,
        }


def secret_key_problem(secret: str) -> str | None:
    """What makes ``secret`` unfit for production, or None."""
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return f"must be at least {MIN_SECRET_KEY_LENGTH} characters in production"
    if PLACEHOLDER.search(secret):
        return "is a placeholder; generate a random one"
    if len(set(secret)) < MIN_SECRET_KEY_DISTINCT_CHARACTERS or repeats_a_unit(secret):
        return (
            "has too little variety (a repeated character or word, or fewer than"
            f" {MIN_SECRET_KEY_DISTINCT_CHARACTERS} distinct characters);"
            " generate a random one"
        )
    return None


def repeats_a_unit(text: str) -> bool:
    """Whether ``text`` is one shorter unit over and over, as "abcabcabca" is."""
    return any(text[size:] == text[:-size] for size in range(1, len(text) // 2 + 1))


def is_default_password(url: URL) -> bool:
    """Whether the URL's password is a well-known default, or its user name."""
    if not url.password:
        return False
    password = url.password.lower()
    user = (url.username or "").lower()
    return password in DEFAULT_DATABASE_PASSWORDS or password == user


def read_settings(model: type[Settings]) -> Settings:
    """Read ``model`` from the environment; a ConfigError names each value at fault."""
    try:
        return model()
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            name = ".".join(map(str, issue["loc"])).upper()
            # A validator's own ValueError says what is wrong; pydantic's prefix
            # ("Value error, ...") adds nothing. The input is never shown: it may
            # be a secret.
            if issue["type"] == "value_error":
                problems.append(f"{name}: {issue['ctx']['error']}")
            else:
                problems.append(f"{name}: {issue['msg']}")
        raise ConfigError(problems) from None
