"""`biofed migrate`: bring the state store's schema to this version of biofed."""

from __future__ import annotations

import click

from federation.settings import Settings
from federation.state import schema_version
from federation.state.database import StateUrlError, create_state_engine, shown, state_url


@click.command()
@click.option(
    "--check", is_flag=True, help="Only say whether the store is up to date (exit 1 if not)."
)
@click.pass_context
def migrate(ctx: click.Context, check: bool) -> None:
    """Create or upgrade the state store (state_url, else state.db in the data folder)."""
    settings: Settings = ctx.obj["settings"]
    try:
        url = state_url(settings.state_url, settings.data_dir)
    except StateUrlError as err:
        raise click.UsageError(str(err)) from None
    engine = create_state_engine(url)
    try:
        if check:
            found, wanted = schema_version.current(engine), schema_version.head()
            click.echo(f"{shown(url)}: revision {found or 'none'}, this biofed needs {wanted}")
            if found != wanted:
                ctx.exit(1)
            return
        before, after = schema_version.upgrade(engine)
        if before == after:
            click.echo(f"{shown(url)}: already at revision {after}")
        else:
            click.echo(f"{shown(url)}: migrated from revision {before or 'none'} to {after}")
    finally:
        engine.dispose()
