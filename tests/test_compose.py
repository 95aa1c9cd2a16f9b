"""docker-compose.yml checked by parsing it: services, profiles, health checks, one shared
configuration. No Docker engine is needed (and none is used)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from federation import PROJECT_ROOT
from federation.settings import ENV_PREFIX, SECRET_SETTINGS, SETTING_NAMES

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
# Variables the compose file may set that are not settings (none today).
NOT_SETTINGS: set[str] = set()
# Per-service keys a gateway has on top of the shared configuration.
GATEWAY_ONLY = {"BIOFED_HOST", "BIOFED_PORT", "BIOFED_WORKERS"}
STACKS = {
    # engine service: (gateway, sync worker, profile, backend)
    "elasticsearch": ("gateway", "sync", None, "elasticsearch"),
    "opensearch": ("gateway-opensearch", "sync-opensearch", "opensearch", "opensearch"),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def test_the_services_and_their_profiles(compose: dict[str, Any]) -> None:
    found = services(compose)
    expected = {
        name for engine, (gateway, sync, _, _) in STACKS.items() for name in (engine, gateway, sync)
    }
    assert set(found) == expected
    for engine, (gateway, sync, profile, _) in STACKS.items():
        for name in (engine, gateway, sync):
            assert found[name].get("profiles") == ([profile] if profile else None), name


def test_elasticsearch_runs_as_its_documentation_says_for_one_local_node(
    compose: dict[str, Any],
) -> None:
    service = services(compose)["elasticsearch"]
    assert service["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:8.")
    env = service["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"
    heap = re.fullmatch(r"-Xms(\w+) -Xmx(\w+)", env["ES_JAVA_OPTS"])
    assert heap and heap[1] == heap[2], "the heap's minimum and maximum must be equal"


def test_opensearch_profile_runs_without_the_security_plugin(compose: dict[str, Any]) -> None:
    service = services(compose)["opensearch"]
    assert service["image"].startswith("opensearchproject/opensearch:2.")
    env = service["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert env["DISABLE_INSTALL_DEMO_CONFIG"] == "true"
    heap = re.fullmatch(r"-Xms(\w+) -Xmx(\w+)", env["OPENSEARCH_JAVA_OPTS"])
    assert heap and heap[1] == heap[2]


def test_health_checks_gate_the_start_order(compose: dict[str, Any]) -> None:
    found = services(compose)
    for engine, (gateway, sync, _, _) in STACKS.items():
        check = found[engine]["healthcheck"]["test"]
        assert "_cluster/health" in " ".join(check)
        assert "/healthz" in " ".join(found[gateway]["healthcheck"]["test"])
        for name in (gateway, sync):
            assert found[name]["depends_on"] == {engine: {"condition": "service_healthy"}}


def test_gateway_and_worker_share_one_configuration(compose: dict[str, Any]) -> None:
    found = services(compose)
    for engine, (gateway, sync, _, backend) in STACKS.items():
        gateway_env = dict(found[gateway]["environment"])
        sync_env = dict(found[sync]["environment"])
        assert {k: v for k, v in gateway_env.items() if k not in GATEWAY_ONLY} == sync_env
        assert sync_env["BIOFED_BACKEND"] == backend
        url = urlparse(sync_env["BIOFED_ENGINE_URLS"])
        assert (url.hostname, url.port) == (engine, 9200)
        assert found[gateway]["volumes"] == found[sync]["volumes"]
        assert any(v.endswith(":/config:ro") for v in found[sync]["volumes"])
        assert found[gateway]["build"] == found[sync]["build"] == "."
        assert "biofed sync --all" in " ".join(found[sync]["command"])
        assert "exec biofed worker" in " ".join(found[sync]["command"])
        assert "gunicorn" in found[gateway]["command"]


def test_every_variable_is_a_setting_and_no_secret_is_written_down(
    compose: dict[str, Any],
) -> None:
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in SETTING_NAMES}
    secrets = {f"{ENV_PREFIX}{name.upper()}" for name in SECRET_SETTINGS}
    for name, service in services(compose).items():
        for key, value in (service.get("environment") or {}).items():
            if not key.startswith(ENV_PREFIX):
                continue
            assert key in settings | NOT_SETTINGS, f"{name}: {key} is no setting"
            if key in secrets:
                assert value == f"${{{key}:-}}", f"{name}: {key} must come from the environment"


def test_the_image_installs_the_engine_clients() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'pip install --no-cache-dir -e ".[engine]"' in dockerfile
    assert "COPY gunicorn.conf.py" in dockerfile and "COPY schema" in dockerfile
