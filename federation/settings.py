"""Settings: defaults, then `config/settings.yaml`, then a `--config` file, then BIOFED_* env.

The network file (which biobanks exist and how each is pulled) is separate from the
settings because a biobank admin edits it; secrets come only from the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError

from federation import CONFIG_DIR
from federation.disclosure.policy import DisclosurePolicy, PolicyError
from federation.errors import FederationError
from federation.model.records import Biobank, BiobankSchema, describe_errors

ENV_PREFIX = "BIOFED_"
# Settings that may only come from the environment (or a caller), never from a file.
SECRET_SETTINGS = ("secret_key", "engine_password", "engine_api_key")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class SettingsError(FederationError, ValueError):
    """A setting or network entry is invalid; the message names it and its value."""

    code = "INVALID_SETTINGS"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    network: Path | None = None
    backend: str = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    secret_key: str = field(default="", repr=False)
    # --- the embedded backend; see docs/embedded-backend.md ---------------------------------
    # Answers each server process keeps until the next publish; 0 turns the cache off. The
    # largest, a landing page, is ~630 facet cells and ~270 kB at 1M rows in 20 biobanks.
    embedded_answer_cache: int = 128
    # --- the engine backend (elasticsearch / opensearch); see docs/engine.md ---------------
    engine_urls: tuple[str, ...] = ("http://127.0.0.1:9200",)
    engine_username: str = ""
    engine_password: str = field(default="", repr=False)
    engine_api_key: str = field(default="", repr=False)
    engine_verify_certs: bool = True
    engine_ca_certs: Path | None = None
    # Searches fail fast (a researcher waits); bulk loads ride out a busy cluster.
    engine_search_timeout: float = 3.0
    engine_search_retries: int = 1
    engine_bulk_timeout: float = 120.0
    engine_bulk_retries: int = 5
    engine_index_prefix: str = "biofed"
    engine_replicas: int = 0
    # A sync lock not renewed for this long is stale (its holder died) and may be taken.
    engine_lock_ttl: float = 120.0
    # --- access: API keys / OIDC, and request limits; see docs/access.md ---------------------
    # Raw sections, validated in full by federation.gateway.auth / .limits when the app is
    # built; an empty section means the defaults documented in config/settings.yaml.
    auth: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def locks_dir(self) -> Path:
        return self.data_dir / "locks"

    def with_overrides(self, **values: Any) -> Settings:
        return load_settings(overrides={**_as_dict(self), **values}, read_files=False)


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    read_files: bool = True,
) -> Settings:
    """Build settings from the layers, later ones winning."""
    values: dict[str, Any] = {}
    if read_files:
        for path in (CONFIG_DIR / "settings.yaml", config_file):
            if path is not None and Path(path).exists():
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
                if not isinstance(loaded, dict):
                    raise SettingsError(f"{path}: expected a mapping of settings")
                for secret in SECRET_SETTINGS:
                    if secret in loaded:
                        raise SettingsError(
                            f"{path}: {secret} is a secret; set {ENV_PREFIX}{secret.upper()} "
                            "in the environment instead"
                        )
                values.update(loaded)
            elif path is not None and path == config_file:
                raise SettingsError(f"--config {path}: no such file")
    values.update(overrides or {})
    env = os.environ if environ is None else environ
    names = {f.name: f for f in dataclasses.fields(Settings)}
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in names:
            values[key[len(ENV_PREFIX) :].lower()] = raw
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    return Settings(**{k: _coerce(k, v) for k, v in values.items()})


def _coerce(name: str, value: Any) -> Any:
    if name in ACCESS_SECTIONS:
        return _access_section(name, value)
    if name in ("data_dir", "network", "engine_ca_certs"):
        return None if value in (None, "") else Path(value)
    if name in (
        "port",
        "workers",
        "engine_search_retries",
        "engine_bulk_retries",
        "engine_replicas",
        "embedded_answer_cache",
    ):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: {value!r} is not an integer") from None
        if name.startswith(("engine_", "embedded_")) and number < 0:
            raise SettingsError(f"{name}: {value!r} must not be negative")
        return number
    if name in ("engine_search_timeout", "engine_bulk_timeout", "engine_lock_ttl"):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: {value!r} is not a number of seconds") from None
        if seconds <= 0:
            raise SettingsError(f"{name}: {value!r} must be more than 0 seconds")
        return seconds
    if name == "engine_verify_certs":
        return _boolean(name, value)
    if name == "engine_urls":
        return _urls(value)
    if name == "engine_index_prefix" and not _INDEX_PREFIX.match(str(value)):
        raise SettingsError(
            f"engine_index_prefix: {value!r} must be 1-40 lowercase letters, digits, - or _"
        )
    if name == "backend" and value not in ("embedded", "elasticsearch", "opensearch"):
        raise SettingsError(f"backend: {value!r} is not embedded, elasticsearch or opensearch")
    return value


# Settings that are whole YAML sections rather than single values.
ACCESS_SECTIONS = ("auth", "limits")


def _access_section(name: str, value: Any) -> dict[str, Any]:
    """An `auth` or `limits` section: a mapping from a file, or YAML/JSON text from BIOFED_*."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            raise SettingsError(f"{name}: not valid YAML or JSON") from None
    if not isinstance(value, Mapping):
        raise SettingsError(f"{name}: must be a mapping of settings")
    return dict(value)


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: {value!r} is not true or false")


def _urls(value: Any) -> tuple[str, ...]:
    """One URL, a comma-separated list (from the environment) or a YAML list."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    urls = tuple(str(u).strip().rstrip("/") for u in items if str(u).strip())
    if not urls:
        raise SettingsError(f"engine_urls: {value!r} names no URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"engine_urls: {url!r} is not an http:// or https:// URL")
    return urls


@dataclass(frozen=True)
class BiobankSource:
    """A biobank of the network, the connector that pulls its data, and its disclosure policy."""

    biobank: Biobank
    kind: str
    connector: str
    options: dict[str, Any]
    base_dir: Path
    policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)


@dataclass(frozen=True)
class Network:
    biobanks: tuple[BiobankSource, ...]
    path: Path
    default_policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)

    def policy(self, biobank_id: str) -> DisclosurePolicy:
        """The biobank's policy; the network default for a biobank not (or no longer) listed."""
        for source in self.biobanks:
            if source.biobank.id == biobank_id:
                return source.policy
        return self.default_policy

    def get(self, biobank_id: str) -> BiobankSource:
        for source in self.biobanks:
            if source.biobank.id == biobank_id:
                return source
        known = ", ".join(s.biobank.id for s in self.biobanks)
        raise SettingsError(f"no biobank {biobank_id!r} in {self.path} (known: {known})")


def load_network(path: Path) -> Network:
    """Read a network file: its biobanks, each with a connector type and options."""
    if not path.exists():
        raise SettingsError(f"network file {path} does not exist (run `biofed demo-data`?)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("biobanks")
    if not isinstance(entries, list):
        raise SettingsError(f"{path}: `biobanks` must be a list")
    try:
        default_policy = DisclosurePolicy.parse(
            data.get("default_disclosure"), where=f"{path}: default_disclosure"
        )
    except PolicyError as err:
        raise SettingsError(str(err)) from None
    sources = []
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        where = f"{path}: biobanks[{n}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where} must be a mapping")
        try:
            biobank = BiobankSchema().load(entry)
        except ValidationError as err:
            raise SettingsError(f"{where}: {'; '.join(describe_errors(err.messages))}") from None
        if biobank.id in seen:
            raise SettingsError(f"{where}: biobank id {biobank.id!r} appears twice")
        seen.add(biobank.id)
        connector = entry.get("connector") or {}
        if not connector.get("type"):
            raise SettingsError(f"{where}.connector.type is missing")
        try:
            policy = DisclosurePolicy.parse(
                entry.get("disclosure"), default_policy, where=f"{where}.disclosure"
            )
        except PolicyError as err:
            raise SettingsError(str(err)) from None
        sources.append(
            BiobankSource(
                biobank,
                str(entry.get("kind", "")),
                str(connector["type"]),
                dict(connector.get("options") or {}),
                path.parent,
                policy,
            )
        )
    return Network(tuple(sources), path, default_policy)
