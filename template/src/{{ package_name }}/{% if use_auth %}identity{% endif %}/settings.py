"""The settings of authentication: the issuer, the audience, and how keys are kept."""

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from ..settings import MIN_SECRET_KEY_LENGTH, Settings

# Asymmetric algorithms only: with an issuer's public keys, an HMAC "signature" could
# be made by anyone who has them (RFC 8725, section 2.1), and "none" is no signature.
Algorithm = Literal[
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
# Development tokens: signed with AUTH_DEVELOPMENT_KEY, as the `token` command signs.
LOCAL_ALGORITHM = "HS256"
# What signs development tokens when AUTH_DEVELOPMENT_KEY is not set: anyone can read it
# here, so it is refused outside development and test (see startup_problems).
DEFAULT_DEVELOPMENT_KEY = "development-only-tokens-are-signed-with-this"
LOCAL_ENVIRONMENTS = frozenset({"development", "test"})


class AuthSettings(Settings):
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_algorithms: Annotated[list[Algorithm], NoDecode] = Field(
        default=["RS256", "PS256", "ES256", "EdDSA"]
    )
    # The scope a request needs for any method but GET, HEAD and OPTIONS.
    auth_write_scope: str = "items:write"
    # Clock skew allowed between the issuer and the service, for exp, nbf and iat.
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    auth_issuer_timeout_seconds: float = Field(default=3.0, gt=0)
    # A token signed by a key the service has not seen makes it fetch the keys again,
    # but not more often than this: a stream of made-up key ids costs one fetch.
    auth_keys_refresh_seconds: float = Field(default=60.0, gt=0)
    # The keys are fetched again this often, so that removed keys stop working.
    auth_keys_max_age_seconds: float = Field(default=3600.0, gt=0)
    auth_token_cache_size: int = Field(default=10_000, ge=0)
    auth_development_key: SecretStr | None = None

    @field_validator("auth_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list):
            refused = [v for v in value if str(v).upper().startswith(("HS", "NONE"))]
            if refused:
                raise ValueError(
                    f"{', '.join(map(str, refused))}: an issuer's tokens are verified"
                    " with its public keys, so HMAC and none are refused; use RS256,"
                    " PS256, ES256 or EdDSA"
                )
        return value

    @field_validator("auth_issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                "is no URL; use the issuer's, such as https://login.example.com/realm"
            )
        return value

    @property
    def uses_local_tokens(self) -> bool:
        """Development tokens: no issuer, in development or test."""
        return self.auth_issuer is None and self.environment in LOCAL_ENVIRONMENTS

    @property
    def development_key(self) -> str:
        if self.auth_development_key is None:
            return DEFAULT_DEVELOPMENT_KEY
        return self.auth_development_key.get_secret_value()

    def startup_problems(self) -> list[str]:
        problems = super().startup_problems()
        local = self.environment in LOCAL_ENVIRONMENTS
        if self.auth_issuer is None and not local:
            problems.append(
                f"AUTH_ISSUER: required in {self.environment}; set the URL of the"
                " OpenID Connect issuer whose tokens the API accepts"
            )
        if self.auth_development_key is not None and not local:
            problems.append(
                f"AUTH_DEVELOPMENT_KEY: development tokens are refused in"
                f" {self.environment}; unset it"
            )
        if self.auth_issuer is not None and not self.auth_audience:
            problems.append(
                "AUTH_AUDIENCE: required with AUTH_ISSUER; set the audience the"
                " issuer puts in this API's tokens"
            )
        if (
            self.is_production
            and self.auth_issuer is not None
            and not self.auth_issuer.startswith("https://")
        ):
            problems.append("AUTH_ISSUER: must use https:// in production")
        if (
            self.auth_development_key is not None
            and self.auth_development_key.get_secret_value()
            == self.secret_key.get_secret_value()
        ):
            problems.append(
                "AUTH_DEVELOPMENT_KEY: must differ from SECRET_KEY; generate another"
            )
        return problems

    def startup_warnings(self) -> list[str]:
        warnings = super().startup_warnings()
        if not self.uses_local_tokens:
            return warnings
        if self.auth_development_key is None:
            warnings.append(
                "AUTH_DEVELOPMENT_KEY: not set, so development tokens are signed with a"
                " key anyone can read; set one (the `token` command uses it too)"
            )
        elif len(self.development_key) < MIN_SECRET_KEY_LENGTH:
            warnings.append(
                "AUTH_DEVELOPMENT_KEY: shorter than"
                f" {MIN_SECRET_KEY_LENGTH} characters; generate a longer one"
            )
        return warnings
