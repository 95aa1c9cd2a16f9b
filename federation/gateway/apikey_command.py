"""`biofed apikey`: make API keys for the GraphQL API (see docs/access.md)."""

from __future__ import annotations

import click


@click.group("apikey")
def apikey_group() -> None:
    """API keys for the GraphQL API (see docs/access.md)."""


@apikey_group.command("create")
@click.option("--subject", required=True, help="Who holds the key (a person or a service).")
@click.option("--operator", is_flag=True, help="A network operator (reads the audit log).")
@click.option(
    "--admin-of", "admin_of", multiple=True, help="Administers this biobank (repeatable)."
)
@click.option(
    "--approved-for", "approved_for", multiple=True, help="Approved at this biobank (repeatable)."
)
def apikey_create(
    subject: str, operator: bool, admin_of: tuple[str, ...], approved_for: tuple[str, ...]
) -> None:
    """Make a new API key: print the key once and the hashed entry for `auth.api_keys`."""
    import yaml

    from federation.gateway.auth import issue_api_key

    try:
        issued = issue_api_key(
            subject, operator=operator, admin_of=admin_of, approved_for=approved_for
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    click.echo("The API key (shown only now; hand it to its holder, it is not stored):", err=True)
    click.echo(issued.key)
    click.echo(
        "\nAdd this entry under `auth: api_keys:` in the settings file; it holds only a salted "
        "hash of the key, then restart the gateway:",
        err=True,
    )
    click.echo(yaml.safe_dump([issued.entry], sort_keys=False, default_flow_style=None).rstrip())
