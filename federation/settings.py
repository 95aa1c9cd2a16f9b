"""Settings: defaults, then `config/settings.yaml`, then a `--config` file, then BIOFED_* env.

The network file (which biobanks exist and how each is pulled) is separate from the
settings because a biobank admin edits it; secrets come only from the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from marshmallow import RAISE, Schema, ValidationError, post_load
from marshmallow import fields as mfields
from marshmallow.validate import Range, Regexp

from federation import CONFIG_DIR
from federation.disclosure.budget import PrivacyBudgets
from federation.disclosure.policy import DisclosurePolicy, PolicyError
from federation.errors import FederationError

# federation.model.records is imported where a network file or an engine section is read,
# not here: it loads the ICD-10 classification (some 30 MB), which the gunicorn master,
# reading only its bind address and worker count, has no use for.
if TYPE_CHECKING:
    from federation.model.records import Biobank

ENV_PREFIX = "BIOFED_"
# The lowest CPU priority a process can take (nice 19).
MAX_NICENESS = 19
# Settings that may only come from the environment (or a caller), never from a file.
SECRET_SETTINGS = ("secret_key", "engine_password", "engine_api_key", "webhook_secret")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class SettingsError(FederationError, ValueError):
    """A setting or network entry is invalid; the message names it and its value."""

    code = "SETTINGS_INVALID"


@dataclass(frozen=True)
class EngineSettings:
    """The engine backend's section (elasticsearch / opensearch); see docs/engine.md.

    In a file it is the `engine:` mapping; the flat names `engine_<field>` (in a file, an
    override or the environment as BIOFED_ENGINE_<FIELD>) set one field and win over it.
    """

    urls: tuple[str, ...] = ("http://127.0.0.1:9200",)
    username: str = ""
    password: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    verify_certs: bool = True
    ca_certs: Path | None = None
    # Searches fail fast (a researcher waits); bulk loads ride out a busy cluster.
    search_timeout: float = 3.0
    search_retries: int = 1
    bulk_timeout: float = 120.0
    bulk_retries: int = 5
    index_prefix: str = "biofed"
    replicas: int = 0
    # A sync lock not renewed for this long is stale (its holder died) and may be taken.
    lock_ttl: float = 120.0


ENGINE_SECTION = "engine"
ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(EngineSettings))
# Engine fields that may only come from the environment (or a caller), never from a file.
ENGINE_SECRETS = ("password", "api_key")


class _Urls(mfields.Field[tuple[str, ...]]):
    """One URL, a comma-separated list (from the environment) or a YAML list."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        urls = tuple(str(u).strip().rstrip("/") for u in items if str(u).strip())
        if not urls:
            raise ValidationError(f"{value!r} names no URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValidationError(f"{url!r} is not an http:// or https:// URL")
        return urls


def _count(**kwargs: Any) -> mfields.Integer:
    return mfields.Integer(
        validate=Range(min=0, error="{input!r} must not be negative"),
        error_messages={"invalid": "{input!r} is not an integer"},
        **kwargs,
    )


def _seconds(**kwargs: Any) -> mfields.Float:
    return mfields.Float(
        validate=Range(min=0, min_inclusive=False, error="{input!r} must be more than 0 seconds"),
        error_messages={"invalid": "{input!r} is not a number of seconds"},
        **kwargs,
    )


class EngineSettingsSchema(Schema):
    """Validates the engine section (from files, overrides and the environment)."""

    class Meta:
        unknown = RAISE

    urls = _Urls()
    username = mfields.String()
    password = mfields.String()
    api_key = mfields.String()
    verify_certs = mfields.Boolean(error_messages={"invalid": "{input!r} is not true or false"})
    ca_certs = mfields.String(allow_none=True)
    search_timeout = _seconds()
    search_retries = _count()
    bulk_timeout = _seconds()
    bulk_retries = _count()
    index_prefix = mfields.String(
        validate=Regexp(
            _INDEX_PREFIX, error="{input!r} must be 1-40 lowercase letters, digits, - or _"
        )
    )
    replicas = _count()
    lock_ttl = _seconds()

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> EngineSettings:
        ca_certs = data.get("ca_certs")
        data["ca_certs"] = Path(ca_certs) if ca_certs else None
        return EngineSettings(**data)


def _engine_raw(value: Any, where: str) -> dict[str, Any]:
    """An engine section as raw values: a mapping, YAML/JSON text or an EngineSettings."""
    if isinstance(value, EngineSettings):
        raw = dataclasses.asdict(value)
        raw["ca_certs"] = None if value.ca_certs is None else str(value.ca_certs)
        return raw
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            raise SettingsError(f"{where}: not valid YAML or JSON") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: must be a mapping of settings")
    return dict(value)


def load_engine_settings(raw: Mapping[str, Any]) -> EngineSettings:
    """Validate an engine section; errors name `engine.<field>` and the value, as connectors do."""
    try:
        loaded = EngineSettingsSchema().load(dict(raw))
    except ValidationError as err:
        from federation.model.records import describe_errors

        lines = "; ".join(describe_errors(err.messages, ENGINE_SECTION))
        raise SettingsError(lines) from None
    assert isinstance(loaded, EngineSettings)
    return loaded


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    network: Path | None = None
    backend: str = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    secret_key: str = field(default="", repr=False)
    # --- the state store; see docs/state.md ------------------------------------------------
    # Empty: state.db in the data folder. postgresql://user@host:port/db when several hosts
    # serve (password from BIOFED_STATE_PASSWORD or PGPASSWORD, never in the URL).
    state_url: str = ""
    # --- the embedded backend; see docs/embedded-backend.md ---------------------------------
    # Answers each server process keeps until the next publish; 0 turns the cache off. The
    # largest, a landing page, is ~630 facet cells and ~270 kB at 1M rows in 20 biobanks.
    embedded_answer_cache: int = 128
    # DuckDB threads per search in each server process; 0: DuckDB's own choice, every
    # core. 1 on a small machine with several workers saves CPU under concurrent load
    # (about 8 %) but makes a lone search slower (selective at 1M: 76 -> 97 ms on 2
    # cores), so it is the operator's choice, not the default (docs/performance.md).
    embedded_threads: int = 0
    # --- syncs; see docs/operations.md ---------------------------------------------------
    # The largest fraction of a biobank's indexed samples one full sync may delete; a
    # source that shrinks more (or to nothing) fails its run unless an admin confirms it
    # (`biofed sync --allow-shrink`). 1 turns the guard off except for shrinking to nothing.
    sync_max_shrink: float = 0.5
    # How much lower a sync process's CPU priority is than the servers' (nice, 0-19): a
    # sync is a batch job, so searches running beside it keep their latency. 0 leaves it.
    sync_niceness: int = 10
    # --- the engine backend (elasticsearch / opensearch); see EngineSettings -------------
    engine: EngineSettings = field(default_factory=lambda: EngineSettings())
    # --- access: API keys / OIDC, and request limits; see docs/access.md ---------------------
    # Raw sections, validated in full by federation.gateway.auth / .limits when the app is
    # built; an empty section means the defaults documented in config/settings.yaml.
    auth: dict[str, Any] = field(default_factory=dict, repr=False)
    limits: dict[str, Any] = field(default_factory=dict)
    # Who runs the Beacon v2 API (docs/beacon.md): id, name, organization, environment.
    beacon: dict[str, Any] = field(default_factory=dict)
    # Access requests (docs/requests.md): e-mail, webhooks, the Negotiator; validated by
    # federation.requests.config. The key webhooks are signed with is a secret.
    requests: dict[str, Any] = field(default_factory=dict)
    webhook_secret: str = field(default="", repr=False)
    # Client addresses or networks that may read /metrics without an operator key
    # (docs/metrics.md); empty: only the network operator's key.
    metrics_allow: tuple[str, ...] = ()

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def locks_dir(self) -> Path:
        return self.data_dir / "locks"

    @property
    def embedded_reader_threads(self) -> int:
        """DuckDB threads per search in a server process: the setting; 0 lets DuckDB choose."""
        return self.embedded_threads

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
    engine: dict[str, Any] = {}
    if read_files:
        for path in (CONFIG_DIR / "settings.yaml", config_file):
            if path is not None and Path(path).exists():
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
                if not isinstance(loaded, dict):
                    raise SettingsError(f"{path}: expected a mapping of settings")
                _refuse_secrets(path, loaded)
                _layer(values, engine, loaded, where=str(path))
            elif path is not None and path == config_file:
                raise SettingsError(f"--config {path}: no such file")
    _layer(values, engine, overrides or {}, where="overrides")
    env = os.environ if environ is None else environ
    names = SETTING_NAMES
    _layer(
        values,
        engine,
        {
            key[len(ENV_PREFIX) :].lower(): raw
            for key, raw in env.items()
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in names
        },
        where="environment",
    )
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")
    settings = {k: _coerce(k, v) for k, v in values.items()}
    return Settings(**settings, engine=load_engine_settings(engine))


# The engine's fields by their flat names (engine_urls, ...), as files and BIOFED_* name them.
_FLAT_ENGINE_NAMES = frozenset(f"{ENGINE_SECTION}_{name}" for name in ENGINE_FIELDS)
# Every name a setting goes by in a file, an override or (upper-cased) as BIOFED_<NAME>.
SETTING_NAMES = frozenset({f.name for f in dataclasses.fields(Settings)} | _FLAT_ENGINE_NAMES)


def _refuse_secrets(path: Path, loaded: Mapping[str, Any]) -> None:
    section = loaded.get(ENGINE_SECTION)
    nested = [
        f"{ENGINE_SECTION}_{name}"
        for name in ENGINE_SECRETS
        if isinstance(section, Mapping) and name in section
    ]
    for secret in [s for s in SECRET_SETTINGS if s in loaded] + nested:
        raise SettingsError(
            f"{path}: {secret} is a secret; set {ENV_PREFIX}{secret.upper()} "
            "in the environment instead"
        )


def _layer(
    values: dict[str, Any], engine: dict[str, Any], layer: Mapping[str, Any], *, where: str
) -> None:
    """Lay one source over the ones before: the engine section and its flat names merge
    into `engine` (a flat name wins over the section of the same layer)."""
    for key, value in layer.items():
        if key == ENGINE_SECTION:
            engine.update(_engine_raw(value, f"{where}: {ENGINE_SECTION}"))
    for key, value in layer.items():
        if key in _FLAT_ENGINE_NAMES:
            engine[key[len(ENGINE_SECTION) + 1 :]] = value
        elif key != ENGINE_SECTION:
            values[key] = value


def _coerce(name: str, value: Any) -> Any:
    if name in ACCESS_SECTIONS:
        return _access_section(name, value)
    if name in ("data_dir", "network"):
        return None if value in (None, "") else Path(value)
    if name in ("port", "workers", "embedded_answer_cache", "embedded_threads", "sync_niceness"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: {value!r} is not an integer") from None
        if name.startswith("embedded_") and number < 0:
            raise SettingsError(f"{name}: {value!r} must not be negative")
        if name == "sync_niceness" and not 0 <= number <= MAX_NICENESS:
            raise SettingsError(f"{name}: {value!r} must be between 0 and {MAX_NICENESS}")
        return number
    if name == "state_url" and value and urlsplit(str(value)).password is not None:
        raise SettingsError(
            "state_url: the URL carries a password; take it out and set "
            "BIOFED_STATE_PASSWORD in the environment instead"
        )
    if name == "metrics_allow":
        return _networks(name, value)
    if name == "sync_max_shrink":
        try:
            fraction = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: {value!r} is not a number") from None
        if not 0 <= fraction <= 1:
            raise SettingsError(f"{name}: {value!r} must be between 0 and 1")
        return fraction
    if name == "backend" and value not in ("embedded", "elasticsearch", "opensearch"):
        raise SettingsError(f"backend: {value!r} is not embedded, elasticsearch or opensearch")
    return value


def _networks(name: str, value: Any) -> tuple[str, ...]:
    """Addresses or CIDR networks from a YAML list or a comma-separated BIOFED_* value."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise SettingsError(f"{name}: {value!r} is not a list of addresses or networks")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}: {item!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)"
            ) from None
    return tuple(out)


# Settings that are whole YAML sections rather than single values.
ACCESS_SECTIONS = ("auth", "limits", "beacon", "requests")


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


@dataclass(frozen=True)
class AccessTerms:
    """How a researcher applies for a biobank's samples (the network file's `access`)."""

    url: str | None = None  # the biobank's own application page
    conditions: str | None = None  # who may apply and on what terms, in English
    conditions_ja: str | None = None


@dataclass(frozen=True)
class BiobankSource:
    """A biobank of the network, the connector that pulls its data, and its disclosure policy."""

    biobank: Biobank
    kind: str
    connector: str
    options: dict[str, Any]
    base_dir: Path
    policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)
    # A full read of zero records after a successful one of some is taken as the truth.
    allow_empty: bool = False
    access: AccessTerms = field(default_factory=AccessTerms)


@dataclass(frozen=True)
class InvalidEntry:
    """A biobank entry of the network file that cannot be used, and why."""

    label: str  # its id when it has one, else its place (`biobanks[3]`)
    error: str


@dataclass(frozen=True)
class Network:
    biobanks: tuple[BiobankSource, ...]
    path: Path
    default_policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)
    invalid: tuple[InvalidEntry, ...] = ()  # entries left out (load_network skip_invalid)
    # Privacy budgets per role (`privacy_budget`); a role not listed gets the default budget.
    budgets: PrivacyBudgets = field(default_factory=lambda: PrivacyBudgets({}))
    # Who may request samples and where biobanks take applications (`access_requests`),
    # as written; federation.requests.config reads it (docs/requests.md).
    access_requests: dict[str, Any] = field(default_factory=dict)

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
        for entry in self.invalid:
            if entry.label == biobank_id:
                raise SettingsError(f"biobank {biobank_id!r} is invalid: {entry.error}")
        known = ", ".join(s.biobank.id for s in self.biobanks)
        raise SettingsError(f"no biobank {biobank_id!r} in {self.path} (known: {known})")


def _access(where: str, value: Any) -> AccessTerms:
    """A biobank entry's `access`: its application page and conditions, all optional."""
    if value is None:
        return AccessTerms()
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}.access: must be a mapping (url, conditions, conditions_ja)")
    unknown = sorted(set(value) - {"url", "conditions", "conditions_ja"})
    if unknown:
        raise SettingsError(
            f"{where}.access.{unknown[0]}: unknown (url, conditions, conditions_ja)"
        )
    for name, text in value.items():
        if text is not None and not isinstance(text, str):
            raise SettingsError(f"{where}.access.{name}: {text!r} is not text")
    url = value.get("url")
    if url is not None and not url.startswith(("https://", "http://")):
        raise SettingsError(f"{where}.access.url: {url!r} is not an http(s) URL")
    return AccessTerms(url, value.get("conditions"), value.get("conditions_ja"))


def _allow_empty(where: str, value: Any) -> bool:
    """A biobank entry's `allow_empty`: true or false, nothing else."""
    if not isinstance(value, bool):
        raise SettingsError(f"{where}.allow_empty: {value!r} is not true or false")
    return value


def load_network(path: Path, *, skip_invalid: bool = False) -> Network:
    """Read a network file: its biobanks, each with a connector type and options.

    An invalid biobank entry raises SettingsError naming it; with `skip_invalid` it is left
    out and listed in `Network.invalid` instead, so the valid biobanks still sync and serve.
    """
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
        budgets = PrivacyBudgets.parse(data.get("privacy_budget"), f"{path}: privacy_budget")
    except PolicyError as err:
        raise SettingsError(str(err)) from None
    sources: list[BiobankSource] = []
    invalid: list[InvalidEntry] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        try:
            source = _source(entry, f"{path}: biobanks[{n}]", path.parent, default_policy)
            if source.biobank.id in seen:
                raise SettingsError(
                    f"{path}: biobanks[{n}]: biobank id {source.biobank.id!r} appears twice"
                )
        except SettingsError as err:
            if not skip_invalid:
                raise
            label = entry.get("id") if isinstance(entry, dict) else None
            invalid.append(InvalidEntry(str(label or f"biobanks[{n}]"), str(err)))
            continue
        seen.add(source.biobank.id)
        sources.append(source)
    requests_section = data.get("access_requests") or {}
    if not isinstance(requests_section, dict):
        raise SettingsError(f"{path}: access_requests must be a mapping")
    return Network(tuple(sources), path, default_policy, tuple(invalid), budgets, requests_section)


def _source(
    entry: Any, where: str, base_dir: Path, default_policy: DisclosurePolicy
) -> BiobankSource:
    """One biobank entry of the network file, or SettingsError naming what is wrong."""
    if not isinstance(entry, dict):
        raise SettingsError(f"{where} must be a mapping")
    from federation.model.records import BiobankSchema, describe_errors

    try:
        biobank = BiobankSchema().load(entry)
    except ValidationError as err:
        raise SettingsError(f"{where}: {'; '.join(describe_errors(err.messages))}") from None
    connector = entry.get("connector") or {}
    if not connector.get("type"):
        raise SettingsError(f"{where}.connector.type is missing")
    try:
        policy = DisclosurePolicy.parse(
            entry.get("disclosure"), default_policy, where=f"{where}.disclosure"
        )
    except PolicyError as err:
        raise SettingsError(str(err)) from None
    return BiobankSource(
        biobank,
        str(entry.get("kind", "")),
        str(connector["type"]),
        dict(connector.get("options") or {}),
        base_dir,
        policy,
        _allow_empty(where, entry.get("allow_empty", False)),
        _access(where, entry.get("access")),
    )
