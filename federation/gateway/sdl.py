"""The schema as SDL, for `schema/schema.graphql`: the contract clients and reviewers read.

A test compares the file with the code, so a change to the schema shows up in review as a
diff of that file.
"""

from __future__ import annotations

from pathlib import Path

from graphql import print_schema

from federation import SCHEMA_DIR
from federation.gateway.schema import schema

SDL_PATH = SCHEMA_DIR / "schema.graphql"
EXPORT_COMMAND = "biofed schema export"

_HEADER = (
    "# The public GraphQL API of the biobank cross-search federation.\n"
    "# Generated from federation/gateway/schema.py by `{command}`; do not edit by hand.\n"
    "\n"
)


def export_sdl() -> str:
    """The schema as SDL text with a header saying it is generated and how."""
    return _HEADER.format(command=EXPORT_COMMAND) + print_schema(schema.graphql_schema) + "\n"


def write_sdl(path: Path = SDL_PATH) -> Path:
    """Write `export_sdl()` to `path` (by default `schema/schema.graphql`)."""
    path.write_text(export_sdl(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {write_sdl()}")
