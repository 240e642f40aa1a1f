"""Settings from `KABINET_*` environment variables; `env` picks the hardening defaults."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEV_DATABASE_URL = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'kabinet.db'}"
DEV_SIGNING_KEY_FILE = REPO_ROOT / "var" / "jwt-signing-key.pem"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KABINET_", extra="ignore")

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = "info"

    database_url: str = DEV_DATABASE_URL
    database_pool_size: int = Field(10, ge=1, le=200)
    redis_url: str | None = None
    kafka_bootstrap: str | None = None

    jwt_private_key: SecretStr | None = Field(
        None, description="Ed25519 private key (PEM); or use jwt_private_key_file."
    )
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "kabinet"
    jwt_audience: str = "kabinet-api"
    access_token_ttl: timedelta = timedelta(minutes=15)

    cors_origins: list[str] = Field(default_factory=list)
    node_modules: Path = REPO_ROOT / "node_modules"
    graphiql: bool | None = Field(None, description="Serve GraphiQL; default: on in development.")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def graphiql_enabled(self) -> bool:
        return (not self.is_production) if self.graphiql is None else self.graphiql

    def signing_key_pem(self) -> bytes:
        """The configured key; development falls back to the file `kabinet dev` generates."""
        if self.is_production and not (self.jwt_private_key or self.jwt_private_key_file):
            raise RuntimeError(
                "production needs KABINET_JWT_PRIVATE_KEY or KABINET_JWT_PRIVATE_KEY_FILE"
            )
        if self.jwt_private_key is not None:
            return self.jwt_private_key.get_secret_value().encode()
        path = self.jwt_private_key_file or DEV_SIGNING_KEY_FILE
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RuntimeError(
                f"no JWT signing key at {path}: run `kabinet keygen {path}` (make dev does)"
            ) from None
