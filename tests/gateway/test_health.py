"""`/healthz` says the process is alive; `/readyz` says it can answer searches."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.settings import Settings


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_not_ready_without_the_network_file(synced_settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "gone.yaml"
    app = create_app({"settings": synced_settings.with_overrides(network=str(missing))})
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert "gone.yaml" in body["reason"]
    # Alive all the same: a process manager must not restart it for a config problem.
    assert client.get("/healthz").status_code == 200
    app.extensions["biofed"].backend.close()


def test_ready_before_any_sync(tmp_path: Path, synced_settings: Settings) -> None:
    # An empty index is a valid state: searches answer with zero counts.
    settings = synced_settings.with_overrides(data_dir=str(tmp_path / "empty"))
    app = create_app({"settings": settings})
    assert app.test_client().get("/readyz").status_code == 200
    app.extensions["biofed"].backend.close()
