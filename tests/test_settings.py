from pathlib import Path

import pytest

from federation.settings import SettingsError, load_network, load_settings


def test_layers_files_then_overrides_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("port: 9000\nworkers: 3\n")
    settings = load_settings(config, overrides={"workers": 5}, environ={"BIOFED_PORT": "9100"})
    assert (settings.port, settings.workers, settings.backend) == (9100, 5, "embedded")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BIOFED_PORT": "eighty"}, "port: 'eighty' is not an integer"),
        (
            {"BIOFED_BACKEND": "solr"},
            "backend: 'solr' is not embedded, elasticsearch or opensearch",
        ),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=environ)


def test_missing_config_file_and_unknown_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        load_settings(overrides={"colour": "blue"}, read_files=False, environ={})


def test_network_entries_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text("biobanks:\n  - {id: a, name: A, country: Japan, connector: {type: tabular}}\n")
    with pytest.raises(SettingsError, match=r"biobanks\[0\]: country: 'Japan' is not ISO 3166"):
        load_network(path)
    path.write_text("biobanks:\n  - {id: a, name: A, country: JP}\n")
    with pytest.raises(SettingsError, match=r"connector\.type is missing"):
        load_network(path)
    path.write_text(
        "biobanks:\n  - {id: a, name: A, country: JP, connector: {type: t}}\n"
        "  - {id: a, name: B, country: JP, connector: {type: t}}\n"
    )
    with pytest.raises(SettingsError, match="biobank id 'a' appears twice"):
        load_network(path)


def test_the_engine_section_layers_under_its_flat_names(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        "engine:\n  urls: [https://a:9200]\n  replicas: 2\n  index_prefix: site\n"
        "engine_replicas: 1\n"
    )
    settings = load_settings(
        config,
        overrides={"engine": {"lock_ttl": 30}},
        environ={"BIOFED_ENGINE_INDEX_PREFIX": "env"},
    )
    engine = settings.engine
    # The flat name beats the section in its file; the environment beats both.
    assert (engine.urls, engine.replicas, engine.index_prefix) == (("https://a:9200",), 1, "env")
    assert engine.lock_ttl == 30.0 and engine.search_timeout == 3.0
    assert settings.with_overrides(engine_replicas=3).engine.replicas == 3
    config.write_text("engine:\n  colour: blue\n  replicas: -2\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config, environ={})
    assert "engine.colour: Unknown field." in str(err.value)
    assert "engine.replicas: -2 must not be negative" in str(err.value)
    config.write_text("engine:\n  password: hunter2\n")
    with pytest.raises(SettingsError, match="secret; set BIOFED_ENGINE_PASSWORD"):
        load_settings(config, environ={})


def test_metrics_allow_takes_addresses_and_networks_from_a_file_or_the_environment() -> None:
    from_file = load_settings(
        overrides={"metrics_allow": ["127.0.0.1", "10.20.0.0/16"]}, read_files=False, environ={}
    )
    assert from_file.metrics_allow == ("127.0.0.1/32", "10.20.0.0/16")
    from_env = load_settings(
        read_files=False, environ={"BIOFED_METRICS_ALLOW": "::1, 192.168.1.7/24"}
    )
    assert from_env.metrics_allow == ("::1/128", "192.168.1.0/24")
    assert load_settings(read_files=False, environ={}).metrics_allow == ()
    with pytest.raises(SettingsError, match="metrics_allow: 'ten' is not an IP address"):
        load_settings(overrides={"metrics_allow": ["ten"]}, read_files=False, environ={})


def test_embedded_threads_are_duckdbs_choice_unless_set() -> None:
    shared = load_settings(read_files=False, environ={"BIOFED_WORKERS": "2"})
    assert shared.embedded_threads == 0
    assert shared.embedded_reader_threads == 0  # reader_config leaves DuckDB's default
    fixed = load_settings(read_files=False, environ={"BIOFED_EMBEDDED_THREADS": "3"})
    assert fixed.embedded_reader_threads == 3
    with pytest.raises(SettingsError, match="embedded_threads: '-1' must not be negative"):
        load_settings(read_files=False, environ={"BIOFED_EMBEDDED_THREADS": "-1"})


def test_sync_niceness_is_a_nice_value() -> None:
    assert load_settings(read_files=False, environ={}).sync_niceness == 10
    assert load_settings(read_files=False, environ={"BIOFED_SYNC_NICENESS": "0"}).sync_niceness == 0
    for wrong in ("20", "-1"):
        message = f"sync_niceness: '{wrong}' must be between 0 and 19"
        with pytest.raises(SettingsError, match=message):
            load_settings(read_files=False, environ={"BIOFED_SYNC_NICENESS": wrong})
