"""What the engine backend needs from the settings, and the client options it derives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from federation.search.engine.bulk import BULK_IN_FLIGHT
from federation.search.engine.client import ClientOptions
from federation.settings import EngineSettings, Settings


@dataclass(frozen=True)
class EngineConfig:
    """The engine section of the settings and the distribution it serves (`backend`)."""

    distribution: str
    engine: EngineSettings
    # The state store's location (`state_url`, data folder), where lock takeovers are
    # recorded for /metrics; None (a bare config in tests): they are only logged.
    state: tuple[str, Path] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine part of the settings."""
        return cls(settings.backend, settings.engine, (settings.state_url, settings.data_dir))

    def client_options(self, *, bulk: bool) -> ClientOptions:
        """Searches: short timeout, few immediate retries. Writes: long timeout; the
        backend retries them itself with backoff, so the client does not."""
        return ClientOptions(
            urls=self.engine.urls,
            username=self.engine.username,
            password=self.engine.password,
            api_key=self.engine.api_key,
            verify_certs=self.engine.verify_certs,
            ca_certs=self.engine.ca_certs,
            timeout=self.engine.bulk_timeout if bulk else self.engine.search_timeout,
            retries=0 if bulk else self.engine.search_retries,
            retry_on_timeout=bulk,
            pool_size=BULK_IN_FLIGHT + 2 if bulk else 8,
        )
