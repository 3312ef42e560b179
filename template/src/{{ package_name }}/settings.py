"""The core settings, read from environment variables and ``.env``.

Each feature adds its own in a mixin of ``Settings`` in its module (its fields, their
validation, and what production refuses or warns about). service.py combines the
core's and every feature's into one model, read once: a bad value of any of them is
reported by its env var name with all the others.
"""

import json
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["development", "test", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./local.db"
MIN_SECRET_KEY_LENGTH = 32
PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "placeholder",
    "your-secret",
    "secret-key",
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
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_ping_idle_seconds: float = Field(default=1.0, ge=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)

    log_level: LogLevel = "INFO"
    log_format: Literal["json", "console"] | None = None

    cors_origins: Annotated[list[str], NoDecode] = []
    docs_enabled: bool | None = None
    max_request_body_bytes: int = Field(default=1_048_576, ge=1)

    @classmethod
    def of(cls, settings: "Settings") -> Self:
        """The service's settings as this mixin: they include every feature's."""
        if not isinstance(settings, cls):
            raise TypeError(f"these settings have no {cls.__name__} fields")
        return settings

    @field_validator("database_url")
    @classmethod
    def _use_async_driver(cls, value: str) -> str:
        """Accept plain ``postgres://`` URLs and select the asyncpg driver."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value.removeprefix(prefix)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

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
        secret = self.secret_key.get_secret_value()
        if len(secret) < MIN_SECRET_KEY_LENGTH:
            problems.append(
                f"SECRET_KEY: must be at least {MIN_SECRET_KEY_LENGTH} characters"
                " in production"
            )
        if any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
            problems.append("SECRET_KEY: is a placeholder; generate a random one")
        if self.debug:
            problems.append("DEBUG: must be false in production")
        if "*" in self.cors_origins:
            problems.append("CORS_ORIGINS: must list origins, not '*', in production")
        if self.uses_sqlite:
            problems.append("DATABASE_URL: SQLite is not allowed in production")
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


def read_settings(model: type[Settings]) -> Settings:
    """Read ``model`` from the environment; a ConfigError names each value at fault."""
    try:
        return model()
    except ValidationError as error:
        raise ConfigError(
            [
                f"{'.'.join(map(str, issue['loc'])).upper()}: {issue['msg']}"
                for issue in error.errors()
            ]
        ) from None
