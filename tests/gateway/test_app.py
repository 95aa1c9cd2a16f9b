"""The app factory: settings from the environment, or handed in by a test."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.gateway import MAX_REQUEST_BYTES, create_app
from federation.runtime import Runtime
from tests.gateway.conftest import make_settings


def test_settings_from_biofed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "biofed.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nnetwork: {tmp_path / 'net.yaml'}\n")
    for name in ("BIOFED_DATA_DIR", "BIOFED_NETWORK"):
        monkeypatch.delenv(name, raising=False)  # they would win over the file
    monkeypatch.setenv("BIOFED_CONFIG", str(config))
    monkeypatch.setenv("BIOFED_WORKERS", "7")
    app = create_app()
    runtime = app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    assert runtime.settings.data_dir == tmp_path / "data"
    assert runtime.settings.network == tmp_path / "net.yaml"
    assert runtime.settings.workers == 7
    assert app.config["MAX_CONTENT_LENGTH"] == MAX_REQUEST_BYTES


def test_test_config_overrides(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tmp_path / "network.yaml")
    app = create_app({"settings": settings, "TESTING": True, "MAX_CONTENT_LENGTH": 1024})
    assert app.extensions["biofed"].settings is settings
    assert app.testing
    assert app.config["MAX_CONTENT_LENGTH"] == 1024


def test_each_app_has_its_own_runtime(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tmp_path / "network.yaml")
    first, second = create_app({"settings": settings}), create_app({"settings": settings})
    assert first.extensions["biofed"] is not second.extensions["biofed"]


def test_unknown_paths_keep_html_errors(tmp_path: Path) -> None:
    app = create_app({"settings": make_settings(tmp_path, tmp_path / "network.yaml")})
    response = app.test_client().get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
