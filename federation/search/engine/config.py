"""What the engine backend needs from the settings, and the client options it derives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from federation.search.engine.bulk import BULK_IN_FLIGHT
from federation.search.engine.client import ClientOptions
from federation.settings import Settings


@dataclass(frozen=True)
class EngineConfig:
    """What the engine backend needs from the settings."""

    distribution: str
    urls: tuple[str, ...]
    username: str = ""
    password: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    verify_certs: bool = True
    ca_certs: Path | None = None
    search_timeout: float = 3.0
    search_retries: int = 1
    bulk_timeout: float = 120.0
    bulk_retries: int = 5
    prefix: str = "biofed"
    replicas: int = 0
    lock_ttl: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine part of the settings."""
        return cls(
            distribution=settings.backend,
            urls=settings.engine_urls,
            username=settings.engine_username,
            password=settings.engine_password,
            api_key=settings.engine_api_key,
            verify_certs=settings.engine_verify_certs,
            ca_certs=settings.engine_ca_certs,
            search_timeout=settings.engine_search_timeout,
            search_retries=settings.engine_search_retries,
            bulk_timeout=settings.engine_bulk_timeout,
            bulk_retries=settings.engine_bulk_retries,
            prefix=settings.engine_index_prefix,
            replicas=settings.engine_replicas,
            lock_ttl=settings.engine_lock_ttl,
        )

    def client_options(self, *, bulk: bool) -> ClientOptions:
        """Searches: short timeout, few immediate retries. Writes: long timeout; the
        backend retries them itself with backoff, so the client does not."""
        return ClientOptions(
            urls=self.urls,
            username=self.username,
            password=self.password,
            api_key=self.api_key,
            verify_certs=self.verify_certs,
            ca_certs=self.ca_certs,
            timeout=self.bulk_timeout if bulk else self.search_timeout,
            retries=0 if bulk else self.search_retries,
            retry_on_timeout=bulk,
            pool_size=BULK_IN_FLIGHT + 2 if bulk else 8,
        )
