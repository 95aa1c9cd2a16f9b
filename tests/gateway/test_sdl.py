"""`schema/schema.graphql` is the schema the code serves, byte for byte."""

from __future__ import annotations

from federation.gateway.sdl import EXPORT_COMMAND, SDL_PATH, export_sdl


def test_committed_sdl_matches_the_code() -> None:
    committed = SDL_PATH.read_text(encoding="utf-8") if SDL_PATH.exists() else ""
    assert committed == export_sdl(), (
        f"{SDL_PATH} differs from the schema in federation/gateway/schema.py; "
        f"regenerate it with `{EXPORT_COMMAND}` and commit the result"
    )


def test_sdl_says_it_is_generated() -> None:
    assert export_sdl().startswith("# ")
    assert EXPORT_COMMAND in export_sdl().splitlines()[1]
