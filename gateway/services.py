"""What one app instance owns: settings, database, token service, metrics."""

from dataclasses import dataclass

from domains.database import Database
from domains.identity.tokens import TokenService
from gateway.metrics import Metrics
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    db: Database
    tokens: TokenService
    metrics: Metrics

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        return cls(
            settings=settings,
            db=Database(settings.database_url, pool_size=settings.database_pool_size),
            tokens=TokenService(
                settings.signing_key_pem(),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                access_ttl=settings.access_token_ttl,
            ),
            metrics=Metrics(),
        )
