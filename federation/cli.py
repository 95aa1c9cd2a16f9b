"""`biofed`: generate a demo network, sync biobanks, serve the API, inspect sync state."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from federation import PROJECT_ROOT
from federation.errors import FederationError
from federation.launch import (
    Beside,
    DemoParameters,
    announce,
    check_port_free,
    forget_biobanks_not_in,
    prepare_demo,
    serve_until_stopped,
    start_local_node,
    start_sync_worker,
    stop_sync_worker,
)
from federation.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from federation.sync.orchestrate import SyncOrder

# gunicorn's settings, as a module so that an installed wheel has them too.
GUNICORN_CONFIG = "federation.gunicorn_conf"
DEMO_BIOBANKS = 8
DEMO_SAMPLES = 200_000
DEMO_SEED = 7
# The demo serves on loopback only: its keys are printed on the terminal.
DEMO_HOST = "127.0.0.1"


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj["settings"]
    return settings


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    envvar="BIOFED_CONFIG",
    help="Settings YAML layered over config/settings.yaml.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the index and sync state (setting data_dir).",
)
@click.option(
    "--network",
    type=click.Path(path_type=Path),
    default=None,
    help="Network file listing the biobanks and their connectors.",
)
@click.pass_context
def main(
    ctx: click.Context, config_file: Path | None, data_dir: Path | None, network: Path | None
) -> None:
    """Biobank cross-search federation."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if network is not None:
        overrides["network"] = network
    try:
        settings = load_settings(config_file)
        if overrides:
            settings = settings.with_overrides(**overrides)
    except SettingsError as err:
        raise click.UsageError(str(err)) from None
    ctx.obj = {"settings": settings, "config_file": config_file}


BACKENDS = ("embedded", "elasticsearch", "opensearch")


def _backend_option(*, local_node: bool = False) -> Callable[[Any], Any]:
    """`--backend` for a command: overrides the `backend` setting (BIOFED_BACKEND) for it.

    With `local_node` (the demo), an engine backend with no engine_urls configured runs on
    the local node of scripts/search-node or scripts/es-node (docs/search-node.md); the
    command starts it (`ctx.obj["local_node"]`), after checking its own port.
    """

    def apply(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        import dataclasses

        settings: Settings = ctx.obj["settings"]
        if value is not None:
            settings = dataclasses.replace(settings, backend=value)
        default_urls = Settings().engine.urls
        ctx.obj["local_node"] = (
            local_node and settings.backend != "embedded" and settings.engine.urls == default_urls
        )
        ctx.obj["settings"] = settings
        return value

    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=None,
        expose_value=False,
        callback=apply,
        help="Search backend (setting backend; default embedded).",
    )


@main.command("demo-data")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write.")
@click.option("--biobanks", type=click.IntRange(1, 1000), default=DEMO_BIOBANKS, show_default=True)
@click.option("--samples", type=click.IntRange(1), default=DEMO_SAMPLES, show_default=True)
@click.option("--seed", type=int, default=DEMO_SEED, show_default=True)
@click.option(
    "--sources",
    type=click.Choice(["mixed", "tables"]),
    default="mixed",
    show_default=True,
    help="mixed: some biobanks are FHIR, Beacon v2 and REST sources (recorded pages).",
)
def demo_data(out: Path, biobanks: int, samples: int, seed: int, sources: str) -> None:
    """Write a generated network: each biobank's export in its own format, and network.yaml."""
    from federation.demo.generator import BiobankSummary, generate_network

    def progress(written: BiobankSummary, done: int, total: int) -> None:
        click.echo(f"  [{done}/{total}] {written.id}: {written.samples:,} samples", err=True)

    summary = generate_network(
        out, biobanks=biobanks, samples=samples, seed=seed, sources=sources, progress=progress
    )
    click.echo(f"wrote {summary.network_path}")


@main.command()
@click.option("--all", "all_biobanks", is_flag=True, help="Sync every biobank of the network.")
@click.option("--biobank", "biobank_ids", multiple=True, help="Sync this biobank (repeatable).")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "full", "incremental"]),
    default="auto",
    show_default=True,
    help="auto: incremental where the source can be asked for changes, else full.",
)
@click.option(
    "--jobs",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Biobanks synced at once, each in its own process; 0: one per CPU.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Publish a full read of zero records even where the last successful run read some.",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Confirm that a source shrank: publish even if a full sync deletes more than "
    "sync_max_shrink of a biobank's samples (docs/operations.md).",
)
@_backend_option()
@click.pass_context
def sync(
    ctx: click.Context,
    /,
    all_biobanks: bool,
    biobank_ids: tuple[str, ...],
    progress: bool | None,
    **how: Any,
) -> None:
    """Sync biobanks: pull, validate, quarantine, publish (see docs/connectors.md)."""
    if not all_biobanks and not biobank_ids:
        raise click.UsageError("give --all or --biobank ID")
    from federation.sync.orchestrate import SyncOrder, at_sync_priority

    settings = _settings(ctx)
    # A batch job: before any thread starts, so they all inherit it (docs/operations.md).
    # Not in `_sync`, which `biofed demo` runs in the process that then becomes the server.
    at_sync_priority(settings.sync_niceness)
    failures = _sync(
        settings,
        None if all_biobanks else biobank_ids,
        progress,
        SyncOrder(
            (),
            how["mode"],
            jobs=how["jobs"] or os.cpu_count() or 1,
            allow_empty=how["allow_empty"],
            allow_shrink=how["allow_shrink"],
        ),
    )
    if failures:
        sys.exit(1)


def _sync(
    settings: Settings,
    biobank_ids: tuple[str, ...] | None,
    progress: bool | None,
    how: SyncOrder | None = None,
) -> int:
    """Sync the biobanks (all when None) as `how` says (mode, jobs, ...; its ids unused)."""
    import dataclasses

    from federation.runtime import Runtime
    from federation.sync.orchestrate import SyncOrder, sync_all
    from federation.sync.progress import progress_bars

    runtime = Runtime(settings)
    try:
        network = runtime.network()
        sources = network.biobanks if biobank_ids is None else [network.get(b) for b in biobank_ids]
    except SettingsError as err:
        raise click.UsageError(str(err)) from None
    order = dataclasses.replace(
        how or SyncOrder(()), biobank_ids=tuple(s.biobank.id for s in sources)
    )
    invalid = network.invalid if biobank_ids is None else ()
    for entry in invalid:  # reported, and counted as failures; the valid ones sync on
        click.echo(f"{entry.label}: INVALID: {entry.error}", err=True)
    show = sys.stderr.isatty() if progress is None else progress

    def report(line: str, failed: bool) -> None:
        click.echo(line, err=failed)

    failures = sync_all(runtime, order, report, progress_bars(show), open_environment=Runtime)
    return failures + len(invalid)


@main.command()
@click.option("--host", default=None, help="Bind address (setting host).")
@click.option("--port", type=int, default=None, help="Port (setting port).")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes.")
@_backend_option()
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the GraphQL API and the web UI under gunicorn."""
    settings = _settings(ctx)
    try:
        check_port_free(host or settings.host, port or settings.port)
    except FederationError as err:
        raise click.ClickException(str(err)) from None
    _exec_gunicorn(settings, ctx.obj["config_file"], host, port, workers)


def _exec_gunicorn(
    settings: Settings,
    config_file: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    beside: Beside | None = None,
) -> None:
    env = dict(os.environ)
    env.update(
        {
            "BIOFED_DATA_DIR": str(Path(settings.data_dir).resolve()),
            "BIOFED_HOST": host or settings.host,
            "BIOFED_PORT": str(port or settings.port),
            "BIOFED_WORKERS": str(workers or settings.workers),
            "BIOFED_BACKEND": settings.backend,
        }
    )
    if settings.network is not None:
        env["BIOFED_NETWORK"] = str(Path(settings.network).resolve())
    if settings.auth:
        env["BIOFED_AUTH"] = json.dumps(settings.auth)  # key hashes only, no secrets
    if config_file is not None:
        env["BIOFED_CONFIG"] = str(Path(config_file).resolve())
    url = f"http://{env['BIOFED_HOST']}:{env['BIOFED_PORT']}"
    click.echo(f"serving the GraphQL API at {url}/graphql (web UI at {url}/)", err=True)
    sys.stdout.flush()
    args = [sys.executable, "-m", "gunicorn", "-c", f"python:{GUNICORN_CONFIG}"]
    if beside is None or not beside.needed:
        os.execve(sys.executable, args, env)
    # The demo's sync worker and the local node it started run beside the server, and stop
    # when serving ends.
    worker = start_sync_worker(env) if beside.worker else None
    try:
        status = serve_until_stopped(args, env)
    finally:
        if worker is not None:
            stop_sync_worker(worker)
        node = beside.node
        if node is not None and node.stop():
            click.echo(f"stopped the local OpenSearch node on port {node.port}", err=True)
    sys.exit(status)


@main.command()
@click.option("--biobanks", type=click.IntRange(1, 1000), default=DEMO_BIOBANKS, show_default=True)
@click.option("--samples", type=click.IntRange(1), default=DEMO_SAMPLES, show_default=True)
@click.option("--seed", type=int, default=DEMO_SEED, show_default=True)
@click.option("--port", type=int, default=None, help="Port to serve on (default 8000).")
@click.option("--fresh", is_flag=True, help="Regenerate the demo network even if present.")
@_backend_option(local_node=True)
@click.pass_context
def demo(
    ctx: click.Context, biobanks: int, samples: int, seed: int, port: int | None, fresh: bool
) -> None:
    """Generate the demo network, sync it, and serve the API on 127.0.0.1."""
    settings, serve_port = _settings(ctx), port or _settings(ctx).port

    def say(line: str) -> None:
        click.echo(line, err=True)

    node = None
    try:
        wanted = DemoParameters(biobanks, samples, seed)
        settings, keys = prepare_demo(settings, wanted, (DEMO_HOST, serve_port), fresh, say)
        if ctx.obj.get("local_node"):
            settings, node = start_local_node(settings, say)
    except (FederationError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    try:
        forget_biobanks_not_in(settings, say)
        if _sync(settings, None, None):
            say("some biobanks failed to sync; serving the others")
        announce(keys, node, say)
    except BaseException:
        if node is not None and node.stop():
            say(f"stopped the local OpenSearch node on port {node.port}")
        raise
    beside = Beside(node, worker=True)
    _exec_gunicorn(settings, ctx.obj["config_file"], DEMO_HOST, serve_port, None, beside)


@main.command()
@click.option("--biobank", default=None, help="Only this biobank.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def runs(ctx: click.Context, biobank: str | None, limit: int) -> None:
    """Sync history: runs with counts, duration, outcome and error."""
    from federation.runtime import Runtime
    from federation.sync.recovery import settle

    settings = _settings(ctx)
    runtime = Runtime(settings)
    state = runtime.state
    if biobank is not None:
        _known_biobank(settings, state, biobank)
    # Runs whose process died on this host are settled first, so none shows as running.
    settle(state, runtime.backend.published, biobank)
    for run in state.runs(biobank, limit):
        click.echo(
            f"#{run.id} {run.biobank_id} {run.kind} {run.outcome} {run.started_at} "
            f"read={run.read} accepted={run.accepted} partial={run.partial} "
            f"rejected={run.rejected} indexed={run.indexed} "
            f"deleted={run.deleted} withdrawn={run.withdrawn} {run.duration_s or 0:.1f}s"
            + (f" error: {run.error}" if run.error else "")
            + (f" notes: {run.notes}" if run.notes else "")
        )


@main.command()
@click.option("--biobank", required=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, payload included.")
@click.pass_context
def quarantine(ctx: click.Context, biobank: str, limit: int, as_json: bool) -> None:
    """Records a biobank's last sync rejected, with the reason."""
    from dataclasses import asdict

    from federation.sync.state import SyncState

    settings = _settings(ctx)
    state = SyncState.from_settings(settings)
    _known_biobank(settings, state, biobank)
    records = state.quarantine(biobank, limit=limit)
    for item in records:
        if as_json:
            click.echo(json.dumps(asdict(item), ensure_ascii=False))
        else:
            kept = " (record kept without it)" if item.kept else ""
            click.echo(
                f"{item.stream} {item.source_id or '-'} ({item.position}): {item.reason}"
                f" | field {item.field or '-'}, value {item.value!r}{kept}"
            )
    if not as_json:
        total = state.quarantine_count(biobank)
        click.echo(f"showing {len(records)} of {total} quarantined record(s)", err=True)


def _known_biobank(settings: Settings, state: Any, biobank_id: str) -> None:
    """A usage error (exit 2) naming the known ids when `biobank_id` is not one of them."""
    from federation.sync.orchestrate import unknown_biobank

    problem = unknown_biobank(biobank_id, state, settings.network)
    if problem:
        raise click.UsageError(problem)


@main.command()
@click.option("--disease", "diseases", multiple=True, help="ICD-10 code at any level.")
@click.option("--text", default=None, help="Free text on disease names.")
@click.option("--material", "materials", multiple=True)
@click.option("--sex", "sexes", multiple=True)
@click.option("--age-min", type=int, default=None)
@click.option("--age-max", type=int, default=None)
@click.option("--biobank", "biobanks", multiple=True)
@click.pass_context
def search(ctx: click.Context, /, **filters: Any) -> None:
    """Counts per biobank for a query, as JSON (for operators; researchers use the API)."""
    from federation.disclosure.roles import Identity
    from federation.errors import FederationError
    from federation.runtime import Runtime
    from federation.search.query import BadQuery, SampleQuery

    runtime = Runtime(_settings(ctx))
    try:
        query = SampleQuery.parse({k: v for k, v in filters.items() if v not in (None, ())})
    except BadQuery as err:
        raise click.UsageError(str(err)) from None
    # The CLI runs on the server, so its user is the network operator.
    operator = Identity(subject="cli", authenticated=True, operator=True, via="cli")
    try:
        result = runtime.search.search(query, identity=operator, facets=())
    except BadQuery as err:  # e.g. a biobank id the network does not have
        raise click.UsageError(str(err)) from None
    except FederationError as err:  # e.g. the audit log cannot be written: not answered
        raise click.ClickException(str(err)) from None
    click.echo(
        json.dumps(
            {
                "donors": result.donors.value,
                "samples": result.samples.value,
                "byBiobank": {  # collection-level biobanks: declared, not in the totals
                    b.biobank_id: {"donors": b.donors.value, "samples": b.samples.value}
                    | ({"precision": b.samples.precision.value} if b.declared_only else {})
                    for b in result.by_biobank
                },
            },
            indent=2,
        )
    )


@main.group("schema")
def schema_group() -> None:
    """The language-neutral contracts in schema/."""


@schema_group.command("export")
def schema_export() -> None:
    """Regenerate the GraphQL SDL and the records JSON Schema from the code.

    Written into the package (`federation/contracts/`, what the code reads); in a source
    checkout the `schema/` mirror is refreshed from it too.
    """
    from federation import SCHEMA_DIR
    from federation.gateway.sdl import export_sdl
    from federation.model.jsonschema import dumps
    from federation.package_data import SCHEMA_MIRROR, refresh

    writers: dict[str, Callable[[], str]] = {
        "schema.graphql": export_sdl,  # same as federation.gateway.sdl.write_sdl
        "records.schema.json": dumps,
    }
    for name, make in writers.items():
        (SCHEMA_DIR / name).write_text(make(), encoding="utf-8")
        click.echo(f"wrote {SCHEMA_DIR / name}")
    if SCHEMA_MIRROR.checkout.is_dir():
        refresh(SCHEMA_MIRROR)
        click.echo(f"refreshed {SCHEMA_MIRROR.checkout} from the package")


@main.command()
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--subject", default=None, help="Only this subject's searches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def audit(ctx: click.Context, limit: int, subject: str | None, as_json: bool) -> None:
    """The audit log of answered searches, newest first (for network operators)."""
    from dataclasses import asdict

    from federation.search.audit import AuditLog
    from federation.state.database import SQLITE, state_url
    from federation.state.store import StateStore

    settings = _settings(ctx)
    url = state_url(settings.state_url, settings.data_dir)
    if url.get_backend_name() == SQLITE and not Path(str(url.database)).exists():
        click.echo(f"no audit log at {url.database} yet: no search has been answered", err=True)
        return
    for entry in AuditLog(StateStore.open(url).audit).entries(first=limit, subject=subject).entries:
        if as_json:
            click.echo(json.dumps(asdict(entry), ensure_ascii=False))
            continue
        released = ", ".join(f"{r.biobank_id}:{r.donors}/{r.samples}" for r in entry.released)
        purpose = json.dumps(entry.purpose, ensure_ascii=False) if entry.purpose else "-"
        filters = json.dumps(entry.filters, ensure_ascii=False)
        click.echo(
            f"#{entry.id} {entry.at} {entry.subject} ({entry.via}; {','.join(entry.roles)}) "
            f"from {entry.client_ip or '-'} filters={filters} "
            f"purpose={purpose} released=[{released}] "
            f"records={entry.record_count if entry.records_returned else 'none'}"
        )


@main.command()
@click.option("--poll", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--once", is_flag=True, help="Start what is due now, wait for it, and exit.")
@click.pass_context
def worker(ctx: click.Context, poll: float, jobs: int, once: bool) -> None:
    """Run scheduled syncs (the network file's `schedule:`) and syncs admins asked for."""
    from federation.runtime import Runtime
    from federation.sync.worker import SyncWorker

    settings = _settings(ctx)
    if settings.network is None:
        raise click.UsageError("no network file configured (setting `network`)")
    runner = SyncWorker(settings, Runtime, jobs=jobs)
    try:
        runner.run(poll=poll, once=once)
    except KeyboardInterrupt:
        runner.stop()


@main.group("connectors")
def connectors_group() -> None:
    """Connector plugins."""


from federation.gateway.apikey_command import apikey_group  # noqa: E402 (registered below)
from federation.state.commands import migrate  # noqa: E402 (registered with the group)

main.add_command(migrate)
main.add_command(apikey_group)


@connectors_group.command("list")
def connectors_list() -> None:
    """Connectors installed through the `federation.connectors` entry points."""
    from federation.sync.registry import installed

    for name, cls in sorted(installed().items()):
        click.echo(f"{name}\t{cls.__module__}:{cls.__qualname__}\t{cls.description}")


@connectors_group.command("options")
@click.option("--write", is_flag=True, help="Put the reference into docs/connectors.md.")
def connectors_options(write: bool) -> None:
    """The option reference of every installed connector, from their config schemas."""
    from federation.sync.option_reference import option_reference, write_into
    from federation.sync.registry import installed

    reference, path = option_reference(installed()), PROJECT_ROOT / "docs" / "connectors.md"
    if write:
        reference = f"{'wrote' if write_into(path, reference) else 'unchanged'}: {path}\n"
    click.echo(reference, nl=False)


if __name__ == "__main__":
    main()
