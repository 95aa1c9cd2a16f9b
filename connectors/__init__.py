"""Built-in connector plugins, registered through the `federation.connectors` entry points."""
