"""Settings: defaults, then `config/settings.yaml`, then a `--config` file, then BIOFED_* env.

The network file (which biobanks exist and how each is pulled) is separate from the
settings because a biobank admin edits it; secrets come only from the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError

from federation import CONFIG_DIR
from federation.model.records import Biobank, BiobankSchema, describe_errors

ENV_PREFIX = "BIOFED_"


class SettingsError(ValueError):
    """A setting or network entry is invalid; the message names it and its value."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    network: Path | None = None
    backend: str = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    secret_key: str = field(default="", repr=False)

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
    if name in ("data_dir", "network"):
        return None if value in (None, "") else Path(value)
    if name in ("port", "workers"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: {value!r} is not an integer") from None
    if name == "backend" and value not in ("embedded", "elasticsearch", "opensearch"):
        raise SettingsError(f"backend: {value!r} is not embedded, elasticsearch or opensearch")
    return value


@dataclass(frozen=True)
class BiobankSource:
    """A biobank of the network and the connector that pulls its data."""

    biobank: Biobank
    kind: str
    connector: str
    options: dict[str, Any]
    base_dir: Path


@dataclass(frozen=True)
class Network:
    biobanks: tuple[BiobankSource, ...]
    path: Path

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
        sources.append(
            BiobankSource(
                biobank,
                str(entry.get("kind", "")),
                str(connector["type"]),
                dict(connector.get("options") or {}),
                path.parent,
            )
        )
    return Network(tuple(sources), path)
