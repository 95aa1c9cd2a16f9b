"""Find connector plugins: the `federation.connectors` entry-point group, or `module:Class`."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from federation.sync.connector import ConfigError, Connector

ENTRY_POINT_GROUP = "federation.connectors"


def installed() -> dict[str, type[Connector]]:
    """Every connector registered through the entry-point group, by name."""
    found: dict[str, type[Connector]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.load()
    return found


def connector_class(spec: str) -> type[Connector]:
    """Resolve a connector by entry-point name or by a `package.module:Class` path."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"connector {spec!r} cannot be imported: {err}") from None
    else:
        plugins = installed()
        if spec not in plugins:
            known = ", ".join(sorted(plugins)) or "none"
            raise ConfigError(f"no connector named {spec!r} is installed (installed: {known})")
        cls = plugins[spec]
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"connector {spec!r} is not a federation Connector")
    return cls
